package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/cutover/proxyadapter"
	"github.com/zkproxy/zkproxy/internal/fourlw"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/proxy"
)

// srvrAnswer is srvr as a 3.8 follower prints it (StatCommand).
const srvrAnswer = `Zookeeper version: 3.8.4-debian, built on 2024-01-01 00:00 UTC
Latency min/avg/max: 0/0.5/12
Received: 120
Sent: 119
Connections: 3
Outstanding: 0
Zxid: 0x300000007
Mode: follower
Node count: 42
`

// answeringDial answers srvr with srvrAnswer on "up" members and refuses
// the rest, counting dials. It stands in for members only where the test
// needs a member state (down) and a dial count that a real server cannot
// give deterministically; TestStatusRealZooKeeper uses a real one.
type answeringDial struct {
	up    map[string]bool
	dials atomic.Int64
}

func (d *answeringDial) dial(_ context.Context, _, addr string) (net.Conn, error) {
	d.dials.Add(1)
	if !d.up[addr] {
		return nil, errors.New("connection refused")
	}
	client, server := net.Pipe()
	go func() {
		defer server.Close()
		cmd := make([]byte, 4)
		if _, err := io.ReadFull(server, cmd); err != nil || string(cmd) != "srvr" {
			return
		}
		io.WriteString(server, srvrAnswer)
	}()
	return client, nil
}

// newStatusRig builds a proxy and a controller (not serving) and a Status.
func newStatusRig(t *testing.T, cfg StatusConfig) (*Status, *Handler) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	p, err := proxy.New(proxy.Config{Source: cfg.Source, Destination: cfg.Destination}, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	ctl, err := cutover.NewController(cutover.Config{
		Source: cfg.Source, Destination: cfg.Destination, Store: cutover.Store{Dir: t.TempDir()},
	}, proxyadapter.New(p, cfg.Destination), log, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ctl.Close)
	st := NewStatus(cfg, p, ctl)
	h := NewHandler(Options{})
	RegisterStatus(h, st)
	return st, h
}

func getStatus(t *testing.T, h http.Handler) (map[string]any, StatusReport) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/status", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /status: %d %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var raw map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
		t.Fatalf("GET /status: not JSON: %v\n%s", err, rec.Body)
	}
	var rep StatusReport
	if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
		t.Fatalf("GET /status: %v\n%s", err, rec.Body)
	}
	return raw, rep
}

