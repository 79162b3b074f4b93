package e2e

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/internal/bridge"
	"github.com/zkproxy/zkproxy/internal/workload"
	"github.com/zkproxy/zkproxy/internal/zktest"
	"github.com/zkproxy/zkproxy/proxy"
)

// rig is a mitosis under way with one or more zkproxy instances in front.
type rig struct {
	t       *testing.T
	m       *zktest.Mitosis
	source  []string
	dest    []string
	proxies []*zkproxy
	opts    options
}

// options tune the zkproxy instances of a rig.
type options struct {
	proxies         int
	moveConcurrency int
	moveTimeout     time.Duration
	// barrierMaxHold bounds the split barrier; zero means 15s: under
	// Kafka's 18s session timeout, and room for the destination restart on
	// a loaded 2-core machine (the 10s default was reached once when the
	// restart alone took 7s).
	barrierMaxHold time.Duration
	// quiet logs only errors: rigs with many sessions would drown the
	// test log in per-session INFO lines.
	quiet bool
	// dial, when set, opens every upstream connection of every proxy (to
	// inject delay or faults); nil dials TCP.
	dial func(ctx context.Context, localAddr, member string) (net.Conn, error)
}

// splitBehindBarrier runs Yelp's split the way the runbook does with
// zkproxy: raise every proxy's barrier (PrepareSplit; forced when the joint
// leader is a destination member, which only costs the source's own,
// non-proxied clients an election), firewall, destination restart, wait
// until every held session re-attached and was released, record the split,
// source restart, firewall removed. stage times each step.
func (r *rig) splitBehindBarrier(ctx context.Context, stage func(string, func())) {
	t := r.t
	t.Helper()
	stage("split: barrier up", func() {
		for _, p := range r.proxies {
			plan, err := p.ctl.PrepareSplit(ctx, false)
			if errors.Is(err, cutover.ErrLeaderOnDestination) {
				t.Logf("%s: %v; going on with force", p.name, err)
				plan, err = p.ctl.PrepareSplit(ctx, true)
			}
			if err != nil {
				t.Fatalf("%s: prepare split: %v (%+v)", p.name, err, plan)
			}
			if !plan.Barrier.Up || plan.Barrier.NotHeld != 0 {
				t.Fatalf("%s: barrier %+v", p.name, plan.Barrier)
			}
		}
	})
	stage("split: firewall", func() {
		if err := r.m.Firewall(ctx); err != nil {
			t.Fatal(err)
		}
	})
	stage("split: destination restart", func() {
		if _, err := r.m.RestartDestination(ctx); err != nil {
			t.Fatal(err)
		}
	})
	stage("split: sessions re-attached", func() {
		for _, p := range r.proxies {
			deadline := time.Now().Add(30 * time.Second)
			for st := p.ctl.Status(); st.Barrier.Up && st.Barrier.Held > 0 && time.Now().Before(deadline); st = p.ctl.Status() {
				time.Sleep(50 * time.Millisecond)
			}
			if bs := p.ctl.Status().Barrier; bs.Held != 0 || bs.LastEnd == "max hold time reached" {
				t.Fatalf("%s: sessions were not released by their re-attach: %+v", p.name, bs)
			}
		}
	})
	for _, p := range r.proxies {
		if err := p.ctl.RecordSplit(); err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		bs := p.ctl.Status().Barrier
		t.Logf("%s: barrier released %d sessions (%s); longest hold %s", p.name, bs.Released, bs.LastEnd, bs.LongestHold.Round(time.Millisecond))
	}
	stage("split: source restart", func() {
		if _, err := r.m.RestartSource(ctx); err != nil {
			t.Fatal(err)
		}
	})
	stage("split: firewall removed", func() {
		if err := r.m.RemoveFirewall(); err != nil {
			t.Fatal(err)
		}
	})
}

// zkproxy is one proxy + cutover controller, restartable on the same
// address and data directory.
type zkproxy struct {
	name string
	addr string
	dir  string
	srv  *proxy.Server
	ctl  *cutover.Controller
	done chan error
	reg  *prometheus.Registry
}

func addrs(e *zktest.Ensemble) []string {
	var out []string
	for _, s := range e.Members {
		out = append(out, s.ClientAddr())
	}
	return out
}

