package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/internal/testkit/kafkaload"
	"github.com/zkproxy/zkproxy/internal/testkit/rig"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// chaos is a joined mitosis with a Go and a Java Kafka-like workload
// running through one zkproxy, ready to cut over.
type chaos struct {
	t    *testing.T
	r    *rig.Rig
	p    *rig.Proxy
	cs   clients
	base []kafkaload.Report
	dial *faultyDial
	ctx  context.Context
}

// moveReasons are the bounded fallback reasons zkproxy reports
// (proxy.MoveError and proxy's reattachFailure; "error" from
// cutover.Controller.moveOne for errors without a reason; unmovable codes
// from the sync check).
var moveReasons = map[string]bool{
	"drain_timeout": true, "refused": true, "expired": true, "closed": true, "busy": true, "sasl": true,
	"bad_target": true, "replay_failed": true, "canceled": true, "error": true,
}

func startChaos(t *testing.T, o rig.Options) *chaos {
	t.Helper()
	c := &chaos{t: t, dial: newFaultyDial(), ctx: rig.CtxFor(t, 5*time.Minute)}
	o.Dial = c.dial.dial
	c.r = rig.New(t, o)
	c.p = c.r.Proxies[0]
	prog := zktest.JavaProgram(t, kafkaload.JavaWorkloadSource)
	c.cs = clients{
		rig.StartGo(t, c.ctx, kafkaload.Config{Addr: c.p.Addr, Root: "/chaos/go", Brokers: 3, Writers: 2, Consumers: 1, WriteInterval: 20 * time.Millisecond}),
		startJava(t, c.ctx, prog, kafkaload.JavaConfig{Connect: c.p.Addr + "/chaos/java", Brokers: 3, Writers: 2, WriteInterval: 20 * time.Millisecond}),
	}
	time.Sleep(500 * time.Millisecond)
	if _, err := c.r.M.Join(c.ctx); err != nil {
		t.Fatal(err)
	}
	c.r.WaitReady()
	// Clients with a request in flight during the join's source re-election
	// saw ConnectionLoss; measure from here on.
	time.Sleep(time.Second)
	c.cs.resetLatency()
	c.base = c.cs.snapshot()
	return c
}

// slowMoves makes every move pay delay when dialing a destination member,
// and moves one session at a time, so the cutover takes seconds.
func (c *chaos) slowMoves(delay time.Duration) {
	c.dial.set(c.r.Dest, delay, 0)
}

