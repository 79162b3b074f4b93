// Package relaybench compares zkproxy with a direct connection and with
// HAProxy in TCP mode — the pure relay an operator would otherwise run — on
// one ZooKeeper server, in one run, with the three targets interleaved in
// every repetition so machine noise hits them alike.
//
// It is a measurement, not a pass/fail test: it runs only with
// ZKPROXY_BENCH=1 (make bench) and prints a table, also written to
// $ZKPROXY_BENCH_OUT when set.
package relaybench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/internal/testkit/benchload"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

type target struct {
	name  string
	addr  string
	pid   int    // relay process whose CPU time and RSS are measured; 0 for direct
	admin string // zkproxy's admin address when profiling
}

type scenario struct {
	name string
	cfg  benchload.Config
}

type sample struct {
	throughput float64
	p50, p99   time.Duration
	cpuPerOp   time.Duration // the relay's
	// Where the rest of the machine's time went, per op: ZooKeeper's CPU,
	// the load client's (this process), and idle CPU. A relay changes how
	// well ZooKeeper and the client batch their work, which shows here.
	zkPerOp, clientPerOp, idlePerOp time.Duration
}

func TestCompareRelays(t *testing.T) {
	if os.Getenv("ZKPROXY_BENCH") == "" {
		t.Skip("measurement: run with ZKPROXY_BENCH=1 (make bench)")
	}
	zktest.RequireIntegration(t)
	reps := envInt("ZKPROXY_BENCH_REPS", 5)
	dur := envDuration("ZKPROXY_BENCH_DURATION", 8*time.Second)
	idle := envInt("ZKPROXY_BENCH_IDLE", 5000)

	zk := zktest.Standalone(t, zktest.WithConfig("maxClientCnxns=0"), zktest.WithHeapMB(512),
		zktest.WithConfig("globalOutstandingLimit=10000"))
	ip := zktest.LoopbackIP(t)
	// ZKPROXY_BENCH_TARGETS narrows the set, e.g. "direct,haproxy", and may
	// add the instruments "gorelay" and "eprelay", which run only when named.
	want := os.Getenv("ZKPROXY_BENCH_TARGETS")
	on := func(name string) bool { return want == "" || strings.Contains(","+want+",", ","+name+",") }
	var targets []target
	if on("direct") {
		targets = append(targets, target{name: "direct", addr: zk.ClientAddr()})
	}
	if on("haproxy") {
		targets = append(targets, startHAProxy(t, ip+":12181", zk.ClientAddr()))
	}
	if want != "" && on("gorelay") {
		// Only on request: the floor of a Go relay (see gorelay).
		targets = append(targets, startInstrument(t, "gorelay", ip+":32181", zk.ClientAddr()))
	}
	if want != "" && on("eprelay") {
		// Only on request: a Go relay built as an event loop (see eprelay).
		targets = append(targets, startInstrument(t, "eprelay", ip+":42181", zk.ClientAddr()))
	}
	if on("zkproxy") {
		targets = append(targets, startZkproxy(t, ip+":22181", ip+":22182", zk.ClientAddr()))
	}
	if bin := os.Getenv("ZKPROXY_BENCH_BASE_BIN"); bin != "" {
		targets = append(targets, startBase(t, bin, ip+":23181", ip+":23182", zk.ClientAddr()))
	}

	scenarios := []scenario{
		{"getData 100 B, 64 sessions", benchload.Config{Op: benchload.OpRead, Size: 100, Sessions: 64}},
		{"setData 1 KiB, 16 sessions", benchload.Config{Op: benchload.OpWrite, Size: 1024, Sessions: 16}},
		{"getData 100 B at 2,000/s, 16 sessions", benchload.Config{Op: benchload.OpRead, Size: 100, Sessions: 16, Rate: 2000}},
	}

	ctx := context.Background()
	results := map[string]map[string][]sample{}
	for _, sc := range scenarios {
		results[sc.name] = map[string][]sample{}
		for rep := range reps {
			order := rand.Perm(len(targets))
			for _, i := range order {
				tg := targets[i]
				cfg := sc.cfg
				cfg.Addr, cfg.Duration, cfg.Warmup = tg.addr, dur, time.Second
				cfg.Root = "/zkbench-" + strings.ReplaceAll(tg.name, " ", "")
				cpu0, zk0, self0, idle0 := cpuTime(t, tg.pid), cpuTime(t, zk.PID()), selfCPU(), idleTime(t)
				profiled := profile(t, tg, fmt.Sprintf("%s-%d", sc.name, rep), dur)
				res, err := benchload.Run(ctx, cfg)
				profiled()
				if err != nil {
					t.Fatalf("%s via %s: %v", sc.name, tg.name, err)
				}
				cpu := cpuTime(t, tg.pid) - cpu0
				zkCPU, selfCPU, idle := cpuTime(t, zk.PID())-zk0, selfCPU()-self0, idleTime(t)-idle0
				// The warm-up ran on the same process: charge CPU to
				// every op of both phases, counted at the measured rate.
				ops := float64(res.Ops) * float64(dur+time.Second) / float64(dur)
				s := sample{throughput: res.Throughput(), p50: res.Latency.Quantile(0.5), p99: res.Latency.Quantile(0.99)}
				if tg.pid != 0 {
					s.cpuPerOp = time.Duration(float64(cpu) / ops)
				}
				s.zkPerOp = time.Duration(float64(zkCPU) / ops)
				s.clientPerOp = time.Duration(float64(selfCPU) / ops)
				s.idlePerOp = time.Duration(float64(idle) / ops)
				results[sc.name][tg.name] = append(results[sc.name][tg.name], s)
				t.Logf("rep %d %-40s %-8s %s cpu/op=%s zk=%s client=%s idle=%s", rep, sc.name, tg.name, res, s.cpuPerOp,
					s.zkPerOp, s.clientPerOp, s.idlePerOp)
			}
		}
	}

	var out strings.Builder
	fmt.Fprintf(&out, "Relay comparison: %d interleaved repetitions of %s each, medians. One ZooKeeper 3.8 standalone server;\n", reps, dur)
	fmt.Fprintf(&out, "client, server and relay share this machine's %d cores. \"vs HAProxy\" is the median of the\n", cores())
	fmt.Fprintf(&out, "per-repetition ratios (each against HAProxy's run in the same repetition), with their range.\n\n")
	if reps > 0 {
		fmt.Fprintln(&out, "| scenario | target | throughput ops/s | vs HAProxy | p50 | p99 | relay CPU per op |")
		fmt.Fprintln(&out, "|---|---|---|---|---|---|---|")
	}
	for _, sc := range scenarios {
		if reps <= 0 {
			break // ZKPROXY_BENCH_REPS=0: idle memory only
		}
		ha := results[sc.name]["haproxy"]
		for _, tg := range targets {
			runs := results[sc.name][tg.name]
			m := median(runs)
			cpu := "–"
			if tg.pid != 0 {
				cpu = m.cpuPerOp.Round(100 * time.Nanosecond).String()
			}
			vs := "–"
			if tg.name == "haproxy" {
				vs = "reference"
			} else if len(ha) > 0 {
				thr := pairedRatios(runs, ha, func(s sample) float64 { return s.throughput })
				p50 := pairedRatios(runs, ha, func(s sample) float64 { return float64(s.p50) })
				vs = fmt.Sprintf("%s thr, %s p50", thr, p50)
			}
			fmt.Fprintf(&out, "| %s | %s | %.0f | %s | %s | %s | %s |\n", sc.name, tg.name, m.throughput,
				vs, m.p50.Round(time.Microsecond), m.p99.Round(time.Microsecond), cpu)
		}
	}

	if reps > 0 && len(results[scenarios[0].name]["gorelay"]) > 0 && len(results[scenarios[0].name]["zkproxy"]) > 0 {
		// gorelay is the floor of a Go relay on this machine: how far
		// zkproxy is from it is its own per-request cost.
		fmt.Fprintln(&out, "\nzkproxy against gorelay, paired the same way:")
		fmt.Fprintln(&out, "\n| scenario | zkproxy / gorelay |\n|---|---|")
		for _, sc := range scenarios {
			zp, gr := results[sc.name]["zkproxy"], results[sc.name]["gorelay"]
			fmt.Fprintf(&out, "| %s | %s thr, %s p50 |\n", sc.name,
				pairedRatios(zp, gr, func(s sample) float64 { return s.throughput }),
				pairedRatios(zp, gr, func(s sample) float64 { return float64(s.p50) }))
		}
	}
	if reps > 0 {
		fmt.Fprintln(&out, "\nWhere the machine's time went, per op (medians): the relay's CPU, ZooKeeper's, the load client's, idle CPU.")
		fmt.Fprintln(&out, "\n| scenario | target | relay | ZooKeeper | client | idle | sum |")
		fmt.Fprintln(&out, "|---|---|---|---|---|---|---|")
		for _, sc := range scenarios {
			for _, tg := range targets {
				m := median(results[sc.name][tg.name])
				us := func(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond)) }
				fmt.Fprintf(&out, "| %s | %s | %s | %s | %s | %s | %s |\n", sc.name, tg.name, us(m.cpuPerOp), us(m.zkPerOp),
					us(m.clientPerOp), us(m.idlePerOp), us(m.cpuPerOp+m.zkPerOp+m.clientPerOp+m.idlePerOp))
			}
		}
	}
	if idle > 0 {
		// RSS is read 3 s after the last handshake, and again after
		// ZKPROXY_BENCH_IDLE_SETTLE (default 130 s: past the Go runtime's
		// forced GC every 2 minutes, so the connection storm's garbage and
		// freed stacks are gone — the steady state an operator sees).
		settle := envDuration("ZKPROXY_BENCH_IDLE_SETTLE", 130*time.Second)
		fmt.Fprintf(&out, "\n| idle sessions | target | RSS before | RSS after 3 s | per session | RSS after %s | per session |\n|---|---|---|---|---|---|---|\n", settle)
		for _, tg := range targets {
			if tg.pid == 0 {
				continue
			}
			before := rssBytes(t, tg.pid)
			closeAll, err := benchload.IdleSessions(ctx, tg.addr, idle, 30*time.Second)
			if err != nil {
				t.Fatalf("%d idle sessions via %s: %v", idle, tg.name, err)
			}
			time.Sleep(3 * time.Second) // let buffers settle after the handshakes
			after := rssBytes(t, tg.pid)
			time.Sleep(settle)
			settled := rssBytes(t, tg.pid)
			memoryProfile(t, tg)
			closeAll()
			debug.FreeOSMemory() // as in TestIdlePingCost: go-zookeeper's buffers
			perSession := func(rss int64) float64 { return float64(rss-before) / float64(idle) / 1024 }
			fmt.Fprintf(&out, "| %d | %s | %.1f MiB | %.1f MiB | %.2f KiB | %.1f MiB | %.2f KiB |\n", idle, tg.name,
				float64(before)/(1<<20), float64(after)/(1<<20), perSession(after), float64(settled)/(1<<20), perSession(settled))
		}
	}
	t.Log("\n" + out.String())
	if path := os.Getenv("ZKPROXY_BENCH_OUT"); path != "" {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// startHAProxy runs HAProxy in TCP mode in front of backend. maxconn (global,
// and so the frontend's) is what this machine's descriptor limit (20,000,
// two per session) allows: with 9,000, two runs of 9,000 idle sessions
// through HAProxy never finished connecting.
func startHAProxy(t *testing.T, listen, backend string) target {
	cfg := fmt.Sprintf(`global
    maxconn 9900
defaults
    mode tcp
    timeout connect 5s
    timeout client 120s
    timeout server 120s
frontend zk
    bind %s
    default_backend zk
backend zk
    server zk1 %s
`, listen, backend)
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return startProcess(t, "haproxy", listen, "haproxy", "-db", "-f", path)
}

// profile takes a CPU profile of zkproxy during a measured run when
// ZKPROXY_BENCH_PROFILE names a directory; the returned func waits for it.
func profile(t *testing.T, tg target, name string, dur time.Duration) (wait func()) {
	dir := os.Getenv("ZKPROXY_BENCH_PROFILE")
	if dir == "" || tg.admin == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(time.Second) // the warm-up
		secs := max(1, int(dur/time.Second)-1)
		b := adminGet(t, tg.admin, fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs))
		name = strings.NewReplacer(" ", "_", ",", "", "/", "").Replace(name)
		_ = os.WriteFile(filepath.Join(dir, name+".pprof"), b, 0o644)
	}()
	return func() { <-done }
}

