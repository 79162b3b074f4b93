package jute

// Stat is a znode's metadata (org.apache.zookeeper.data.Stat), 68 bytes.
type Stat struct {
	Czxid Zxid
	Mzxid Zxid
	Ctime int64
	Mtime int64
	// Version, Cversion and Aversion count data, child and ACL changes.
	Version  int32
	Cversion int32
	Aversion int32
	// EphemeralOwner is the owning session of an ephemeral node, 0 for a
	// persistent one; containers and TTL nodes use special values
	// (EphemeralType).
	EphemeralOwner SessionID
	DataLength     int32
	NumChildren    int32
	Pzxid          Zxid
}

// StatSize is the encoded size of a Stat.
const StatSize = 68

func (s *Stat) Decode(d *Decoder) {
	s.Czxid = Zxid(d.Int64())
	s.Mzxid = Zxid(d.Int64())
	s.Ctime = d.Int64()
	s.Mtime = d.Int64()
	s.Version = d.Int32()
	s.Cversion = d.Int32()
	s.Aversion = d.Int32()
	s.EphemeralOwner = SessionID(d.Int64())
	s.DataLength = d.Int32()
	s.NumChildren = d.Int32()
	s.Pzxid = Zxid(d.Int64())
}

func (s *Stat) Encode(e *Encoder) {
	e.Int64(int64(s.Czxid))
	e.Int64(int64(s.Mzxid))
	e.Int64(s.Ctime)
	e.Int64(s.Mtime)
	e.Int32(s.Version)
	e.Int32(s.Cversion)
	e.Int32(s.Aversion)
	e.Int64(int64(s.EphemeralOwner))
	e.Int32(s.DataLength)
	e.Int32(s.NumChildren)
	e.Int64(int64(s.Pzxid))
}

// CreateRequest is the body of create, create2 and createContainer
// requests, and of those ops inside multi. Data nil is sent as a null
// buffer.
type CreateRequest struct {
	Path  string
	Data  []byte
	ACL   []ACL
	Flags CreateMode
}

func (r *CreateRequest) Decode(d *Decoder) {
	r.Path = d.UString()
	r.Data = d.Buffer()
	r.ACL = decodeACLs(d)
	r.Flags = CreateMode(d.Int32())
}

func (r *CreateRequest) Encode(e *Encoder) {
	e.UString(r.Path)
	e.Buffer(r.Data)
	encodeACLs(e, r.ACL)
	e.Int32(int32(r.Flags))
}

// CreateTTLRequest is the body of createTTL (3.5+): CreateRequest plus a TTL
// in milliseconds.
type CreateTTLRequest struct {
	Path  string
	Data  []byte
	ACL   []ACL
	Flags CreateMode
	TTL   int64
}

func (r *CreateTTLRequest) Decode(d *Decoder) {
	r.Path = d.UString()
	r.Data = d.Buffer()
	r.ACL = decodeACLs(d)
	r.Flags = CreateMode(d.Int32())
	r.TTL = d.Int64()
}

func (r *CreateTTLRequest) Encode(e *Encoder) {
	e.UString(r.Path)
	e.Buffer(r.Data)
	encodeACLs(e, r.ACL)
	e.Int32(int32(r.Flags))
	e.Int64(r.TTL)
}

// CreateResponse answers create: the created path (with any sequence
// suffix).
type CreateResponse struct {
	Path string
}

func (r *CreateResponse) Decode(d *Decoder) { r.Path = d.UString() }
func (r *CreateResponse) Encode(e *Encoder) { e.UString(r.Path) }

// Create2Response answers create2, createTTL and createContainer.
type Create2Response struct {
	Path string
	Stat Stat
}

func (r *Create2Response) Decode(d *Decoder) {
	r.Path = d.UString()
	d.Nested(&r.Stat)
}

func (r *Create2Response) Encode(e *Encoder) {
	e.UString(r.Path)
	r.Stat.Encode(e)
}

// DeleteRequest is the body of delete. Version -1 matches any version.
type DeleteRequest struct {
	Path    string
	Version int32
}

