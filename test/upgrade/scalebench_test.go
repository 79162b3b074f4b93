package upgrade

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// TestScaleBench (make bench-scale; ZKPROXY_BENCH_SCALE=1) measures the two
// operations that touch every session at once, on the same sessions one
// after the other: the cutover (each session drained and re-established on
// a destination member of a joint ensemble) and then the in-place upgrade
// handoff. ZKPROXY_BENCH_SCALE_SESSIONS lists the idle session counts
// (default 5000,9000); 64 more sessions are busy, each sending an Exists
// every 10 ms (its previous one answered). A cutover's pause per session
// is what the proxy held its requests for: drain plus attach, from its
// "session re-attached" log line; beside it, the busy sessions' longest
// request while the operation ran (a lower bound by up to 10 ms), which is
// also the upgrade's measure. Idle sessions only ping (go-zookeeper, 30 s
// timeout).
// ZKPROXY_BENCH_SCALE_ARGS adds `zkproxy serve` flags (for example
// --cutover-concurrency-max=8 to compare with the fixed 8 of before). It reports
// numbers; it asserts only that no session disconnected and every one moved.
func TestScaleBench(t *testing.T) {
	if os.Getenv("ZKPROXY_BENCH_SCALE") == "" {
		t.Skip("set ZKPROXY_BENCH_SCALE=1 (make bench-scale)")
	}
	counts := sessionCounts(t, "ZKPROXY_BENCH_SCALE_SESSIONS", 5000, 9000)
	binA, binB := build(t, "scale-a"), build(t, "scale-b")
	var report []string
	for _, n := range counts {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			report = append(report, benchScale(t, binA, binB, n)...)
		})
	}
	for _, l := range report {
		t.Log(l)
	}
}

const (
	busySessions = 64
	busyInterval = 10 * time.Millisecond
)

