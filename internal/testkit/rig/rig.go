// Package rig is the integration tests' stage: a real mitosis
// (internal/testkit/zktest) with one or more zkproxy instances — proxy server plus
// cutover controller, restartable on the same address and data directory —
// in front of it, and the steps the runbook takes (sync check, cutover,
// split behind the barrier). cutover's and e2e's tests share it.
package rig

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/cutover/proxyadapter"
	"github.com/zkproxy/zkproxy/fleet"
	"github.com/zkproxy/zkproxy/internal/fourlw"
	"github.com/zkproxy/zkproxy/internal/membertls"
	"github.com/zkproxy/zkproxy/internal/testkit/kafkaload"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/internal/zksession"
	"github.com/zkproxy/zkproxy/proxy"
)

// Rig is a mitosis under way with one or more zkproxy instances in front.
type Rig struct {
	T       *testing.T
	M       *zktest.Mitosis
	Source  []string
	Dest    []string
	Proxies []*Proxy
	Opts    Options
	// MemberTLS is how the proxies reach the members over TLS (nil: none).
	MemberTLS *membertls.Policy
}

// Options tune the zkproxy instances of a rig.
type Options struct {
	Proxies         int
	MoveConcurrency int
	MoveTimeout     time.Duration
	// BarrierMaxHold bounds the split barrier; zero means 15s: under
	// Kafka's 18s session timeout, and room for the destination restart on
	// a loaded 2-core machine (the 10s default was reached once when the
	// restart alone took 7s).
	BarrierMaxHold time.Duration
	// Quiet logs only errors: rigs with many sessions would drown the
	// test log in per-session INFO lines.
	Quiet bool
	// Dial, when set, opens every upstream connection of every proxy (to
	// inject delay or faults); nil dials TCP.
	Dial func(ctx context.Context, localAddr, member string) (net.Conn, error)
	// DestinationTLS gives every server a TLS port (zktest.WithSecureClientPort)
	// and makes the proxies reach the destination only there, with a client
	// certificate: a cutover from a plain ensemble to a TLS-only one.
	DestinationTLS bool
	// ServerOptions apply to every ZooKeeper server of the mitosis (JAAS
	// for SASL, say).
	ServerOptions []zktest.Option
	// Fleet, when set, makes the proxies replicas of one fleet of that
	// name: they share the cutover state in ZooKeeper (fleet.go).
	Fleet string
	// FleetStaleAfter is the replicas' fleet-stale-after; zero means 10s.
	FleetStaleAfter time.Duration
}

// SplitBehindBarrier runs Yelp's split the way the runbook does with
// zkproxy: raise every proxy's barrier (PrepareSplit; forced when the joint
// leader is a destination member, which only costs the source's own,
// non-proxied clients an election), firewall, destination restart, wait
// until every held session re-attached and was released, record the split,
// source restart, firewall removed. stage times each step.
func (r *Rig) SplitBehindBarrier(ctx context.Context, stage func(string, func())) {
	t := r.T
	t.Helper()
	stage("split: barrier up", func() {
		for _, p := range r.Proxies {
			plan, err := p.Ctl.PrepareSplit(ctx, false)
			if errors.Is(err, cutover.ErrLeaderOnDestination) {
				t.Logf("%s: %v; going on with force", p.Name, err)
				plan, err = p.Ctl.PrepareSplit(ctx, true)
			}
			if err != nil {
				t.Fatalf("%s: prepare split: %v (%+v)", p.Name, err, plan)
			}
			if !plan.Barrier.Up || plan.Barrier.NotHeld != 0 {
				t.Fatalf("%s: barrier %+v", p.Name, plan.Barrier)
			}
		}
	})
	stage("split: firewall", func() {
		if err := r.M.Firewall(ctx); err != nil {
			t.Fatal(err)
		}
	})
	stage("split: destination restart", func() {
		if _, err := r.M.RestartDestination(ctx); err != nil {
			t.Fatal(err)
		}
	})
	stage("split: sessions re-attached", func() {
		for _, p := range r.Proxies {
			deadline := time.Now().Add(30 * time.Second)
			for st := p.Ctl.Status(); st.Barrier.Up && st.Barrier.Held > 0 && time.Now().Before(deadline); st = p.Ctl.Status() {
				time.Sleep(50 * time.Millisecond)
			}
			if bs := p.Ctl.Status().Barrier; bs.Held != 0 || bs.LastEnd == "max hold time reached" {
				t.Fatalf("%s: sessions were not released by their re-attach: %+v", p.Name, bs)
			}
		}
	})
	for _, p := range r.Proxies {
		if err := p.Ctl.RecordSplit(); err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		bs := p.Ctl.Status().Barrier
		t.Logf("%s: barrier released %d sessions (%s); longest hold %s", p.Name, bs.Released, bs.LastEnd, bs.LongestHold.Round(time.Millisecond))
	}
	stage("split: source restart", func() {
		if _, err := r.M.RestartSource(ctx); err != nil {
			t.Fatal(err)
		}
	})
	stage("split: firewall removed", func() {
		if err := r.M.RemoveFirewall(); err != nil {
			t.Fatal(err)
		}
	})
}

