package upgrade

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// TestUpgradeBench (make bench-upgrade; ZKPROXY_BENCH_UPGRADE=1) measures
// an upgrade with many go-zookeeper sessions: how long it takes (trigger to
// the old process gone) and each session's longest pause, seen from the
// client: every session sends a request every ZKPROXY_BENCH_UPGRADE_INTERVAL
// (default 200ms) and its longest request during the upgrade is its pause.
// A session whose hold fell between two of its requests shows less than
// its hold, so the numbers are a lower bound by up to one interval.
// ZKPROXY_BENCH_UPGRADE_SESSIONS lists the session counts (default
// 1000,5000). It reports numbers; it asserts only that no session
// disconnected.
func TestUpgradeBench(t *testing.T) {
	if os.Getenv("ZKPROXY_BENCH_UPGRADE") == "" {
		t.Skip("set ZKPROXY_BENCH_UPGRADE=1 (make bench-upgrade)")
	}
	zktest.RequireIntegration(t)
	counts := sessionCounts(t, "ZKPROXY_BENCH_UPGRADE_SESSIONS", 1000, 5000)
	interval := 200 * time.Millisecond
	if v := os.Getenv("ZKPROXY_BENCH_UPGRADE_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		interval = d
	}
	binA, binB := build(t, "bench-a"), build(t, "bench-b")
	ens := zktest.NewEnsemble(t, 3)
	mem := members(ens)
	var report []string
	for _, n := range counts {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			line := benchUpgrade(t, binA, binB, mem, n, interval)
			report = append(report, line)
		})
	}
	for _, l := range report {
		t.Log(l)
	}
}

func benchUpgrade(t *testing.T, binA, binB string, mem []string, n int, interval time.Duration) string {
	p := startServe(t, binA, mem, nil, strings.Fields(os.Getenv("ZKPROXY_BENCH_UPGRADE_ARGS"))...)
	var disconnects atomic.Int64
	conns := connectSessions(t, p.Addr, n, &disconnects)
	t.Logf("%d sessions connected", n)

	// Pingers: each session's longest request while measuring.
	var measuring atomic.Bool
	longest := make([]atomic.Int64, n)
	stop := make(chan struct{})
	var pw sync.WaitGroup
	for i, c := range conns {
		pw.Add(1)
		go func() {
			defer pw.Done()
			// Spread the sessions' requests over the interval.
			time.Sleep(time.Duration(i) * interval / time.Duration(n))
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				start := time.Now()
				if _, _, err := c.Exists("/"); err != nil {
					continue
				}
				if d := time.Since(start); measuring.Load() && int64(d) > longest[i].Load() {
					longest[i].Store(int64(d))
				}
			}
		}()
	}
	time.Sleep(2 * interval)
	measuring.Store(true)
	p.installBinary(binB)
	start := time.Now()
	p.upgrade(bySignal, 5*time.Minute)
	took := time.Since(start)
	handed := 0
	for _, l := range p.logLines("upgrade complete") {
		t.Log(l)
		if _, rest, ok := strings.Cut(l, "handed_over="); ok {
			handed, _ = strconv.Atoi(strings.Fields(rest)[0])
		}
	}
	for _, l := range p.logLines("handoff batch") {
		t.Log(l)
	}
	time.Sleep(2 * interval) // requests issued during the upgrade come back
	measuring.Store(false)
	close(stop)
	pw.Wait()

	pauses := make([]time.Duration, n)
	for i := range longest {
		pauses[i] = time.Duration(longest[i].Load())
	}
	p50, p99, worst := pauseQuantiles(pauses)
	line := fmt.Sprintf("%d sessions: upgrade took %s (handed over %d); longest pause per session p50 %s, p99 %s, max %s; disconnects %d",
		n, took.Round(time.Millisecond), handed, p50, p99, worst, disconnects.Load())
	t.Log(line)
	if d := disconnects.Load(); d != 0 {
		t.Errorf("%d disconnects", d)
	}
	return line
}

// sessionCounts reads a comma-separated list of session counts from the
// environment variable env, or returns def.
func sessionCounts(t *testing.T, env string, def ...int) []int {
	v := os.Getenv(env)
	if v == "" {
		return def
	}
	var counts []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			t.Fatalf("%s: %v", env, err)
		}
		counts = append(counts, n)
	}
	return counts
}

// connectSessions opens n go-zookeeper sessions (30 s timeout) through
// addr, 32 at a time, and waits until each has its session; every
// disconnect any of them sees later counts in disconnects. They are closed
// when the test ends.
func connectSessions(t *testing.T, addr string, n int, disconnects *atomic.Int64) []*zk.Conn {
	t.Helper()
	conns := make([]*zk.Conn, n)
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, _, err := zk.Connect([]string{addr}, 30*time.Second, zk.WithLogInfo(false), zk.WithLogger(quietLogger{}),
				zk.WithEventCallback(func(ev zk.Event) {
					if ev.Type == zk.EventSession && ev.State == zk.StateDisconnected {
						disconnects.Add(1)
					}
				}))
			if err != nil {
				t.Error(err)
				return
			}
			for c.State() != zk.StateHasSession {
				time.Sleep(10 * time.Millisecond)
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	return conns
}

// pauseQuantiles sorts ds and returns its p50, p99 and maximum, rounded to
// the millisecond.
func pauseQuantiles(ds []time.Duration) (p50, p99, worst time.Duration) {
	slices.Sort(ds)
	q := func(f float64) time.Duration {
		return ds[min(len(ds)-1, int(f*float64(len(ds))))].Round(time.Millisecond)
	}
	return q(0.5), q(0.99), ds[len(ds)-1].Round(time.Millisecond)
}

type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}
