package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/jute"
)

// rawSession completes a handshake for a new session on a raw connection
// and returns it with the response.
func rawSession(t *testing.T, addr string, timeoutMS int32) (net.Conn, *jute.FrameReader, jute.ConnectResponse) {
	t.Helper()
	c := dialRaw(t, addr)
	r, resp := handshakeRaw(t, c, timeoutMS)
	return c, r, resp
}

// handshakeRaw sends a ConnectRequest for a new session on c and reads the
// ConnectResponse.
func handshakeRaw(t *testing.T, c net.Conn, timeoutMS int32) (*jute.FrameReader, jute.ConnectResponse) {
	t.Helper()
	req := jute.ConnectRequest{TimeOut: timeoutMS, Passwd: make([]byte, 16), HasReadOnly: true}
	if _, err := c.Write(jute.AppendFrame(nil, jute.Marshal(&req))); err != nil {
		t.Fatal(err)
	}
	r := jute.NewFrameReader(c, 0)
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	f, err := r.Next()
	if err != nil {
		t.Fatalf("reading ConnectResponse: %v", err)
	}
	var resp jute.ConnectResponse
	if err := jute.Unmarshal(f.Payload(), &resp); err != nil || resp.TimeOut <= 0 || !resp.HasReadOnly {
		t.Fatalf("ConnectResponse %+v: %v", resp, err)
	}
	c.SetReadDeadline(time.Time{})
	return r, resp
}

// rawProxiedSession is rawSession through px, checking the negotiated
// timeout, with the proxy's Session of it.
func rawProxiedSession(t *testing.T, px *testProxy, timeoutMS int32) (net.Conn, *jute.FrameReader, *Session) {
	t.Helper()
	c, r, resp := rawSession(t, px.Addr, timeoutMS)
	if resp.TimeOut != timeoutMS {
		t.Fatalf("negotiated %d ms, want %d", resp.TimeOut, timeoutMS)
	}
	sess := sessionByID(px.Server, resp.SessionID)
	if sess == nil {
		t.Fatalf("session %s not in the proxy", resp.SessionID)
	}
	return c, r, sess
}

// rawRoundTrip writes frame on c and checks that the next reply has xid
// and no error; what names the exchange in failures.
func rawRoundTrip(t *testing.T, c net.Conn, r *jute.FrameReader, frame []byte, xid jute.Xid, what string) {
	t.Helper()
	if _, err := c.Write(frame); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := r.Next()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if h, _ := jute.PeekReplyHeader(f.Payload()); h.Xid != xid || h.Err != jute.ErrOK {
		t.Fatalf("%s: reply %+v", what, h)
	}
}

// existsRoot is an exists("/") request with xid 1.
func existsRoot() []byte {
	return appendRequestFrame(nil, jute.RequestHeader{Xid: 1, Op: jute.OpExists}, &pathRequest{Path: "/"})
}

// expectClosed waits until the proxy closes c.
func expectClosed(t *testing.T, c net.Conn, within time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open after %s", within)
		}
		return
	}
}