func benchScale(t *testing.T, binA, binB string, n int) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	m := zktest.NewMitosis(t, zktest.WithHeapMB(768))
	if _, err := m.Join(ctx); err != nil {
		t.Fatal(err)
	}
	var src, dst []string
	for _, s := range m.Source.Members {
		src = append(src, s.ClientAddr())
	}
	for _, s := range m.Destination.Members {
		dst = append(dst, s.ClientAddr())
	}
	args := append([]string{"--destination", strings.Join(dst, ",")}, strings.Fields(os.Getenv("ZKPROXY_BENCH_SCALE_ARGS"))...)
	p := startServe(t, binA, src, nil, args...)

	var disconnects atomic.Int64
	connect := func(count int) []*zk.Conn { return connectSessions(t, p.Addr, count, &disconnects) }
	start := time.Now()
	connect(n)
	busy := connect(busySessions)
	t.Logf("%d idle + %d busy sessions connected in %s", n, busySessions, time.Since(start).Round(time.Millisecond))

	var measuring atomic.Bool
	longest := make([]atomic.Int64, len(busy))
	var requests atomic.Int64
	stop := make(chan struct{})
	var bw sync.WaitGroup
	for i, c := range busy {
		bw.Add(1)
		go func() {
			defer bw.Done()
			next := time.Now().Add(time.Duration(i) * busyInterval / busySessions)
			for {
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
				next = later(next.Add(busyInterval), time.Now())
				select {
				case <-stop:
					return
				default:
				}
				begin := time.Now()
				if _, _, err := c.Exists("/"); err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				requests.Add(1)
				if d := time.Since(begin); measuring.Load() && int64(d) > longest[i].Load() {
					longest[i].Store(int64(d))
				}
			}
		}()
	}
	defer func() { close(stop); bw.Wait() }()
	pauses := func() (p50, p99, worst time.Duration) {
		ps := make([]time.Duration, len(longest))
		for i := range longest {
			ps[i] = time.Duration(longest[i].Swap(0))
		}
		return pauseQuantiles(ps)
	}
	time.Sleep(time.Second)
	// The busy sessions' longest request with nothing happening: the floor
	// the operations' pauses compare with.
	measuring.Store(true)
	r0 := requests.Load()
	steady := newCPUSampler(p, m)
	time.Sleep(2 * time.Second)
	steadyCPU := steady.rates()
	measuring.Store(false)
	b50, b99, bmax := pauses()
	baseline := fmt.Sprintf("%d sessions: steady state, busy sessions' longest request p50 %s, p99 %s, max %s (%d requests/s)",
		n, b50, b99, bmax, (requests.Load()-r0)/2)
	t.Log(baseline)

	// Cutover.
	var check struct {
		Ready bool `json:"ready"`
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		if err := p.do("GET", "/cutover/check", &check); err == nil && check.Ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sync never confirmed")
		}
	}
	cpu := newCPUSampler(p, m)
	// ZKPROXY_BENCH_PROFILE: a directory for zkproxy's CPU profile of the
	// cutover's first seconds (serve it with --pprof in
	// ZKPROXY_BENCH_SCALE_ARGS).
	profiled := make(chan struct{})
	if dir := os.Getenv("ZKPROXY_BENCH_PROFILE"); dir != "" {
		go func() {
			defer close(profiled)
			req, _ := http.NewRequest("GET", p.admin+"/debug/pprof/profile?seconds=5", nil)
			req.Header.Set("Authorization", "Bearer "+p.token)
			resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
			if err != nil {
				t.Logf("profile: %v", err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			_ = os.WriteFile(fmt.Sprintf("%s/cutover-%d.pprof", dir, n), b, 0o644)
		}()
	} else {
		close(profiled)
	}
	defer func() { <-profiled }()
	measuring.Store(true)
	start = time.Now()
	if err := p.do("POST", "/cutover/start", nil); err != nil {
		t.Fatal(err)
	}
	var st struct {
		Phase    string `json:"phase"`
		Sessions struct {
			Total, Moved, Failed, Pending int
		} `json:"sessions"`
		StartedAt  time.Time `json:"started_at"`
		FinishedAt time.Time `json:"finished_at"`
	}
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if err := p.do("GET", "/cutover", &st); err == nil && st.Phase == "destination" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cutover did not finish: %+v", st)
		}
	}
	took := st.FinishedAt.Sub(st.StartedAt)
	cutCPU := cpu.done(n+busySessions, steadyCPU)
	time.Sleep(500 * time.Millisecond) // requests issued during the cutover come back
	measuring.Store(false)
	c50, c99, cmax := pauses()
	concurrency := ""
	for _, l := range p.logLines("cutover: moves finished") {
		if _, rest, ok := strings.Cut(l, "concurrency"); ok {
			concurrency = "; concurrency" + strings.TrimSpace(rest)
		}
	}
	busyIDs := map[string]bool{}
	for _, c := range busy {
		busyIDs[fmt.Sprintf("0x%016x", uint64(c.SessionID()))] = true
	}
	var held, heldBusy []time.Duration
	for _, l := range p.logLines("session re-attached", "reason=move") {
		id, d := logField(l, "session"), logField(l, "took")
		took, err := time.ParseDuration(d)
		if err != nil {
			continue
		}
		held = append(held, took)
		if busyIDs[id] {
			heldBusy = append(heldBusy, took)
		}
	}
	cut := fmt.Sprintf("%d sessions: cutover took %s (wall %s), moved %d of %d, failed %d%s; held per session (drain + attach, proxy log) all %s, busy %s; busy sessions' longest request p50 %s, p99 %s, max %s; disconnects %d",
		n, took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), st.Sessions.Moved, st.Sessions.Total, st.Sessions.Failed,
		concurrency, quantiles(held), quantiles(heldBusy), c50, c99, cmax, disconnects.Load())
	t.Log(cut)
	t.Log(cutCPU)
	if st.Sessions.Moved != n+busySessions || disconnects.Load() != 0 {
		t.Errorf("not every session moved live: %s", cut)
	}

	// The upgrade handoff of the same sessions.
	p.installBinary(binB)
	measuring.Store(true)
	start = time.Now()
	p.upgrade(bySignal, 5*time.Minute)
	upTook := time.Since(start)
	time.Sleep(500 * time.Millisecond)
	measuring.Store(false)
	u50, u99, umax := pauses()
	handed := 0
	for _, l := range p.logLines("upgrade complete") {
		if _, rest, ok := strings.Cut(l, "handed_over="); ok {
			handed, _ = strconv.Atoi(strings.Fields(rest)[0])
		}
	}
	up := fmt.Sprintf("%d sessions: upgrade took %s (handed over %d); busy sessions' pause p50 %s, p99 %s, max %s; disconnects %d",
		n, upTook.Round(time.Millisecond), handed, u50, u99, umax, disconnects.Load())
	t.Log(up)
	if disconnects.Load() != 0 {
		t.Errorf("%d disconnects", disconnects.Load())
	}
	return []string{baseline, cut, cutCPU, up}
}

