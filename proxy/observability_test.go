package proxy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/zkproxy/zkproxy/internal/fourlw"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// gatheredSum gathers reg and sums value over the series of family name
// whose labels include want.
func gatheredSum(t *testing.T, reg *prometheus.Registry, name string, want map[string]string, value func(*dto.Metric) float64) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelsMatch(m, want) {
				v += value(m)
			}
		}
	}
	return v
}

// histogramCount is the number of samples in the histograms name{want}.
func histogramCount(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) uint64 {
	t.Helper()
	return uint64(gatheredSum(t, reg, name, want, func(m *dto.Metric) float64 { return float64(m.GetHistogram().GetSampleCount()) }))
}

// counterValue sums the counters name{want}.
func counterValue(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	return gatheredSum(t, reg, name, want, func(m *dto.Metric) float64 { return m.GetCounter().GetValue() })
}

func labelsMatch(m *dto.Metric, want map[string]string) bool {
	have := map[string]string{}
	for _, l := range m.GetLabel() {
		have[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// TestMetricsFollowWorkload runs a go-zookeeper session through the proxy
// against a real server and checks that each hot-path family moves, and
// that the gauges return to zero when the session ends.
func TestMetricsFollowWorkload(t *testing.T) {
	zktest.RequireIntegration(t)
	server := zktest.Standalone(t)
	px := startProxy(t, []string{server.ClientAddr()}, func(c *Config) { c.FourLetterWords = []string{"*"} })
	m := px.m

	conn, _ := connectGo(t, []string{px.Addr}, 10*time.Second)
	direct, _ := connectGo(t, []string{server.ClientAddr()}, 10*time.Second)
	if _, err := conn.Create("/metrics", []byte("v"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := conn.Get("/metrics-missing"); err != zk.ErrNoNode {
		t.Fatalf("get missing node: %v", err)
	}
	_, _, events, err := conn.GetW("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if got := counter(t, m.watches[watchData]); got != 1 {
		t.Errorf("watches{data} = %v after getData with watch, want 1", got)
	}
	if counter(t, m.sessionsByState[0][StateActive]) != 1 {
		t.Errorf("sessions{source,active} = %v, want 1", counter(t, m.sessionsByState[0][StateActive]))
	}
	if got := counter(t, m.sessionsByMember.WithLabelValues(server.ClientAddr())); got != 1 {
		t.Errorf("sessions_by_member = %v, want 1", got)
	}
	if got := counter(t, m.clientConnections); got != 1 {
		t.Errorf("client_connections = %v, want 1", got)
	}
	if _, err := direct.Set("/metrics", []byte("w"), -1); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		if ev.Type != zk.EventNodeDataChanged {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event through the proxy")
	}
	waitFor(t, "data watch cleared", 5*time.Second, func() bool { return counter(t, m.watches[watchData]) == 0 })

	for _, c := range []struct {
		op, err string
		min     float64
	}{{"create", "OK", 1}, {"getData", "OK", 1}, {"getData", "NONODE", 1}} {
		if got := counterValue(t, px.Reg, "zkproxy_responses_total", map[string]string{"op": c.op, "err": c.err}); got < c.min {
			t.Errorf("responses_total{op=%s,err=%s} = %v, want >= %v", c.op, c.err, got, c.min)
		}
	}
	if n := histogramCount(t, px.Reg, "zkproxy_request_duration_seconds", map[string]string{"op": "getData"}); n < 2 {
		t.Errorf("request_duration_seconds{getData} has %d samples, want >= 2", n)
	}
	if n := histogramCount(t, px.Reg, "zkproxy_upstream_request_duration_seconds", map[string]string{"op": "create"}); n < 1 {
		t.Errorf("upstream_request_duration_seconds{create} has %d samples, want >= 1", n)
	}
	if got := counter(t, m.notifications); got < 1 {
		t.Errorf("notifications_total = %v", got)
	}
	st := px.Stats()
	if st.Sessions != 1 || st.PacketsReceived < 4 || st.PacketsSent < 4 /* connect, create, 2 getData */ || st.LatencyMax <= 0 || st.LatencyMin > st.LatencyMax ||
		st.ClientBytesIn == 0 || st.ClientBytesOut == 0 || st.UpstreamBytesIn == 0 || st.UpstreamBytesOut == 0 || st.MaxLastZxid == 0 {
		t.Errorf("Stats() = %+v", st)
	}
	if st.UpstreamBytesIn < st.ClientBytesOut {
		t.Errorf("relayed %d bytes to the client but read only %d from the member", st.ClientBytesOut, st.UpstreamBytesIn)
	}

	conn.Close()
	waitFor(t, "session gauges back to zero", 10*time.Second, func() bool {
		return counter(t, m.clientConnections) == 0 && counter(t, m.sessionsByState[0][StateActive]) == 0 &&
			counter(t, m.sessionsByMember.WithLabelValues(server.ClientAddr())) == 0 && counter(t, m.sessionsOpen) == 0
	})
}

// TestFourLetterWordsAnsweredByProxy sends raw four-letter words to the
// proxy's client port while a real client holds a session, and parses the
// answers with the parsers monitoring uses (internal/fourlw).
func TestFourLetterWordsAnsweredByProxy(t *testing.T) {
	zktest.RequireIntegration(t)
	server := zktest.Standalone(t)
	px := startProxy(t, []string{server.ClientAddr()}, func(c *Config) { c.FourLetterWords = []string{"*"} })
	conn, _ := connectGo(t, []string{px.Addr}, 10*time.Second)
	if _, err := conn.Create("/fourlw", nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := conn.ExistsW("/fourlw"); err != nil {
		t.Fatal(err)
	}
	ask := func(cmd string) string {
		t.Helper()
		out, err := zktest.FourLetter(px.Addr, cmd)
		if err != nil {
			t.Fatalf("%s through the proxy: %v", cmd, err)
		}
		return out
	}
	if got := ask("ruok"); got != "imok" {
		t.Errorf("ruok = %q", got)
	}
	if got := ask("isro"); got != "rw" {
		t.Errorf("isro = %q", got)
	}
	info := sessionInfo(t, px.Server, conn.SessionID())

	srvr, err := fourlw.ParseSrvr(ask("srvr"))
	if err != nil {
		t.Fatal(err)
	}
	if srvr.Mode != "proxy" || srvr.Zxid < int64(info.LastZxid) || srvr.Connections < 1 || !strings.HasPrefix(srvr.Version, "zkproxy-") {
		t.Errorf("srvr = %+v, session last zxid %#x", srvr, info.LastZxid)
	}
	stat := ask("stat")
	if !strings.Contains(stat, "Clients:\n /"+info.ClientAddr+"[1](queued=0,recved=") || !strings.Contains(stat, "Mode: proxy\n") ||
		!strings.Contains(stat, "Latency min/avg/max: ") {
		t.Errorf("stat:\n%s", stat)
	}

	mntr, err := fourlw.ParseMntr(ask("mntr"))
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"zk_server_state": "proxy", "zkproxy_sessions": "1", "zkproxy_sessions_active": "1",
		"zk_watch_count": "1", "zk_outstanding_requests": "0"} {
		if mntr[k] != want {
			t.Errorf("mntr %s = %q, want %q", k, mntr[k], want)
		}
	}
	for _, k := range []string{"zk_version", "zk_avg_latency", "zk_min_latency", "zk_max_latency", "zk_packets_received",
		"zk_packets_sent", "zk_num_alive_connections"} {
		if mntr[k] == "" {
			t.Errorf("mntr lacks %s", k)
		}
	}

	cons := ask("cons")
	line := ""
	for _, l := range strings.Split(cons, "\n") {
		// Long.toHexString, as ServerCnxn.dumpConnectionInfo prints it.
		if strings.Contains(l, fmt.Sprintf(",sid=0x%x,", uint64(info.ID))) {
			line = l
		}
	}
	if line == "" || !strings.HasPrefix(line, " /"+info.ClientAddr+"[1](queued=0,") ||
		!strings.Contains(line, ",member="+server.ClientAddr()+",state=active)") {
		t.Errorf("cons has no line for session %s:\n%s", info.ID, cons)
	}

	// Words about a server's configuration are still the member's.
	conf := ask("conf")
	if !strings.Contains(conf, "clientPort") && !strings.Contains(conf, "not in the whitelist") {
		t.Errorf("conf relayed from the member = %q", conf)
	}
	if got := counter(t, px.m.fourLetterWords.WithLabelValues("mntr")); got != 1 {
		t.Errorf("four_letter_words_total{mntr} = %v", got)
	}
}

// TestConsOffByDefault: cons lists session ids, from which passwords are
// derived, so the proxy answers it only when configured to; monitoring's
// words are on.
func TestConsOffByDefault(t *testing.T) {
	zktest.RequireIntegration(t)
	server := zktest.Standalone(t)
	px := startProxy(t, []string{server.ClientAddr()})
	ask := func(cmd string) string {
		t.Helper()
		ans, err := fourlw.Query(context.Background(), nil, px.Addr, cmd)
		if err != nil && !errors.Is(err, fourlw.ErrNotWhitelisted) {
			t.Fatalf("%s: %v", cmd, err)
		}
		if errors.Is(err, fourlw.ErrNotWhitelisted) {
			return "not whitelisted"
		}
		return ans
	}
	if got := ask("cons"); got != "not whitelisted" {
		t.Fatalf("cons answered by default:\n%s", got)
	}
	if got := ask("srvr"); !strings.Contains(got, "Mode: proxy") {
		t.Fatalf("srvr:\n%s", got)
	}
	if got := ask("ruok"); got != "imok" {
		t.Fatalf("ruok: %q", got)
	}
}

func TestFourLetterWordsConfigValidated(t *testing.T) {
	err := Config{Source: []string{"127.0.0.1:2181"}, FourLetterWords: []string{"cons", "dump", "wchs", "ruk", "telnet close"}}.Validate()
	if err == nil || strings.Contains(err.Error(), `"dump"`) || !strings.Contains(err.Error(), `four-letter-words: "ruk"`) ||
		!strings.Contains(err.Error(), `four-letter-words: "telnet close"`) {
		t.Fatalf("validate: %v", err)
	}
}
