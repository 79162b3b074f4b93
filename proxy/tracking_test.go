package proxy

import (
	"slices"
	"strings"
	"testing"

	"github.com/zkproxy/zkproxy/jute"
)

func TestWatchTrackerRegistration(t *testing.T) {
	type reply struct {
		op    jute.Op
		path  string
		watch bool
		arg   int32
		err   jute.ErrCode
	}
	tests := []struct {
		name    string
		replies []reply
		want    watchTracker
	}{
		{"exists on existing node arms a data watch",
			[]reply{{jute.OpExists, "/a", true, 0, jute.ErrOK}}, watchTracker{data: set("/a")}},
		{"exists on missing node arms an exist watch",
			[]reply{{jute.OpExists, "/a", true, 0, jute.ErrNoNode}}, watchTracker{exist: set("/a")}},
		{"exists without watch arms nothing",
			[]reply{{jute.OpExists, "/a", false, 0, jute.ErrOK}}, watchTracker{}},
		{"exists with NOAUTH arms nothing",
			[]reply{{jute.OpExists, "/a", true, 0, jute.ErrNoAuth}}, watchTracker{}},
		{"getData arms only on success",
			[]reply{{jute.OpGetData, "/a", true, 0, jute.ErrOK}, {jute.OpGetData, "/b", true, 0, jute.ErrNoNode}},
			watchTracker{data: set("/a")}},
		{"getChildren and getChildren2 arm child watches",
			[]reply{{jute.OpGetChildren, "/a", true, 0, jute.ErrOK}, {jute.OpGetChildren2, "/b", true, 0, jute.ErrOK},
				{jute.OpGetChildren2, "/c", true, 0, jute.ErrNoNode}},
			watchTracker{child: set("/a", "/b")}},
		{"addWatch persistent and recursive",
			[]reply{{jute.OpAddWatch, "/p", false, 0, jute.ErrOK}, {jute.OpAddWatch, "/r", false, 1, jute.ErrOK},
				{jute.OpAddWatch, "/x", false, 1, jute.ErrNoAuth}},
			watchTracker{persistent: set("/p"), recursive: set("/r")}},
		{"removeWatches children",
			[]reply{{jute.OpGetChildren, "/a", true, 0, jute.ErrOK}, {jute.OpGetData, "/a", true, 0, jute.ErrOK},
				{jute.OpRemoveWatches, "/a", false, int32(jute.WatcherChildren), jute.ErrOK}},
			watchTracker{data: set("/a")}},
		{"removeWatches data removes data and exist",
			[]reply{{jute.OpGetChildren, "/a", true, 0, jute.ErrOK}, {jute.OpGetData, "/a", true, 0, jute.ErrOK},
				{jute.OpExists, "/b", true, 0, jute.ErrNoNode},
				{jute.OpRemoveWatches, "/a", false, int32(jute.WatcherData), jute.ErrOK},
				{jute.OpRemoveWatches, "/b", false, int32(jute.WatcherData), jute.ErrOK}},
			watchTracker{child: set("/a")}},
		{"removeWatches any removes persistent too",
			[]reply{{jute.OpGetChildren, "/a", true, 0, jute.ErrOK}, {jute.OpAddWatch, "/a", false, 0, jute.ErrOK},
				{jute.OpAddWatch, "/a", false, 1, jute.ErrOK}, {jute.OpGetData, "/b", true, 0, jute.ErrOK},
				{jute.OpRemoveWatches, "/a", false, int32(jute.WatcherAny), jute.ErrOK}},
			watchTracker{data: set("/b")}},
		{"removeWatches with NOWATCHER removes nothing",
			[]reply{{jute.OpGetData, "/a", true, 0, jute.ErrOK},
				{jute.OpRemoveWatches, "/a", false, int32(jute.WatcherAny), jute.ErrNoWatcher}},
			watchTracker{data: set("/a")}},
		{"checkWatches changes nothing",
			[]reply{{jute.OpGetData, "/a", true, 0, jute.ErrOK},
				{jute.OpCheckWatches, "/a", false, int32(jute.WatcherAny), jute.ErrOK}},
			watchTracker{data: set("/a")}},
		{"removeWatches persistent (3.9) only that set",
			[]reply{{jute.OpAddWatch, "/a", false, 0, jute.ErrOK}, {jute.OpAddWatch, "/a", false, 1, jute.ErrOK},
				{jute.OpRemoveWatches, "/a", false, int32(jute.WatcherPersistent), jute.ErrOK}},
			watchTracker{recursive: set("/a")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w watchTracker
			for _, r := range tt.replies {
				w.replied(r.op, r.path, r.watch, r.arg, r.err)
			}
			assertWatches(t, &w, &tt.want)
		})
	}
}

