package cutover

import (
	"github.com/zkproxy/zkproxy/internal/fourlw"

	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// scriptedProxy stands in for the proxy so the controller's orchestration
// (concurrency, fallback, abort, rollback, restart) is tested in isolation;
// the live move itself is tested against real ZooKeeper in the proxy and in
// this package's integration tests.
type scriptedProxy struct {
	mu       sync.Mutex
	target   []string
	sessions []*scriptedSession
}

func (p *scriptedProxy) SetTarget(m []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = m
}

func (p *scriptedProxy) Sessions() []Session {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Session
	for _, s := range p.sessions {
		if !s.disconnected.Load() {
			out = append(out, s)
		}
	}
	return out
}

type scriptedSession struct {
	id           int64
	mu           sync.Mutex
	ensemble     Ensemble
	sasl         bool
	fail         error
	block        chan struct{} // Move waits on it (or ctx) when set
	disconnected atomic.Bool
	reason       string
	// holdGate, when set, makes Hold wait for it to close; entered gets a
	// value as each Hold starts waiting.
	holdGate chan struct{}
	entered  chan struct{}
	holds    atomic.Int64
	releases atomic.Int64
}

func (s *scriptedSession) View() SessionView {
	s.mu.Lock()
	defer s.mu.Unlock()
	return SessionView{ID: s.id, LastZxidSeen: 0x300000001, SASL: s.sasl, Ensemble: s.ensemble}
}

func (s *scriptedSession) Move(ctx context.Context, members []string) error {
	if s.block != nil {
		select {
		case <-s.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if s.fail != nil {
		return s.fail
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if strings.HasPrefix(members[0], "d") {
		s.ensemble = Destination
	} else {
		s.ensemble = Source
	}
	return nil
}

func (s *scriptedSession) Hold(context.Context) error {
	s.holds.Add(1)
	if s.holdGate != nil {
		s.entered <- struct{}{}
		<-s.holdGate
	}
	return nil
}

func (s *scriptedSession) Release() { s.releases.Add(1) }

func (s *scriptedSession) Disconnect(_ context.Context, reason string) {
	s.mu.Lock()
	s.reason = reason
	s.mu.Unlock()
	s.disconnected.Store(true)
}

type refused struct{}

func (refused) Error() string      { return "destination closed the connection after ConnectRequest" }
func (refused) MoveReason() string { return "refused" }

func newTestController(t *testing.T, p *scriptedProxy, dir string) (*Controller, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := NewController(Config{
		Source: []string{"s1:2181", "s2:2181", "s3:2181"}, Destination: []string{"d4:2181", "d5:2181", "d6:2181"},
		Store: Store{Dir: dir}, MoveConcurrency: 2, MoveTimeout: time.Second, Members: fourlw.Members{Dial: fakeDial(joint())},
	}, p, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, reg
}

func wait(t *testing.T, c *Controller) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestCutoverMovesEverySessionAndFallsBack(t *testing.T) {
	p := &scriptedProxy{}
	for i := int64(1); i <= 6; i++ {
		p.sessions = append(p.sessions, &scriptedSession{id: i, ensemble: Source})
	}
	p.sessions[1].sasl = true
	p.sessions[2].fail = refused{}
	p.sessions[3].fail = errors.New("boom")
	dir := t.TempDir()
	c, reg := newTestController(t, p, dir)
	if got := strings.Join(p.target, ","); got != "s1:2181,s2:2181,s3:2181" {
		t.Fatalf("initial target %s", got)
	}

	rep, err := c.Start(context.Background(), false)
	if err != nil {
		t.Fatalf("start: %v (%s)", err, rep.Reason())
	}
	if got := strings.Join(p.target, ","); !strings.HasPrefix(got, "d4") {
		t.Fatalf("new connections not routed to the destination: %s", got)
	}
	wait(t, c)
	st := c.Status()
	if st.Phase != PhaseDestination || st.Sessions.Total != 6 || st.Sessions.Moved != 3 || st.Sessions.Failed != 3 || st.Sessions.Pending != 0 {
		t.Fatalf("status %+v", st)
	}
	if st.Reasons["sasl"] != 1 || st.Reasons["refused"] != 1 || st.Reasons["error"] != 1 {
		t.Fatalf("reasons %v", st.Reasons)
	}
	for _, i := range []int{1, 2, 3} {
		if !p.sessions[i].disconnected.Load() {
			t.Errorf("session %d fell back but was not disconnected", i+1)
		}
	}
	if p.sessions[1].reason == "" || !strings.Contains(p.sessions[1].reason, "sasl") {
		t.Errorf("sasl fallback reason %q", p.sessions[1].reason)
	}
	if n := testutil.ToFloat64(c.m.moves.WithLabelValues("destination", "moved", "none")); n != 3 {
		t.Errorf("moved counter %v", n)
	}
	if n := testutil.ToFloat64(c.m.phase.WithLabelValues("destination")); n != 1 {
		t.Errorf("phase gauge %v", n)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("metric lint: %v %v", problems, err)
	}

	// Idempotent start; rollback before the split; split forbids rollback.
	if _, err := c.Start(context.Background(), false); err != nil {
		t.Fatalf("second start: %v", err)
	}
	if err := c.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	wait(t, c)
	if st := c.Status(); st.Phase != PhaseSource || st.Sessions.Moved != 3 {
		t.Fatalf("after rollback %+v", st)
	}
	if _, err := c.Start(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	wait(t, c)
	if err := c.RecordSplit(); err != nil {
		t.Fatal(err)
	}
	if err := c.Rollback(context.Background()); err == nil || !strings.Contains(err.Error(), "gone for good") {
		t.Fatalf("rollback after split: %v", err)
	}

	// A restarted zkproxy keeps the phase and the split.
	c.Close()
	p2 := &scriptedProxy{}
	c2, _ := newTestController(t, p2, dir)
	if st := c2.Status(); st.Phase != PhaseDestination || !st.Split || !strings.HasPrefix(strings.Join(p2.target, ","), "d4") {
		t.Fatalf("restored %+v target %v", st, p2.target)
	}
}

func TestStartRefusedWhenNotInSync(t *testing.T) {
	p := &scriptedProxy{sessions: []*scriptedSession{{id: 1, ensemble: Source}}}
	members := joint()
	d := members["d4:2181"]
	d.zxid = 0x300000001
	members["d4:2181"] = d
	reg := prometheus.NewRegistry()
	c, err := NewController(Config{
		Source: []string{"s1:2181", "s2:2181", "s3:2181"}, Destination: []string{"d4:2181", "d5:2181"},
		Store: Store{Dir: t.TempDir()}, Members: fourlw.Members{Dial: fakeDial(members)},
	}, p, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Start(context.Background(), false)
	if !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "caught up") {
		t.Fatalf("start: %v", err)
	}
	if c.Status().Phase != PhaseSource {
		t.Fatalf("phase changed on refusal: %s", c.Status().Phase)
	}
	if _, err := c.Start(context.Background(), true); err != nil {
		t.Fatalf("forced start: %v", err)
	}
	wait(t, c)
	if c.Status().Phase != PhaseDestination {
		t.Fatalf("forced cutover ended in %s", c.Status().Phase)
	}
}

func TestAbortStopsMovingAndKeepsMovedSessions(t *testing.T) {
	p := &scriptedProxy{}
	block := make(chan struct{})
	for i := int64(1); i <= 4; i++ {
		s := &scriptedSession{id: i, ensemble: Source}
		if i > 1 {
			s.block = block // sessions 2..4 hang in the drain
		}
		p.sessions = append(p.sessions, s)
	}
	c, _ := newTestController(t, p, t.TempDir())
	if _, err := c.Start(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Status().Sessions.Moved < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	// Abort waits for the moves in progress (2 at a time here), so it
	// returns once they end: unblock them once it has taken effect (the
	// phase changes before Abort waits, with the controller's lock free).
	go func() {
		for c.Status().Phase != PhaseAborted {
			time.Sleep(time.Millisecond)
		}
		close(block)
	}()
	if err := c.Abort(); err != nil {
		t.Fatal(err)
	}
	st := c.Status()
	// Session 1 moved before the abort; the two moves already running
	// finished; the fourth was never started, so it is not pending either
	// (nothing will move it) and not counted.
	if st.Phase != PhaseAborted || st.Sessions.Moved != 3 || st.Sessions.Pending != 0 || st.Sessions.Total != 3 {
		t.Fatalf("after abort %+v", st)
	}
	if p.sessions[0].View().Ensemble != Destination || p.sessions[3].View().Ensemble != Source {
		t.Fatalf("moved session moved back or a session moved after the abort")
	}
	for _, s := range p.sessions {
		if s.disconnected.Load() {
			t.Fatal("abort disconnected a session")
		}
	}
	if !strings.HasPrefix(strings.Join(p.target, ","), "d4") {
		t.Fatalf("aborted cutover routes new connections to %v", p.target)
	}
	if _, err := c.Start(context.Background(), false); err != nil { // resume
		t.Fatal(err)
	}
	wait(t, c)
	if st := c.Status(); st.Phase != PhaseDestination {
		t.Fatalf("resumed cutover ended in %+v", st)
	}
}

// TestBackgroundSyncCheckPublishesMetrics: with a check interval the
// controller runs the sync check by itself and its verdict is on /metrics —
// what an operator watches during the join — and Close stops it.
func TestBackgroundSyncCheckPublishesMetrics(t *testing.T) {
	members := joint()
	d4 := members["d4:2181"]
	d4.zxid -= 5 // trails the leader, and MaxLag is 0
	d4.cons = consLine("10.0.0.2:6000", 0x200)
	members["d4:2181"] = d4
	for addr, m := range members {
		m.dump = "Sessions with Ephemerals (2):\n0x100:\n\t/kafka/brokers/ids/1\n0x200:\n\t/kafka/brokers/ids/2\n"
		members[addr] = m
	}
	p := &scriptedProxy{sessions: []*scriptedSession{{id: 0x100, ensemble: Source}}}
	reg := prometheus.NewRegistry()
	c, err := NewController(Config{
		Source: []string{"s1:2181", "s2:2181", "s3:2181"}, Destination: []string{"d4:2181", "d5:2181", "d6:2181"},
		Store: Store{Dir: t.TempDir()}, Members: fourlw.Members{Dial: fakeDial(members)}, CheckInterval: 10 * time.Millisecond,
	}, p, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(c.m.lastCheck) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no background check within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, g := range []struct {
		name string
		got  prometheus.Gauge
		want float64
	}{
		{"sync_ready", c.m.syncReady, 0},
		{`check_ok{check="caught up"}`, c.m.checkOK.WithLabelValues("caught up"), 0},
		{`check_ok{check="one leader"}`, c.m.checkOK.WithLabelValues("one leader"), 1},
		{`destination_lag_transactions{member="d4:2181"}`, c.m.destLag.WithLabelValues("d4:2181"), 5},
		{`destination_lag_transactions{member="d5:2181"}`, c.m.destLag.WithLabelValues("d5:2181"), 0},
		{`direct_sessions{beside_proxied="true"}`, c.m.direct.WithLabelValues("true"), 1},
		{`direct_sessions{beside_proxied="false"}`, c.m.direct.WithLabelValues("false"), 0},
	} {
		if v := testutil.ToFloat64(g.got); v != g.want {
			t.Errorf("%s = %v, want %v", g.name, v, g.want)
		}
	}
	// d6 is not running: no lag series for it.
	if n := testutil.CollectAndCount(c.m.destLag); n != 2 {
		t.Errorf("%d destination lag series, want 2 (d6 is not running)", n)
	}

	// Close returns once the background check has stopped: nothing can
	// run a check after it.
	c.Close()
	select {
	case <-c.watchDone:
	default:
		t.Fatal("the background check still runs after Close")
	}

	// Without an interval only on-demand checks publish: no background
	// check is started at all.
	quiet, _ := newTestController(t, &scriptedProxy{}, t.TempDir())
	select {
	case <-quiet.watchDone:
	default:
		t.Fatal("a background check runs without an interval")
	}
	if v := testutil.ToFloat64(quiet.m.lastCheck); v != 0 {
		t.Fatalf("a check ran without an interval (last at %v)", v)
	}
	quiet.Check(context.Background())
	if testutil.ToFloat64(quiet.m.lastCheck) == 0 || testutil.ToFloat64(quiet.m.syncReady) != 1 {
		t.Fatal("an on-demand check did not publish")
	}
}

// TestDirectSessionMetricsUnknownWhenMembersRefuse: members that refuse cons
// (the default 4lw.commands.whitelist is srvr only) leave the direct-session
// count unknown — no series — rather than a reassuring zero.
func TestDirectSessionMetricsUnknownWhenMembersRefuse(t *testing.T) {
	members := joint()
	for addr, m := range members {
		m.refuse = "cons"
		members[addr] = m
	}
	reg := prometheus.NewRegistry()
	c, err := NewController(Config{
		Source: []string{"s1:2181", "s2:2181", "s3:2181"}, Destination: []string{"d4:2181", "d5:2181", "d6:2181"},
		Store: Store{Dir: t.TempDir()}, Members: fourlw.Members{Dial: fakeDial(members)},
	}, &scriptedProxy{}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rep := c.Check(context.Background())
	if !rep.Ready {
		t.Fatalf("refused cons failed the check: %s", rep.Reason())
	}
	if n := testutil.CollectAndCount(c.m.direct); n != 0 {
		t.Fatalf("%d direct-session series with every member refusing cons, want none", n)
	}
}