func TestBadInput(t *testing.T) {
	zktest.RequireIntegration(t)
	server := zktest.Standalone(t)
	px := startProxy(t, []string{server.ClientAddr()}, func(c *Config) {
		c.HandshakeTimeout = 2 * time.Second
		c.MaxFrameSize = 64 << 10
	})
	checkGoroutines := goroutineBaseline(t)

	// A well-behaved session that must not notice anything.
	bystander, rec := connectGo(t, []string{px.Addr}, 10*time.Second)
	if _, err := bystander.Create("/bystander", []byte("x"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}

	t.Run("garbage before the handshake", func(t *testing.T) {
		c := dialRaw(t, px.Addr)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		expectClosed(t, c, 10*time.Second)
		waitFor(t, "log line", 5*time.Second, func() bool { return px.Logs.contains("closed during handshake", "bad_handshake") })
	})

	t.Run("undecodable ConnectRequest", func(t *testing.T) {
		c := dialRaw(t, px.Addr)
		c.Write(jute.AppendFrame(nil, []byte{0, 0, 0, 0, 1, 2, 3}))
		expectClosed(t, c, 10*time.Second)
		waitFor(t, "log line", 5*time.Second, func() bool { return px.Logs.contains("decoding ConnectRequest") })
	})

	t.Run("silent before the handshake", func(t *testing.T) {
		c := dialRaw(t, px.Addr)
		expectClosed(t, c, 20*time.Second)
		waitFor(t, "log line", 5*time.Second, func() bool { return px.Logs.contains("handshake_timeout") })
	})

	t.Run("oversize frame", func(t *testing.T) {
		c, _, _ := rawSession(t, px.Addr, 10000)
		hdr := binary.BigEndian.AppendUint32(nil, 1<<20)
		c.Write(hdr)
		expectClosed(t, c, 10*time.Second)
		waitFor(t, "log line", 5*time.Second, func() bool { return px.Logs.contains("client frame over max-frame-size") })
		if n := counter(t, px.m.framesOverLimit.WithLabelValues("client")); n < 1 {
			t.Errorf("frames_over_limit{client} = %v", n)
		}
	})

	t.Run("truncated frame", func(t *testing.T) {
		c, _, _ := rawSession(t, px.Addr, 10000)
		c.Write(append(binary.BigEndian.AppendUint32(nil, 100), make([]byte, 10)...))
		c.(*net.TCPConn).CloseWrite()
		expectClosed(t, c, 10*time.Second)
		waitFor(t, "log line", 5*time.Second, func() bool { return px.Logs.contains("ended inside a frame") })
	})

	t.Run("last request and FIN together", func(t *testing.T) {
		// The client sends a request and closes at once, after idling
		// long enough for its pump to park. The FIN, which may be read
		// with the request so that no further edge comes
		// (frameReader.shortReadEmpties, TestServeFindsFINAfterShortRead),
		// is noticed as the client closing, not as a client silent for its
		// session timeout. Whether the request is answered depends on
		// which comes first, as with a server (NIOServerCnxn closes on
		// end of stream and drops later replies).
		c, _, resp := rawSession(t, px.Addr, 4000)
		time.Sleep(3 * DefaultParkIdleAfter)
		c.Write(appendRequestFrame(nil, jute.RequestHeader{Xid: 1, Op: jute.OpExists}, &pathRequest{Path: "/bystander"}))
		c.(*net.TCPConn).CloseWrite()
		expectClosed(t, c, 10*time.Second)
		if !px.Logs.eventually(5*time.Second, "session closed", resp.SessionID.String(), "client closed the connection") {
			t.Error("the proxy did not log the client's close")
		}
		if px.Logs.contains(resp.SessionID.String(), "client silent") {
			t.Error("the proxy took the closed client for a silent one")
		}
	})

	t.Run("malformed request header", func(t *testing.T) {
		c, _, _ := rawSession(t, px.Addr, 10000)
		c.Write(jute.AppendFrame(nil, []byte{1, 2, 3}))
		expectClosed(t, c, 10*time.Second)
		waitFor(t, "log line", 5*time.Second, func() bool { return px.Logs.contains("malformed request header") })
	})

	t.Run("half-open client", func(t *testing.T) {
		// The client stops sending anything (no pings): after its session
		// timeout the proxy closes it, as a server would expire it.
		c, _, resp := rawSession(t, px.Addr, 1000)
		expectClosed(t, c, time.Duration(resp.TimeOut)*time.Millisecond+10*time.Second)
		waitFor(t, "log line", 5*time.Second, func() bool { return px.Logs.contains("client silent for the session timeout") })
	})

	t.Run("client that stops reading", func(t *testing.T) {
		big := bytes.Repeat([]byte("z"), 60<<10)
		if _, err := bystander.Create("/big", big, 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			t.Fatal(err)
		}
		c, _, resp := rawSession(t, px.Addr, 2000)
		// Ask for far more than the socket buffers hold and never read.
		var reqs []byte
		for i := range 1000 {
			h := jute.RequestHeader{Xid: jute.Xid(i + 1), Op: jute.OpGetData}
			reqs = appendRequestFrame(reqs, h, &pathRequest{Path: "/big"})
		}
		// Keep pinging, so the client is not silent, only deaf.
		done := make(chan struct{})
		defer close(done)
		go func() {
			c.Write(reqs)
			for {
				select {
				case <-done:
					return
				case <-time.After(300 * time.Millisecond):
				}
				if _, err := c.Write(pingFrame); err != nil {
					return
				}
			}
		}()
		waitFor(t, "the proxy to give up on the client", time.Duration(resp.TimeOut)*time.Millisecond+60*time.Second, func() bool {
			return px.Logs.contains("client stopped reading")
		})
		c.Close()
	})

	if n := rec.count(zk.StateDisconnected); n != 0 {
		t.Errorf("bystander saw %d disconnects", n)
	}
	if data, _, err := bystander.Get("/bystander"); err != nil || string(data) != "x" {
		t.Errorf("bystander after the bad clients: %q %v", data, err)
	}
	bystander.Close()
	waitFor(t, "all sessions closed", 10*time.Second, func() bool { return len(px.Sessions()) == 0 })
	checkGoroutines()
}

func TestLimitsAndFourLetterWords(t *testing.T) {
	zktest.RequireIntegration(t)
	server := zktest.Standalone(t)
	px := startProxy(t, []string{server.ClientAddr()}, func(c *Config) { c.MaxClientConns = 2 })

	t.Run("ruok answered by the proxy", func(t *testing.T) {
		c := dialRaw(t, px.Addr)
		io.WriteString(c, "ruok")
		out, _ := readAllTimeout(c, 10*time.Second)
		if string(out) != "imok" {
			t.Fatalf("ruok: %q", out)
		}
	})
	t.Run("srvr and conf answered by the proxy, wchs relayed from a member", func(t *testing.T) {
		c := dialRaw(t, px.Addr)
		io.WriteString(c, "srvr")
		out, _ := readAllTimeout(c, 10*time.Second)
		if !strings.Contains(string(out), "\nMode: proxy\n") {
			t.Fatalf("srvr through the proxy: %q", out)
		}
		c = dialRaw(t, px.Addr)
		io.WriteString(c, "conf")
		out, _ = readAllTimeout(c, 10*time.Second)
		if !strings.Contains(string(out), "\nmembership: \n") || strings.Contains(string(out), server.IP) {
			t.Fatalf("conf through the proxy: %q", out)
		}
		c = dialRaw(t, px.Addr)
		io.WriteString(c, "wchs")
		out, _ = readAllTimeout(c, 10*time.Second)
		want, err := server.FourLetter("wchs")
		if err != nil {
			t.Fatal(err)
		}
		gotFirst, _, _ := strings.Cut(string(out), "\n")
		wantFirst, _, _ := strings.Cut(want, "\n")
		if gotFirst == "" || gotFirst != wantFirst {
			t.Fatalf("wchs through the proxy: %q, direct: %q", gotFirst, wantFirst)
		}
	})
	t.Run("ready", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := px.Ready(ctx); err != nil {
			t.Fatalf("Ready: %v", err)
		}
		px.SetTarget([]string{net.JoinHostPort(zktest.LoopbackIP(t), "2181")})
		if err := px.Ready(ctx); err == nil {
			t.Fatal("Ready with an unreachable target succeeded")
		}
		px.SetTarget([]string{server.ClientAddr()})
	})
	t.Run("max client connections", func(t *testing.T) {
		a, _, _ := rawSession(t, px.Addr, 10000)
		b, _, _ := rawSession(t, px.Addr, 10000)
		c := dialRaw(t, px.Addr)
		expectClosed(t, c, 10*time.Second)
		if n := counter(t, px.m.connectionsRejected.WithLabelValues("max_client_conns")); n != 1 {
			t.Errorf("rejected{max_client_conns} = %v, want 1", n)
		}
		a.Close()
		b.Close()
		waitFor(t, "slots to free up", 10*time.Second, func() bool { return len(px.Sessions()) == 0 })
		rawSession(t, px.Addr, 10000)
	})
}

