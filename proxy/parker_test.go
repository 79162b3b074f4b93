package proxy

import (
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/zkproxy/zkproxy/internal/membertls"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// TestIdleSessionsPark: the pumps of idle sessions give their goroutines up
// and everything a session does still works from the parked state —
// a watch fires (upstream pump woken by the notification), requests are
// answered (client pump woken by data), a member that goes away is noticed
// and the session re-attached without the client seeing it, a client that
// falls silent is closed at its session timeout, and closing the proxy
// ends parked sessions.
func TestIdleSessionsPark(t *testing.T) {
	zktest.RequireIntegration(t)
	ens := zktest.NewEnsemble(t, 3)
	direct, _ := connectGo(t, strings.Split(ens.ConnectString(), ","), 10*time.Second)
	checkGoroutines := goroutineBaseline(t)
	px := startProxy(t, strings.Split(ens.ConnectString(), ","), func(c *Config) { c.ParkIdleAfter = 100 * time.Millisecond })
	parked := func() float64 { return testutil.ToFloat64(px.m.parkedPumps) }

	// A 30 s session pings every 10 s: between pings both pumps park.
	conn, rec := connectGo(t, []string{px.Addr}, 30*time.Second)
	if _, err := direct.Create("/parked", []byte("a"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	_, _, events, err := conn.GetW("/parked")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both pumps parked", 10*time.Second, func() bool { return parked() == 2 })

	if _, err := direct.Set("/parked", []byte("b"), -1); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, "watch through a parked session", events, zk.EventNodeDataChanged, "/parked")
	waitFor(t, "parked again", 10*time.Second, func() bool { return parked() == 2 })
	if data, _, err := conn.Get("/parked"); err != nil || string(data) != "b" {
		t.Fatalf("get through a parked session: %q %v", data, err)
	}

	// The member goes away while both pumps are parked: the upstream pump
	// is woken by the connection's end and re-attaches elsewhere.
	waitFor(t, "parked again", 10*time.Second, func() bool { return parked() == 2 })
	sess := px.Sessions()[0]
	member := sess.Info().Member
	for _, m := range ens.Members {
		if m.ClientAddr() == member {
			m.Stop()
		}
	}
	waitFor(t, "re-attached elsewhere", 30*time.Second, func() bool {
		info := sess.Info()
		return info.Member != "" && info.Member != member && info.Attaches == 2
	})
	if data, _, err := conn.Get("/parked"); err != nil || string(data) != "b" {
		t.Fatalf("get after the re-attach: %q %v", data, err)
	}
	if n := rec.count(zk.StateDisconnected); n != 0 {
		t.Errorf("client saw %d disconnects", n)
	}

	// A client that stops sending (no pings) is closed at its session
	// timeout although its pump is parked.
	raw, _, resp := rawSession(t, px.Addr, 2000)
	expectClosed(t, raw, time.Duration(resp.TimeOut)*time.Millisecond+5*time.Second)
	waitFor(t, "log line", 5*time.Second, func() bool { return px.Logs.contains("client silent for the session timeout") })

	waitFor(t, "parked again", 10*time.Second, func() bool { return parked() == 2 })
	conn.Close()
	waitFor(t, "sessions closed", 10*time.Second, func() bool { return len(px.Sessions()) == 0 })
	if p := parked(); p != 0 {
		t.Errorf("%v pumps still parked after the sessions closed", p)
	}
	checkGoroutines()
}

// TestIdleTLSSessionsPark: both pumps of an idle session park when both of
// its connections are TLS — the client's to the proxy and the proxy's to
// the member's secure port — and the session works from the parked state:
// a watch notification wakes the upstream pump, a burst of requests the
// client pump (several TLS records at once, which tls.Conn buffers), a
// ping exchange parks them again, and closing leaves nothing parked.
func TestIdleTLSSessionsPark(t *testing.T) {
	zktest.RequireIntegration(t)
	ca := zktest.NewCA(t)
	server := zktest.Standalone(t, zktest.WithSecureClientPort(ca))
	direct, _ := connectGo(t, []string{server.ClientAddr()}, 10*time.Second)
	policy := &membertls.Policy{}
	policy.Add([]string{server.SecureClientAddr()}, memberTLSConfig(t, ca))
	px := startProxyWrapped(t, []string{server.SecureClientAddr()}, tlsListener(t, ca, false), func(c *Config) {
		c.MemberTLS = policy
		c.ParkIdleAfter = 100 * time.Millisecond
	})
	parked := func() float64 { return testutil.ToFloat64(px.m.parkedPumps) }

	conn, rec := connectGoTLS(t, px.Addr, ca, nil)
	if _, err := direct.Create("/tlsparked", []byte("a"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	_, _, events, err := conn.GetW("/tlsparked")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both TLS pumps parked", 10*time.Second, func() bool { return parked() == 2 })

	if _, err := direct.Set("/tlsparked", []byte("b"), -1); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, "watch through a parked TLS session", events, zk.EventNodeDataChanged, "/tlsparked")
	waitFor(t, "parked again", 10*time.Second, func() bool { return parked() == 2 })

	// Pipelined requests from parked pumps: go-zookeeper writes each in
	// its own TLS record, so one wake-up finds several buffered.
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			if data, _, err := conn.Get("/tlsparked"); err != nil || string(data) != "b" {
				errs <- fmt.Errorf("get %q: %v", data, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	waitFor(t, "parked after the burst", 10*time.Second, func() bool { return parked() == 2 })

	// A plaintext client on the TLS listener fails its handshake before it
	// has a frame reader; closing it must leave the parked session alone
	// (it once dereferenced the missing reader and took the process down).
	plain, err := net.Dial("tcp", px.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Write([]byte("\x00\x00\x00\x2c not a TLS client hello")); err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, plain) // until zkproxy closes it
	plain.Close()
	if data, _, err := conn.Get("/tlsparked"); err != nil || string(data) != "b" {
		t.Fatalf("after a failed TLS handshake: get %q: %v", data, err)
	}
	waitFor(t, "parked after the failed handshake", 10*time.Second, func() bool { return parked() == 2 })
	if n := rec.count(zk.StateDisconnected); n != 0 {
		t.Errorf("client saw %d disconnects", n)
	}
	conn.Close()
	waitFor(t, "session closed", 10*time.Second, func() bool { return len(px.Sessions()) == 0 })
	if p := parked(); p != 0 {
		t.Errorf("%v pumps still parked after the session closed", p)
	}
}

// The sweep looks through the parked pumps only once the earliest deadline
// may have passed, takes exactly the due ones, and keeps the bound exact.
func TestParkedSweepTakesOnlyDuePumps(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var ps parkedSet
	ps.entries = map[uint64]*frameReader{}
	var resumed []uint64
	for id, after := range map[uint64]time.Duration{1: 5 * time.Second, 2: 10 * time.Second, 3: 3 * time.Second, 4: 0} {
		fr := &frameReader{parkID: id}
		var d time.Time
		if after > 0 {
			d = t0.Add(after)
		}
		fr.parked = parkEntry{deadline: d, pump: recordingPump{id: id, resumed: &resumed}}
		ps.entries[id] = fr
		ps.noteDeadlineLocked(d)
	}
	if !ps.earliest.Equal(t0.Add(3 * time.Second)) {
		t.Fatalf("earliest = %v, want t0+3s", ps.earliest.Sub(t0))
	}
	take := func(now time.Duration) []uint64 {
		resumed = nil
		for _, e := range ps.sweepDueLocked(t0.Add(now), false, nil) {
			e.e.pump.resumePump()
		}
		slices.Sort(resumed)
		return resumed
	}
	if got := take(2 * time.Second); len(got) != 0 {
		t.Fatalf("at t0+2s took %v, want none", got)
	}
	if got := take(6 * time.Second); !slices.Equal(got, []uint64{1, 3}) {
		t.Fatalf("at t0+6s took %v, want [1 3]", got)
	}
	if !ps.earliest.Equal(t0.Add(10 * time.Second)) {
		t.Fatalf("after the sweep earliest = %v, want t0+10s (pump 2; pump 4 has none)", ps.earliest.Sub(t0))
	}
	if len(ps.entries) != 2 {
		t.Fatalf("%d entries left, want 2", len(ps.entries))
	}
	if got := ps.sweepDueLocked(t0, true, nil); len(got) != 2 || len(ps.entries) != 0 {
		t.Fatalf("closing sweep took %d, left %d; want 2 and 0", len(got), len(ps.entries))
	}
}

// recordingPump is a parkedPump that notes its resumes.
type recordingPump struct {
	id      uint64
	resumed *[]uint64
}

func (r recordingPump) resumePump()      { *r.resumed = append(*r.resumed, r.id) }
func (r recordingPump) inlinePump() bool { return false }
