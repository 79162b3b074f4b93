package fleet

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func openStore(t *testing.T, cfg StoreConfig) *Store {
	t.Helper()
	s, err := OpenStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	waitConnected(t, s)
	return s
}

// waitConnected waits until every side has a session (and is
// authenticated), so reads in the test never meet a client still dialing.
func waitConnected(t *testing.T, s *Store) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, sd := range s.sides {
		conn, authed, _ := sd.current()
		if conn == nil {
			continue // the source, opened by Read when needed
		}
		for conn.State() != zk.StateHasSession {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no session", sd.name)
			}
			time.Sleep(20 * time.Millisecond)
		}
		select {
		case <-authed:
		case <-time.After(time.Until(deadline)):
			t.Fatalf("%s: not authenticated", sd.name)
		}
	}
}

// rawConn is a plain client of one server, for planting and inspecting
// znodes behind the store's back.
func rawConn(t *testing.T, addr string) *zk.Conn {
	t.Helper()
	c, _, err := zk.Connect([]string{addr}, 10*time.Second, zk.WithLogInfo(false), zk.WithLogger(zkLogger{quietLog()}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func plant(t *testing.T, c *zk.Conn, p string, data []byte) {
	t.Helper()
	if _, err := c.Create("/zkproxy", nil, 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
		t.Fatal(err)
	}
	if _, err := c.Create("/zkproxy/f", nil, 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
		t.Fatal(err)
	}
	if _, err := c.Set(p, data, -1); errors.Is(err, zk.ErrNoNode) {
		_, err = c.Create(p, data, 0, zk.WorldACL(zk.PermAll))
		if err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
}

func plantState(t *testing.T, c *zk.Conn, st State) {
	t.Helper()
	b, err := encodeState(st)
	if err != nil {
		t.Fatal(err)
	}
	plant(t, c, "/zkproxy/f/state", b)
}

// TestFleetConditionalWrite: two replicas read the same version and write
// at once; ZooKeeper's version check lets exactly one win, the other gets
// ErrConflict with the reason.
func TestFleetConditionalWrite(t *testing.T) {
	src := zktest.Standalone(t)
	ctx := ctxFor(t, time.Minute)
	cfg := StoreConfig{Path: "/zkproxy/f", Source: []string{src.ClientAddr()}}
	a, b := openStore(t, cfg), openStore(t, cfg)
	r, err := a.Read(ctx)
	if err != nil || r.Exists || r.Side != cutover.Source {
		t.Fatalf("empty fleet: %+v %v", r, err)
	}
	init := State{Phase: cutover.PhaseSource}.bump(ActionInit, "a", time.Now())
	if _, err := a.Write(ctx, r, init, cutover.Source); err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		ra, err := a.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rb, err := b.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, w := range []struct {
			s *Store
			r Reading
		}{{a, ra}, {b, rb}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = w.s.Write(ctx, w.r, w.r.State.bump(ActionHold, "x", time.Now()), cutover.Source)
			}()
		}
		wg.Wait()
		wins, conflicts := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				wins++
			case errors.Is(err, ErrConflict):
				conflicts++
				t.Logf("round %d: loser: %v", round, err)
			default:
				t.Fatal(err)
			}
		}
		if wins != 1 || conflicts != 1 {
			t.Fatalf("round %d: %d wins, %d conflicts: %v", round, wins, conflicts, errs)
		}
	}
	r, _ = a.Read(ctx)
	if r.State.Epoch != 6 {
		t.Fatalf("epoch %d after init and 5 single wins, want 6", r.State.Epoch)
	}
	// Creating twice: the second creator loses too.
	empty := Reading{Copy: Copy{Side: cutover.Source}}
	if _, err := b.Write(ctx, empty, init, cutover.Source); !errors.Is(err, ErrConflict) {
		t.Fatalf("second create: %v", err)
	}
}