func TestStatusJSONShape(t *testing.T) {
	d := &answeringDial{up: map[string]bool{"127.0.0.1:1": true, "127.0.0.1:2": true}}
	st, h := newStatusRig(t, StatusConfig{
		Version: "v1.2.3", Source: []string{"127.0.0.1:1", "127.0.0.1:2"}, Destination: []string{"127.0.0.1:3"},
		Members: fourlw.Members{Dial: d.dial},
	})
	raw, rep := getStatus(t, h)

	// The keys operators' scripts read.
	for _, k := range []string{"version", "started_at", "uptime_seconds", "phase", "split", "target",
		"target_members", "ensembles", "sessions", "proxy"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("GET /status lacks %q: %v", k, raw)
		}
	}
	if rep.Version != "v1.2.3" || rep.Phase != cutover.PhaseSource || rep.Split || rep.Target != cutover.Source {
		t.Errorf("version/phase/split/target = %q %v %v %q", rep.Version, rep.Phase, rep.Split, rep.Target)
	}
	if raw["phase"] != "source" {
		t.Errorf("phase is %v, want the phase name \"source\"", raw["phase"])
	}
	if rep.UptimeSeconds < 0 || rep.StartedAt.IsZero() {
		t.Errorf("uptime %v started %v", rep.UptimeSeconds, rep.StartedAt)
	}
	if strings.Join(rep.TargetMembers, ",") != "127.0.0.1:1,127.0.0.1:2" {
		t.Errorf("target_members %v", rep.TargetMembers)
	}

	// The first report waits for the first probe round.
	if n := len(rep.Ensembles.Source); n != 2 {
		t.Fatalf("source members: %d, want 2: %+v", n, rep.Ensembles.Source)
	}
	for _, m := range rep.Ensembles.Source {
		if m.Mode != "follower" || m.Zxid != "0x300000007" || m.Connections == nil || *m.Connections != 3 || m.Error != "" ||
			m.SeenAt.IsZero() || m.ProbedAt.IsZero() {
			t.Errorf("source member %+v, want follower at 0x300000007 with 3 connections", m)
		}
	}
	if len(rep.Ensembles.Destination) != 1 {
		t.Fatalf("destination members: %+v", rep.Ensembles.Destination)
	}
	if m := rep.Ensembles.Destination[0]; m.Addr != "127.0.0.1:3" || m.Mode != "" || m.Zxid != "" ||
		!strings.Contains(m.Error, "connection refused") || !m.SeenAt.IsZero() {
		t.Errorf("unreachable destination member %+v: want an error and no role", m)
	}
	member := raw["ensembles"].(map[string]any)["destination"].([]any)[0].(map[string]any)
	for _, k := range []string{"mode", "zxid", "connections", "seen_at"} {
		if _, ok := member[k]; ok {
			t.Errorf("a member never seen has no %s key: %v", k, member)
		}
	}

	sessions, ok := raw["sessions"].(map[string]any)
	if !ok {
		t.Fatalf("sessions: %v", raw["sessions"])
	}
	for _, k := range []string{"total", "by_ensemble", "by_state", "by_member"} {
		if _, ok := sessions[k]; !ok {
			t.Errorf("sessions lacks %q: %v", k, sessions)
		}
	}
	if rep.Sessions.Total != 0 || rep.Sessions.ByEnsemble["source"] != 0 || rep.Sessions.ByEnsemble["destination"] != 0 {
		t.Errorf("sessions %+v", rep.Sessions)
	}
	proxyStats, ok := raw["proxy"].(map[string]any)
	if !ok {
		t.Fatalf("proxy: %v", raw["proxy"])
	}
	for _, k := range []string{"connections", "outstanding", "held", "watches", "max_last_zxid_seen", "latency_min_ms",
		"latency_avg_ms", "latency_max_ms", "packets_received", "packets_sent", "client_bytes_in", "client_bytes_out",
		"upstream_bytes_in", "upstream_bytes_out"} {
		if _, ok := proxyStats[k]; !ok {
			t.Errorf("proxy lacks %q: %v", k, proxyStats)
		}
	}
	if _, ok := rep.Sessions.ByState["active"]; !ok {
		t.Errorf("by_state lists every live state, even at zero: %v", rep.Sessions.ByState)
	}

	// The last sync check, once one ran.
	if _, ok := raw["sync_check"]; ok {
		t.Errorf("sync_check before any check: %v", raw["sync_check"])
	}
	st.ctl.Check(context.Background())
	raw, rep = getStatus(t, h)
	sc, ok := raw["sync_check"].(map[string]any)
	if !ok || rep.SyncCheck == nil {
		t.Fatalf("no sync_check after a check: %v", raw["sync_check"])
	}
	for _, k := range []string{"checked_at", "ready", "failing", "warnings", "direct_beside_proxied", "peer_sessions_on_source"} {
		if _, ok := sc[k]; !ok {
			t.Errorf("sync_check lacks %q: %v", k, sc)
		}
	}
	if rep.SyncCheck.Ready || !slices.ContainsFunc(rep.SyncCheck.Failing, func(s string) bool { return strings.HasPrefix(s, "destination serves: ") }) {
		t.Errorf("sync_check %+v: want not ready, destination serves failing", rep.SyncCheck)
	}
}

// TestStatusProbeCache checks that /status probes members at most once per
// ProbeInterval, and that a member that goes away keeps its last-seen role.
func TestStatusProbeCache(t *testing.T) {
	d := &answeringDial{up: map[string]bool{"127.0.0.1:1": true}}
	var mu sync.Mutex
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return clock
	}
	st, h := newStatusRig(t, StatusConfig{Source: []string{"127.0.0.1:1"}, ProbeInterval: 5 * time.Second, Members: fourlw.Members{Dial: d.dial}})
	st.now = now

	getStatus(t, h)
	for range 5 {
		getStatus(t, h)
	}
	if n := d.dials.Load(); n != 1 {
		t.Fatalf("6 reports within the probe interval dialed %d times, want 1", n)
	}

	// The member goes away; the next round, once the interval has passed,
	// runs in the background: this report still shows the cache.
	d.up["127.0.0.1:1"] = false
	mu.Lock()
	clock = clock.Add(5 * time.Second)
	mu.Unlock()
	_, rep := getStatus(t, h)
	if m := rep.Ensembles.Source[0]; m.Error != "" || m.Mode != "follower" {
		t.Errorf("report during a background round: %+v, want the cached answer", m)
	}
	waitRound(st)
	if n := d.dials.Load(); n != 2 {
		t.Fatalf("after the interval: %d dials, want 2", n)
	}
	_, rep = getStatus(t, h)
	m := rep.Ensembles.Source[0]
	if m.Error == "" || m.Mode != "follower" || m.Zxid != "0x300000007" || !m.SeenAt.Equal(clock.Add(-5*time.Second)) ||
		!m.ProbedAt.Equal(clock) {
		t.Errorf("member gone: %+v, want the error with the role and zxid last seen 5s before", m)
	}
}

