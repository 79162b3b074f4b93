package jute

// WatcherEvent is the body of a notification (xid -1).
type WatcherEvent struct {
	Type  EventType
	State KeeperState
	Path  string
}

func (r *WatcherEvent) Decode(d *Decoder) {
	r.Type = EventType(d.Int32())
	r.State = KeeperState(d.Int32())
	r.Path = d.UString()
}

func (r *WatcherEvent) Encode(e *Encoder) {
	e.Int32(int32(r.Type))
	e.Int32(int32(r.State))
	e.UString(r.Path)
}

// SetWatches (op setWatches) re-registers standard watches after a
// reconnect; the server fires catch-up events for changes after
// RelativeZxid (DataTree.setWatches). A nil list is encoded as a null
// vector, an empty one as length 0.
type SetWatches struct {
	RelativeZxid Zxid
	DataWatches  []string
	ExistWatches []string
	ChildWatches []string
}

func (r *SetWatches) Decode(d *Decoder) {
	r.RelativeZxid = Zxid(d.Int64())
	r.DataWatches = d.UStringVector()
	r.ExistWatches = d.UStringVector()
	r.ChildWatches = d.UStringVector()
}

func (r *SetWatches) Encode(e *Encoder) {
	e.Int64(int64(r.RelativeZxid))
	e.UStringVector(r.DataWatches)
	e.UStringVector(r.ExistWatches)
	e.UStringVector(r.ChildWatches)
}

// SetWatches2 (op setWatches2, 3.6+) is SetWatches plus persistent watches,
// which are re-registered without catch-up events.
type SetWatches2 struct {
	RelativeZxid               Zxid
	DataWatches                []string
	ExistWatches               []string
	ChildWatches               []string
	PersistentWatches          []string
	PersistentRecursiveWatches []string
}

func (r *SetWatches2) Decode(d *Decoder) {
	r.RelativeZxid = Zxid(d.Int64())
	r.DataWatches = d.UStringVector()
	r.ExistWatches = d.UStringVector()
	r.ChildWatches = d.UStringVector()
	r.PersistentWatches = d.UStringVector()
	r.PersistentRecursiveWatches = d.UStringVector()
}

func (r *SetWatches2) Encode(e *Encoder) {
	e.Int64(int64(r.RelativeZxid))
	e.UStringVector(r.DataWatches)
	e.UStringVector(r.ExistWatches)
	e.UStringVector(r.ChildWatches)
	e.UStringVector(r.PersistentWatches)
	e.UStringVector(r.PersistentRecursiveWatches)
}

// AddWatchRequest (op addWatch, 3.6+) registers a persistent watch. The reply
// body is an ErrorResponse (FinalRequestProcessor, addWatch case).
type AddWatchRequest struct {
	Path string
	Mode AddWatchMode
}

func (r *AddWatchRequest) Decode(d *Decoder) {
	r.Path = d.UString()
	r.Mode = AddWatchMode(d.Int32())
}

func (r *AddWatchRequest) Encode(e *Encoder) {
	e.UString(r.Path)
	e.Int32(int32(r.Mode))
}

// RemoveWatchesRequest (op removeWatches) removes the server's watches of a
// type on a path; NOWATCHER when there were none.
type RemoveWatchesRequest struct {
	Path string
	Type WatcherType
}

func (r *RemoveWatchesRequest) Decode(d *Decoder) {
	r.Path = d.UString()
	r.Type = WatcherType(d.Int32())
}

func (r *RemoveWatchesRequest) Encode(e *Encoder) {
	e.UString(r.Path)
	e.Int32(int32(r.Type))
}

// CheckWatchesRequest (op checkWatches) asks whether watches of a type exist
// on a path; it changes no server state.
type CheckWatchesRequest struct {
	Path string
	Type WatcherType
}

func (r *CheckWatchesRequest) Decode(d *Decoder) {
	r.Path = d.UString()
	r.Type = WatcherType(d.Int32())
}

func (r *CheckWatchesRequest) Encode(e *Encoder) {
	e.UString(r.Path)
	e.Int32(int32(r.Type))
}
