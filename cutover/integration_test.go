package cutover_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/internal/bridge"
	"github.com/zkproxy/zkproxy/internal/workload"
	"github.com/zkproxy/zkproxy/internal/zktest"
	"github.com/zkproxy/zkproxy/proxy"
)

// rig is a mitosis under way with zkproxy in front of it.
type rig struct {
	m      *zktest.Mitosis
	proxy  *proxy.Server
	ctl    *cutover.Controller
	addr   string
	dir    string
	source []string
	dest   []string
}

func addrs(e *zktest.Ensemble) []string {
	var out []string
	for _, s := range e.Members {
		out = append(out, s.ClientAddr())
	}
	return out
}

// newRig starts the source ensemble and zkproxy (with its controller) in
// front of it. The proxy is closed in t.Cleanup.
func newRig(t *testing.T) *rig {
	t.Helper()
	m := zktest.NewMitosis(t)
	r := &rig{m: m, source: addrs(m.Source), dest: addrs(m.Destination), dir: t.TempDir()}
	r.startProxy(t, net.JoinHostPort(zktest.LoopbackIP(t), "2181"))
	return r
}

func (r *rig) startProxy(t *testing.T, listen string) {
	t.Helper()
	r.startProxyWith(t, listen, nil)
}

func (r *rig) startProxyWith(t *testing.T, listen string, mod func(*cutover.Config)) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	reg := prometheus.NewRegistry()
	p, err := proxy.New(proxy.Config{Source: r.source, Destination: r.dest}, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := cutover.Config{
		Source: r.source, Destination: r.dest, MaxLag: 1000, MoveTimeout: 8 * time.Second,
		Store: cutover.Store{Dir: r.dir},
	}
	if mod != nil {
		mod(&cfg)
	}
	ctl, err := cutover.NewController(cfg, bridge.Cutover(p, r.dest), log, reg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(ln) }()
	t.Cleanup(func() {
		ctl.Close()
		p.Close()
		if err := <-done; !errors.Is(err, proxy.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	r.proxy, r.ctl, r.addr = p, ctl, ln.Addr().String()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitReady runs the sync check until it passes: under a steady write load
// the destination may trail the leader for a moment after the join.
func waitReady(t *testing.T, ctl *cutover.Controller) *cutover.Report {
	t.Helper()
	ctx := ctxFor(t, 60*time.Second)
	for {
		rep := ctl.Check(ctx)
		if rep.Ready {
			return rep
		}
		if ctx.Err() != nil {
			t.Fatalf("sync never confirmed: %s", rep.Reason())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func waitPhase(t *testing.T, ctl *cutover.Controller, want cutover.Phase) cutover.Status {
	t.Helper()
	if err := ctl.Wait(ctxFor(t, 60*time.Second)); err != nil {
		t.Fatalf("cutover did not finish: %v (%+v)", err, ctl.Status())
	}
	st := ctl.Status()
	if st.Phase != want {
		t.Fatalf("phase %s, want %s (%+v)", st.Phase, want, st)
	}
	return st
}

var consSession = regexp.MustCompile(`sid=0x([0-9a-f]+)`)

// sessionsOn lists the session ids connected to the servers, from cons.
func sessionsOn(t *testing.T, servers []*zktest.Server) map[int64]string {
	t.Helper()
	out := map[int64]string{}
	for _, s := range servers {
		if !s.Running() {
			continue
		}
		ans, err := s.FourLetter("cons")
		if err != nil {
			t.Fatalf("cons on %s: %v", s, err)
		}
		for _, m := range consSession.FindAllStringSubmatch(ans, -1) {
			var id uint64
			fmt.Sscanf(m[1], "%x", &id)
			out[int64(id)] = s.String()
		}
	}
	return out
}

func TestCutoverMovesKafkaLikeWorkload(t *testing.T) {
	r := newRig(t)
	ctx := ctxFor(t, 5*time.Minute)

	w, err := workload.Start(ctx, workload.Config{Addr: r.addr, Brokers: 4, Writers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	time.Sleep(500 * time.Millisecond)

	leader, err := r.m.Join(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("joint ensemble leader: %s", leader)
	rep := waitReady(t, r.ctl)
	t.Logf("sync check: %d members, leader %s, usable %v", len(rep.Members), rep.Leader, rep.Usable)

	// The join's rolling restart re-elects the source leader, which drops
	// every member's clients; writers always have a write in flight then,
	// so they see ConnectionLoss (its outcome is unknown). Only what happens
	// from the cutover on is the cutover's to hide.
	time.Sleep(time.Second)
	base := w.Snapshot()
	t.Logf("before the cutover (join included): %s", base)
	w.ResetLatency()
	start := time.Now()
	if _, err := r.ctl.Start(ctx, false); err != nil {
		t.Fatal(err)
	}
	st := waitPhase(t, r.ctl, cutover.PhaseDestination)
	t.Logf("cutover of %d sessions took %s: %+v", st.Sessions.Total, time.Since(start), st.Sessions)
	if st.Sessions.Moved != st.Sessions.Total || st.Sessions.Failed != 0 || st.Sessions.Total < 6 {
		t.Fatalf("not every session moved live: %+v", st.Sessions)
	}

	// Every workload session is now served by a destination member.
	snap := w.Snapshot()
	on := sessionsOn(t, r.m.Destination.Members[:2])
	for name, id := range snap.Sessions {
		if _, ok := on[id]; !ok {
			t.Errorf("%s (0x%x) is not connected to a destination member; cons there shows %v", name, id, on)
		}
	}
	if err := w.WatchesFire(ctxFor(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // writes keep flowing on the destination
	final := w.Stop().Since(base)
	t.Logf("workload from the cutover on: %s", final)
	if final.Disconnects != 0 || final.Expired != 0 {
		t.Fatalf("clients noticed the cutover: %s", final)
	}
	if len(final.Errors) > 0 {
		t.Fatalf("workload errors: %v", final.Errors)
	}
	v, err := w.Verify(ctx, r.m.Destination.Members[0].ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("read back from the destination: %s", v)
	if v.Lost != 0 || !v.OwnersIntact || v.Acked == 0 {
		t.Fatalf("verification failed: %s %v", v, v.Problems)
	}
}

func TestCutoverRefusedOutsideJointEnsembleThenRollback(t *testing.T) {
	r := newRig(t)
	ctx := ctxFor(t, 3*time.Minute)
	w, err := workload.Start(ctx, workload.Config{Addr: r.addr, Brokers: 2, Writers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	// Before the join the destination is not running: refused, with reason.
	if _, err := r.ctl.Start(ctx, false); !errors.Is(err, cutover.ErrNotReady) || !strings.Contains(err.Error(), "no destination member reachable") {
		t.Fatalf("start before the join: %v", err)
	}
	if _, err := r.m.Join(ctx); err != nil {
		t.Fatal(err)
	}
	waitReady(t, r.ctl)
	time.Sleep(time.Second)
	base := w.Snapshot()
	if _, err := r.ctl.Start(ctx, false); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, r.ctl, cutover.PhaseDestination)
	if err := r.ctl.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	st := waitPhase(t, r.ctl, cutover.PhaseSource)
	if st.Sessions.Moved != st.Sessions.Total || st.Sessions.Total < 3 {
		t.Fatalf("rollback did not move every session back: %+v", st.Sessions)
	}
	snap := w.Snapshot()
	on := sessionsOn(t, r.m.Source.Members)
	for name, id := range snap.Sessions {
		if _, ok := on[id]; !ok {
			t.Errorf("%s (0x%x) not back on a source member", name, id)
		}
	}
	final := w.Stop().Since(base)
	if final.Disconnects != 0 || final.Expired != 0 || len(final.Errors) > 0 {
		t.Fatalf("clients noticed the cutover and rollback: %s %v", final, final.Errors)
	}
}

func TestMain(m *testing.M) {
	os.Exit(m.Run())
}

// cutOver joins the destination, waits for sync, runs the cutover and
// returns the workload baseline taken just before it.
func (r *rig) cutOver(t *testing.T, w *workload.Workload) workload.Report {
	t.Helper()
	ctx := ctxFor(t, 3*time.Minute)
	if _, err := r.m.Join(ctx); err != nil {
		t.Fatal(err)
	}
	waitReady(t, r.ctl)
	time.Sleep(time.Second)
	base := w.Snapshot()
	if _, err := r.ctl.Start(ctx, false); err != nil {
		t.Fatal(err)
	}
	if st := waitPhase(t, r.ctl, cutover.PhaseDestination); st.Sessions.Failed != 0 {
		t.Fatalf("cutover fell back: %+v", st.Sessions)
	}
	return base
}

func TestRestartedProxyRoutesToDestination(t *testing.T) {
	r := newRig(t)
	ctx := ctxFor(t, 3*time.Minute)
	w, err := workload.Start(ctx, workload.Config{Addr: r.addr, Brokers: 2, Writers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	base := r.cutOver(t, w)

	// Stop zkproxy (clients see their connection drop) and start a new one
	// on the same address and data directory.
	r.ctl.Close()
	r.proxy.Close()
	r.startProxy(t, r.addr)
	if st := r.ctl.Status(); st.Phase != cutover.PhaseDestination {
		t.Fatalf("restarted in phase %s", st.Phase)
	}
	// Clients reconnect on their own, with their sessions, to the destination.
	deadline := time.Now().Add(30 * time.Second)
	for {
		snap := w.Snapshot()
		on := sessionsOn(t, r.m.Destination.Members[:2])
		missing := 0
		for _, id := range snap.Sessions {
			if _, ok := on[id]; !ok {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions not back on the destination after the restart", missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := w.WatchesFire(ctxFor(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	final := w.Stop().Since(base)
	t.Logf("across the cutover and a zkproxy restart: %s", final)
	if final.Expired != 0 {
		t.Fatalf("sessions expired: %s", final)
	}
	v, err := w.Verify(ctx, r.m.Destination.Members[1].ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	if v.Lost != 0 || !v.OwnersIntact {
		t.Fatalf("verification: %s %v", v, v.Problems)
	}
}

// TestSplitWithoutBarrier runs Yelp's split under the workload after the
// cutover, without zkproxy's barrier, and reports what clients saw: the
// proxy re-attaches sessions when the destination has elected its leader.
func TestSplitWithoutBarrier(t *testing.T) {
	r := newRig(t)
	ctx := ctxFor(t, 4*time.Minute)
	w, err := workload.Start(ctx, workload.Config{Addr: r.addr, Brokers: 3, Writers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r.cutOver(t, w)
	base := w.Snapshot()
	w.ResetLatency()

	dstLeader, srcLeader, err := r.m.Split(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tl := r.m.Timeline()
	t.Logf("split: destination leader %s, source leader %s, destination unavailable for %s",
		dstLeader, srcLeader, tl.DestinationUnavailable().Round(time.Millisecond))
	if err := r.ctl.RecordSplit(); err != nil {
		t.Fatal(err)
	}
	if err := w.WatchesFire(ctxFor(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	final := w.Stop().Since(base)
	t.Logf("clients during the split without barrier: %s", final)
	if final.Expired != 0 {
		t.Fatalf("sessions expired across the split: %s", final)
	}
	v, err := w.Verify(ctx, r.m.Destination.Members[2].ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("read back from the formerly dormant destination node: %s", v)
	if v.Lost != 0 || !v.OwnersIntact {
		t.Fatalf("verification: %s %v", v, v.Problems)
	}
}

// TestSplitBehindBarrier runs Yelp's split under the workload with the
// barrier up: no client sees Disconnected or Expired, nothing acknowledged
// is lost, and the longest hold is the client-visible pause of the split.
func TestSplitBehindBarrier(t *testing.T) {
	r := newRig(t)
	ctx := ctxFor(t, 4*time.Minute)
	w, err := workload.Start(ctx, workload.Config{Addr: r.addr, Brokers: 3, Writers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r.cutOver(t, w)
	base := w.Snapshot()
	w.ResetLatency()

	plan, err := r.ctl.PrepareSplit(ctx, false)
	if errors.Is(err, cutover.ErrLeaderOnDestination) {
		// With equal zxids the highest server id wins the election, so the
		// joint leader is usually node 4 or 5. Proxied sessions do not care
		// (they are all on the destination); the operator is warned.
		t.Logf("refused as expected: %v", err)
		plan, err = r.ctl.PrepareSplit(ctx, true)
	}
	if err != nil {
		t.Fatalf("prepare split: %v (%+v)", err, plan)
	}
	t.Logf("barrier: %s; leader %s (%s); checks %+v", plan.Message, plan.Leader, plan.LeaderEnsemble, plan.Items)
	if !plan.Barrier.Up || plan.Barrier.Held < 5 || plan.Barrier.NotHeld != 0 {
		t.Fatalf("barrier %+v", plan.Barrier)
	}

	if err := r.m.Firewall(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.m.RestartDestination(ctx); err != nil {
		t.Fatal(err)
	}
	// Each session is released once it re-attached to the new destination.
	deadline := time.Now().Add(30 * time.Second)
	for r.ctl.Status().Barrier.Up && r.ctl.Status().Barrier.Held > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	bs := r.ctl.Status().Barrier
	if bs.Held != 0 || bs.LastEnd == "max hold time reached" {
		t.Fatalf("sessions were not released by their re-attach: %+v", bs)
	}
	if err := r.ctl.RecordSplit(); err != nil {
		t.Fatal(err)
	}
	bs = r.ctl.Status().Barrier
	tl := r.m.Timeline()
	t.Logf("destination unavailable %s; barrier up %s; longest session hold %s",
		tl.DestinationUnavailable().Round(time.Millisecond), bs.Deadline.Sub(bs.Since), bs.LongestHold.Round(time.Millisecond))
	if _, err := r.m.RestartSource(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.m.RemoveFirewall(); err != nil {
		t.Fatal(err)
	}

	if err := w.WatchesFire(ctxFor(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	final := w.Stop().Since(base)
	t.Logf("clients across the split behind the barrier: %s", final)
	if final.Disconnects != 0 || final.Expired != 0 || len(final.Errors) > 0 {
		t.Fatalf("clients noticed the split: %s %v", final, final.Errors)
	}
	v, err := w.Verify(ctx, r.m.Dormant().ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("read back from the formerly dormant destination node: %s", v)
	if v.Lost != 0 || !v.OwnersIntact {
		t.Fatalf("verification: %s %v", v, v.Problems)
	}
}

// TestCutoverRefusedWhenDestinationIsAnotherQuorum: the destination runs as
// its own ensemble instead of joining the source, so there are two leaders
// and two epochs; the check names it and Start refuses.
func TestCutoverRefusedWhenDestinationIsAnotherQuorum(t *testing.T) {
	r := newRig(t)
	ctx := ctxFor(t, 3*time.Minute)
	if err := r.m.Destination.Start(ctx); err != nil {
		t.Fatal(err)
	}
	rep := r.ctl.Check(ctx)
	if rep.Ready {
		t.Fatalf("two separate ensembles passed the sync check: %+v", rep.Items)
	}
	t.Logf("check: %s", rep.Reason())
	if !strings.Contains(rep.Reason(), "one leader: 2 leaders") {
		t.Fatalf("reason does not name the two quorums: %s", rep.Reason())
	}
	if _, err := r.ctl.Start(ctx, false); !errors.Is(err, cutover.ErrNotReady) {
		t.Fatalf("start: %v", err)
	}
	if st := r.ctl.Status(); st.Phase != cutover.PhaseSource {
		t.Fatalf("phase %s after a refused start", st.Phase)
	}
}

// TestAbortMidCutoverThenResume moves sessions one at a time, aborts after
// the first, checks the split of sessions between the ensembles, then
// resumes to the end. No client notices any of it.
func TestAbortMidCutoverThenResume(t *testing.T) {
	m := zktest.NewMitosis(t)
	r := &rig{m: m, source: addrs(m.Source), dest: addrs(m.Destination), dir: t.TempDir()}
	r.startProxyWith(t, net.JoinHostPort(zktest.LoopbackIP(t), "2181"), func(c *cutover.Config) { c.MoveConcurrency = 1 })
	ctx := ctxFor(t, 3*time.Minute)
	w, err := workload.Start(ctx, workload.Config{Addr: r.addr, Brokers: 8, Writers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := r.m.Join(ctx); err != nil {
		t.Fatal(err)
	}
	waitReady(t, r.ctl)
	// Sessions dropped by the join's leader re-election must be back on
	// the source before the cutover, or they would reconnect straight to
	// the destination and blur the count.
	deadline := time.Now().Add(30 * time.Second)
	for {
		on := sessionsOn(t, r.m.Source.Members)
		all := true
		for _, id := range w.Snapshot().Sessions {
			_, ok := on[id]
			all = all && ok
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sessions not back on the source after the join")
		}
		time.Sleep(100 * time.Millisecond)
	}
	base := w.Snapshot()

	if _, err := r.ctl.Start(ctx, false); err != nil {
		t.Fatal(err)
	}
	for r.ctl.Status().Sessions.Moved < 1 {
		time.Sleep(time.Millisecond)
	}
	if err := r.ctl.Abort(); err != nil {
		t.Fatal(err)
	}
	st := r.ctl.Status()
	t.Logf("aborted: %+v", st.Sessions)
	if st.Phase != cutover.PhaseAborted || st.Sessions.Moved < 1 || st.Sessions.Moved >= st.Sessions.Total {
		t.Fatalf("abort did not stop midway: %+v (phase %s)", st.Sessions, st.Phase)
	}
	onDest := sessionsOn(t, r.m.Destination.Members[:2])
	onSrc := sessionsOn(t, r.m.Source.Members)
	if len(onDest) != st.Sessions.Moved {
		t.Fatalf("%d sessions on the destination, controller says %d moved", len(onDest), st.Sessions.Moved)
	}
	snap := w.Snapshot()
	for name, id := range snap.Sessions {
		if _, d := onDest[id]; !d {
			if _, s := onSrc[id]; !s {
				t.Errorf("%s (0x%x) is on neither ensemble", name, id)
			}
		}
	}

	if _, err := r.ctl.Start(ctx, false); err != nil { // resume
		t.Fatal(err)
	}
	st = waitPhase(t, r.ctl, cutover.PhaseDestination)
	if n := len(sessionsOn(t, r.m.Destination.Members[:2])); n != len(snap.Sessions) {
		t.Fatalf("after resuming %d of %d sessions on the destination (%+v)", n, len(snap.Sessions), st.Sessions)
	}
	final := w.Stop().Since(base)
	t.Logf("across abort and resume: %s", final)
	if final.Disconnects != 0 || final.Expired != 0 || len(final.Errors) > 0 {
		t.Fatalf("clients noticed: %s %v", final, final.Errors)
	}
}
