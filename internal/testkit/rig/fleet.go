package rig

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/cutover/proxyadapter"
	"github.com/zkproxy/zkproxy/fleet"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/proxy"
)

// joinFleet opens p's fleet membership and bootstraps p's data directory
// from the fleet state, before the controller loads it (as cmd/zkproxy
// does). The fleet's connections leave from p's own loopback address, so a
// test can cut one replica off from ZooKeeper with iptables.
func (r *Rig) joinFleet(p *Proxy, o Options, srv *proxy.Server, log *slog.Logger) {
	t := r.T
	t.Helper()
	host, _, _ := net.SplitHostPort(p.Addr)
	p.fleetDial = &severableDial{local: host}
	adapter := proxyadapter.New(srv, r.Dest)
	f, err := fleet.Open(fleet.Config{
		Name: o.Fleet, ReplicaID: p.Name, AdminURL: "http://" + p.Addr, Version: "test",
		Store:      fleet.StoreConfig{Path: "/zkproxy/" + o.Fleet, Source: r.Source, Destination: r.Dest, Dial: p.fleetDial.dial},
		StaleAfter: o.FleetStaleAfter,
		Sessions: func() fleet.SessionCounts {
			var c fleet.SessionCounts
			for _, s := range adapter.Sessions() {
				if s.View().Ensemble == cutover.Destination {
					c.Destination++
				} else {
					c.Source++
				}
			}
			return c
		},
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := f.Bootstrap(ctx, cutover.Store{Dir: p.Dir}); err != nil {
		f.Close()
		t.Fatalf("%s: fleet bootstrap: %v", p.Name, err)
	}
	p.Fleet = f
}

// Kill stops p the way kill -9 does: the fleet's connections are cut
// before its ZooKeeper sessions could be closed (its member znode lives
// until its session expires, its registration stays), and every client
// connection drops without a goodbye.
func (p *Proxy) Kill(t interface{ Errorf(string, ...any) }) {
	p.shutdown(t, func(f *fleet.Fleet) {
		p.fleetDial.sever()
		f.Abandon()
	})
}

// severableDial dials from a fixed local address and can cut every
// connection it made, for good.
type severableDial struct {
	local string
	mu    sync.Mutex
	conns []net.Conn
	cut   bool
}

func (d *severableDial) dial(network, address string, timeout time.Duration) (net.Conn, error) {
	d.mu.Lock()
	cut := d.cut
	d.mu.Unlock()
	if cut {
		return nil, errors.New("rig: replica killed")
	}
	nd := net.Dialer{Timeout: timeout}
	if d.local != "" {
		nd.LocalAddr = &net.TCPAddr{IP: net.ParseIP(d.local)}
	}
	c, err := nd.Dial(network, address)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cut {
		c.Close()
		return nil, errors.New("rig: replica killed")
	}
	d.conns = append(d.conns, c)
	return c, nil
}

func (d *severableDial) sever() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cut = true
	for _, c := range d.conns {
		c.Close()
	}
	d.conns = nil
}

// WaitFleet polls p's fleet view until ok holds.
func WaitFleet(ctx context.Context, p *Proxy, what string, ok func(fleet.View) bool) (fleet.View, error) {
	for {
		v := p.Fleet.Status(ctx)
		if ok(v) {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return v, errors.New("waiting for " + what + ": " + context.Cause(ctx).Error())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitFleetDone waits until every running replica finished its move to
// want locally and the fleet state says so too.
func (r *Rig) WaitFleetDone(ctx context.Context, want cutover.Phase) {
	t := r.T
	t.Helper()
	for _, p := range r.Proxies {
		if p.Srv == nil {
			continue
		}
		for st := p.Ctl.Status(); st.Phase != want; st = p.Ctl.Status() {
			if ctx.Err() != nil {
				t.Fatalf("%s: phase %s, want %s (%s)", p.Name, st.Phase, want, Explain(st))
			}
			time.Sleep(50 * time.Millisecond)
		}
		WaitPhase(t, p, want)
	}
	for _, p := range r.Proxies {
		if p.Srv == nil {
			continue
		}
		if _, err := WaitFleet(ctx, p, "fleet phase "+want.String(), func(v fleet.View) bool { return v.State.Phase == want }); err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
	}
}

// SplitBehindBarrierFleet is SplitBehindBarrier for a fleet: the operator
// raises the barrier and records the split on one replica (via) only; the
// others follow the fleet state.
func (r *Rig) SplitBehindBarrierFleet(ctx context.Context, via *Proxy, stage func(string, func())) {
	t := r.T
	t.Helper()
	stage("split: barrier up on every replica", func() {
		plan, err := via.Fleet.PrepareSplit(ctx, false)
		// The fleet's own ZooKeeper sessions are not clients left out of
		// the proxy: a refusal naming their znodes is a bug.
		if errors.Is(err, cutover.ErrLeaderOnDestination) && plan != nil && plan.SplitPlan != nil {
			for _, w := range plan.Warnings {
				if strings.Contains(w, "/zkproxy/") {
					t.Fatalf("%s: the fleet's own sessions counted as direct clients: %s", via.Name, w)
				}
			}
		}
		// A destination leader costs only the source's own clients an
		// election; a vanished replica is one the test killed.
		if errors.Is(err, cutover.ErrLeaderOnDestination) || errors.Is(err, fleet.ErrReplicasNotReady) && strings.Contains(err.Error(), "vanished") {
			t.Logf("%s: %v; going on with force", via.Name, err)
			plan, err = via.Fleet.PrepareSplit(ctx, true)
		}
		if err != nil {
			t.Fatalf("%s: fleet prepare split: %v (%+v)", via.Name, err, plan)
		}
		if !plan.AllHold {
			t.Fatalf("%s: not every replica holds: %+v", via.Name, plan.Replicas)
		}
		for _, p := range r.Proxies {
			if p.Srv == nil {
				continue
			}
			if bs := p.Ctl.Status().Barrier; !bs.Up || bs.NotHeld != 0 {
				t.Fatalf("%s: barrier %+v", p.Name, bs)
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
			if p.Srv == nil {
				continue
			}
			deadline := time.Now().Add(30 * time.Second)
			for st := p.Ctl.Status(); st.Barrier.Up && st.Barrier.Held > 0 && time.Now().Before(deadline); st = p.Ctl.Status() {
				time.Sleep(50 * time.Millisecond)
			}
			if bs := p.Ctl.Status().Barrier; bs.Held != 0 || bs.LastEnd == "max hold time reached" {
				t.Fatalf("%s: sessions were not released by their re-attach: %+v", p.Name, bs)
			}
		}
	})
	stage("split: recorded", func() {
		if err := via.Fleet.RecordSplit(ctx, 0); err != nil {
			t.Fatalf("%s: %v", via.Name, err)
		}
		for _, p := range r.Proxies {
			if p.Srv == nil {
				continue
			}
			for !p.Ctl.Status().Split {
				if ctx.Err() != nil {
					t.Fatalf("%s: split never applied: %s", p.Name, Explain(p.Ctl.Status()))
				}
				time.Sleep(50 * time.Millisecond)
			}
			bs := p.Ctl.Status().Barrier
			t.Logf("%s: barrier released %d sessions (%s); longest hold %s", p.Name, bs.Released, bs.LastEnd, bs.LongestHold.Round(time.Millisecond))
		}
	})
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

// AddProxy starts one more replica (a brand-new one: its own address, an
// empty data directory) and adds it to the rig.
func (r *Rig) AddProxy(name string) *Proxy {
	t := r.T
	t.Helper()
	p := &Proxy{Name: name, Addr: net.JoinHostPort(zktest.LoopbackIP(t), "2181"), Dir: t.TempDir()}
	r.Start(p, r.Opts)
	r.Proxies = append(r.Proxies, p)
	return p
}