// waitStatus polls the controller until ok(Status) holds.
func (c *chaos) waitStatus(p *rig.Proxy, what string, ok func(cutover.Status) bool) cutover.Status {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st := p.Ctl.Status()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("waiting for %s: %s", what, rig.Explain(st))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// consistent checks that a finished move is fully accounted for in Status:
// every session moved or fell back, each fallback has a known reason.
func consistent(t *testing.T, st cutover.Status, want cutover.Phase) {
	t.Helper()
	fallbacks := 0
	for reason, n := range st.Reasons {
		fallbacks += n
		if !moveReasons[reason] {
			t.Errorf("unknown fallback reason %q in %s", reason, rig.Explain(st))
		}
	}
	if st.Phase != want || st.Sessions.Pending != 0 || st.Sessions.Moved+st.Sessions.Failed != st.Sessions.Total ||
		fallbacks != st.Sessions.Failed || st.FinishedAt.IsZero() {
		t.Fatalf("inconsistent status, want phase %s: %s", want, rig.Explain(st))
	}
}

// finish checks watches, stops the load, and verifies from addr: nothing
// acknowledged lost, nothing expired. It returns the window since the base.
func (c *chaos) finish(name, addr string) window {
	t := c.t
	t.Helper()
	c.cs.watchesFire(t, 60*time.Second)
	time.Sleep(500 * time.Millisecond) // writes keep flowing on the destination
	end := c.cs.stop()
	w := since(name, end, c.base)
	t.Logf("%s", w)
	if w.expired != 0 {
		t.Fatalf("sessions expired (nothing here lets ZooKeeper expire one): %s", w)
	}
	c.r.WaitOnDestination(30*time.Second, end...)
	v := verifyAll(t, c.cs, addr)
	t.Logf("read back from %s: %s", addr, v)
	return w
}

// TestChaosDestinationMemberKilled kills the destination member that serves
// the most moved sessions while the cutover runs. Sessions on it fail over
// to the other destination member (a request in flight on the killed member
// surfaces as ConnectionLoss: its outcome is unknown), the remaining moves
// go to the survivor or fall back with a reason, nothing expires, nothing
// acknowledged is lost, and the controller finishes in phase destination.
func TestChaosDestinationMemberKilled(t *testing.T) {
	c := startChaos(t, rig.Options{MoveConcurrency: 1})
	c.slowMoves(300 * time.Millisecond)
	c.r.StartCutover(c.ctx)
	c.waitStatus(c.p, "3 sessions moved", func(st cutover.Status) bool { return st.Sessions.Moved >= 3 })

	on := rig.SessionsOn(t, c.r.M.Destination.Members[:2])
	count := map[string]int{}
	for _, member := range on {
		count[member]++
	}
	victim := c.r.M.Destination.Members[0]
	if count[c.r.M.Destination.Members[1].String()] > count[victim.String()] {
		victim = c.r.M.Destination.Members[1]
	}
	leader, _ := c.r.M.Joint().Leader()
	killedAt := c.p.Ctl.Status()
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed %s (joint leader %s) serving %d sessions, mid-cutover: %s", victim, leader, count[victim.String()], rig.Explain(killedAt))

	st := rig.WaitPhase(t, c.p, cutover.PhaseDestination)
	t.Logf("cutover ended: %s", rig.Explain(st))
	consistent(t, st, cutover.PhaseDestination)
	survivor := c.r.M.Destination.Members[0]
	if survivor == victim {
		survivor = c.r.M.Destination.Members[1]
	}
	w := c.finish("destination member killed mid-cutover", survivor.ClientAddr())
	// A fallback closes the client's connection: each one is a Disconnected
	// the client must have seen.
	if w.disconnects < int64(st.Sessions.Failed) {
		t.Fatalf("%d fallbacks but clients saw %d disconnects", st.Sessions.Failed, w.disconnects)
	}
}

// TestChaosProxyRestartedMidCutover closes zkproxy (and its controller)
// while the cutover runs and starts a new one on the same address and data
// directory: the persisted cutting_over phase resolves to destination, so
// every client — whose connection dropped with the old proxy, the correct
// and only possible fallback — reconnects with its session onto the
// destination.
func TestChaosProxyRestartedMidCutover(t *testing.T) {
	c := startChaos(t, rig.Options{MoveConcurrency: 1})
	c.slowMoves(300 * time.Millisecond)
	c.r.StartCutover(c.ctx)
	mid := c.waitStatus(c.p, "3 sessions moved", func(st cutover.Status) bool { return st.Sessions.Moved >= 3 })
	if mid.Phase != cutover.PhaseCuttingOver || mid.Sessions.Pending == 0 {
		t.Fatalf("not mid-cutover: %s", rig.Explain(mid))
	}
	c.p.Stop(t)
	c.r.Start(c.p, c.r.Opts)
	st := c.p.Ctl.Status()
	t.Logf("stopped mid-cutover (%s); restarted: %s", rig.Explain(mid), rig.Explain(st))
	if st.Phase != cutover.PhaseDestination || st.Target != cutover.Destination || st.FinishedAt.IsZero() ||
		!st.StartedAt.Equal(mid.StartedAt) {
		t.Fatalf("restarted zkproxy did not resolve the interrupted cutover to destination: %s", rig.Explain(st))
	}
	r := c.cs.snapshot()
	c.r.WaitOnDestination(30*time.Second, r...)
	w := c.finish("zkproxy restarted mid-cutover", c.r.M.Destination.Members[1].ClientAddr())
	for _, rep := range w.reports {
		for name, n := range rep.SessionDisconnects {
			if n < 1 {
				t.Errorf("%s saw no Disconnected although its zkproxy went away", name)
			}
		}
	}
}

// TestChaosSlowDestination puts 100 ms of one-way delay (a slow WAN link) in
// front of both destination members the proxy moves sessions to. The moves
// are slower but still live: no Disconnected, no Expired, no fallback,
// nothing lost; the pause each client saw is reported.
func TestChaosSlowDestination(t *testing.T) {
	c := startChaos(t, rig.Options{})
	c.dial.set(c.r.Dest, 0, 100*time.Millisecond)
	start := time.Now()
	c.r.StartCutover(c.ctx)
	st := rig.WaitPhase(t, c.p, cutover.PhaseDestination)
	t.Logf("cutover onto the slow destination took %s: %s", time.Since(start).Round(time.Millisecond), rig.Explain(st))
	consistent(t, st, cutover.PhaseDestination)
	if st.Sessions.Failed != 0 {
		t.Fatalf("a slow destination made sessions fall back: %s", rig.Explain(st))
	}
	w := c.finish("slow destination", c.r.M.Destination.Members[0].ClientAddr())
	if w.disconnects != 0 || len(w.errors) != 0 {
		t.Fatalf("clients noticed the cutover onto a slow destination: %s %v", w, w.errors)
	}
}

// TestChaosSplitDuringCutover has the operator start the split while the
// cutover still runs. zkproxy refuses both to raise the split barrier and to
// record the split — every session of the tenant must be on the destination
// first (docs/protocol.md §5.6, 4) — and Status says why and how far the
// cutover is. Once the cutover finishes, the split proceeds under load behind
// the barrier, is recorded, no client sees Disconnected, nothing
// acknowledged is lost and nothing expires.
func TestChaosSplitDuringCutover(t *testing.T) {
	c := startChaos(t, rig.Options{MoveConcurrency: 1})
	c.slowMoves(300 * time.Millisecond)
	c.r.StartCutover(c.ctx)
	mid := c.waitStatus(c.p, "2 sessions moved", func(st cutover.Status) bool { return st.Sessions.Moved >= 2 })
	plan, err := c.p.Ctl.PrepareSplit(c.ctx, true)
	var te *cutover.TransitionError
	if !errors.As(err, &te) || c.p.Ctl.Status().Barrier.Up {
		t.Fatalf("split barrier raised mid-cutover: %v %+v (%s)", err, plan, rig.Explain(c.p.Ctl.Status()))
	}
	t.Logf("barrier refused mid-cutover: %v", err)
	err = c.p.Ctl.RecordSplit()
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "before the split") {
		t.Fatalf("split recorded mid-cutover: %v (%s)", err, rig.Explain(mid))
	}
	st := c.p.Ctl.Status()
	t.Logf("split refused mid-cutover: %v; %s", err, rig.Explain(st))
	if st.Phase != cutover.PhaseCuttingOver || st.Split || st.Sessions.Pending == 0 {
		t.Fatalf("status does not explain the refusal: %s", rig.Explain(st))
	}

	st = rig.WaitPhase(t, c.p, cutover.PhaseDestination)
	consistent(t, st, cutover.PhaseDestination)
	if st.Sessions.Failed != 0 {
		t.Fatalf("sessions fell back: %s", rig.Explain(st))
	}
	cw := since("cutover", c.cs.snapshot(), c.base)
	t.Logf("%s", cw)
	if cw.disconnects != 0 || cw.expired != 0 || len(cw.errors) != 0 {
		t.Fatalf("clients noticed the cutover: %s %v", cw, cw.errors)
	}
	c.dial.set(c.r.Dest, 0, 0)
	c.r.SplitBehindBarrier(c.ctx, func(_ string, f func()) { f() })
	st = c.p.Ctl.Status()
	t.Logf("split: destination unavailable %s; %s", c.r.M.Timeline().DestinationUnavailable().Round(time.Millisecond), rig.Explain(st))
	if !st.Split || st.Phase != cutover.PhaseDestination {
		t.Fatalf("split not recorded: %s", rig.Explain(st))
	}
	if err := c.p.Ctl.Rollback(c.ctx); err == nil {
		t.Fatal("rollback allowed after the split")
	}
	w := c.finish("cutover and split", c.r.M.Dormant().ClientAddr())
	if w.disconnects != 0 || len(w.errors) != 0 {
		t.Fatalf("clients noticed the cutover or the split behind the barrier: %s %v", w, w.errors)
	}
}
