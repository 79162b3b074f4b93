package proxy

import (
	"slices"

	"github.com/zkproxy/zkproxy/jute"
)

// setWatchesMaxPathChars is the batch size the Java client uses when it
// re-registers watches: a batch is closed once the sum of its path lengths
// reaches 128 Ki characters (ClientCnxn.SET_WATCHES_MAX_LENGTH). The proxy
// counts bytes, which is never fewer than UTF-16 units, so its batches are
// no bigger than the client's.
const setWatchesMaxPathChars = 128 * 1024

// pathSet is a set of server paths (chroot included, as on the wire).
type pathSet map[string]struct{}

func (s *pathSet) add(p string) {
	if *s == nil {
		*s = make(pathSet)
	}
	(*s)[p] = struct{}{}
}

func (s pathSet) sorted() []string {
	out := make([]string, 0, len(s))
	for p := range s {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// watchTracker mirrors the watches a member holds for one session's
// connection, so they can be re-registered on another connection (server
// watches belong to the connection, ZKDatabase.removeCnxn drops them all).
// It follows the client's own bookkeeping (ZKWatchManager.materialize and
// the WatchRegistration classes of ZooKeeper.java): when unsure it keeps an
// entry, because a surplus registration only produces an event the client
// discards, while a missing one loses an event. Not safe for concurrent use.
type watchTracker struct {
	data, exist, child, persistent, recursive pathSet
	// gauges, when set, are the zkproxy_watches children (by the kind
	// index of watchKindNames) this tracker adds its entries to.
	gauges *watchGauges
}

// Watch kinds, indexes of watchKindNames.
const (
	watchData = iota
	watchExist
	watchChild
	watchPersistent
	watchRecursive
)

// add and del change one set by kind and keep the gauges in step; they
// run when a watch is armed or fires, not per request.
func (w *watchTracker) add(kind int, set *pathSet, p string) {
	if *set != nil {
		if _, ok := (*set)[p]; ok {
			return
		}
	}
	set.add(p)
	if w.gauges != nil {
		w.gauges[kind].Inc()
	}
}

func (w *watchTracker) del(kind int, set pathSet, p string) {
	if _, ok := set[p]; !ok {
		return
	}
	delete(set, p)
	if w.gauges != nil {
		w.gauges[kind].Dec()
	}
}

// release takes the tracker's entries out of the gauges and detaches it
// (the session closed).
func (w *watchTracker) release() {
	if w.gauges == nil {
		return
	}
	for kind, set := range []pathSet{w.data, w.exist, w.child, w.persistent, w.recursive} {
		w.gauges[kind].Sub(float64(len(set)))
	}
	w.gauges = nil
}

// count returns the number of tracked registrations.
func (w *watchTracker) count() int {
	return len(w.data) + len(w.exist) + len(w.child) + len(w.persistent) + len(w.recursive)
}

// replied applies a reply to a watch-setting request (docs/protocol.md §4.2).
// watch is the request's watch flag; arg is the addWatch mode. Errors other
// than those listed arm nothing: DataTree registers a getData/getChildren
// watch only once the node exists and the ACL check passed.
func (w *watchTracker) replied(op jute.Op, path string, watch bool, arg int32, err jute.ErrCode) {
	switch op {
	case jute.OpExists:
		if !watch {
			return
		}
		// DataTree.statNode registers the data watch before it looks the
		// node up, so exists arms on NONODE too; the client files that
		// under existWatches (ExistsWatchRegistration.getWatches).
		switch err {
		case 0:
			w.add(watchData, &w.data, path)
		case jute.ErrNoNode:
			w.add(watchExist, &w.exist, path)
		}
	case jute.OpGetData:
		if watch && err == 0 {
			w.add(watchData, &w.data, path)
		}
	case jute.OpGetChildren, jute.OpGetChildren2:
		if watch && err == 0 {
			w.add(watchChild, &w.child, path)
		}
	case jute.OpAddWatch:
		if err != 0 {
			return
		}
		switch jute.AddWatchMode(arg) {
		case jute.AddWatchPersistent:
			w.add(watchPersistent, &w.persistent, path)
		case jute.AddWatchPersistentRecursive:
			w.add(watchRecursive, &w.recursive, path)
		}
	case jute.OpRemoveWatches:
		// NOWATCHER means nothing was removed. checkWatches (op 17) never
		// changes server state, so it is not handled here.
		if err != 0 {
			return
		}
		switch jute.WatcherType(arg) {
		case jute.WatcherChildren:
			w.del(watchChild, w.child, path)
		case jute.WatcherData:
			w.del(watchData, w.data, path)
			w.del(watchExist, w.exist, path)
		case jute.WatcherAny:
			w.del(watchChild, w.child, path)
			w.del(watchData, w.data, path)
			w.del(watchExist, w.exist, path)
			w.del(watchPersistent, w.persistent, path)
			w.del(watchRecursive, w.recursive, path)
		case jute.WatcherPersistent:
			w.del(watchPersistent, w.persistent, path)
		case jute.WatcherPersistentRecursive:
			w.del(watchRecursive, w.recursive, path)
		}
	}
}

// fired applies a delivered notification: standard watches are one-shot
// (WatchManager.triggerWatch removes them), persistent ones stay.
func (w *watchTracker) fired(typ jute.EventType, path string) {
	switch typ {
	case jute.EventNodeCreated, jute.EventNodeDataChanged:
		w.del(watchData, w.data, path)
		w.del(watchExist, w.exist, path)
	case jute.EventNodeChildrenChanged:
		w.del(watchChild, w.child, path)
	case jute.EventNodeDeleted:
		w.del(watchData, w.data, path)
		w.del(watchExist, w.exist, path)
		w.del(watchChild, w.child, path)
	}
}

// load adds the watches a client re-registers itself with SetWatches or
// SetWatches2 (after a reconnect it saw). The member registers or fires
// each of them (DataTree.setWatches); the catch-up notifications that
// follow remove the fired ones through fired.
func (w *watchTracker) load(data, exist, child, persistent, recursive []string) {
	for _, p := range data {
		w.add(watchData, &w.data, p)
	}
	for _, p := range exist {
		w.add(watchExist, &w.exist, p)
	}
	for _, p := range child {
		w.add(watchChild, &w.child, p)
	}
	for _, p := range persistent {
		w.add(watchPersistent, &w.persistent, p)
	}
	for _, p := range recursive {
		w.add(watchRecursive, &w.recursive, p)
	}
}

// watchBatch is one SetWatches/SetWatches2 frame's worth of paths.
type watchBatch struct {
	data, exist, child, persistent, recursive []string
}

// needsSetWatches2 reports whether the batch holds persistent entries,
// which only op 105 can carry. Like ClientCnxn.primeConnection, the proxy
// sends op 101 otherwise so that 3.5 members keep working.
func (b *watchBatch) needsSetWatches2() bool {
	return len(b.persistent) > 0 || len(b.recursive) > 0
}

// record returns the batch as the record to send with relativeZxid rel.
func (b *watchBatch) record(rel jute.Zxid) (jute.Op, jute.Record) {
	if b.needsSetWatches2() {
		return jute.OpSetWatches2, &jute.SetWatches2{
			RelativeZxid:               rel,
			DataWatches:                nonNil(b.data),
			ExistWatches:               nonNil(b.exist),
			ChildWatches:               nonNil(b.child),
			PersistentWatches:          nonNil(b.persistent),
			PersistentRecursiveWatches: nonNil(b.recursive),
		}
	}
	return jute.OpSetWatches, &jute.SetWatches{
		RelativeZxid: rel,
		DataWatches:  nonNil(b.data),
		ExistWatches: nonNil(b.exist),
		ChildWatches: nonNil(b.child),
	}
}

// nonNil returns an empty slice for nil: the Java client always sends
// vectors (count 0, never -1), and DataTree.setWatches iterates them
// without a null check.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// batches splits the tracked watches into frames the way the Java client
// does (ClientCnxn.primeConnection): data, exist, child, persistent,
// persistent-recursive, in that order, a batch closing once its path
// lengths reach maxChars (the last path may overshoot).
func (w *watchTracker) batches(maxChars int) []watchBatch {
	var (
		out   []watchBatch
		cur   watchBatch
		chars int
		any   bool
	)
	lists := []struct {
		set pathSet
		dst func(*watchBatch) *[]string
	}{
		{w.data, func(b *watchBatch) *[]string { return &b.data }},
		{w.exist, func(b *watchBatch) *[]string { return &b.exist }},
		{w.child, func(b *watchBatch) *[]string { return &b.child }},
		{w.persistent, func(b *watchBatch) *[]string { return &b.persistent }},
		{w.recursive, func(b *watchBatch) *[]string { return &b.recursive }},
	}
	for _, l := range lists {
		for _, p := range l.set.sorted() {
			dst := l.dst(&cur)
			*dst = append(*dst, p)
			chars += len(p)
			any = true
			if chars >= maxChars {
				out = append(out, cur)
				cur, chars, any = watchBatch{}, 0, false
			}
		}
	}
	if any {
		out = append(out, cur)
	}
	return out
}
