package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/admin"
	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/fleet"
	"github.com/zkproxy/zkproxy/internal/testkit/kafkaload"
	"github.com/zkproxy/zkproxy/internal/testkit/rig"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// fleetConnect is the connect string a Kafka broker uses with a fleet: every
// replica, then the chroot.
func fleetConnect(r *rig.Rig, chroot string) string {
	var addrs []string
	for _, p := range r.Proxies {
		addrs = append(addrs, p.Addr)
	}
	return strings.Join(addrs, ",") + chroot
}

// noProxiedSessionOnSource fails when a source member's cons lists any
// session at all: once the fleet's cutover began, no replica connects a
// client session there, and each closes its own fleet-state connection to
// the source (docs/fleet.md, the read rule).
func noProxiedSessionOnSource(t *testing.T, r *rig.Rig, reports ...kafkaload.Report) {
	t.Helper()
	workload := map[int64]string{}
	for _, rep := range reports {
		for name, id := range rep.Sessions {
			workload[id] = name
		}
	}
	fleetOwn := map[int64]string{}
	for _, p := range r.Proxies {
		if p.Fleet != nil {
			for _, id := range p.Fleet.IgnoredSessions(rig.CtxFor(t, 10*time.Second)) {
				fleetOwn[id] = p.Addr
			}
		}
	}
	var found []string
	for id, m := range rig.SessionsOn(t, r.M.Source.Members) {
		switch {
		case workload[id] != "":
			found = append(found, fmt.Sprintf("%s(0x%x) on %s", workload[id], id, m))
		case fleetOwn[id] != "":
			found = append(found, fmt.Sprintf("replica %s's fleet-state session 0x%x on %s", fleetOwn[id], id, m))
		default:
			found = append(found, fmt.Sprintf("unknown session 0x%x on %s", id, m))
		}
	}
	if len(found) > 0 {
		t.Fatalf("sessions on source members after the cutover began: %v", found)
	}
	t.Logf("source members' cons: no session of any replica")
}

// startFleet is a joined mitosis with three replicas of one fleet and a
// Java Kafka-like workload whose connect string lists all three.
func startFleet(t *testing.T, o rig.Options) (*rig.Rig, *kafkaload.JavaWorkload, kafkaload.Report, context.Context) {
	t.Helper()
	o.Proxies, o.Fleet = 3, "kafka"
	r := rig.New(t, o)
	ctx := rig.CtxFor(t, 6*time.Minute)
	prog := zktest.JavaProgram(t, kafkaload.JavaWorkloadSource)
	j := startJava(t, ctx, prog, kafkaload.JavaConfig{Connect: fleetConnect(r, "/kafka"), Brokers: 6, Writers: 2})
	time.Sleep(500 * time.Millisecond)
	if _, err := r.M.Join(ctx); err != nil {
		t.Fatal(err)
	}
	r.WaitReady()
	r.WaitOnSource(30*time.Second, j.Snapshot())
	base := j.Snapshot()
	j.ResetLatency()
	return r, j, base, ctx
}