func TestShutdownFinishesInFlight(t *testing.T) {
	zktest.RequireIntegration(t)
	server := zktest.Standalone(t)
	px := startProxy(t, []string{server.ClientAddr()})
	conn, _ := connectGo(t, []string{px.Addr}, 10*time.Second)
	if _, err := conn.Create("/sd", nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	id := conn.SessionID()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := px.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := px.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if err := px.Close(); err != nil {
		t.Fatalf("Close after Shutdown: %v", err)
	}
	// The ZooKeeper session outlives the proxy: a direct client resumes it.
	direct, _ := connectGo(t, []string{server.ClientAddr()}, 10*time.Second)
	if _, st, err := direct.Exists("/sd"); err != nil || st == nil {
		t.Fatalf("node after shutdown: %v", err)
	}
	if !px.Logs.contains("session closed", "proxy shutting down") {
		t.Error("no shutdown log line")
	}
	_ = id
}

func TestBackpressureAndKeepalive(t *testing.T) {
	zktest.RequireIntegration(t)
	server := zktest.Standalone(t)
	px := startProxy(t, []string{server.ClientAddr()}, func(c *Config) { c.MaxOutstandingPerSession = 4 })

	t.Run("outstanding limit pauses reading, replies stay in order", func(t *testing.T) {
		c, r, _ := rawSession(t, px.Addr, 10000)
		var reqs []byte
		const n = 200
		for i := range n {
			reqs = appendRequestFrame(reqs, jute.RequestHeader{Xid: jute.Xid(i + 1), Op: jute.OpExists}, &pathRequest{Path: "/"})
		}
		go c.Write(reqs)
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		for i := range n {
			f, err := r.Next()
			if err != nil {
				t.Fatalf("reply %d: %v", i, err)
			}
			h, err := jute.PeekReplyHeader(f.Payload())
			if err != nil || h.Xid != jute.Xid(i+1) || h.Err != jute.ErrOK {
				t.Fatalf("reply %d: %+v %v", i, h, err)
			}
		}
		if v := counter(t, px.m.limitReached.WithLabelValues("max_outstanding")); v < 1 {
			t.Errorf("limit_reached{max_outstanding} = %v", v)
		}
	})

	t.Run("proxy pings swallowed, client pings answered once", func(t *testing.T) {
		// The client pings every 2s on a 3s session, held: the proxy
		// answers each ping itself and relays one of its own to the member
		// (docs/session-expiry.md), whose reply it must swallow.
		c, r, sess := rawProxiedSession(t, px, 3000)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sess.Hold(ctx); err != nil {
			t.Fatalf("hold: %v", err)
		}
		defer sess.Release()
		before := counter(t, px.m.proxyPings)
		for i := range 3 {
			time.Sleep(2 * time.Second)
			rawRoundTrip(t, c, r, pingFrame, jute.XidPing, fmt.Sprintf("ping %d", i))
		}
		// Nothing else may arrive: no reply to a proxy ping.
		c.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
		if f, err := r.Next(); err == nil {
			h, _ := jute.PeekReplyHeader(f.Payload())
			t.Fatalf("unsolicited frame %+v", h)
		}
		if counter(t, px.m.proxyPings) <= before {
			t.Error("the proxy sent no keep-alive ping")
		}
		// Held for twice the member's timeout, the session is alive: the
		// relayed pings reached the member.
		sess.Release()
		rawRoundTrip(t, c, r, existsRoot(), 1, "exists after the hold")
	})
}

func TestMetricsLint(t *testing.T) {
	px, err := New(Config{Source: []string{"127.0.0.1:1"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheusRegistryFor(t, px)
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
}

// prometheusRegistryFor registers a fresh set of the proxy's metrics, with
// every labelled series touched once so the linter sees them.
func prometheusRegistryFor(t *testing.T, _ *Server) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	m.connectionsRejected.WithLabelValues("max_client_conns").Inc()
	m.connectionsClosed.WithLabelValues("client_closed").Inc()
	m.stats.assign().countRequest(jute.OpGetData)
	m.reattaches.WithLabelValues("ok").Inc()
	m.moves.WithLabelValues("ok").Inc()
	m.upstreamConnectFails.WithLabelValues("dial").Inc()
	m.decodeErrors.WithLabelValues("request").Inc()
	m.framesOverLimit.WithLabelValues("client").Inc()
	m.limitReached.WithLabelValues("max_outstanding").Inc()
	m.fourLetterWords.WithLabelValues("ruok").Inc()
	m.stats.assign().countResponse(jute.OpGetData, jute.ErrNoNode)
	m.sessionsByMember.WithLabelValues("127.0.0.1:2181").Inc()
	return reg
}

func TestUpstreamSourceAddressesAndRefusal(t *testing.T) {
	zktest.RequireIntegration(t)
	server := zktest.Standalone(t)
	a, b := zktest.LoopbackIP(t), zktest.LoopbackIP(t)
	px := startProxy(t, []string{server.ClientAddr()}, func(c *Config) { c.LocalAddrs = []string{a, b} })

	t.Run("dials spread over local-addrs", func(t *testing.T) {
		for range 4 {
			rawSession(t, px.Addr, 10000)
		}
		cons, err := server.FourLetter("cons")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(cons, "not in the whitelist") {
			t.Skip("cons not whitelisted on the test server")
		}
		for _, ip := range []string{a, b} {
			if !strings.Contains(cons, "/"+ip+":") {
				t.Errorf("no upstream connection from %s in cons:\n%s", ip, cons)
			}
		}
	})

	t.Run("member refusing a client ahead of it is reported", func(t *testing.T) {
		// lastZxidSeen far beyond the member's: it closes the connection
		// without a response (ZooKeeperServer.processConnectRequest).
		c := dialRaw(t, px.Addr)
		req := jute.ConnectRequest{LastZxidSeen: 1 << 40, TimeOut: 10000, Passwd: make([]byte, 16)}
		c.Write(jute.AppendFrame(nil, jute.Marshal(&req)))
		expectClosed(t, c, 20*time.Second)
		waitFor(t, "log line", 5*time.Second, func() bool {
			return px.Logs.contains("member closed a new connection right after the ConnectRequest", "maxClientCnxns")
		})
		if n := counter(t, px.m.upstreamConnectFails.WithLabelValues("closed_after_connect")); n < 1 {
			t.Errorf("upstream_connect_failures{closed_after_connect} = %v", n)
		}
		if n := counter(t, px.m.connectionsRejected.WithLabelValues("no_member")); n != 1 {
			t.Errorf("rejected{no_member} = %v", n)
		}
	})
}

func TestExpiredSessionRelayed(t *testing.T) {
	zktest.RequireIntegration(t)
	server := zktest.Standalone(t)
	px := startProxy(t, []string{server.ClientAddr()})
	c, _, resp := rawSession(t, px.Addr, 1000)
	c.Close()
	// Wait for the member to expire the session (nothing keeps it alive
	// once the proxy dropped its upstream).
	waitFor(t, "session expiry", 30*time.Second, func() bool {
		return strings.Contains(server.LogTail(64<<10), "Expiring session 0x"+strconv.FormatUint(uint64(resp.SessionID), 16))
	})
	// ZooKeeper 3.8 answers an expired session with timeOut 0 and closes
	// (ZooKeeperServer.finishSessionInit), but under load its NIO layer
	// sometimes closes first and drops the answer (NIOServerCnxn.doIO,
	// "CancelledKeyException causing close"): a client connected directly
	// would see only the close. The proxy then logs that the member closed
	// without a ConnectResponse; only that case is retried.
	var c2 net.Conn
	var f jute.Frame
	for attempt := 1; ; attempt++ {
		c2 = dialRaw(t, px.Addr)
		req := jute.ConnectRequest{TimeOut: 1000, SessionID: resp.SessionID, Passwd: resp.Passwd, HasReadOnly: true}
		c2.Write(jute.AppendFrame(nil, jute.Marshal(&req)))
		c2.SetReadDeadline(time.Now().Add(10 * time.Second))
		var err error
		f, err = jute.NewFrameReader(c2, 0).Next()
		if err == nil {
			break
		}
		if attempt == 5 || !px.Logs.eventually(2*time.Second, "member closed the connection without a ConnectResponse") {
			t.Fatalf("no ConnectResponse for the expired session (attempt %d): %v", attempt, err)
		}
		t.Logf("attempt %d: the member dropped its answer (%v); again", attempt, err)
		px.Logs.reset()
	}
	var got jute.ConnectResponse
	if err := jute.Unmarshal(f.Payload(), &got); err != nil || got.TimeOut != 0 || !got.HasReadOnly {
		t.Fatalf("expiry response %+v: %v", got, err)
	}
	expectClosed(t, c2, 10*time.Second)
	if n := counter(t, px.m.connectionsRejected.WithLabelValues("session_expired")); n != 1 {
		t.Errorf("rejected{session_expired} = %v", n)
	}
}

// TestDisconnectLeavesNoUnknownOutcome: the cutover's fallback (Disconnect)
// lets the requests in flight finish before it closes the client, so every
// write the member applied was answered: a client that pipelines creates
// and is disconnected mid-burst finds exactly the nodes it got replies for.
// Closing at once would leave some created without a reply (their outcome
// unknown to the client, as when a server dies).
func TestDisconnectLeavesNoUnknownOutcome(t *testing.T) {
	zktest.RequireIntegration(t)
	server := zktest.Standalone(t)
	px := startProxy(t, []string{server.ClientAddr()})
	direct, _ := connectGo(t, []string{server.ClientAddr()}, 10*time.Second)
	if _, err := direct.Create("/burst", nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}

	c, r, resp := rawSession(t, px.Addr, 10000)
	const n = 2000
	var reqs []byte
	open := []jute.ACL{{Perms: jute.PermAll, ID: jute.Id{Scheme: "world", ID: "anyone"}}}
	for i := range n {
		reqs = appendRequestFrame(reqs, jute.RequestHeader{Xid: jute.Xid(i + 1), Op: jute.OpCreate},
			&jute.CreateRequest{Path: fmt.Sprintf("/burst/n%04d", i), ACL: open, Flags: jute.CreatePersistent})
	}
	go c.Write(reqs)

	// Disconnect once the first replies arrive: the burst is in full flow.
	var sess *Session
	for _, s := range px.Sessions() {
		if s.ID() == resp.SessionID {
			sess = s
		}
	}
	if sess == nil {
		t.Fatal("session not found")
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	replies := 0
	disconnected := make(chan struct{})
	for {
		f, err := r.Next()
		if err != nil {
			break // closed by the proxy
		}
		h, err := jute.PeekReplyHeader(f.Payload())
		if err != nil || h.Xid != jute.Xid(replies+1) || h.Err != jute.ErrOK {
			t.Fatalf("reply %d: %+v %v", replies, h, err)
		}
		replies++
		if replies == 50 {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				sess.Disconnect(ctx, "test: fallback")
				close(disconnected)
			}()
		}
	}
	<-disconnected
	children, _, err := direct.Children("/burst")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d of %d creates answered before the disconnect; %d nodes exist", replies, n, len(children))
	if replies >= n {
		t.Fatalf("every create was answered: the disconnect came too late to test anything")
	}
	if len(children) != replies {
		t.Fatalf("%d nodes exist but the client got %d replies: %d writes have an unknown outcome", len(children), replies, len(children)-replies)
	}
}