func (r *DeleteRequest) Decode(d *Decoder) {
	r.Path = d.UString()
	r.Version = d.Int32()
}

func (r *DeleteRequest) Encode(e *Encoder) {
	e.UString(r.Path)
	e.Int32(r.Version)
}

// ExistsRequest is the body of exists; Watch sets a data watch, or an exist
// watch if the node is missing (DataTree.statNode registers before the
// lookup).
type ExistsRequest struct {
	Path  string
	Watch bool
}

func (r *ExistsRequest) Decode(d *Decoder) {
	r.Path = d.UString()
	r.Watch = d.Bool()
}

func (r *ExistsRequest) Encode(e *Encoder) {
	e.UString(r.Path)
	e.Bool(r.Watch)
}

// ExistsResponse answers exists when the node exists (NONODE has no body).
type ExistsResponse struct {
	Stat Stat
}

func (r *ExistsResponse) Decode(d *Decoder) { d.Nested(&r.Stat) }
func (r *ExistsResponse) Encode(e *Encoder) { r.Stat.Encode(e) }

// GetDataRequest is the body of getData, also inside multiRead.
type GetDataRequest struct {
	Path  string
	Watch bool
}

func (r *GetDataRequest) Decode(d *Decoder) {
	r.Path = d.UString()
	r.Watch = d.Bool()
}

func (r *GetDataRequest) Encode(e *Encoder) {
	e.UString(r.Path)
	e.Bool(r.Watch)
}

// GetDataResponse answers getData and reconfig (the new configuration and
// the Stat of /zookeeper/config). Data is nil for a node whose data is null.
type GetDataResponse struct {
	Data []byte
	Stat Stat
}

func (r *GetDataResponse) Decode(d *Decoder) {
	r.Data = d.Buffer()
	d.Nested(&r.Stat)
}

func (r *GetDataResponse) Encode(e *Encoder) {
	e.Buffer(r.Data)
	r.Stat.Encode(e)
}

// SetDataRequest is the body of setData. Version -1 matches any version.
type SetDataRequest struct {
	Path    string
	Data    []byte
	Version int32
}

func (r *SetDataRequest) Decode(d *Decoder) {
	r.Path = d.UString()
	r.Data = d.Buffer()
	r.Version = d.Int32()
}

func (r *SetDataRequest) Encode(e *Encoder) {
	e.UString(r.Path)
	e.Buffer(r.Data)
	e.Int32(r.Version)
}

// SetDataResponse answers setData, and standalone check
// (FinalRequestProcessor answers check with a SetDataResponse).
type SetDataResponse struct {
	Stat Stat
}

func (r *SetDataResponse) Decode(d *Decoder) { d.Nested(&r.Stat) }
func (r *SetDataResponse) Encode(e *Encoder) { r.Stat.Encode(e) }

// GetChildrenRequest is the body of getChildren, also inside multiRead.
type GetChildrenRequest struct {
	Path  string
	Watch bool
}

func (r *GetChildrenRequest) Decode(d *Decoder) {
	r.Path = d.UString()
	r.Watch = d.Bool()
}

func (r *GetChildrenRequest) Encode(e *Encoder) {
	e.UString(r.Path)
	e.Bool(r.Watch)
}

// GetChildrenResponse answers getChildren.
type GetChildrenResponse struct {
	Children []string
}

func (r *GetChildrenResponse) Decode(d *Decoder) { r.Children = d.UStringVector() }
func (r *GetChildrenResponse) Encode(e *Encoder) { e.UStringVector(r.Children) }

// GetChildren2Request is the body of getChildren2.
type GetChildren2Request struct {
	Path  string
	Watch bool
}

func (r *GetChildren2Request) Decode(d *Decoder) {
	r.Path = d.UString()
	r.Watch = d.Bool()
}

func (r *GetChildren2Request) Encode(e *Encoder) {
	e.UString(r.Path)
	e.Bool(r.Watch)
}

// GetChildren2Response answers getChildren2.
type GetChildren2Response struct {
	Children []string
	Stat     Stat
}

func (r *GetChildren2Response) Decode(d *Decoder) {
	r.Children = d.UStringVector()
	d.Nested(&r.Stat)
}