// Proxy is one proxy + cutover controller, restartable on the same
// address and data directory.
type Proxy struct {
	Name string
	Addr string
	Dir  string
	Srv  *proxy.Server
	Ctl  *cutover.Controller
	done chan error
	Reg  *prometheus.Registry
	// Fleet is the replica's fleet membership (Options.Fleet).
	Fleet     *fleet.Fleet
	fleetDial *severableDial
}

// Addrs lists the members' client addresses.
func Addrs(e *zktest.Ensemble) []string {
	var out []string
	for _, s := range e.Members {
		out = append(out, s.ClientAddr())
	}
	return out
}

// New starts the source ensemble and o.Proxies zkproxy instances in front
// of it; everything stops in t.Cleanup.
func New(t *testing.T, o Options) *Rig {
	t.Helper()
	if o.Proxies == 0 {
		o.Proxies = 1
	}
	if o.BarrierMaxHold == 0 {
		o.BarrierMaxHold = 15 * time.Second
	}
	var ca *zktest.CA
	zkOpts := slices.Clone(o.ServerOptions)
	if o.DestinationTLS {
		ca = zktest.NewCA(t)
		zkOpts = append(zkOpts, zktest.WithSecureClientPort(ca))
	}
	m := zktest.NewMitosis(t, zkOpts...)
	r := &Rig{T: t, M: m, Source: Addrs(m.Source), Dest: Addrs(m.Destination)}
	if ca != nil {
		r.Dest = nil
		for _, s := range m.Destination.Members {
			r.Dest = append(r.Dest, s.SecureClientAddr())
		}
		cert := ca.KeyPair(t, "zkproxy", "127.0.0.1")
		r.MemberTLS = &membertls.Policy{}
		r.MemberTLS.Add(r.Dest, &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	for i := range o.Proxies {
		p := &Proxy{Name: fmt.Sprintf("zkproxy-%d", i), Addr: net.JoinHostPort(zktest.LoopbackIP(t), "2181"), Dir: t.TempDir()}
		r.Start(p, o)
		r.Proxies = append(r.Proxies, p)
	}
	r.Opts = o
	t.Cleanup(func() {
		for _, p := range r.Proxies {
			p.Stop(t)
		}
	})
	return r
}

// Start starts p's proxy and controller on p.Addr and p.Dir (again, after a
// stop: the controller restores the persisted phase).
func (r *Rig) Start(p *Proxy, o Options) {
	t := r.T
	t.Helper()
	level := slog.LevelInfo
	if o.Quiet {
		level = slog.LevelError
	}
	log := slog.New(slog.NewTextHandler(testWriter{t, p.Name}, &slog.HandlerOptions{Level: level}))
	p.Reg = prometheus.NewRegistry()
	srv, err := proxy.New(proxy.Config{Source: r.Source, Destination: r.Dest, Dial: o.Dial, MemberTLS: r.MemberTLS}, log, p.Reg)
	if err != nil {
		t.Fatal(err)
	}
	var members cutover.Members
	var nudge func(context.Context, string) (int64, error)
	if r.MemberTLS != nil { // as cmd/zkproxy wires it
		members = fourlw.Members{Dial: r.MemberTLS.DialContext}
		nudge = func(ctx context.Context, addr string) (int64, error) {
			return zksession.OpenClose(ctx, r.MemberTLS.DialContext, addr)
		}
	}
	var ignore func(context.Context) []int64
	if o.Fleet != "" {
		r.joinFleet(p, o, srv, log)
		ignore = p.Fleet.IgnoredSessions
	}
	ctl, err := cutover.NewController(cutover.Config{
		Source: r.Source, Destination: r.Dest, MaxLag: 1000,
		MoveConcurrency: o.MoveConcurrency, MoveTimeout: o.MoveTimeout, BarrierMaxHold: o.BarrierMaxHold,
		Store: cutover.Store{Dir: p.Dir}, Members: members, PeerSessions: r.peerSessions(p, o),
		IgnoreSessions: ignore, Nudge: nudge,
	}, proxyadapter.New(srv, r.Dest), log, p.Reg)
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	// The old listener's port may linger for a moment after a restart.
	for i := 0; ; i++ {
		if ln, err = net.Listen("tcp", p.Addr); err == nil || i == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if p.Fleet != nil {
		p.Fleet.Run(ctl)
	}
	p.done = make(chan error, 1)
	go func() { p.done <- srv.Serve(ln) }()
	p.Srv, p.Ctl = srv, ctl
}

// peerSessions lists the sessions of the rig's other proxies, as `peers`
// (their admin URLs) makes cmd/zkproxy ask them; nil with one proxy.
func (r *Rig) peerSessions(p *Proxy, o Options) func(context.Context) ([]int64, []string) {
	if o.Proxies < 2 {
		return nil
	}
	return func(context.Context) ([]int64, []string) {
		var ids []int64
		var problems []string
		for _, q := range r.Proxies {
			if q == p {
				continue
			}
			if q.Srv == nil {
				problems = append(problems, "peer "+q.Name+": stopped")
				continue
			}
			for _, s := range q.Srv.Sessions() {
				ids = append(ids, int64(s.ID()))
			}
		}
		return ids, problems
	}
}

// Stop closes p's controller and proxy (every client connection drops).
func (p *Proxy) Stop(t *testing.T) { p.shutdown(t, (*fleet.Fleet).Close) }

// shutdown leaves the fleet (if any) with leave, then closes p's controller
// and proxy.
func (p *Proxy) shutdown(t interface{ Errorf(string, ...any) }, leave func(*fleet.Fleet)) {
	if p.Srv == nil {
		return
	}
	if p.Fleet != nil {
		leave(p.Fleet)
		p.Fleet = nil
	}
	p.Ctl.Close()
	p.Srv.Close()
	if err := <-p.done; !errors.Is(err, proxy.ErrServerClosed) {
		t.Errorf("%s Serve: %v", p.Name, err)
	}
	p.Srv, p.Ctl = nil, nil
}

type testWriter struct {
	t    *testing.T
	name string
}

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(w.name + ": " + strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// CtxFor is a context that ends after d or with the test.
func CtxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// WaitReady runs every controller's sync check until it passes: under load
// the destination may trail the leader for a moment after the join.
func (r *Rig) WaitReady() {
	t := r.T
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for _, p := range r.Proxies {
		for {
			// Each check gets its own context: a check run with the
			// deadline already passed finds every member unreachable and
			// would hide why the sync was never confirmed.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			rep := p.Ctl.Check(ctx)
			cancel()
			if rep.Ready {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: sync never confirmed: %s", p.Name, rep.Reason())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// StartCutover starts the cutover on every proxy.
func (r *Rig) StartCutover(ctx context.Context) {
	r.T.Helper()
	for _, p := range r.Proxies {
		if _, err := p.Ctl.Start(ctx, false); err != nil {
			r.T.Fatalf("%s: %v", p.Name, err)
		}
	}
}

// WaitPhase waits for p's move loop to end and checks the phase.
func WaitPhase(t *testing.T, p *Proxy, want cutover.Phase) cutover.Status {
	t.Helper()
	if err := p.Ctl.Wait(CtxFor(t, 90*time.Second)); err != nil {
		t.Fatalf("%s: cutover did not finish: %v (%s)", p.Name, err, Explain(p.Ctl.Status()))
	}
	st := p.Ctl.Status()
	if st.Phase != want {
		t.Fatalf("%s: phase %s, want %s (%s)", p.Name, st.Phase, want, Explain(st))
	}
	return st
}

// Explain renders a Status as `zkproxy cutover status` explains it.
func Explain(st cutover.Status) string {
	return fmt.Sprintf("phase %s, split %t, target %s, sessions total %d moved %d failed %d pending %d, reasons %v",
		st.Phase, st.Split, st.Target, st.Sessions.Total, st.Sessions.Moved, st.Sessions.Failed, st.Sessions.Pending, st.Reasons)
}

var consSession = regexp.MustCompile(`sid=0x([0-9a-f]+)`)

// SessionsOn lists the session ids connected to the running servers, from
// cons.
func SessionsOn(t *testing.T, servers []*zktest.Server) map[int64]string {
	t.Helper()
	return sessionsFromCons(t, servers, func(i int, s *zktest.Server) (string, error) { return s.FourLetter("cons") })
}

// sessionsFromCons asks each running server cons through ask and maps the
// session ids listed to the server.
func sessionsFromCons(t *testing.T, servers []*zktest.Server, ask func(i int, s *zktest.Server) (string, error)) map[int64]string {
	t.Helper()
	out := map[int64]string{}
	for i, s := range servers {
		if !s.Running() {
			continue
		}
		ans, err := ask(i, s)
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

// DestinationSessions lists the session ids connected to the running
// destination members where the proxies reach them: with DestinationTLS,
// cons asked on the TLS port, since a server's cons lists the connections
// of the port it is asked on (ConsCommand: factory.getConnections()).
func (r *Rig) DestinationSessions(ctx context.Context) map[int64]string {
	t := r.T
	t.Helper()
	if r.MemberTLS == nil {
		return SessionsOn(t, r.M.Destination.Members)
	}
	return sessionsFromCons(t, r.M.Destination.Members, func(i int, _ *zktest.Server) (string, error) {
		return fourlw.Query(ctx, r.MemberTLS.DialContext, r.Dest[i], "cons")
	})
}

// WaitOnDestination waits until every session of reports is connected to a
// destination member (the servers' own view, cons).
func (r *Rig) WaitOnDestination(d time.Duration, reports ...kafkaload.Report) {
	r.T.Helper()
	r.waitOn("a destination member", r.M.Destination.Members, d, reports)
}

// WaitOnSource waits until every session of reports is connected to a
// source member. After the join's leader re-election, a client with a
// request in flight reconnects after its own back-off; a cutover started
// before it is back would count it as a new connection to the destination.
func (r *Rig) WaitOnSource(d time.Duration, reports ...kafkaload.Report) {
	r.T.Helper()
	r.waitOn("a source member", r.M.Source.Members, d, reports)
}

func (r *Rig) waitOn(what string, servers []*zktest.Server, d time.Duration, reports []kafkaload.Report) {
	t := r.T
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		on := SessionsOn(t, servers)
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
			t.Fatalf("%d sessions not on %s: %v", len(missing), what, missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// StartGo starts a Go workload, closed in t.Cleanup.
func StartGo(t *testing.T, ctx context.Context, cfg kafkaload.Config) *kafkaload.Workload {
	t.Helper()
	w, err := kafkaload.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}
