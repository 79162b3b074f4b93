package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/jute"
)

// waitClosedAs waits until one session close is counted, then checks it
// was counted under want and no other label.
func waitClosedAs(t *testing.T, px *testProxy, want string) {
	t.Helper()
	total := func() float64 {
		n := 0.0
		for r := range allCloseLabels {
			n += counter(t, px.m.connectionsClosed.WithLabelValues(r))
		}
		return n
	}
	waitFor(t, "the session close to be counted", 30*time.Second, func() bool { return total() >= 1 })
	if got := counter(t, px.m.connectionsClosed.WithLabelValues(want)); got != 1 || total() != 1 {
		for r := range allCloseLabels {
			if n := counter(t, px.m.connectionsClosed.WithLabelValues(r)); n > 0 {
				t.Errorf("sessions_closed_total{reason=%q} = %v", r, n)
			}
		}
		t.Fatalf("sessions_closed_total{reason=%q} = %v, want 1 and nothing else", want, got)
	}
}

// allCloseLabels lists every label sessions_closed_total has
// carried, old and new, so a miscount under any of them shows.
var allCloseLabels = map[string]bool{
	"handed_over":   true,
	"client_closed": true, "close_session": true, "client_timeout": true, "client_not_reading": true,
	"frame_too_large": true, "truncated_frame": true, "malformed": true, "reserved_xid": true,
	"upstream_lost_in_flight": true, "upstream_lost_sasl": true, "member_closed": true,
	"member_frame_too_large": true, "member_protocol_error": true, "reattach_failed": true,
	"move_failed": true, "replaced": true, "proxy_shutdown": true, "disconnected": true,
	"handshake_failed": true, "other": true,
}

// TestCloseReasonSASLUpstreamLost: a session that authenticated with SASL
// loses its member. SASL cannot be replayed on a new connection, so the
// proxy closes the client — for that reason, not "lost with requests in
// flight" (nothing was in flight).
func TestCloseReasonSASLUpstreamLost(t *testing.T) {
	zktest.RequireIntegration(t)
	_, saslOpts := zktest.DigestSASL(t)
	server := zktest.Standalone(t, saslOpts...)
	px := startProxy(t, []string{server.ClientAddr()})

	c, r, _ := rawSession(t, px.Addr, 10000)
	// The first DIGEST-MD5 step: an empty token, which the server answers
	// with its challenge (ZooKeeperServer.processSasl).
	sasl := appendRequestFrame(nil, jute.RequestHeader{Xid: 1, Op: jute.OpSASL}, &jute.GetSASLRequest{Token: []byte{}})
	if _, err := c.Write(sasl); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := r.Next()
	if err != nil {
		t.Fatalf("reading the SASL reply: %v", err)
	}
	if h, err := jute.PeekReplyHeader(f.Payload()); err != nil || h.Xid != 1 || h.Err != jute.ErrOK {
		t.Fatalf("SASL reply %+v: %v", h, err)
	}
	if err := server.Kill(); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c, 30*time.Second)
	waitClosedAs(t, px, "upstream_lost_sasl")
}

// TestCloseReasonMemberFrameTooLarge: a reply over max-reply-frame-size
// closes the session as the proxy's own limit, not as a member that meant
// to close the connection.
func TestCloseReasonMemberFrameTooLarge(t *testing.T) {
	zktest.RequireIntegration(t)
	server := zktest.Standalone(t)
	px := startProxy(t, []string{server.ClientAddr()}, func(c *Config) { c.MaxReplyFrameSize = 1024 })

	direct, _ := connectGo(t, []string{server.ClientAddr()}, 10*time.Second)
	if _, err := direct.Create("/big", make([]byte, 4096), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	c, _, _ := rawSession(t, px.Addr, 10000)
	get := appendRequestFrame(nil, jute.RequestHeader{Xid: 1, Op: jute.OpGetData}, &jute.GetDataRequest{Path: "/big"})
	if _, err := c.Write(get); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c, 30*time.Second)
	waitClosedAs(t, px, "member_frame_too_large")
}

func TestCloseReasonLabels(t *testing.T) {
	seen := map[string]closeReason{}
	for r := range numCloseReasons {
		label := r.String()
		if label == "" || strings.HasPrefix(label, "closeReason(") {
			t.Errorf("reason %d has no label", r)
		}
		if other, dup := seen[label]; dup {
			t.Errorf("reasons %d and %d share the label %q", other, r, label)
		}
		seen[label] = r
		if !allCloseLabels[label] {
			t.Errorf("label %q missing from allCloseLabels", label)
		}
	}
	// A client read error keeps its reason through the pump's wrapping.
	err := &clientFrameError{closeErrorf(closeReservedXid, "request %s uses reserved xid %d", jute.OpGetData, -2)}
	if got := reasonOf(err, closeClientClosed); got != closeReservedXid {
		t.Errorf("reasonOf(reserved xid) = %s", got)
	}
}
