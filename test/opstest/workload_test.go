package opstest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/zkproxy/zkproxy/admin"
	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/cutover/proxyadapter"
	"github.com/zkproxy/zkproxy/internal/fourlw"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/jute"
	"github.com/zkproxy/zkproxy/proxy"
)

// rig is zkproxy wired as cmd/zkproxy serve wires it: proxy, cutover
// controller through the bridge, admin handler with /metrics, /cutover,
// /sessions and /status, each listener on its own loopback address.
type rig struct {
	proxy    *proxy.Server
	addr     string // client port
	adminURL string
	member   string
	skipped  map[string]bool // pending metrics whose assertions were skipped
}

func startZkproxy(t *testing.T, source []string) *rig {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	reg := prometheus.NewRegistry()
	p, err := proxy.New(proxy.Config{Source: source, FourLetterWords: []string{"*"}}, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := cutover.NewController(cutover.Config{Source: source, Store: cutover.Store{Dir: t.TempDir()}},
		proxyadapter.New(p, nil), log, reg)
	if err != nil {
		t.Fatal(err)
	}
	h := admin.NewHandler(admin.Options{Gatherer: reg, Ready: p.Ready, Logger: log})
	admin.RegisterCutover(h, ctl)
	admin.RegisterSessions(h, p, nil)
	admin.RegisterStatus(h, admin.NewStatus(admin.StatusConfig{Version: "opstest", Source: source}, p, ctl))

	ip := zktest.LoopbackIP(t)
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "2181"))
	if err != nil {
		t.Fatal(err)
	}
	aln, err := net.Listen("tcp", net.JoinHostPort(ip, "8080"))
	if err != nil {
		t.Fatal(err)
	}
	adminSrv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 2)
	go func() { done <- p.Serve(ln) }()
	go func() { done <- adminSrv.Serve(aln) }()
	t.Cleanup(func() {
		ctl.Close()
		p.Close()
		adminSrv.Close()
		for range 2 {
			if err := <-done; !errors.Is(err, proxy.ErrServerClosed) && !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("serving: %v", err)
			}
		}
	})
	return &rig{proxy: p, addr: ln.Addr().String(), adminURL: "http://" + aln.Addr().String(), member: source[0],
		skipped: map[string]bool{}}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

type zkLogger struct{ t *testing.T }

func (l zkLogger) Printf(format string, args ...any) { l.t.Logf("go-zookeeper: "+format, args...) }

func (r *rig) get(t *testing.T, path string) []byte {
	t.Helper()
	resp, err := http.Get(r.adminURL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v\n%s", path, resp.StatusCode, err, b)
	}
	return b
}

type scrape map[string]*dto.MetricFamily

func (r *rig) scrape(t *testing.T) scrape {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(r.get(t, "/metrics"))))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// value sums the samples of family name whose labels include want: counter
// and gauge values, a histogram's sample count. ok is false when the family
// is absent.
func (s scrape) value(name string, want ...string) (v float64, ok bool) {
	mf, ok := s[name]
	if !ok {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		if !hasLabels(m, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			v += m.Counter.GetValue()
		case m.Gauge != nil:
			v += m.Gauge.GetValue()
		case m.Histogram != nil:
			v += float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			v += m.Untyped.GetValue()
		}
	}
	return v, true
}