// cpuSampler measures the CPU time of the processes a cutover involves.
type cpuSampler struct {
	start time.Time
	procs []cpuProc
}

type cpuProc struct {
	name  string
	pids  []int
	ticks int64
}

func newCPUSampler(p *proc, m *zktest.Mitosis) *cpuSampler {
	c := &cpuSampler{start: time.Now()}
	var src, dst []int
	for _, s := range m.Source.Members {
		src = append(src, s.PID())
	}
	for _, s := range m.Destination.Members {
		if s.Running() {
			dst = append(dst, s.PID())
		}
	}
	c.procs = []cpuProc{{name: "zkproxy", pids: p.pids()}, {name: "source JVMs", pids: src},
		{name: "destination JVMs", pids: dst}, {name: "clients (this test)", pids: []int{os.Getpid()}}}
	for i := range c.procs {
		c.procs[i].ticks = ticksOf(c.procs[i].pids)
	}
	return c
}

// rates returns each process group's CPU share (cores) since the start.
func (c *cpuSampler) rates() []float64 {
	wall := time.Since(c.start)
	out := make([]float64, len(c.procs))
	for i, pr := range c.procs {
		out[i] = (time.Duration(ticksOf(pr.pids)-pr.ticks) * 10 * time.Millisecond).Seconds() / wall.Seconds() // USER_HZ 100
	}
	return out
}

// done reports each process group's CPU since the start: as a share of
// the wall time, and per moved session beyond what the same group spent
// in the steady state before (steady, in cores: the busy sessions' load).
func (c *cpuSampler) done(sessions int, steady []float64) string {
	wall := time.Since(c.start)
	parts := []string{fmt.Sprintf("CPU over the cutover's %s (per session: beyond the steady state)", wall.Round(time.Millisecond))}
	for i, r := range c.rates() {
		extra := time.Duration((r - steady[i]) * wall.Seconds() / float64(sessions) * float64(time.Second))
		parts = append(parts, fmt.Sprintf("%s %.0f%% of a core (steady %.0f%%), %s per session",
			c.procs[i].name, 100*r, 100*steady[i], extra.Round(time.Microsecond)))
	}
	return strings.Join(parts, "; ")
}

// ticksOf sums utime and stime of pids, in clock ticks.
func ticksOf(pids []int) int64 {
	var total int64
	for _, pid := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(data), ')')
		f := strings.Fields(string(data[i+2:]))
		// After "pid (comm)": state is field 0, utime 11, stime 12.
		if len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			total += u + s
		}
	}
	return total
}

// logField returns key's value in a logfmt line ("" if absent).
func logField(line, key string) string {
	_, rest, ok := strings.Cut(line, " "+key+"=")
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, " ")
	return strings.Trim(v, `"`)
}

// quantiles formats p50, p99 and max of ds.
func quantiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "(none)"
	}
	p50, p99, worst := pauseQuantiles(ds)
	return fmt.Sprintf("p50 %s p99 %s max %s (%d)", p50, p99, worst, len(ds))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// do calls the admin API and decodes its JSON answer into out (nil: none).
func (p *proc) do(method, path string, out any) error {
	req, err := http.NewRequest(method, p.admin+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := p.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(body, out)
}