// adminGet returns the body of GET path on zkproxy's admin address (nil
// after reporting an error).
func adminGet(t *testing.T, admin, path string) []byte {
	resp, err := http.Get("http://" + admin + path)
	if err != nil {
		t.Errorf("GET %s: %v", path, err)
		return nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

// memoryProfile saves zkproxy's heap and goroutine profiles and logs its
// runtime memory gauges while the idle sessions are open, when profiling.
func memoryProfile(t *testing.T, tg target) {
	dir := os.Getenv("ZKPROXY_BENCH_PROFILE")
	if dir == "" || tg.admin == "" {
		return
	}
	get := func(path string) []byte { return adminGet(t, tg.admin, path) }
	_ = os.WriteFile(filepath.Join(dir, "idle-goroutine.txt"), get("/debug/pprof/goroutine?debug=1"), 0o644)
	// What the idle proxy allocates (what it allocates keeps free heap in
	// use, see internal/memtrim): the allocation counter over 20 s, which
	// includes one scrape of /metrics, beside what the next scrape alone
	// allocated (scrapes differ by a few KiB, so the difference is only an
	// estimate).
	allocated := func() float64 {
		for _, line := range strings.Split(string(get("/metrics")), "\n") {
			if v, ok := strings.CutPrefix(line, "go_memstats_alloc_bytes_total "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				return f
			}
		}
		return 0
	}
	a0 := allocated()
	time.Sleep(20 * time.Second)
	a1 := allocated()
	a2 := allocated()
	t.Logf("idle: allocated %.0f bytes in 20 s, one scrape of /metrics among them; a scrape alone %.0f bytes", a1-a0, a2-a1)
	logMem := func(when string) {
		for _, line := range strings.Split(string(get("/metrics")), "\n") {
			if strings.HasPrefix(line, "go_memstats_") || strings.HasPrefix(line, "go_goroutines") ||
				strings.HasPrefix(line, "process_resident") || strings.HasPrefix(line, "zkproxy_parked") ||
				strings.HasPrefix(line, "zkproxy_connections_accepted") || strings.HasPrefix(line, "zkproxy_sessions_closed") ||
				strings.HasPrefix(line, "zkproxy_memory_") {
				t.Log(when, line)
			}
		}
	}
	logMem("idle:")
	// gc=1 collects before profiling: the live heap, and what RSS is
	// once the garbage of the connection storm is gone.
	_ = os.WriteFile(filepath.Join(dir, "idle-heap.pprof"), get("/debug/pprof/heap?gc=1"), 0o644)
	logMem("after GC:")
}

func startZkproxy(t *testing.T, listen, admin, source string) target {
	bin := filepath.Join(t.TempDir(), "zkproxy")
	build := exec.Command("go", "build", "-o", bin, "github.com/zkproxy/zkproxy/cmd/zkproxy")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building zkproxy: %v\n%s", err, out)
	}
	adminArgs := []string{"--admin-listen", ""}
	if os.Getenv("ZKPROXY_BENCH_PROFILE") == "" {
		admin = ""
	} else {
		adminArgs = []string{"--admin-listen", admin, "--pprof"}
	}
	tg := startProcess(t, "zkproxy", listen, append([]string{bin, "serve", "--listen", listen, "--source", source,
		"--data-dir", t.TempDir(), "--log-level", envOr("ZKPROXY_BENCH_LOG_LEVEL", "warn"), "--max-client-conns", "20000"}, adminArgs...)...)
	tg.admin = admin
	return tg
}

// startInstrument builds and starts one of the measuring relays under
// test/relaybench (gorelay, eprelay).
func startInstrument(t *testing.T, name, listen, backend string) target {
	bin := filepath.Join(t.TempDir(), name)
	build := exec.Command("go", "build", "-o", bin, "github.com/zkproxy/zkproxy/test/relaybench/"+name)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", name, err, out)
	}
	return startProcess(t, name, listen, bin, "-listen", listen, "-backend", backend)
}