func (r *GetChildren2Response) Encode(e *Encoder) {
	e.UStringVector(r.Children)
	r.Stat.Encode(e)
}

// SyncRequest is the body of sync.
type SyncRequest struct {
	Path string
}

func (r *SyncRequest) Decode(d *Decoder) { r.Path = d.UString() }
func (r *SyncRequest) Encode(e *Encoder) { e.UString(r.Path) }

// SyncResponse answers sync.
type SyncResponse struct {
	Path string
}

func (r *SyncResponse) Decode(d *Decoder) { r.Path = d.UString() }
func (r *SyncResponse) Encode(e *Encoder) { e.UString(r.Path) }

// CheckVersionRequest is the body of check, valid only inside multi: 3.8
// accepts it standalone but never replies (FinalRequestProcessor serializes a
// SetDataResponse with a null Stat and fails), 3.9.3+ rejects it
// (ZOOKEEPER-2623).
type CheckVersionRequest struct {
	Path    string
	Version int32
}

func (r *CheckVersionRequest) Decode(d *Decoder) {
	r.Path = d.UString()
	r.Version = d.Int32()
}

func (r *CheckVersionRequest) Encode(e *Encoder) {
	e.UString(r.Path)
	e.Int32(r.Version)
}

// GetEphemeralsRequest is the body of getEphemerals (3.6+): the session's
// ephemeral nodes under PrefixPath.
type GetEphemeralsRequest struct {
	PrefixPath string
}

func (r *GetEphemeralsRequest) Decode(d *Decoder) { r.PrefixPath = d.UString() }
func (r *GetEphemeralsRequest) Encode(e *Encoder) { e.UString(r.PrefixPath) }

// GetEphemeralsResponse answers getEphemerals.
type GetEphemeralsResponse struct {
	Ephemerals []string
}

func (r *GetEphemeralsResponse) Decode(d *Decoder) { r.Ephemerals = d.UStringVector() }
func (r *GetEphemeralsResponse) Encode(e *Encoder) { e.UStringVector(r.Ephemerals) }

// GetAllChildrenNumberRequest is the body of getAllChildrenNumber (3.6+).
type GetAllChildrenNumberRequest struct {
	Path string
}

func (r *GetAllChildrenNumberRequest) Decode(d *Decoder) { r.Path = d.UString() }
func (r *GetAllChildrenNumberRequest) Encode(e *Encoder) { e.UString(r.Path) }

// GetAllChildrenNumberResponse answers getAllChildrenNumber: the number of
// descendants.
type GetAllChildrenNumberResponse struct {
	TotalNumber int32
}

func (r *GetAllChildrenNumberResponse) Decode(d *Decoder) { r.TotalNumber = d.Int32() }
func (r *GetAllChildrenNumberResponse) Encode(e *Encoder) { e.Int32(r.TotalNumber) }

// ErrorResponse carries an error code: the body of an addWatch reply (always
// 0, FinalRequestProcessor) and of an error result inside a multi response.
type ErrorResponse struct {
	Err ErrCode
}

func (r *ErrorResponse) Decode(d *Decoder) { r.Err = ErrCode(d.Int32()) }
func (r *ErrorResponse) Encode(e *Encoder) { e.Int32(int32(r.Err)) }

// ReconfigRequest is the body of reconfig (3.5+). The Java client and kazoo
// send null for the server lists they do not use, so the lists are nullable:
// nil is a null ustring. The reply body is a GetDataResponse.
type ReconfigRequest struct {
	JoiningServers *string
	LeavingServers *string
	NewMembers     *string
	CurConfigID    int64
}

func (r *ReconfigRequest) Decode(d *Decoder) {
	r.JoiningServers = d.NullableUString()
	r.LeavingServers = d.NullableUString()
	r.NewMembers = d.NullableUString()
	r.CurConfigID = d.Int64()
}

func (r *ReconfigRequest) Encode(e *Encoder) {
	e.NullableUString(r.JoiningServers)
	e.NullableUString(r.LeavingServers)
	e.NullableUString(r.NewMembers)
	e.Int64(r.CurConfigID)
}
