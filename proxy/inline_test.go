package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/jute"
)

// TestParkedPingsRelayInline: a parked session's ping and its reply are
// relayed by the parker without resuming either pump (the inline path,
// inline.go), both pumps are parked again right after, and anything else
// in the same read falls back to the resumed pump in order.
func TestParkedPingsRelayInline(t *testing.T) {
	zktest.RequireIntegration(t)
	ens := zktest.NewEnsemble(t, 1)
	px := startProxy(t, strings.Split(ens.ConnectString(), ","), func(c *Config) { c.ParkIdleAfter = 100 * time.Millisecond })
	parked := func() float64 { return testutil.ToFloat64(px.m.parkedPumps) }
	inline := func(from string) float64 { return testutil.ToFloat64(px.m.inlinePings.WithLabelValues(from)) }

	c, r, resp := rawSession(t, px.Addr, 30000)
	if resp.TimeOut <= 0 {
		t.Fatalf("no session: %+v", resp)
	}
	readReply := func(what string) jute.ReplyHeader {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		f, err := r.Next()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		h, err := jute.PeekReplyHeader(f.Payload())
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return h
	}
	ping := jute.AppendRequestFrame(nil, jute.RequestHeader{Xid: jute.XidPing, Op: jute.OpPing}, nil)
	for i := range 5 {
		waitFor(t, "both pumps parked", 10*time.Second, func() bool { return parked() == 2 })
		if _, err := c.Write(ping); err != nil {
			t.Fatal(err)
		}
		if h := readReply("ping"); h.Xid != jute.XidPing || h.Err != jute.ErrOK {
			t.Fatalf("ping %d: reply %+v", i, h)
		}
		// Parked again at once, not after park-idle-after: the pumps never
		// ran.
		waitFor(t, "parked again", time.Second, func() bool { return parked() == 2 })
	}
	if got := inline("client"); got != 5 {
		t.Fatalf("%v client pings relayed inline, want 5", got)
	}
	waitFor(t, "replies relayed inline", 5*time.Second, func() bool { return inline("member") == 5 })

	// A ping and a request in one write: the ping goes inline, the request
	// to the resumed pump, and the replies come in order.
	waitFor(t, "both pumps parked", 10*time.Second, func() bool { return parked() == 2 })
	both := append(append([]byte(nil), ping...), jute.AppendRequestFrame(nil, jute.RequestHeader{Xid: 1, Op: jute.OpExists},
		&jute.ExistsRequest{Path: "/"})...)
	if _, err := c.Write(both); err != nil {
		t.Fatal(err)
	}
	if h := readReply("ping before exists"); h.Xid != jute.XidPing {
		t.Fatalf("first reply %+v, want the ping's", h)
	}
	if h := readReply("exists"); h.Xid != 1 || h.Err != jute.ErrOK {
		t.Fatalf("second reply %+v, want exists xid 1", h)
	}
	// A ping the pump runs for (the session was just active) is relayed
	// by the pump; the session then parks again and goes on inline.
	waitFor(t, "both pumps parked", 10*time.Second, func() bool { return parked() == 2 })
	before := inline("client")
	if _, err := c.Write(ping); err != nil {
		t.Fatal(err)
	}
	if h := readReply("ping after the fallback"); h.Xid != jute.XidPing {
		t.Fatalf("reply %+v", h)
	}
	if inline("client") != before+1 {
		t.Fatal("the ping after the fallback was not relayed inline")
	}
	if n := len(px.Sessions()); n != 1 {
		t.Fatalf("%d sessions", n)
	}
}

// A parked client that sends its last ping and closes at once (the FIN may
// come with the ping): the parker's registration is edge-triggered, so
// the end of the stream must still reach the pump, and the session close
// well before its 30 s timeout.
func TestParkedClientClosingAfterPing(t *testing.T) {
	zktest.RequireIntegration(t)
	ens := zktest.NewEnsemble(t, 1)
	px := startProxy(t, strings.Split(ens.ConnectString(), ","), func(c *Config) { c.ParkIdleAfter = 100 * time.Millisecond })
	ping := jute.AppendRequestFrame(nil, jute.RequestHeader{Xid: jute.XidPing, Op: jute.OpPing}, nil)
	for i := range 6 {
		c, _, resp := rawSession(t, px.Addr, 30000)
		if resp.TimeOut <= 0 {
			t.Fatalf("no session: %+v", resp)
		}
		waitFor(t, "both pumps parked", 10*time.Second, func() bool { return testutil.ToFloat64(px.m.parkedPumps) == 2 })
		if i%2 == 1 {
			// Half the rounds: one ping inline first, so the close meets
			// a registration kept from an inline relay.
			c.Write(ping)
			time.Sleep(200 * time.Millisecond)
		}
		c.Write(ping)
		c.Close()
		waitFor(t, "the session closed", 5*time.Second, func() bool { return len(px.Sessions()) == 0 })
	}
}