func startProcess(t *testing.T, name, addr string, argv ...string) target {
	cmd := exec.Command(argv[0], argv[1:]...)
	if extra := os.Getenv("ZKPROXY_BENCH_ENV_" + strings.ToUpper(name)); extra != "" {
		// e.g. ZKPROXY_BENCH_ENV_ZKPROXY="GOMAXPROCS=1 GOGC=50" to compare runtime settings.
		cmd.Env = append(os.Environ(), strings.Fields(extra)...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logDir := os.Getenv("ZKPROXY_BENCH_PROFILE") // kept with the profiles when profiling
	if logDir == "" {
		logDir = t.TempDir()
	}
	logf, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := benchload.Connect(ctx, addr, 5*time.Second); err != nil {
		b, _ := os.ReadFile(logf.Name())
		t.Fatalf("%s at %s does not relay: %v\n%s", name, addr, err, b)
	}
	return target{name: name, addr: addr, pid: cmd.Process.Pid}
}

// cpuTime is the user+system CPU time of pid from /proc (clock ticks of 10 ms).
func cpuTime(t *testing.T, pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the parenthesised command name; utime and stime are
	// fields 14 and 15 of stat(5).
	rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
	f := strings.Fields(rest)
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// selfCPU is this process's CPU time: the load generator runs here.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// idleTime is the machine's idle CPU time so far, all cores (the idle
// field of /proc/stat's cpu line, in USER_HZ ticks of 10 ms).
func idleTime(t *testing.T) time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		t.Fatalf("unexpected /proc/stat: %q", line)
	}
	idle, _ := strconv.ParseInt(f[4], 10, 64)
	return time.Duration(idle) * 10 * time.Millisecond
}

func rssBytes(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return kb * 1024
		}
	}
	t.Fatalf("no VmRSS for pid %d", pid)
	return 0
}

