package cutover_test

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

// one returns the rig's only zkproxy.
func one(r *rig.Rig) *rig.Proxy { return r.Proxies[0] }

// writing waits until the workload has acknowledged writes through the
// proxy, so what follows happens under load.
func writing(t *testing.T, w *kafkaload.Workload) {
	t.Helper()
	want := w.Snapshot().AckedWrites + 20
	for deadline := time.Now().Add(30 * time.Second); w.Snapshot().AckedWrites < want; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the workload acknowledged no writes within 30s: %s", w.Snapshot())
		}
	}
}

func waitPhase(t *testing.T, r *rig.Rig, want cutover.Phase) cutover.Status {
	t.Helper()
	return rig.WaitPhase(t, one(r), want)
}

func TestCutoverMovesKafkaLikeWorkload(t *testing.T) {
	cutoverMovesKafkaLikeWorkload(t, rig.New(t, rig.Options{}))
}

// TestCutoverToTLSDestination moves the sessions from a plain source onto a
// destination the proxy reaches only on its TLS ports: the ensemble move is
// also the moment TLS is turned on, and the clients stay in plain TCP to
// the proxy, unchanged.
func TestCutoverToTLSDestination(t *testing.T) {
	// Every session must show in cons asked on the TLS ports
	// (rig.DestinationSessions), which lists only TLS connections.
	cutoverMovesKafkaLikeWorkload(t, rig.New(t, rig.Options{DestinationTLS: true}))
}

