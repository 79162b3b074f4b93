package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/internal/testkit/kafkaload"
	"github.com/zkproxy/zkproxy/internal/testkit/rig"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// stressConfig is the size of a stress run: short in CI, long ("soak") when
// ZKPROXY_SOAK_DURATION and ZKPROXY_SOAK_CLIENTS are set.
type stressConfig struct {
	// clients is the number of workload clients; every fourth is a Java
	// process (3 brokers + 2 writers), the others Go (2 brokers, 2
	// producers, 1 consumer following a producer with child watches).
	clients int
	// dwell is how long the load runs between stages (before the join,
	// after it, after the cutover, after the split).
	dwell         time.Duration
	writeInterval time.Duration
}

func stressFromEnv(t *testing.T) stressConfig {
	c := stressConfig{clients: 8, dwell: 2 * time.Second, writeInterval: 50 * time.Millisecond}
	d, n := os.Getenv("ZKPROXY_SOAK_DURATION"), os.Getenv("ZKPROXY_SOAK_CLIENTS")
	if d == "" && n == "" {
		return c
	}
	if d != "" {
		total, err := time.ParseDuration(d)
		if err != nil || total <= 0 {
			t.Fatalf("ZKPROXY_SOAK_DURATION=%q: want a positive duration like 10m", d)
		}
		c.dwell = total / 4
	}
	if n != "" {
		clients, err := strconv.Atoi(n)
		if err != nil || clients < 1 || clients > 200 {
			t.Fatalf("ZKPROXY_SOAK_CLIENTS=%q: want 1..200", n)
		}
		c.clients = clients
	}
	return c
}

// TestStress is the Yelp-style distributed stress test on one machine:
// tens of Go and Java sessions through zkproxy produce serial-numbered
// payloads, and Go consumers read them as they appear, while the whole
// mitosis runs (join, sync check, cutover, split behind zkproxy's barrier);
// afterwards every payload
// is read back from the formerly dormant destination node and checked for
// loss, duplication and order, and every consumed payload for still being
// there.
func TestStress(t *testing.T) { runStress(t, 1) }

// TestStressTwoProxies is TestStress with two zkproxy instances in front of
// the same ensembles, clients spread over both, each cutting over its own.
func TestStressTwoProxies(t *testing.T) { runStress(t, 2) }

func runStress(t *testing.T, proxies int) {
	cfg := stressFromEnv(t)
	r := rig.New(t, rig.Options{Proxies: proxies, Quiet: true})
	ctx := rig.CtxFor(t, 10*time.Minute+8*cfg.dwell)
	var prog *zktest.Java
	var cs clients
	javaClients := 0
	for i := range cfg.clients {
		addr := r.Proxies[i%proxies].Addr
		if i%4 == 0 {
			if prog == nil {
				prog = zktest.JavaProgram(t, kafkaload.JavaWorkloadSource)
			}
			cs = append(cs, startJava(t, ctx, prog, kafkaload.JavaConfig{
				Connect: fmt.Sprintf("%s/stress/j%d", addr, i), Brokers: 3, Writers: 2,
				WriteInterval: cfg.writeInterval, Prefix: fmt.Sprintf("j%d-", i),
			}))
			javaClients++
			continue
		}
		cs = append(cs, rig.StartGo(t, ctx, kafkaload.Config{
			Addr: addr, Root: fmt.Sprintf("/stress/g%d", i), Brokers: 2, Writers: 2, Consumers: 1, WriteInterval: cfg.writeInterval,
		}))
	}
	sessions := 0
	for _, rep := range cs.snapshot() {
		sessions += len(rep.Sessions)
	}
	t.Logf("stress: %d proxies, %d clients (%d Java), %d sessions, dwell %s, write interval %s",
		proxies, len(cs), javaClients, sessions, cfg.dwell, cfg.writeInterval)

	var stages []string
	stage := func(name string, f func()) {
		start := time.Now()
		f()
		stages = append(stages, fmt.Sprintf("%s %s", name, time.Since(start).Round(time.Millisecond)))
	}
	stage("load", func() { time.Sleep(cfg.dwell) })
	stage("join", func() {
		if _, err := r.M.Join(ctx); err != nil {
			t.Fatal(err)
		}
	})
	stage("load", func() { time.Sleep(cfg.dwell) })
	stage("sync check", r.WaitReady)

	// The join's rolling restart drops clients with a request in flight
	// (ConnectionLoss is correct there): measure the cutover from here.
	cs.resetLatency()
	base := cs.snapshot()
	stage("cutover", func() {
		r.StartCutover(ctx)
		for _, p := range r.Proxies {
			st := rig.WaitPhase(t, p, cutover.PhaseDestination)
			t.Logf("%s: %s", p.Name, rig.Explain(st))
			if st.Sessions.Failed != 0 || st.Sessions.Moved != st.Sessions.Total {
				t.Fatalf("%s: not every session moved live: %s", p.Name, rig.Explain(st))
			}
		}
	})
	stage("load", func() { time.Sleep(cfg.dwell) })
	r.WaitOnDestination(20*time.Second, cs.snapshot()...)
	cutoverEnd := cs.snapshot()
	cw := since("cutover", cutoverEnd, base)
	t.Logf("%s", cw)
	if cw.disconnects != 0 || cw.expired != 0 || len(cw.errors) != 0 {
		t.Fatalf("clients noticed the cutover: %s %v", cw, cw.errors)
	}

	// The split behind zkproxy's barrier, as the runbook does it: the
	// destination is unavailable from the firewall until its new leader
	// serves; clients only wait.
	cs.resetLatency()
	splitBase := cs.snapshot()
	r.SplitBehindBarrier(ctx, stage)
	stage("load", func() { time.Sleep(cfg.dwell) })
	stage("watches fire", func() { cs.watchesFire(t, 60*time.Second) })
	final := cs.stop()
	sw := since("split behind the barrier", final, splitBase)
	t.Logf("%s; destination unavailable %s", sw, r.M.Timeline().DestinationUnavailable().Round(time.Millisecond))
	whole := since("whole run", final, make([]kafkaload.Report, len(final)))
	t.Logf("stage times: %s", strings.Join(stages, ", "))
	if sw.disconnects != 0 || sw.expired != 0 || len(sw.errors) != 0 {
		t.Fatalf("clients noticed the split: %s %v", sw, sw.errors)
	}
	for _, p := range r.Proxies {
		if st := p.Ctl.Status(); st.Phase != cutover.PhaseDestination || !st.Split {
			t.Fatalf("%s: %s", p.Name, rig.Explain(st))
		}
	}
	r.WaitOnDestination(30*time.Second, final...)
	v := verifyAll(t, cs, r.M.Dormant().ClientAddr())
	t.Logf("read back from the formerly dormant destination node: %s (%d acked in the whole run, %d uncertain)",
		v, whole.acked, whole.uncertain)
}
