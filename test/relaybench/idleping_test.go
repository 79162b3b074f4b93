package relaybench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/internal/testkit/benchload"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// TestIdlePingCost measures the relay's CPU per relayed ping of idle
// sessions (issue 21): ZKPROXY_BENCH_IDLE go-zookeeper sessions (default
// 3,000) are opened through one target, left to settle (so zkproxy's pumps
// have parked), and the relay's CPU time over ZKPROXY_BENCH_DURATION
// (default 20 s) is divided by the packets ZooKeeper received meanwhile
// (mntr zk_packets_received: nothing but pings flows). Targets alternate in
// a random order per repetition (ZKPROXY_BENCH_REPS, default 3). With
// ZKPROXY_BENCH_PROFILE set, zkproxy's CPU profile of each window is saved
// there. Runs only with ZKPROXY_BENCH_IDLEPING=1.
func TestIdlePingCost(t *testing.T) {
	if os.Getenv("ZKPROXY_BENCH_IDLEPING") == "" {
		t.Skip("measurement: run with ZKPROXY_BENCH_IDLEPING=1")
	}
	zktest.RequireIntegration(t)
	reps := envInt("ZKPROXY_BENCH_REPS", 3)
	dur := envDuration("ZKPROXY_BENCH_DURATION", 20*time.Second)
	idle := envInt("ZKPROXY_BENCH_IDLE", 3000)
	// The session timeout asked for; ZooKeeper caps it at 20 ticks (4 s
	// with zktest's 200 ms tick) unless the tick is raised here.
	tick := envInt("ZKPROXY_BENCH_TICK_MS", 500)

	zk := zktest.Standalone(t, zktest.WithConfig("maxClientCnxns=0"), zktest.WithHeapMB(512),
		zktest.WithTickTime(tick))
	ip := zktest.LoopbackIP(t)
	want := os.Getenv("ZKPROXY_BENCH_TARGETS")
	on := func(name string) bool { return want == "" || strings.Contains(","+want+",", ","+name+",") }
	var targets []target
	if on("haproxy") {
		targets = append(targets, startHAProxy(t, ip+":12181", zk.ClientAddr()))
	}
	if on("zkproxy") {
		targets = append(targets, startZkproxy(t, ip+":22181", ip+":22182", zk.ClientAddr()))
	}
	// The instruments, only when named: gorelay is what a goroutine-per-
	// connection Go relay spends per ping (the runtime's wake-ups and
	// nothing else), eprelay what a Go event loop spends.
	if want != "" && on("gorelay") {
		targets = append(targets, startInstrument(t, "gorelay", ip+":32181", zk.ClientAddr()))
	}
	if want != "" && on("eprelay") {
		targets = append(targets, startInstrument(t, "eprelay", ip+":42181", zk.ClientAddr()))
	}
	// ZKPROXY_BENCH_BASE_BIN: a zkproxy binary built from another commit,
	// measured beside this one in the same run (an A/B of a change).
	if bin := os.Getenv("ZKPROXY_BENCH_BASE_BIN"); bin != "" {
		targets = append(targets, startBase(t, bin, ip+":23181", ip+":23182", zk.ClientAddr()))
	}
	packets := func() int64 {
		m, err := zk.Mntr()
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.ParseInt(m["zk_packets_received"], 10, 64)
		return n
	}
	ctx := context.Background()
	perPing := map[string][]time.Duration{}
	var log strings.Builder
	for rep := range reps {
		for _, i := range rand.Perm(len(targets)) {
			tg := targets[i]
			closeAll, err := benchload.IdleSessions(ctx, tg.addr, idle, 30*time.Second)
			if err != nil {
				t.Fatalf("%d idle sessions via %s: %v", idle, tg.name, err)
			}
			time.Sleep(5 * time.Second) // the handshake storm passes; idle pumps park
			wait := func() {}
			if dir := os.Getenv("ZKPROXY_BENCH_PROFILE"); dir != "" && tg.admin != "" && tg.name == "zkproxy" {
				done := make(chan struct{})
				go func() {
					defer close(done)
					b := adminGet(t, tg.admin, fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(dur/time.Second)))
					_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("idleping-%d.pprof", rep)), b, 0o644)
				}()
				wait = func() { <-done }
			}
			cpu0, p0, c0 := cpuTime(t, tg.pid), packets(), clientPings(t, tg)
			time.Sleep(dur)
			cpu, pings := cpuTime(t, tg.pid)-cpu0, packets()-p0
			if c := clientPings(t, tg) - c0; c0 >= 0 {
				// zkproxy counts the pings its clients sent: that, not
				// what reached ZooKeeper (it may also ping upstream
				// itself), is the load.
				t.Logf("%s: ZooKeeper received %d packets, zkproxy %d client pings", tg.name, pings, c)
				pings = c
			}
			wait()
			closeAll()
			// go-zookeeper gives each connection a 1.5 MiB receive buffer:
			// returned to the system, the next target's sessions get fresh
			// (untouched) pages instead of reused ones the runtime zeroes,
			// which at 9,000 sessions a target ran this machine out of memory.
			debug.FreeOSMemory()
			if pings <= 0 {
				t.Fatalf("no pings via %s", tg.name)
			}
			d := cpu / time.Duration(pings)
			perPing[tg.name] = append(perPing[tg.name], d)
			line := fmt.Sprintf("rep %d %-8s %d sessions: %.0f pings/s, relay CPU %.1f%% of a core, %.1f µs/ping",
				rep, tg.name, idle, float64(pings)/dur.Seconds(), 100*cpu.Seconds()/dur.Seconds(), float64(d)/1e3)
			t.Log(line)
			fmt.Fprintln(&log, line)
			time.Sleep(2 * time.Second) // the closes settle
		}
	}
	for name, ds := range perPing {
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		fmt.Fprintf(&log, "%s: median %.1f µs/ping (min %.1f, max %.1f)\n", name,
			float64(ds[len(ds)/2])/1e3, float64(ds[0])/1e3, float64(ds[len(ds)-1])/1e3)
	}
	t.Log("\n" + log.String())
	if path := os.Getenv("ZKPROXY_BENCH_OUT"); path != "" {
		if err := os.WriteFile(path, []byte(log.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// clientPings is zkproxy's zkproxy_requests_total{op="ping"}, or -1 for a
// target without an admin address.
func clientPings(t *testing.T, tg target) int64 {
	if tg.admin == "" {
		return -1
	}
	for _, line := range strings.Split(string(adminGet(t, tg.admin, "/metrics")), "\n") {
		if strings.HasPrefix(line, "zkproxy_requests_total{") && strings.Contains(line, `op="ping"`) {
			f := strings.Fields(line)
			n, _ := strconv.ParseFloat(f[len(f)-1], 64)
			return int64(n)
		}
	}
	return 0
}