// median is the per-field median of s; zero for none (a target left out
// by ZKPROXY_BENCH_TARGETS: ratios against it then print as +Inf).
// pairedRatios formats the median, minimum and maximum of f(runs[i]) /
// f(base[i]): each repetition against the reference's run in the same
// repetition, which cancels the machine's drift between repetitions (its
// speed varies by a third over minutes here).
func pairedRatios(runs, base []sample, f func(sample) float64) string {
	var r []float64
	for i := range min(len(runs), len(base)) {
		if b := f(base[i]); b > 0 {
			r = append(r, f(runs[i])/b)
		}
	}
	if len(r) == 0 {
		return "–"
	}
	sort.Float64s(r)
	if len(r) == 1 {
		return fmt.Sprintf("%.2f×", r[0])
	}
	return fmt.Sprintf("%.2f× (%.2f–%.2f)", r[len(r)/2], r[0], r[len(r)-1])
}

func median(s []sample) sample {
	if len(s) == 0 {
		return sample{}
	}
	pick := func(less func(a, b sample) bool) sample {
		c := append([]sample(nil), s...)
		sort.Slice(c, func(i, j int) bool { return less(c[i], c[j]) })
		return c[len(c)/2]
	}
	return sample{
		throughput:  pick(func(a, b sample) bool { return a.throughput < b.throughput }).throughput,
		p50:         pick(func(a, b sample) bool { return a.p50 < b.p50 }).p50,
		p99:         pick(func(a, b sample) bool { return a.p99 < b.p99 }).p99,
		cpuPerOp:    pick(func(a, b sample) bool { return a.cpuPerOp < b.cpuPerOp }).cpuPerOp,
		zkPerOp:     pick(func(a, b sample) bool { return a.zkPerOp < b.zkPerOp }).zkPerOp,
		clientPerOp: pick(func(a, b sample) bool { return a.clientPerOp < b.clientPerOp }).clientPerOp,
		idlePerOp:   pick(func(a, b sample) bool { return a.idlePerOp < b.idlePerOp }).idlePerOp,
	}
}

func envInt(key string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(key)); err == nil {
		return v
	}
	return def
}

func envDuration(key string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(key)); err == nil {
		return v
	}
	return def
}

func cores() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

// envOr is the environment variable name, or def when it is unset.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// startBase starts bin, a zkproxy built from another commit (or this one,
// with other settings in ZKPROXY_BENCH_ENV_BASE, e.g.
// "ZKPROXY_RUNTIME_POLLER=true"), measured beside this one in the same run
// as "base": an A/B of a change.
func startBase(t *testing.T, bin, listen, admin, source string) target {
	tg := startProcess(t, "base", listen, bin, "serve", "--listen", listen, "--source", source,
		"--data-dir", t.TempDir(), "--log-level", "warn", "--max-client-conns", "20000", "--admin-listen", admin)
	tg.admin = admin
	return tg
}