func TestWatchTrackerEvents(t *testing.T) {
	full := func() *watchTracker {
		w := &watchTracker{}
		w.load([]string{"/a", "/b"}, []string{"/a", "/c"}, []string{"/a", "/b"}, []string{"/a"}, []string{"/a"})
		return w
	}
	tests := []struct {
		name string
		typ  jute.EventType
		path string
		want watchTracker
	}{
		{"created clears data and exist", jute.EventNodeCreated, "/a",
			watchTracker{data: set("/b"), exist: set("/c"), child: set("/a", "/b"), persistent: set("/a"), recursive: set("/a")}},
		{"data changed clears data and exist", jute.EventNodeDataChanged, "/a",
			watchTracker{data: set("/b"), exist: set("/c"), child: set("/a", "/b"), persistent: set("/a"), recursive: set("/a")}},
		{"children changed clears child", jute.EventNodeChildrenChanged, "/b",
			watchTracker{data: set("/a", "/b"), exist: set("/a", "/c"), child: set("/a"), persistent: set("/a"), recursive: set("/a")}},
		{"deleted clears data, exist and child", jute.EventNodeDeleted, "/a",
			watchTracker{data: set("/b"), exist: set("/c"), child: set("/b"), persistent: set("/a"), recursive: set("/a")}},
		{"unrelated path changes nothing", jute.EventNodeDeleted, "/zzz",
			watchTracker{data: set("/a", "/b"), exist: set("/a", "/c"), child: set("/a", "/b"), persistent: set("/a"), recursive: set("/a")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := full()
			w.fired(tt.typ, tt.path)
			assertWatches(t, w, &tt.want)
		})
	}
}

func TestWatchTrackerBatches(t *testing.T) {
	var w watchTracker
	if got := w.batches(setWatchesMaxPathChars); len(got) != 0 {
		t.Fatalf("empty tracker: %d batches, want 0", len(got))
	}
	long := "/" + strings.Repeat("x", 999) // 1000 bytes
	var data, child []string
	for i := range 200 {
		p := long[:996] + string(rune('a'+i/26%26)) + string(rune('a'+i%26)) + "/d"
		data = append(data, p)
		child = append(child, p+"c")
	}
	w.load(data, nil, child, nil, []string{"/r"})
	batches := w.batches(setWatchesMaxPathChars)
	var total, sum int
	for i, b := range batches {
		chars := 0
		for _, l := range [][]string{b.data, b.exist, b.child, b.persistent, b.recursive} {
			for _, p := range l {
				chars += len(p)
			}
			total += len(l)
		}
		// A batch closes as soon as it reaches the limit: only its last
		// path may overshoot.
		if i < len(batches)-1 && (chars < setWatchesMaxPathChars || chars >= setWatchesMaxPathChars+1002) {
			t.Errorf("batch %d holds %d path bytes", i, chars)
		}
		sum += chars
		op, rec := b.record(7)
		wantOp := jute.OpSetWatches
		if len(b.persistent)+len(b.recursive) > 0 {
			wantOp = jute.OpSetWatches2
		}
		if op != wantOp {
			t.Errorf("batch %d: op %s, want %s", i, op, wantOp)
		}
		// Round-trip through the codec to prove the record encodes.
		enc := jute.Marshal(rec)
		if op == jute.OpSetWatches {
			var sw jute.SetWatches
			if err := jute.Unmarshal(enc, &sw); err != nil || sw.RelativeZxid != 7 || sw.DataWatches == nil {
				t.Errorf("batch %d: round trip: %+v %v", i, sw.RelativeZxid, err)
			}
		}
	}
	if total != 401 {
		t.Errorf("batches hold %d paths, want 401", total)
	}
	if len(batches) < 3 {
		t.Errorf("got %d batches for ~400 KB of paths, want at least 3", len(batches))
	}
	if last := batches[len(batches)-1]; !slices.Equal(last.recursive, []string{"/r"}) {
		t.Errorf("persistent-recursive watches must come last, got last batch %+v", last.recursive)
	}
}

func TestRequestFIFO(t *testing.T) {
	var q requestFIFO
	for i := 1; i <= 20; i++ {
		q.push(pendingRequest{xid: jute.Xid(i), op: jute.OpGetData})
	}
	for i := 1; i <= 10; i++ {
		r, err := q.match(jute.Xid(i))
		if err != nil || r.xid != jute.Xid(i) {
			t.Fatalf("match %d: %v %v", i, r.xid, err)
		}
	}
	// Wrap around the ring.
	for i := 21; i <= 30; i++ {
		q.push(pendingRequest{xid: jute.Xid(i), op: jute.OpGetData})
	}
	if _, err := q.match(12); err == nil {
		t.Fatal("out-of-order reply accepted")
	}
	for i := 11; i <= 30; i++ {
		if _, err := q.match(jute.Xid(i)); err != nil {
			t.Fatalf("match %d: %v", i, err)
		}
	}
	if q.len() != 0 {
		t.Fatalf("len %d after draining", q.len())
	}
	if _, err := q.match(1); err == nil {
		t.Fatal("reply with nothing outstanding accepted")
	}
}