func cutoverMovesKafkaLikeWorkload(t *testing.T, r *rig.Rig) {
	ctx := rig.CtxFor(t, 5*time.Minute)

	w := rig.StartGo(t, ctx, kafkaload.Config{Addr: one(r).Addr, Brokers: 4, Writers: 2})
	writing(t, w)

	leader, err := r.M.Join(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("joint ensemble leader: %s", leader)
	r.WaitReady()
	rep := one(r).Ctl.Check(ctx)
	t.Logf("sync check: %d members, leader %s, usable %v", len(rep.Members), rep.Leader, rep.Usable)

	// The join's rolling restart re-elects the source leader, which drops
	// every member's clients; writers always have a write in flight then,
	// so they see ConnectionLoss (its outcome is unknown). Only what happens
	// from the cutover on is the cutover's to hide.
	r.WaitOnSource(30*time.Second, w.Snapshot())
	base := w.Snapshot()
	t.Logf("before the cutover (join included): %s", base)
	w.ResetLatency()
	start := time.Now()
	if _, err := one(r).Ctl.Start(ctx, false); err != nil {
		t.Fatal(err)
	}
	st := waitPhase(t, r, cutover.PhaseDestination)
	t.Logf("cutover of %d sessions took %s: %+v", st.Sessions.Total, time.Since(start), st.Sessions)
	if st.Sessions.Moved != st.Sessions.Total || st.Sessions.Failed != 0 || st.Sessions.Total < 6 {
		t.Fatalf("not every session moved live: %+v", st.Sessions)
	}

	// Every workload session is now served by a destination member.
	snap := w.Snapshot()
	on := r.DestinationSessions(ctx)
	for name, id := range snap.Sessions {
		if _, ok := on[id]; !ok {
			t.Errorf("%s (0x%x) is not connected to a destination member; cons there shows %v", name, id, on)
		}
	}
	if err := w.WatchesFire(rig.CtxFor(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	writing(t, w) // writes keep flowing on the destination
	final := w.Stop().Since(base)
	t.Logf("workload from the cutover on: %s", final)
	if final.Disconnects != 0 || final.Expired != 0 {
		t.Fatalf("clients noticed the cutover: %s", final)
	}
	if len(final.Errors) > 0 {
		t.Fatalf("workload errors: %v", final.Errors)
	}
	v, err := w.Verify(ctx, r.M.Destination.Members[0].ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("read back from the destination: %s", v)
	if v.Lost != 0 || !v.OwnersIntact || v.Acked == 0 {
		t.Fatalf("verification failed: %s %v", v, v.Problems)
	}
}

func TestCutoverRefusedOutsideJointEnsembleThenRollback(t *testing.T) {
	r := rig.New(t, rig.Options{})
	ctx := rig.CtxFor(t, 3*time.Minute)
	w := rig.StartGo(t, ctx, kafkaload.Config{Addr: one(r).Addr, Brokers: 2, Writers: 1})

	// Before the join the destination is not running: refused, with reason.
	if _, err := one(r).Ctl.Start(ctx, false); !errors.Is(err, cutover.ErrNotReady) || !strings.Contains(err.Error(), "no destination member reachable") {
		t.Fatalf("start before the join: %v", err)
	}
	if _, err := r.M.Join(ctx); err != nil {
		t.Fatal(err)
	}
	r.WaitReady()
	r.WaitOnSource(30*time.Second, w.Snapshot())
	base := w.Snapshot()
	startAfterWaitReady(ctx, t, r)
	waitPhase(t, r, cutover.PhaseDestination)
	if err := one(r).Ctl.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	st := waitPhase(t, r, cutover.PhaseSource)
	if st.Sessions.Moved != st.Sessions.Total || st.Sessions.Total < 3 {
		t.Fatalf("rollback did not move every session back: %+v", st.Sessions)
	}
	snap := w.Snapshot()
	on := rig.SessionsOn(t, r.M.Source.Members)
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

// startAfterWaitReady starts the cutover on the first proxy. Start checks
// the sync again, and the join's last restart can still be settling
// (followers report the old epoch until the new one's first transaction
// reaches them), so a refusal right after WaitReady is retried for a
// while, as an operator would.
func startAfterWaitReady(ctx context.Context, t *testing.T, r *rig.Rig) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		_, err := one(r).Ctl.Start(ctx, false)
		if err == nil {
			return
		}
		if !errors.Is(err, cutover.ErrNotReady) || time.Now().After(deadline) {
			t.Fatal(err)
		}
		t.Logf("start refused, retrying: %v", err)
	}
}

// cutOver joins the destination, waits for sync, runs the cutover and
// returns the workload baseline taken just before it.
func cutOver(t *testing.T, r *rig.Rig, w *kafkaload.Workload) kafkaload.Report {
	t.Helper()
	ctx := rig.CtxFor(t, 3*time.Minute)
	if _, err := r.M.Join(ctx); err != nil {
		t.Fatal(err)
	}
	r.WaitReady()
	r.WaitOnSource(30*time.Second, w.Snapshot())
	base := w.Snapshot()
	startAfterWaitReady(ctx, t, r)
	if st := waitPhase(t, r, cutover.PhaseDestination); st.Sessions.Failed != 0 {
		t.Fatalf("cutover fell back: %+v", st.Sessions)
	}
	return base
}

func TestRestartedProxyRoutesToDestination(t *testing.T) {
	r := rig.New(t, rig.Options{})
	ctx := rig.CtxFor(t, 3*time.Minute)
	w := rig.StartGo(t, ctx, kafkaload.Config{Addr: one(r).Addr, Brokers: 2, Writers: 1})
	base := cutOver(t, r, w)

	// Stop zkproxy (clients see their connection drop) and start a new one
	// on the same address and data directory.
	one(r).Stop(t)
	r.Start(one(r), r.Opts)
	if st := one(r).Ctl.Status(); st.Phase != cutover.PhaseDestination {
		t.Fatalf("restarted in phase %s", st.Phase)
	}
	// Clients reconnect on their own, with their sessions, to the destination.
	deadline := time.Now().Add(30 * time.Second)
	for {
		snap := w.Snapshot()
		on := r.DestinationSessions(ctx)
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
	if err := w.WatchesFire(rig.CtxFor(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	final := w.Stop().Since(base)
	t.Logf("across the cutover and a zkproxy restart: %s", final)
	if final.Expired != 0 {
		t.Fatalf("sessions expired: %s", final)
	}
	v, err := w.Verify(ctx, r.M.Destination.Members[1].ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	if v.Lost != 0 || !v.OwnersIntact {
		t.Fatalf("verification: %s %v", v, v.Problems)
	}
}

// movedWorkload starts a rig and a Kafka-like workload through it, runs the
// join and the cutover, and returns the workload's baseline from then on.
func movedWorkload(t *testing.T, o rig.Options) (*rig.Rig, *kafkaload.Workload, kafkaload.Report) {
	t.Helper()
	r := rig.New(t, o)
	w := rig.StartGo(t, rig.CtxFor(t, time.Minute), kafkaload.Config{Addr: one(r).Addr, Brokers: 3, Writers: 2})
	cutOver(t, r, w)
	base := w.Snapshot()
	w.ResetLatency()
	return r, w, base
}

// verifyOn reads every acknowledged write back from s (directly).
func verifyOn(t *testing.T, w *kafkaload.Workload, s *zktest.Server) {
	t.Helper()
	v, err := w.Verify(rig.CtxFor(t, time.Minute), s.ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("read back from %s: %s", s, v)
	if v.Lost != 0 || !v.OwnersIntact {
		t.Fatalf("verification: %s %v", v, v.Problems)
	}
}

// TestSplitWithoutBarrier runs Yelp's split under the workload after the
// cutover, without zkproxy's barrier, and reports what clients saw: the
// proxy re-attaches sessions when the destination has elected its leader.
func TestSplitWithoutBarrier(t *testing.T) {
	r, w, base := movedWorkload(t, rig.Options{})
	ctx := rig.CtxFor(t, 4*time.Minute)

	dstLeader, srcLeader, err := r.M.Split(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tl := r.M.Timeline()
	t.Logf("split: destination leader %s, source leader %s, destination unavailable for %s",
		dstLeader, srcLeader, tl.DestinationUnavailable().Round(time.Millisecond))
	if err := one(r).Ctl.RecordSplit(); err != nil {
		t.Fatal(err)
	}
	if err := w.WatchesFire(rig.CtxFor(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	final := w.Stop().Since(base)
	t.Logf("clients during the split without barrier: %s", final)
	if final.Expired != 0 {
		t.Fatalf("sessions expired across the split: %s", final)
	}
	verifyOn(t, w, r.M.Dormant())
}

// TestSplitBehindBarrier runs Yelp's split under the workload with the
// barrier up: no client sees Disconnected or Expired, nothing acknowledged
// is lost, and the longest hold is the client-visible pause of the split.
// The destination is reached on its TLS ports only, so the barrier's zxid
// and tree-digest checks (srvr, hash) and the re-attach after the
// destination's restart all go over TLS; e2e's stress and chaos tests
// split plain ensembles.
func TestSplitBehindBarrier(t *testing.T) {
	r, w, base := movedWorkload(t, rig.Options{DestinationTLS: true})
	ctx := rig.CtxFor(t, 4*time.Minute)

	// The runbook's split (rig.SplitBehindBarrier): barrier up (forced
	// when the joint leader is a destination node — the usual case, since
	// with equal zxids the highest server id wins), firewall, destination
	// restart, every session released by its own re-attach, split recorded,
	// source restart, firewall removed.
	r.SplitBehindBarrier(ctx, func(name string, step func()) {
		start := time.Now()
		step()
		t.Logf("%s took %s", name, time.Since(start).Round(time.Millisecond))
	})
	bs := one(r).Ctl.Status().Barrier
	t.Logf("destination unavailable %s; longest session hold %s",
		r.M.Timeline().DestinationUnavailable().Round(time.Millisecond), bs.LongestHold.Round(time.Millisecond))

	if err := w.WatchesFire(rig.CtxFor(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	final := w.Stop().Since(base)
	t.Logf("clients across the split behind the barrier: %s", final)
	if final.Disconnects != 0 || final.Expired != 0 || len(final.Errors) > 0 {
		t.Fatalf("clients noticed the split: %s %v", final, final.Errors)
	}
	verifyOn(t, w, r.M.Dormant())
}

// TestCutoverRefusedWhenDestinationIsAnotherQuorum: the destination runs as
// its own ensemble instead of joining the source, so there are two leaders
// and two epochs; the check names it and Start refuses.
func TestCutoverRefusedWhenDestinationIsAnotherQuorum(t *testing.T) {
	r := rig.New(t, rig.Options{})
	ctx := rig.CtxFor(t, 3*time.Minute)
	if err := r.M.Destination.Start(ctx); err != nil {
		t.Fatal(err)
	}
	rep := one(r).Ctl.Check(ctx)
	if rep.Ready {
		t.Fatalf("two separate ensembles passed the sync check: %+v", rep.Items)
	}
	t.Logf("check: %s", rep.Reason())
	if !strings.Contains(rep.Reason(), "one leader: 2 leaders") {
		t.Fatalf("reason does not name the two quorums: %s", rep.Reason())
	}
	if _, err := one(r).Ctl.Start(ctx, false); !errors.Is(err, cutover.ErrNotReady) {
		t.Fatalf("start: %v", err)
	}
	if st := one(r).Ctl.Status(); st.Phase != cutover.PhaseSource {
		t.Fatalf("phase %s after a refused start", st.Phase)
	}
}

// TestAbortMidCutoverThenResume moves sessions one at a time, aborts after
// the first, checks the split of sessions between the ensembles, then
// resumes to the end. No client notices any of it.
func TestAbortMidCutoverThenResume(t *testing.T) {
	r := rig.New(t, rig.Options{MoveConcurrency: 1})
	ctx := rig.CtxFor(t, 3*time.Minute)
	w := rig.StartGo(t, ctx, kafkaload.Config{Addr: one(r).Addr, Brokers: 8, Writers: 2})
	if _, err := r.M.Join(ctx); err != nil {
		t.Fatal(err)
	}
	r.WaitReady()
	// Sessions dropped by the join's leader re-election must be back on
	// the source before the cutover, or they would reconnect straight to
	// the destination and blur the count.
	r.WaitOnSource(30*time.Second, w.Snapshot())
	base := w.Snapshot()

	if _, err := one(r).Ctl.Start(ctx, false); err != nil {
		t.Fatal(err)
	}
	for one(r).Ctl.Status().Sessions.Moved < 1 {
		time.Sleep(time.Millisecond)
	}
	if err := one(r).Ctl.Abort(); err != nil {
		t.Fatal(err)
	}
	st := one(r).Ctl.Status()
	t.Logf("aborted: %+v", st.Sessions)
	// Sessions the abort kept from starting are neither pending nor
	// counted: Total is the moves that ran.
	if st.Phase != cutover.PhaseAborted || st.Sessions.Moved < 1 || st.Sessions.Moved >= len(base.Sessions) || st.Sessions.Pending != 0 {
		t.Fatalf("abort did not stop midway: %+v of %d sessions (phase %s)", st.Sessions, len(base.Sessions), st.Phase)
	}
	onDest := rig.SessionsOn(t, r.M.Destination.Members[:2])
	onSrc := rig.SessionsOn(t, r.M.Source.Members)
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

	if _, err := one(r).Ctl.Start(ctx, false); err != nil { // resume
		t.Fatal(err)
	}
	st = waitPhase(t, r, cutover.PhaseDestination)
	if n := len(rig.SessionsOn(t, r.M.Destination.Members[:2])); n != len(snap.Sessions) {
		t.Fatalf("after resuming %d of %d sessions on the destination (%+v)", n, len(snap.Sessions), st.Sessions)
	}
	final := w.Stop().Since(base)
	t.Logf("across abort and resume: %s", final)
	if final.Disconnects != 0 || final.Expired != 0 || len(final.Errors) > 0 {
		t.Fatalf("clients noticed: %s %v", final, final.Errors)
	}
}

// joinBehindHolds runs the join's rolling restart with zkproxy holding the
// sessions of each member before it restarts (all of them for the leader,
// whose restart makes every member drop its clients), so no request is in
// flight when the member goes away.
func joinBehindHolds(t *testing.T, r *rig.Rig) {
	t.Helper()
	ctx := rig.CtxFor(t, 3*time.Minute)
	ctl := one(r).Ctl
	_, err := r.M.JoinAround(ctx, func(s *zktest.Server, leader bool, restart func() error) error {
		members := []string{s.ClientAddr()}
		if leader {
			members = nil
		}
		st, err := ctl.Hold(ctx, members)
		if err != nil {
			return err
		}
		t.Logf("hold for %s (leader %t): %d sessions held", s, leader, st.Held)
		if err := restart(); err != nil {
			return err
		}
		deadline := time.Now().Add(20 * time.Second)
		for b := ctl.Status().Barrier; b.Up && b.Held > 0 && time.Now().Before(deadline); b = ctl.Status().Barrier {
			time.Sleep(20 * time.Millisecond)
		}
		ctl.ReleaseBarrier("member restarted")
		t.Logf("released; longest hold %s", ctl.Status().Barrier.LongestHold.Round(time.Millisecond))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestJoinBehindHolds: with holds around the join's restarts, clients see
// nothing of the whole procedure — join, cutover, split.
func TestJoinBehindHolds(t *testing.T) {
	r := rig.New(t, rig.Options{})
	ctx := rig.CtxFor(t, 4*time.Minute)
	w := rig.StartGo(t, ctx, kafkaload.Config{Addr: one(r).Addr, Brokers: 3, Writers: 2})
	writing(t, w)
	base := w.Snapshot()

	joinBehindHolds(t, r)
	afterJoin := w.Snapshot().Since(base)
	t.Logf("join behind holds: %s", afterJoin)
	r.WaitReady()
	if _, err := one(r).Ctl.Start(ctx, false); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, r, cutover.PhaseDestination)
	r.SplitBehindBarrier(ctx, func(_ string, step func()) { step() })

	if err := w.WatchesFire(rig.CtxFor(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	final := w.Stop().Since(base)
	t.Logf("whole procedure: %s", final)
	if final.Disconnects != 0 || final.Expired != 0 || len(final.Errors) > 0 {
		t.Fatalf("clients noticed the procedure: %s %v", final, final.Errors)
	}
	v, err := w.Verify(ctx, r.M.Dormant().ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	if v.Lost != 0 || !v.OwnersIntact {
		t.Fatalf("verification: %s %v", v, v.Problems)
	}
}