func newRig(t *testing.T, o options) *rig {
	t.Helper()
	if o.proxies == 0 {
		o.proxies = 1
	}
	if o.barrierMaxHold == 0 {
		o.barrierMaxHold = 15 * time.Second
	}
	m := zktest.NewMitosis(t)
	r := &rig{t: t, m: m, source: addrs(m.Source), dest: addrs(m.Destination)}
	for i := range o.proxies {
		p := &zkproxy{name: fmt.Sprintf("zkproxy-%d", i), addr: net.JoinHostPort(zktest.LoopbackIP(t), "2181"), dir: t.TempDir()}
		r.start(p, o)
		r.proxies = append(r.proxies, p)
	}
	r.opts = o
	t.Cleanup(func() {
		for _, p := range r.proxies {
			p.stop(t)
		}
	})
	return r
}

// start starts p's proxy and controller on p.addr and p.dir (again, after a
// stop: the controller restores the persisted phase).
func (r *rig) start(p *zkproxy, o options) {
	t := r.t
	t.Helper()
	level := slog.LevelInfo
	if o.quiet {
		level = slog.LevelError
	}
	log := slog.New(slog.NewTextHandler(testWriter{t, p.name}, &slog.HandlerOptions{Level: level}))
	p.reg = prometheus.NewRegistry()
	srv, err := proxy.New(proxy.Config{Source: r.source, Destination: r.dest, Dial: o.dial}, log, p.reg)
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := cutover.NewController(cutover.Config{
		Source: r.source, Destination: r.dest, MaxLag: 1000,
		MoveConcurrency: o.moveConcurrency, MoveTimeout: o.moveTimeout, BarrierMaxHold: o.barrierMaxHold,
		Store: cutover.Store{Dir: p.dir},
	}, bridge.Cutover(srv, r.dest), log, p.reg)
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	// The old listener's port may linger for a moment after a restart.
	for i := 0; ; i++ {
		if ln, err = net.Listen("tcp", p.addr); err == nil || i == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	p.done = make(chan error, 1)
	go func() { p.done <- srv.Serve(ln) }()
	p.srv, p.ctl = srv, ctl
}

// stop closes p's controller and proxy (every client connection drops).
func (p *zkproxy) stop(t *testing.T) {
	if p.srv == nil {
		return
	}
	p.ctl.Close()
	p.srv.Close()
	if err := <-p.done; !errors.Is(err, proxy.ErrServerClosed) {
		t.Errorf("%s Serve: %v", p.name, err)
	}
	p.srv, p.ctl = nil, nil
}

type testWriter struct {
	t    *testing.T
	name string
}

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(w.name + ": " + strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitReady runs every controller's sync check until it passes: under load
// the destination may trail the leader for a moment after the join.
func (r *rig) waitReady() {
	t := r.t
	t.Helper()
	ctx := ctxFor(t, 90*time.Second)
	for _, p := range r.proxies {
		for {
			rep := p.ctl.Check(ctx)
			if rep.Ready {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%s: sync never confirmed: %s", p.name, rep.Reason())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// startCutover starts the cutover on every proxy.
func (r *rig) startCutover(ctx context.Context) {
	r.t.Helper()
	for _, p := range r.proxies {
		if _, err := p.ctl.Start(ctx, false); err != nil {
			r.t.Fatalf("%s: %v", p.name, err)
		}
	}
}

// waitPhase waits for p's move loop to end and checks the phase.
func waitPhase(t *testing.T, p *zkproxy, want cutover.Phase) cutover.Status {
	t.Helper()
	if err := p.ctl.Wait(ctxFor(t, 90*time.Second)); err != nil {
		t.Fatalf("%s: cutover did not finish: %v (%s)", p.name, err, explain(p.ctl.Status()))
	}
	st := p.ctl.Status()
	if st.Phase != want {
		t.Fatalf("%s: phase %s, want %s (%s)", p.name, st.Phase, want, explain(st))
	}
	return st
}

// explain renders a Status as `zkproxy cutover status` explains it.
func explain(st cutover.Status) string {
	return fmt.Sprintf("phase %s, split %t, target %s, sessions total %d moved %d failed %d pending %d, reasons %v",
		st.Phase, st.Split, st.Target, st.Sessions.Total, st.Sessions.Moved, st.Sessions.Failed, st.Sessions.Pending, st.Reasons)
}

var consSession = regexp.MustCompile(`sid=0x([0-9a-f]+)`)

// sessionsOn lists the session ids connected to the running servers, from
// cons.
func sessionsOn(t *testing.T, servers []*zktest.Server) map[int64]string {
	t.Helper()
	out := map[int64]string{}
	for _, s := range servers {
		if !s.Running() {
			continue
		}
		ans, err := s.FourLetter("cons")
		if err != nil {
			t.Logf("cons on %s: %v", s, err)
			continue
		}
		for _, m := range consSession.FindAllStringSubmatch(ans, -1) {
			var id uint64
			fmt.Sscanf(m[1], "%x", &id)
			out[int64(id)] = s.String()
		}
	}
	return out
}

// waitOnDestination waits until every session of reports is connected to a
// destination member (the servers' own view, cons).
func (r *rig) waitOnDestination(d time.Duration, reports ...workload.Report) {
	t := r.t
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		on := sessionsOn(t, r.m.Destination.Members)
		var missing []string
		for _, rep := range reports {
			for name, id := range rep.Sessions {
				if _, ok := on[id]; !ok {
					missing = append(missing, fmt.Sprintf("%s(0x%x)", name, id))
				}
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			slices.Sort(missing)
			t.Fatalf("%d sessions not on a destination member: %v", len(missing), missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startJava starts a Java workload, closed in t.Cleanup, whose JVM log is
// attached to the test output if the test fails.
func startJava(t *testing.T, ctx context.Context, prog *zktest.Java, cfg workload.JavaConfig) *workload.JavaWorkload {
	t.Helper()
	j, err := workload.StartJava(ctx, prog, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		j.Close()
		if t.Failed() {
			t.Logf("java workload %s log (tail):\n%s", cfg.Prefix, j.Stderr())
		}
	})
	return j
}

// startGo starts a Go workload, closed in t.Cleanup.
func startGo(t *testing.T, ctx context.Context, cfg workload.Config) *workload.Workload {
	t.Helper()
	w, err := workload.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

// clients is a set of running workloads.
type clients []workload.Client

func (cs clients) each(f func(workload.Client)) {
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() { f(c) })
	}
	wg.Wait()
}

func (cs clients) snapshot() []workload.Report {
	out := make([]workload.Report, len(cs))
	for i, c := range cs {
		out[i] = c.Snapshot()
	}
	return out
}

func (cs clients) resetLatency() { cs.each(func(c workload.Client) { c.ResetLatency() }) }

func (cs clients) stop() []workload.Report {
	out := make([]workload.Report, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() { out[i] = c.Stop() })
	}
	wg.Wait()
	return out
}

func (cs clients) watchesFire(t *testing.T, d time.Duration) {
	t.Helper()
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() { errs[i] = c.WatchesFire(ctxFor(t, d)) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// window sums reports taken at the end of a window minus those at its
// start; pauses come from SessionMaxOp (reset at the window's start).
type window struct {
	name                             string
	sessions                         int
	acked, uncertain                 int
	disconnects, expired, watchEvent int64
	errors                           []string
	pauses                           workload.Pauses
	reports                          []workload.Report
}

func since(name string, end, base []workload.Report) window {
	w := window{name: name}
	for i := range end {
		d := end[i].Since(base[i])
		w.reports = append(w.reports, d)
		w.sessions += len(d.Sessions)
		w.acked += d.AckedWrites - base[i].AckedWrites
		w.uncertain += d.Uncertain
		w.disconnects += d.Disconnects
		w.expired += d.Expired
		w.watchEvent += d.WatchEvents
		w.errors = append(w.errors, d.Errors...)
	}
	w.pauses = workload.PausesOf(w.reports...)
	return w
}

func (w window) String() string {
	return fmt.Sprintf("%s: %s; acked writes %d, uncertain %d, disconnects %d, expired %d, watch events %d, errors %d",
		w.name, w.pauses, w.acked, w.uncertain, w.disconnects, w.expired, w.watchEvent, len(w.errors))
}

// verifyAll reads every client's writes back from addr and fails on any
// loss, unexplained duplicate, reordering or changed ephemeral owner.
func verifyAll(t *testing.T, cs clients, addr string) workload.Verification {
	t.Helper()
	var total workload.Verification
	total.OwnersIntact = true
	ctx := ctxFor(t, 2*time.Minute)
	for i, c := range cs {
		v, err := c.Verify(ctx, addr)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		if !v.OK() {
			t.Errorf("client %d: %s: %v", i, v, v.Problems)
		}
		if _, ok := c.(*workload.Workload); ok && v.Consumed == 0 {
			t.Errorf("client %d: its consumer read nothing: %s", i, v)
		}
		total.Acked += v.Acked
		total.Found += v.Found
		total.Lost += v.Lost
		total.Duplicates += v.Duplicates
		total.UnexplainedDuplicates += v.UnexplainedDuplicates
		total.OutOfOrder += v.OutOfOrder
		total.Unexpected += v.Unexpected
		total.Consumed += v.Consumed
		total.Phantom += v.Phantom
		total.ConsumerGaps += v.ConsumerGaps
		total.OwnersIntact = total.OwnersIntact && v.OwnersIntact
	}
	return total
}