// TestFleetJavaCutover: three replicas, the Java workload listing all
// three; the cutover started on replica 2 alone moves every session on
// every replica live (no Disconnected, no Expired, nothing lost). The split
// is then prepared and recorded on replica 2 alone; afterwards a replica
// restarted with an empty data-dir and a brand-new replica both route to
// the destination, and no source member ever lists a workload session again.
func TestFleetJavaCutover(t *testing.T) {
	r, j, base, ctx := startFleet(t, rig.Options{})
	via := r.Proxies[1]
	start := time.Now()
	if _, err := via.Fleet.Start(ctx, false, 0); err != nil {
		t.Fatal(err)
	}
	r.WaitFleetDone(ctx, cutover.PhaseDestination)
	t.Logf("fleet cutover took %s", time.Since(start).Round(time.Millisecond))
	moved, failed := 0, 0
	for _, p := range r.Proxies {
		st := p.Ctl.Status()
		t.Logf("%s: %s", p.Name, rig.Explain(st))
		moved += st.Sessions.Moved
		failed += st.Sessions.Failed
	}
	v := via.Fleet.Status(ctx)
	t.Logf("fleet view from %s: epoch %d phase %s, %d replicas, totals %+v", via.Name, v.State.Epoch, v.State.Phase, len(v.Live), v.Totals)
	if moved != 8 || failed != 0 || v.Totals.Replicas != 3 || v.Totals.Sessions.Source != 0 || v.Totals.Sessions.Destination != 8 {
		t.Fatalf("not every session moved live: moved %d failed %d; fleet totals %+v", moved, failed, v.Totals)
	}
	r.WaitOnDestination(10*time.Second, j.Snapshot())
	noProxiedSessionOnSource(t, r, j.Snapshot())
	if err := j.WatchesFire(rig.CtxFor(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	cw := j.Snapshot().Since(base)
	t.Logf("cutover: %s; %s", cw, kafkaload.PausesOf(cw))
	if cw.Disconnects != 0 || cw.Expired != 0 || len(cw.Errors) != 0 {
		t.Fatalf("clients noticed the fleet cutover: %s %v", cw, cw.Errors)
	}

	r.SplitBehindBarrierFleet(ctx, via, func(name string, f func()) {
		s := time.Now()
		f()
		t.Logf("%s: %s", name, time.Since(s).Round(time.Millisecond))
	})
	noProxiedSessionOnSource(t, r, j.Snapshot())
	sw := j.Snapshot().Since(base)
	t.Logf("cutover and split: %s; %s", sw, kafkaload.PausesOf(sw))
	if sw.Disconnects != 0 || sw.Expired != 0 || len(sw.Errors) != 0 {
		t.Fatalf("clients noticed the split: %s %v", sw, sw.Errors)
	}

	// Replica 1 restarts with its data-dir lost (a pod without a volume):
	// the fleet state, not the empty data-dir, decides.
	p0 := r.Proxies[0]
	p0.Stop(t)
	p0.Dir = t.TempDir()
	r.Start(p0, r.Opts)
	fresh := r.AddProxy("zkproxy-new")
	for _, p := range []*rig.Proxy{p0, fresh} {
		st := p.Ctl.Status()
		t.Logf("%s after the split, empty data-dir: %s", p.Name, rig.Explain(st))
		if st.Phase != cutover.PhaseDestination || !st.Split || st.Target != cutover.Destination {
			t.Fatalf("%s routes to %s after the split: %s", p.Name, st.Target, rig.Explain(st))
		}
	}
	// Clients of the restarted replica came back (through it or the
	// others) with their sessions, on the destination.
	r.WaitOnDestination(60*time.Second, j.Snapshot())
	noProxiedSessionOnSource(t, r, j.Snapshot())
	time.Sleep(500 * time.Millisecond) // writes keep flowing on the destination
	final := j.Stop().Since(base)
	t.Logf("whole run: %s", final)
	if final.Expired != 0 {
		t.Fatalf("sessions expired: %s", final)
	}
	if final.AckedWrites <= sw.AckedWrites {
		t.Fatalf("no write acknowledged after the restart: %s", final)
	}
	ver, err := j.Verify(ctx, r.M.Destination.Members[2].ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("read back from the destination: %s", ver)
	if !ver.OK() {
		t.Fatalf("verification failed: %s %v", ver, ver.Problems)
	}
}

// fleetAdmin serves p's admin API in a fleet as cmd/zkproxy does.
func fleetAdmin(t *testing.T, p *rig.Proxy) *httptest.Server {
	t.Helper()
	h := admin.NewHandler(admin.Options{})
	admin.RegisterFleetCutover(h, p.Ctl, p.Fleet)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// setFleetPhase writes phase into the fleet state (as an operator's action
// elsewhere would) and waits until every replica applied it.
func setFleetPhase(t *testing.T, ctx context.Context, r *rig.Rig, phase cutover.Phase) int64 {
	t.Helper()
	s := r.Proxies[0].Fleet.Store()
	var next fleet.State
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		// Right after the join the fleet's clients may still reconnect.
		rd, err := s.Read(ctx)
		if err == nil && rd.Side == cutover.Destination {
			next = rd.State
			next.Phase, next.Epoch, next.Action, next.ChangedBy = phase, next.Epoch+1, fleet.ActionAbort, "test"
			if _, err = s.Write(ctx, rd, next, rd.Side); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("setting the fleet phase: %v (%+v)", err, rd.Copy)
		}
	}
	for _, p := range r.Proxies {
		if _, err := rig.WaitFleet(ctx, p, "epoch applied", func(v fleet.View) bool {
			for _, m := range v.Live {
				if m.ID == p.Name {
					return m.AppliedEpoch >= next.Epoch && m.Phase == cutover.PhaseDestination
				}
			}
			return false
		}); err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
	}
	return next.Epoch
}

// TestFleetConcurrentStartRollback: an operator starts the cutover on one
// replica while another rolls back on a second, both from the same fleet
// state (epoch): exactly one call succeeds, the other gets 409 with the
// reason, and every replica follows the winner.
func TestFleetConcurrentStartRollback(t *testing.T) {
	r := rig.New(t, rig.Options{Proxies: 2, Fleet: "race"})
	ctx := rig.CtxFor(t, 3*time.Minute)
	// Joined: once the cutover began the state lives on the destination
	// side (docs/fleet.md, the read rule).
	if _, err := r.M.Join(ctx); err != nil {
		t.Fatal(err)
	}
	a, b := fleetAdmin(t, r.Proxies[0]), fleetAdmin(t, r.Proxies[1])
	for round := range 6 {
		epoch := setFleetPhase(t, ctx, r, cutover.PhaseAborted)
		calls := []struct{ name, url string }{
			{"start on zkproxy-0", fmt.Sprintf("%s/cutover/start?force=true&if_epoch=%d", a.URL, epoch)},
			{"rollback on zkproxy-1", fmt.Sprintf("%s/cutover/rollback?if_epoch=%d", b.URL, epoch)},
		}
		switch round % 3 {
		case 1: // the other way round
			calls[0].url, calls[1].url = fmt.Sprintf("%s/cutover/start?force=true&if_epoch=%d", b.URL, epoch), fmt.Sprintf("%s/cutover/rollback?if_epoch=%d", a.URL, epoch)
			calls[0].name, calls[1].name = "start on zkproxy-1", "rollback on zkproxy-0"
		case 2: // two operators rolling back at once: a pure race on the znode's version
			calls[0].url, calls[0].name = fmt.Sprintf("%s/cutover/rollback?if_epoch=%d", a.URL, epoch), "rollback on zkproxy-0"
			calls[1].url, calls[1].name = fmt.Sprintf("%s/cutover/rollback?if_epoch=%d", b.URL, epoch), "rollback on zkproxy-1"
		}
		type answer struct {
			code int
			body string
		}
		answers := make([]answer, 2)
		var wg sync.WaitGroup
		for i, c := range calls {
			wg.Go(func() {
				resp, err := http.Post(c.url, "", nil)
				if err != nil {
					t.Error(err)
					return
				}
				defer resp.Body.Close()
				var body struct {
					Error string `json:"error"`
				}
				_ = json.NewDecoder(resp.Body).Decode(&body)
				answers[i] = answer{resp.StatusCode, body.Error}
			})
		}
		wg.Wait()
		wins, losers := -1, 0
		for i, an := range answers {
			switch {
			case an.code/100 == 2:
				wins = i
			case an.code == http.StatusConflict && strings.Contains(an.body, "another replica changed the fleet state first"):
				losers++
				t.Logf("round %d: %s: %d %s", round, calls[i].name, an.code, an.body)
			default:
				t.Fatalf("round %d: %s: unexpected answer %d %s", round, calls[i].name, an.code, an.body)
			}
		}
		if wins < 0 || losers != 1 {
			t.Fatalf("round %d: answers %+v: want exactly one 2xx and one 409", round, answers)
		}
		want := cutover.PhaseDestination
		if strings.HasPrefix(calls[wins].name, "rollback") {
			want = cutover.PhaseSource
		}
		t.Logf("round %d: %s won", round, calls[wins].name)
		r.WaitFleetDone(ctx, want)
	}
}

// TestFleetReplicaCutOff cuts one replica's connections to every ZooKeeper
// member (iptables REJECT between its own address, from which its fleet
// connections leave, and the members'; removed in t.Cleanup): it reports
// not ready (/readyz 503 naming the stale state) within the documented bound
// (fleet-stale-after, plus one read's timeout and one re-read interval;
// docs/fleet.md), while the others stay ready; the sessions it carries keep
// working (their upstream connections leave from 127.0.0.1, which the rules
// do not match). With the rules removed it is ready again.
func TestFleetReplicaCutOff(t *testing.T) {
	const staleAfter = 3 * time.Second
	r := rig.New(t, rig.Options{Proxies: 3, Fleet: "cutoff", FleetStaleAfter: staleAfter})
	ctx := rig.CtxFor(t, 4*time.Minute)
	w := rig.StartGo(t, ctx, kafkaload.Config{Addr: r.Proxies[0].Addr, Root: "/cutoff", Brokers: 3, Writers: 2, Consumers: 1, WriteInterval: 20 * time.Millisecond})
	cut := r.Proxies[0]
	readyz := func(p *rig.Proxy) (int, string) {
		h := admin.NewHandler(admin.Options{Ready: p.Fleet.Ready})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	for _, p := range r.Proxies {
		if code, body := readyz(p); code != http.StatusOK {
			t.Fatalf("%s not ready before the cut: %d %s", p.Name, code, body)
		}
	}
	time.Sleep(time.Second)
	base := w.Snapshot()
	host, _, _ := net.SplitHostPort(cut.Addr)
	fw, err := zktest.Partition(t, []string{host}, append(r.M.Source.IPs(), r.M.Destination.IPs()...))
	if err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()
	var code int
	var body string
	for code, body = readyz(cut); code == http.StatusOK; code, body = readyz(cut) {
		if time.Since(cutAt) > time.Minute {
			t.Fatalf("%s still ready a minute after the cut", cut.Name)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%s not ready %s after the cut (documented bound: fleet-stale-after %s + read timeout 2s + interval 0.5s): %d %s",
		cut.Name, time.Since(cutAt).Round(time.Millisecond), staleAfter, code, strings.TrimSpace(body))
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "fleet-stale-after") {
		t.Fatalf("readyz: %d %s", code, body)
	}
	for _, p := range r.Proxies[1:] {
		if code, body := readyz(p); code != http.StatusOK {
			t.Fatalf("%s, not cut off, is not ready: %d %s", p.Name, code, body)
		}
	}
	// The cut replica keeps serving its sessions on the side its last
	// state names.
	time.Sleep(2 * time.Second)
	during := w.Snapshot().Since(base)
	t.Logf("while cut off: %s", during)
	if during.Disconnects != 0 || during.Expired != 0 || during.AckedWrites <= base.AckedWrites {
		t.Fatalf("sessions of the cut-off replica suffered: %s", during)
	}
	if st := cut.Ctl.Status(); st.Target != cutover.Source {
		t.Fatalf("cut-off replica changed its routing: %s", rig.Explain(st))
	}
	if err := fw.Remove(); err != nil {
		t.Fatal(err)
	}
	for code, body = readyz(cut); code != http.StatusOK; code, body = readyz(cut) {
		if ctx.Err() != nil {
			t.Fatalf("%s not ready again after the rules went: %d %s", cut.Name, code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	final := w.Stop().Since(base)
	t.Logf("whole run: %s", final)
	if final.Disconnects != 0 || final.Expired != 0 || len(final.Errors) != 0 {
		t.Fatalf("clients noticed: %s %v", final, final.Errors)
	}
	v, err := w.Verify(ctx, r.Source[0])
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK() {
		t.Fatalf("verification: %s %v", v, v.Problems)
	}
}

// TestFleetHoldAndRelease: `cutover hold` on one replica holds on every
// replica before it answers (the operator restarts the member right
// after), and `release` on another lowers every replica's hold.
func TestFleetHoldAndRelease(t *testing.T) {
	r := rig.New(t, rig.Options{Proxies: 3, Fleet: "hold"})
	ctx := rig.CtxFor(t, 2*time.Minute)
	var ws []*kafkaload.Workload
	for i, p := range r.Proxies {
		ws = append(ws, rig.StartGo(t, ctx, kafkaload.Config{Addr: p.Addr, Root: fmt.Sprintf("/hold/%d", i), Brokers: 2, Writers: 1, WriteInterval: 20 * time.Millisecond}))
	}
	time.Sleep(time.Second)
	if _, err := r.Proxies[1].Fleet.Hold(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range r.Proxies {
		bs := p.Ctl.Status().Barrier
		t.Logf("%s: %+v", p.Name, bs)
		if !bs.Up || bs.Held == 0 {
			t.Fatalf("%s does not hold when hold returned: %+v", p.Name, bs)
		}
	}
	if err := r.Proxies[2].Fleet.ReleaseBarrier(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range r.Proxies {
		for p.Ctl.Status().Barrier.Up {
			if ctx.Err() != nil {
				t.Fatalf("%s still holds after the fleet release", p.Name)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("%s: %s", p.Name, p.Ctl.Status().Barrier.LastEnd)
	}
	for i, w := range ws {
		rep := w.Stop()
		if rep.Disconnects != 0 || rep.Expired != 0 || len(rep.Errors) != 0 {
			t.Fatalf("workload %d: %s %v", i, rep, rep.Errors)
		}
	}
}