// waitRound waits for a running probe round, if any.
func waitRound(st *Status) {
	st.mu.Lock()
	round := st.round
	st.mu.Unlock()
	if round != nil {
		<-round
	}
}

// TestStatusRealZooKeeper probes a real standalone server through /status
// and counts a go-zookeeper session held through the proxy.
func TestStatusRealZooKeeper(t *testing.T) {
	zks := zktest.Standalone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The destination member is an address nobody listens on.
	dest := net.JoinHostPort(zktest.LoopbackIP(t), "2181")
	st, h := newStatusRig(t, StatusConfig{Version: "test", Source: []string{zks.ClientAddr()}, Destination: []string{dest}})

	conn := connectThrough(ctx, t, serveOnLoopback(t, st.srv))
	if _, err := conn.Create("/status-test", []byte("x"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	srvr, err := zks.Srvr()
	if err != nil {
		t.Fatal(err)
	}

	_, rep := getStatus(t, h)
	src := rep.Ensembles.Source
	if len(src) != 1 || src[0].Addr != zks.ClientAddr() || src[0].Mode != "standalone" || src[0].Error != "" {
		t.Fatalf("source member %+v, want %s standalone", src, zks.ClientAddr())
	}
	// The create above happened before the probe: the zxid seen is at least
	// the one srvr gave after it.
	seen, err := strconv.ParseInt(strings.TrimPrefix(src[0].Zxid, "0x"), 16, 64)
	if err != nil || seen < srvr.Zxid {
		t.Errorf("source zxid %q, want >= 0x%x (err %v)", src[0].Zxid, srvr.Zxid, err)
	}
	if c := src[0].Connections; c == nil || *c < 1 {
		t.Errorf("source member reports %v connections; the proxied session holds one", c)
	}
	if d := rep.Ensembles.Destination; len(d) != 1 || d[0].Error == "" || d[0].Mode != "" {
		t.Errorf("destination member nobody listens on: %+v", d)
	}
	// The proxy's own counters saw the create and its reply.
	if p := rep.Proxy; p.Connections != 1 || p.PacketsReceived < 1 || p.PacketsSent < 1 || p.ClientBytesIn == 0 ||
		p.UpstreamBytesOut == 0 || p.LatencyMaxMS <= 0 || p.LatencyMinMS > p.LatencyMaxMS || p.MaxLastZxidSeen == "0x0" {
		t.Errorf("proxy stats %+v, want one connection that sent and received, with latencies", p)
	}
	if s := rep.Sessions; s.Total != 1 || s.ByEnsemble["source"] != 1 || s.ByState["active"] != 1 ||
		s.ByMember[zks.ClientAddr()] != 1 {
		t.Errorf("sessions %+v, want one active session on %s", s, zks.ClientAddr())
	}
}

type zkLogger struct{ t *testing.T }

func (l zkLogger) Printf(format string, args ...any) { l.t.Logf("go-zookeeper: "+format, args...) }

// serveOnLoopback serves p on a fresh loopback address until the test ends
// and returns the address.
func serveOnLoopback(t *testing.T, p *proxy.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(zktest.LoopbackIP(t), "2181"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(ln) }()
	t.Cleanup(func() {
		p.Close()
		if err := <-done; !errors.Is(err, proxy.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// connectThrough opens a go-zookeeper session through the proxy at addr
// and waits until it has one; the test's end closes it.
func connectThrough(ctx context.Context, t *testing.T, addr string) *zk.Conn {
	t.Helper()
	conn, events, err := zk.Connect([]string{addr}, 10*time.Second, zk.WithLogger(zkLogger{t}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	for connected := false; !connected; {
		select {
		case ev := <-events:
			connected = ev.State == zk.StateHasSession
		case <-ctx.Done():
			t.Fatal("no session through the proxy")
		}
	}
	return conn
}