// TestFleetReadRule proves the read rule with two separate ensembles: the
// destination is asked first, the higher epoch wins, the destination's copy
// wins a tie, and writes go where the winning copy is.
func TestFleetReadRule(t *testing.T) {
	src, dst := zktest.Standalone(t), zktest.Standalone(t)
	ctx := ctxFor(t, time.Minute)
	s := openStore(t, StoreConfig{Path: "/zkproxy/f", Source: []string{src.ClientAddr()}, Destination: []string{dst.ClientAddr()}})
	if s.sides[0].name != cutover.Destination {
		t.Fatalf("the destination is not asked first: %v", s.sides[0].name)
	}
	sc, dc := rawConn(t, src.ClientAddr()), rawConn(t, dst.ClientAddr())
	read := func() Reading {
		t.Helper()
		r, err := s.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	sourceOpen := func() bool { conn, _, _ := s.side(cutover.Source).current(); return conn != nil }

	// Before the join: only the source has a copy.
	plantState(t, sc, State{Phase: cutover.PhaseSource, Epoch: 3})
	if r := read(); r.Side != cutover.Source || r.State.Epoch != 3 {
		t.Fatalf("source-only copy: %+v", r.Copy)
	}
	// Equal epochs (one joint ensemble): the destination's copy.
	plantState(t, dc, State{Phase: cutover.PhaseSource, Epoch: 3})
	if r := read(); r.Side != cutover.Destination || r.State.Epoch != 3 {
		t.Fatalf("tie: %+v", r.Copy)
	}
	// Before the cutover began a higher epoch wins, whichever side it is on.
	plantState(t, sc, State{Phase: cutover.PhaseSource, Epoch: 5})
	if r := read(); r.Side != cutover.Source || r.State.Epoch != 5 {
		t.Fatalf("higher source epoch: %+v", r.Copy)
	}
	// The destination's copy says the cutover began: it is the truth, the
	// source is not asked, and the fleet's connection to it is closed —
	// even against a source copy with a higher epoch.
	plantState(t, dc, State{Phase: cutover.PhaseDestination, Split: true, Epoch: 7})
	plantState(t, sc, State{Phase: cutover.PhaseSource, Epoch: 8})
	r := read()
	if r.Side != cutover.Destination || r.State.Epoch != 7 || !r.State.Split {
		t.Fatalf("begun destination copy: %+v", r.Copy)
	}
	if sourceOpen() {
		t.Fatal("the connection to the source is still open after a read that says the cutover began")
	}
	plantState(t, sc, State{Phase: cutover.PhaseSource, Epoch: 5})
	// The write goes to the winning (destination) copy; the source's
	// stays frozen.
	if _, err := s.Write(ctx, r, r.State.bump(ActionRelease, "t", time.Now()), cutover.Destination); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		conn *zk.Conn
		want int64
	}{{dc, 8}, {sc, 5}} {
		b, _, err := c.conn.Get("/zkproxy/f/state")
		if err != nil {
			t.Fatal(err)
		}
		st, err := decodeState(b)
		if err != nil || st.Epoch != c.want {
			t.Fatalf("epoch %d (%v), want %d", st.Epoch, err, c.want)
		}
	}
	// The destination lost its copy: the source is asked again. A copy won
	// there after the cutover began is never written: that write would
	// outrank the destination's copy and pull every later one to the old
	// ensemble.
	if err := dc.Delete("/zkproxy/f/state", -1); err != nil {
		t.Fatal(err)
	}
	plantState(t, sc, State{Phase: cutover.PhaseCuttingOver, Epoch: 9})
	r = read()
	if r.Side != cutover.Source || !sourceOpen() {
		t.Fatalf("destination copy missing: %+v (source open %v)", r.Copy, sourceOpen())
	}
	if _, err := s.Write(ctx, r, r.State.bump(ActionAbort, "t", time.Now()), cutover.Destination); !errors.Is(err, ErrDestinationOnly) {
		t.Fatalf("write on the source after the cutover began: %v", err)
	}
	if b, _, _ := sc.Get("/zkproxy/f/state"); !strings.Contains(string(b), `"epoch": 9`) {
		t.Fatalf("source copy changed: %s", b)
	}
	plantState(t, sc, State{Phase: cutover.PhaseSource, Epoch: 5})

	// One side silent: the other's copy is read, and the silent one named.
	if err := dst.Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := s.Read(ctx)
		if err == nil && r.Side == cutover.Source {
			if len(r.Unanswered) != 1 {
				t.Fatalf("unanswered: %v", r.Unanswered)
			}
			t.Logf("destination down: read %s's copy, epoch %d; %v", r.Side, r.State.Epoch, r.Unanswered)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("destination down: %+v %v", r, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestFleetGarbageStateRefused: a garbage or unknown-version state znode is
// an error naming it; the replica does not become ready and overwrites
// nothing.
func TestFleetGarbageStateRefused(t *testing.T) {
	src := zktest.Standalone(t)
	sc := rawConn(t, src.ClientAddr())
	for _, tc := range []struct {
		name string
		data string
	}{
		{"garbage", "this is not json"},
		{"unknown version", `{"format": 99, "phase": "destination", "epoch": 4}`},
		{"no version", `{"phase": "source"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxFor(t, time.Minute)
			plant(t, sc, "/zkproxy/f/state", []byte(tc.data))
			f, err := Open(Config{Name: "f", ReplicaID: "r1", Store: StoreConfig{Path: "/zkproxy/f", Source: []string{src.ClientAddr()}}}, quietLog())
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			waitConnected(t, f.store)
			err = f.Bootstrap(ctx, cutover.Store{Dir: t.TempDir()})
			var fe *FormatError
			if !errors.As(err, &fe) || fe.Path != "/zkproxy/f/state" {
				t.Fatalf("bootstrap: %v", err)
			}
			t.Logf("refused: %v", err)
			if rerr := f.Ready(ctx); rerr == nil || !errors.As(rerr, &fe) {
				t.Fatalf("ready despite %v: %v", err, rerr)
			}
			b, _, err := sc.Get("/zkproxy/f/state")
			if err != nil || string(b) != tc.data {
				t.Fatalf("state znode changed: %q %v", b, err)
			}
		})
	}
}

// TestFleetACL: with fleet-auth the znodes are readable by anyone and
// writable only with the credentials.
func TestFleetACL(t *testing.T) {
	src := zktest.Standalone(t)
	ctx := ctxFor(t, time.Minute)
	cfg := StoreConfig{Path: "/zkproxy/f", Source: []string{src.ClientAddr()}, Auth: "zkproxy:s3cret"}
	s := openStore(t, cfg)
	r, err := s.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(ctx, r, State{}.bump(ActionInit, "a", time.Now()), cutover.Source); err != nil {
		t.Fatal(err)
	}
	anon := rawConn(t, src.ClientAddr())
	b, stat, err := anon.Get("/zkproxy/f/state")
	if err != nil {
		t.Fatalf("world read: %v", err)
	}
	if _, err := decodeState(b); err != nil {
		t.Fatal(err)
	}
	if _, err := anon.Set("/zkproxy/f/state", []byte("x"), stat.Version); !errors.Is(err, zk.ErrNoAuth) {
		t.Fatalf("write without credentials: %v, want NoAuth", err)
	}
	acl, _, err := anon.GetACL("/zkproxy/f/state")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ACL: %+v", acl)
	wrong := openStore(t, StoreConfig{Path: "/zkproxy/f", Source: []string{src.ClientAddr()}, Auth: "zkproxy:wrong"})
	r, err = wrong.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wrong.Write(ctx, r, r.State.bump(ActionHold, "w", time.Now()), cutover.Source); !errors.Is(err, zk.ErrNoAuth) {
		t.Fatalf("write with the wrong password: %v", err)
	}
	r, _ = s.Read(ctx)
	if _, err := s.Write(ctx, r, r.State.bump(ActionHold, "a", time.Now()), cutover.Source); err != nil {
		t.Fatalf("write with the credentials: %v", err)
	}
}

// idleController is a cutover controller with nothing to move, for the
// fleet's loop in package tests (the e2e tests drive real controllers).
type idleController struct{ st cutover.Status }

func (c *idleController) Status() cutover.Status                               { return c.st }
func (c *idleController) Check(context.Context) *cutover.Report                { return &cutover.Report{Ready: true} }
func (c *idleController) Start(context.Context, bool) (*cutover.Report, error) { return nil, nil }
func (c *idleController) Abort() error                                         { return nil }
func (c *idleController) Rollback(context.Context) error                       { return nil }
func (c *idleController) RecordSplit() error                                   { return nil }
func (c *idleController) PrepareSplit(context.Context, bool) (*cutover.SplitPlan, error) {
	return nil, nil
}
func (c *idleController) Hold(context.Context, []string) (cutover.BarrierStatus, error) {
	return cutover.BarrierStatus{}, nil
}
func (c *idleController) ReleaseBarrier(string) bool { return false }

// TestFleetGarbageStateWhileRunning: a running replica that meets a garbage
// state znode reports not ready at once, naming it, and writes nothing;
// once fixed it is ready again.
func TestFleetGarbageStateWhileRunning(t *testing.T) {
	src := zktest.Standalone(t)
	ctx := ctxFor(t, time.Minute)
	f, err := Open(Config{Name: "f", ReplicaID: "r1", Interval: 100 * time.Millisecond,
		Store: StoreConfig{Path: "/zkproxy/f", Source: []string{src.ClientAddr()}}}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	waitConnected(t, f.store)
	if err := f.Bootstrap(ctx, cutover.Store{Dir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	f.Run(&idleController{st: cutover.Status{Phase: cutover.PhaseSource, Target: cutover.Source}})
	if err := f.Ready(ctx); err != nil {
		t.Fatalf("not ready after the bootstrap: %v", err)
	}
	sc := rawConn(t, src.ClientAddr())
	plant(t, sc, "/zkproxy/f/state", []byte(`{"format": 7}`))
	for {
		err := f.Ready(ctx)
		var fe *FormatError
		if errors.As(err, &fe) {
			t.Logf("not ready: %v", err)
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("still ready with a garbage state: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // several rounds of the loop
	if b, _, err := sc.Get("/zkproxy/f/state"); err != nil || string(b) != `{"format": 7}` {
		t.Fatalf("the garbage state was overwritten: %q %v", b, err)
	}
	plantState(t, sc, State{Phase: cutover.PhaseSource, Epoch: 3})
	for f.Ready(ctx) != nil {
		if ctx.Err() != nil {
			t.Fatalf("not ready again after the fix: %v", f.Ready(ctx))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFleetSuccessorTakesMemberZnode: an in-place upgrade runs two
// processes of one replica (same id) for a moment. The new one makes the
// ephemeral member znode its own (the old one's would go with its
// session), and the old one leaves with HandOff, which deletes neither it
// nor the registration — Close, a clean leave, would delete both.
func TestFleetSuccessorTakesMemberZnode(t *testing.T) {
	src := zktest.Standalone(t)
	ctx := ctxFor(t, time.Minute)
	open := func() *Fleet {
		f, err := Open(Config{Name: "f", ReplicaID: "r1", Interval: 100 * time.Millisecond,
			Store: StoreConfig{Path: "/zkproxy/f", Source: []string{src.ClientAddr()}}}, quietLog())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(f.Close)
		waitConnected(t, f.store)
		if err := f.Bootstrap(ctx, cutover.Store{Dir: t.TempDir()}); err != nil {
			t.Fatal(err)
		}
		f.Run(&idleController{st: cutover.Status{Phase: cutover.PhaseSource, Target: cutover.Source}})
		return f
	}
	sc := rawConn(t, src.ClientAddr())
	owner := func() int64 {
		_, st, err := sc.Get("/zkproxy/f/replicas/r1")
		if err != nil {
			return 0
		}
		return st.EphemeralOwner
	}
	waitOwner := func(what string, want int64) {
		t.Helper()
		for owner() != want {
			if ctx.Err() != nil {
				t.Fatalf("%s: member znode owned by 0x%x, want 0x%x", what, owner(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	oldF := open()
	oldID := oldF.store.SessionIDs()[0]
	waitOwner("the first process", oldID)

	newF := open()
	newID := newF.store.SessionIDs()[0]
	waitOwner("the successor", newID)

	// The old process still publishes while it hands its sessions over
	// (its session counts change): the znode stays the successor's.
	oldF.mu.Lock()
	oldF.pubAt = time.Time{}
	oldF.mu.Unlock()
	oldF.publish(ctx, cutover.Source)
	if o := owner(); o != newID {
		t.Fatalf("the old process took the member znode back: owned by 0x%x, want the successor's 0x%x", o, newID)
	}

	oldF.HandOff()
	oldF.Close()                       // a no-op after HandOff: serve's deferred Close runs too
	time.Sleep(300 * time.Millisecond) // several rounds of the successor's loop
	if o := owner(); o != newID {
		t.Fatalf("after the old process left: member znode owned by 0x%x, want the successor's 0x%x", o, newID)
	}
	if ok, _, err := sc.Exists("/zkproxy/f/registered/r1"); err != nil || !ok {
		t.Fatalf("the registration is gone after the old process left (%v)", err)
	}
}