func TestRequestFIFOSASLOvertakes(t *testing.T) {
	var q requestFIFO
	q.push(pendingRequest{xid: 1, op: jute.OpGetData})
	q.push(pendingRequest{xid: 2, op: jute.OpSASL})
	q.push(pendingRequest{xid: 3, op: jute.OpCreate})
	q.push(pendingRequest{xid: 4, op: jute.OpGetData})
	r, err := q.match(2)
	if err != nil || r.op != jute.OpSASL {
		t.Fatalf("SASL reply overtaking: %v %v", r, err)
	}
	for _, x := range []jute.Xid{1, 3, 4} {
		if r, err := q.match(x); err != nil || r.xid != x {
			t.Fatalf("match %d after SASL: %v %v", x, r.xid, err)
		}
	}
	q.push(pendingRequest{xid: 5, op: jute.OpGetData})
	q.push(pendingRequest{xid: 6, op: jute.OpCreate})
	if _, err := q.match(6); err == nil {
		t.Fatal("non-SASL reply overtaking accepted")
	}
}

func TestPingFIFO(t *testing.T) {
	var p pingFIFO
	p.push(false)
	p.push(true)
	p.push(false)
	if n := p.clientPings(); n != 2 {
		t.Fatalf("clientPings %d, want 2", n)
	}
	for i, want := range []bool{false, true, false} {
		got, ok := p.pop()
		if !ok || got != want {
			t.Fatalf("pop %d: %v %v, want %v", i, got, ok, want)
		}
	}
	if _, ok := p.pop(); ok {
		t.Fatal("pop from empty FIFO succeeded")
	}
}

func TestParseRequest(t *testing.T) {
	frame := appendRequestFrame(nil, jute.RequestHeader{Xid: 9, Op: jute.OpAddWatch},
		&pathRequest{Path: "/x/y", Arg: 1, isInt: true})
	req := pendingRequest{xid: 9, op: jute.OpAddWatch}
	if _, err := parseRequest(frame[4:], &req); err != nil || req.path != "/x/y" || req.arg != 1 {
		t.Fatalf("addWatch: %+v %v", req, err)
	}
	frame = appendRequestFrame(nil, jute.RequestHeader{Xid: 3, Op: jute.OpExists}, &pathRequest{Path: "/e", Watch: true})
	req = pendingRequest{xid: 3, op: jute.OpExists}
	if _, err := parseRequest(frame[4:], &req); err != nil || req.path != "/e" || !req.watch {
		t.Fatalf("exists: %+v %v", req, err)
	}
	req = pendingRequest{xid: 3, op: jute.OpExists}
	if _, err := parseRequest(frame[4:len(frame)-2], &req); err == nil {
		t.Fatal("truncated exists decoded")
	}
	frame = appendRequestFrame(nil, jute.RequestHeader{Xid: 5, Op: jute.OpSetWatches},
		&jute.SetWatches{RelativeZxid: 77, DataWatches: []string{"/d"}, ExistWatches: []string{}, ChildWatches: []string{"/c"}})
	req = pendingRequest{xid: 5, op: jute.OpSetWatches}
	sw, err := parseRequest(frame[4:], &req)
	if err != nil || sw == nil || sw.RelativeZxid != 77 || !slices.Equal(sw.ChildWatches, []string{"/c"}) {
		t.Fatalf("setWatches: %+v %v", sw, err)
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{MaxFrameSize: -1, LocalAddrs: []string{"nope"}, Source: []string{"a"}}.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, key := range []string{"max-frame-size", "local-addrs", "source"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error %q does not name %s", err, key)
		}
	}
	if err := (Config{Source: []string{"127.0.0.1:2181"}}).Validate(); err != nil {
		t.Fatalf("minimal config: %v", err)
	}
	d := Config{}.withDefaults()
	if d.MaxFrameSize != jute.DefaultMaxFrameSize || d.MaxBufferedBytesPerSession < d.MaxFrameSize || d.MaxReplyFrameSize < 4<<20 {
		t.Fatalf("defaults: %+v", d)
	}
}

func set(paths ...string) pathSet {
	s := pathSet{}
	for _, p := range paths {
		s[p] = struct{}{}
	}
	return s
}

func assertWatches(t *testing.T, got, want *watchTracker) {
	t.Helper()
	for _, c := range []struct {
		name      string
		got, want pathSet
	}{
		{"data", got.data, want.data}, {"exist", got.exist, want.exist}, {"child", got.child, want.child},
		{"persistent", got.persistent, want.persistent}, {"recursive", got.recursive, want.recursive},
	} {
		if !slices.Equal(c.got.sorted(), c.want.sorted()) {
			t.Errorf("%s watches = %v, want %v", c.name, c.got.sorted(), c.want.sorted())
		}
	}
}