func hasLabels(m *dto.Metric, want []string) bool {
	for i := 0; i+1 < len(want); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == want[i] && lp.GetValue() == want[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// metricCheck is one expectation on the change of a series between two
// scrapes (or, with gauge, on its value in the second).
type metricCheck struct {
	name   string
	labels []string
	gauge  bool
	min    float64
	max    float64 // -1: no upper bound
}

func (r *rig) check(t *testing.T, stage string, before, after scrape, checks []metricCheck) {
	t.Helper()
	for _, c := range checks {
		a, ok := after.value(c.name, c.labels...)
		if !ok {
			if c.min == 0 && c.max == 0 {
				// A vector with no children has no samples: zero, as expected.
				continue
			}
			if pendingMetrics[c.name] {
				r.skipped[c.name] = true
				continue
			}
			t.Errorf("%s: %s is not exposed on /metrics", stage, c.name)
			continue
		}
		got, what := a, "value"
		if !c.gauge {
			b, _ := before.value(c.name, c.labels...)
			got, what = a-b, "increase"
		}
		if got < c.min || (c.max >= 0 && got > c.max) {
			bound := fmt.Sprintf("%g..%g", c.min, c.max)
			if c.max < 0 {
				bound = fmt.Sprintf(">= %g", c.min)
			}
			t.Errorf("%s: %s%v %s %g, want %s", stage, c.name, c.labels, what, got, bound)
		}
	}
}

func exactly(name string, n float64, labels ...string) metricCheck {
	return metricCheck{name: name, labels: labels, min: n, max: n}
}

func atLeast(name string, n float64, labels ...string) metricCheck {
	return metricCheck{name: name, labels: labels, min: n, max: -1}
}

func gaugeIs(name string, n float64, labels ...string) metricCheck {
	return metricCheck{name: name, labels: labels, gauge: true, min: n, max: n}
}

func op(o jute.Op) []string { return []string{"op", o.String()} }

// TestWorkloadMovesMetrics runs a known workload through zkproxy in front of
// a real ZooKeeper with a real client (go-zookeeper) and checks that every
// metric family moves by what the workload did.
func TestWorkloadMovesMetrics(t *testing.T) {
	zks := zktest.Standalone(t)
	r := startZkproxy(t, []string{zks.ClientAddr()})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	start := r.scrape(t)
	conn, events, err := zk.Connect([]string{r.addr}, 10*time.Second, zk.WithLogger(zkLogger{t}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitState(ctx, t, events, zk.StateHasSession)

	// Writes and reads of known counts.
	acl := zk.WorldACL(zk.PermAll)
	mustDo(t, "create /ops", func() error { _, err := conn.Create("/ops", []byte("v0"), 0, acl); return err })
	for i := range 5 {
		mustDo(t, "create child", func() error { _, err := conn.Create(fmt.Sprintf("/ops/c%d", i), nil, 0, acl); return err })
	}
	// One watch of each kind go-zookeeper can set.
	_, _, dataW, err := conn.GetW("/ops")
	if err != nil {
		t.Fatal(err)
	}
	_, _, existW, err := conn.ExistsW("/ops/late")
	if err != nil {
		t.Fatal(err)
	}
	_, _, childW, err := conn.ChildrenW("/ops")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := conn.Get("/ops/nope"); !errors.Is(err, zk.ErrNoNode) {
		t.Fatalf("get of a missing node: %v", err)
	}

	watching := r.scrape(t)
	r.check(t, "after 6 creates and 3 watches", start, watching, []metricCheck{
		exactly("zkproxy_connections_accepted_total", 1),
		gaugeIs("zkproxy_sessions_open", 1),
		gaugeIs("zkproxy_client_connections", 1),
		gaugeIs("zkproxy_sessions", 1, "ensemble", "source", "state", "active"),
		gaugeIs("zkproxy_sessions", 1),
		gaugeIs("zkproxy_sessions_by_member", 1, "member", zks.ClientAddr()),
		exactly("zkproxy_requests_total", 6, op(jute.OpCreate)...),
		exactly("zkproxy_requests_total", 2, op(jute.OpGetData)...),
		exactly("zkproxy_requests_total", 1, op(jute.OpExists)...),
		exactly("zkproxy_requests_total", 1, op(jute.OpGetChildren2)...),
		exactly("zkproxy_responses_total", 6, append(op(jute.OpCreate), "err", "OK")...),
		exactly("zkproxy_responses_total", 1, append(op(jute.OpGetData), "err", "NONODE")...),
		exactly("zkproxy_responses_total", 1, append(op(jute.OpExists), "err", "NONODE")...),
		exactly("zkproxy_request_duration_seconds", 6, op(jute.OpCreate)...),
		exactly("zkproxy_upstream_request_duration_seconds", 6, op(jute.OpCreate)...),
		exactly("zkproxy_request_duration_seconds", 2, op(jute.OpGetData)...),
		atLeast("zkproxy_client_bytes_total", 42 /* 6 paths "/ops/cN" */, "direction", "in"),
		atLeast("zkproxy_client_bytes_total", 1, "direction", "out"),
		atLeast("zkproxy_upstream_bytes_total", 42 /* 6 paths "/ops/cN" */, "direction", "out"),
		atLeast("zkproxy_upstream_bytes_total", 1, "direction", "in"),
		gaugeIs("zkproxy_watches", 1, "kind", "data"),
		gaugeIs("zkproxy_watches", 1, "kind", "exist"),
		gaugeIs("zkproxy_watches", 1, "kind", "child"),
		gaugeIs("zkproxy_held_requests", 0),
		gaugeIs("zkproxy_held_bytes", 0),
		exactly("zkproxy_decode_errors_total", 0),
		exactly("zkproxy_frames_over_limit_total", 0),
		exactly("zkproxy_connections_rejected_total", 0),
		exactly("zkproxy_upstream_reattaches_total", 0),
		gaugeIs("zkproxy_cutover_phase", 1, "phase", "source"),
	})

	// Fire all three: setData fires the data watch; creating /ops/late
	// fires the exist watch and the child watch of /ops.
	mustDo(t, "set /ops", func() error { _, err := conn.Set("/ops", []byte("v1"), -1); return err })
	mustDo(t, "create /ops/late", func() error { _, err := conn.Create("/ops/late", nil, 0, acl); return err })
	for _, w := range []<-chan zk.Event{dataW, existW, childW} {
		select {
		case ev := <-w:
			if ev.Err != nil {
				t.Fatalf("watch event %+v", ev)
			}
		case <-ctx.Done():
			t.Fatal("a watch did not fire")
		}
	}
	// A multi, a delete and a sync.
	if _, err := conn.Multi(&zk.CreateRequest{Path: "/ops/m", Acl: acl}, &zk.DeleteRequest{Path: "/ops/m", Version: -1}); err != nil {
		t.Fatal(err)
	}
	mustDo(t, "delete /ops/late", func() error { return conn.Delete("/ops/late", -1) })
	mustDo(t, "sync", func() error { _, err := conn.Sync("/ops"); return err })

	fired := r.scrape(t)
	r.check(t, "after the watches fired", watching, fired, []metricCheck{
		exactly("zkproxy_requests_total", 1, op(jute.OpSetData)...),
		exactly("zkproxy_requests_total", 1, op(jute.OpCreate)...),
		exactly("zkproxy_requests_total", 1, op(jute.OpMulti)...),
		exactly("zkproxy_requests_total", 1, op(jute.OpDelete)...),
		exactly("zkproxy_requests_total", 1, op(jute.OpSync)...),
		exactly("zkproxy_responses_total", 1, append(op(jute.OpMulti), "err", "OK")...),
		exactly("zkproxy_request_duration_seconds", 1, op(jute.OpMulti)...),
		exactly("zkproxy_notifications_total", 3),
		gaugeIs("zkproxy_watches", 0, "kind", "data"),
		gaugeIs("zkproxy_watches", 0, "kind", "exist"),
		gaugeIs("zkproxy_watches", 0, "kind", "child"),
		atLeast("zkproxy_client_bytes_total", 1, "direction", "out"),
	})

	// /status and /sessions agree with the metrics.
	if b := string(r.get(t, "/status")); !strings.Contains(b, `"total": 1`) || !strings.Contains(b, `"mode": "standalone"`) {
		t.Errorf("/status does not show the session and the standalone member:\n%s", b)
	}
	if b := string(r.get(t, "/sessions")); !strings.Contains(b, `"count": 1`) {
		t.Errorf("/sessions:\n%s", b)
	}

	// Four-letter words on the client port: the ones monitoring uses to
	// judge "the server at this address" answer from the proxy's own view
	// in ZooKeeper's formats; conf describes a member and is relayed.
	fourLetter := func(cmd string) string {
		t.Helper()
		ans, err := fourlw.Query(ctx, nil, r.addr, cmd)
		if err != nil {
			t.Fatalf("%s through the proxy: %v", cmd, err)
		}
		return ans
	}
	if ans := fourLetter("ruok"); ans != "imok" {
		t.Errorf("ruok through the proxy: %q", ans)
	}
	if ans := fourLetter("isro"); ans != "rw" {
		t.Errorf("isro through the proxy: %q", ans)
	}
	memberSrvr, err := zks.Srvr()
	if err != nil {
		t.Fatal(err)
	}
	srvrAns := fourLetter("srvr")
	srvr, err := fourlw.ParseSrvr(srvrAns)
	if err != nil {
		t.Fatalf("srvr through the proxy: %v\n%s", err, srvrAns)
	}
	// Zxid is the highest lastZxidSeen of the proxy's sessions: our
	// session saw the delete's zxid, the member's latest.
	if srvr.Mode != "proxy" || srvr.Connections < 1 || srvr.Zxid <= 0 || srvr.Zxid > memberSrvr.Zxid ||
		!strings.Contains(srvrAns, "Latency min/avg/max: ") {
		t.Errorf("srvr through the proxy, want the proxy's view (member zxid 0x%x):\n%s", memberSrvr.Zxid, srvrAns)
	}
	mntrAns := fourLetter("mntr")
	mntr, err := fourlw.ParseMntr(mntrAns)
	if err != nil {
		t.Fatalf("mntr through the proxy: %v", err)
	}
	for k, want := range map[string]string{"zk_server_state": "proxy", "zkproxy_sessions": "1", "zk_watch_count": "0",
		"zkproxy_sessions_active": "1", "zkproxy_held_requests": "0"} {
		if mntr[k] != want {
			t.Errorf("mntr through the proxy: %s = %q, want %q\n%s", k, mntr[k], want, mntrAns)
		}
	}
	for _, k := range []string{"zk_avg_latency", "zk_max_latency", "zk_min_latency", "zk_packets_received", "zk_packets_sent"} {
		if v, err := strconv.ParseFloat(mntr[k], 64); err != nil || (strings.HasPrefix(k, "zk_packets") && v < 14) {
			t.Errorf("mntr through the proxy: %s = %q\n%s", k, mntr[k], mntrAns)
		}
	}
	consAns := fourLetter("cons")
	sid := fmt.Sprintf("sid=0x%x,", conn.SessionID())
	var sessionLines int
	for _, line := range strings.Split(consAns, "\n") {
		if strings.Contains(line, sid) {
			sessionLines++
			if !strings.Contains(line, "member="+zks.ClientAddr()) || !strings.Contains(line, "state=active") {
				t.Errorf("cons line of our session lacks its member or state: %q", line)
			}
		}
	}
	if sessionLines != 1 {
		t.Errorf("cons through the proxy: %d lines with %s, want 1:\n%s", sessionLines, sid, consAns)
	}
	if _, err := fourlw.ParseConf(fourLetter("conf")); err != nil {
		t.Errorf("conf answered by the proxy: %v", err)
	}

	// Closing the session.
	conn.Close()
	var closed scrape
	for {
		closed = r.scrape(t)
		// The gauge and the close counter are two updates: wait for both.
		open, _ := closed.value("zkproxy_sessions_open")
		closes, _ := closed.value("zkproxy_sessions_closed_total")
		if open == 0 && closes > 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the proxy still counts the session open after the client closed it")
		case <-time.After(50 * time.Millisecond):
		}
	}
	r.check(t, "after close", fired, closed, []metricCheck{
		exactly("zkproxy_requests_total", 1, op(jute.OpCloseSession)...),
		// go-zookeeper closes its socket right after the closeSession reply,
		// so the proxy may see either the reply or the EOF first.
		exactly("zkproxy_sessions_closed_total", 1),
		exactly("zkproxy_sessions_closed_total", 0, "reason", "upstream_lost_in_flight"),
		exactly("zkproxy_four_letter_words_total", 1, "command", "ruok"),
		exactly("zkproxy_four_letter_words_total", 1, "command", "isro"),
		exactly("zkproxy_four_letter_words_total", 1, "command", "srvr"),
		exactly("zkproxy_four_letter_words_total", 1, "command", "mntr"),
		exactly("zkproxy_four_letter_words_total", 1, "command", "cons"),
		exactly("zkproxy_four_letter_words_total", 1, "command", "conf"),
		gaugeIs("zkproxy_sessions", 0),
		gaugeIs("zkproxy_watches", 0),
	})
	// The latency histograms count every request exactly once: compare
	// with the request counter per op over the whole run.
	for _, o := range []jute.Op{jute.OpCreate, jute.OpGetData, jute.OpSetData, jute.OpDelete, jute.OpMulti} {
		want, _ := closed.value("zkproxy_requests_total", op(o)...)
		r.check(t, "whole run", start, closed, []metricCheck{
			exactly("zkproxy_request_duration_seconds", want, op(o)...),
			exactly("zkproxy_upstream_request_duration_seconds", want, op(o)...),
		})
	}
	if len(r.skipped) > 0 {
		t.Logf("PENDING: assertions on %v skipped: the proxy does not expose them yet", slices.Sorted(func(yield func(string) bool) {
			for k := range r.skipped {
				if !yield(k) {
					return
				}
			}
		}))
	}
}

func waitState(ctx context.Context, t *testing.T, events <-chan zk.Event, want zk.State) {
	t.Helper()
	for {
		select {
		case ev := <-events:
			if ev.State == want {
				return
			}
		case <-ctx.Done():
			t.Fatalf("no %v through the proxy", want)
		}
	}
}

func mustDo(t *testing.T, what string, f func() error) {
	t.Helper()
	if err := f(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
