package proxy

import (
	"context"
	"crypto/tls"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkproxy/zkproxy/internal/membertls"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/jute"
)

// memberTLSConfig is what cmd/zkproxy builds from source-tls-ca,
// source-tls-cert and source-tls-key: trust ca, present a certificate from
// it (ZooKeeper's secure port requires one by default).
func memberTLSConfig(t *testing.T, ca *zktest.CA) *tls.Config {
	t.Helper()
	cert := ca.KeyPair(t, "proxy-client", "127.0.0.1")
	return &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// TestMemberTLS runs sessions through a proxy that reaches a real
// ensemble's members only on their TLS ports (secureClientPort, Netty).
func TestMemberTLS(t *testing.T) {
	ca := zktest.NewCA(t)
	f := newFixture(t, ca)
	acl := zk.WorldACL(zk.PermAll)

	t.Run("sessions, watches and the readiness probe over TLS", func(t *testing.T) {
		conn, rec := connectGo(t, []string{f.px.Addr}, 10*time.Second)
		if _, err := conn.Create("/tls", []byte("v1"), 0, acl); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Create("/tls/eph", nil, zk.FlagEphemeral, acl); err != nil {
			t.Fatal(err)
		}
		_, _, ch, err := conn.GetW("/tls")
		if err != nil {
			t.Fatal(err)
		}
		direct := f.directAvoiding(t, nil)
		if _, err := direct.Set("/tls", []byte("v2"), -1); err != nil {
			t.Fatal(err)
		}
		expectEvent(t, "data watch", ch, zk.EventNodeDataChanged, "/tls")
		if data, _, err := conn.Get("/tls"); err != nil || string(data) != "v2" {
			t.Fatalf("get: %q %v", data, err)
		}
		_, st, err := direct.Exists("/tls/eph")
		if err != nil || st == nil || st.EphemeralOwner != conn.SessionID() {
			t.Fatalf("ephemeral seen directly: %+v %v", st, err)
		}
		info := sessionInfo(t, f.px.Server, conn.SessionID())
		if !strings.HasSuffix(info.Member, ":2281") {
			t.Errorf("session on %s, want a secure port", info.Member)
		}
		// The probe's srvr goes over TLS too: a plain 4lw on the secure
		// port gets no answer.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.px.Ready(ctx); err != nil {
			t.Errorf("Ready over TLS: %v", err)
		}
		if n := rec.count(zk.StateDisconnected); n != 0 {
			t.Errorf("client saw %d disconnects", n)
		}
	})

	t.Run("idle client does not notice a member's death", func(t *testing.T) { idleFailoverUnnoticed(t, f) })

	t.Run("a member that wants a client certificate the proxy lacks", func(t *testing.T) {
		noCert := &membertls.Policy{}
		noCert.Add(f.members, &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12})
		px := startProxy(t, f.members[:1], func(c *Config) { c.MemberTLS = noCert; c.DialTimeout = 3 * time.Second })
		expectTLSRefusal(t, px)
	})

	t.Run("a member whose certificate the proxy does not trust", func(t *testing.T) {
		other := zktest.NewCA(t)
		policy := &membertls.Policy{}
		policy.Add(f.members, memberTLSConfig(t, other))
		px := startProxy(t, f.members[:1], func(c *Config) { c.MemberTLS = policy; c.DialTimeout = 3 * time.Second })
		// No member can be reached: the proxy closes the client, which
		// then tries elsewhere, as when no server answers.
		expectTLSRefusal(t, px)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := px.Ready(ctx); err == nil || !strings.Contains(err.Error(), "TLS handshake") {
			t.Errorf("Ready = %v, want the TLS handshake failure", err)
		}
	})
}

// expectTLSRefusal opens a session through px, whose only member refuses
// the proxy's TLS, and checks the client is closed and the refusal is
// counted and logged as TLS, not as a member closing after the
// ConnectRequest.
func expectTLSRefusal(t *testing.T, px *testProxy) {
	t.Helper()
	c := dialRaw(t, px.Addr)
	req := jute.ConnectRequest{TimeOut: 10000, Passwd: make([]byte, 16)}
	if _, err := c.Write(jute.AppendFrame(nil, jute.Marshal(&req))); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c, 20*time.Second)
	waitFor(t, "the refusal counted as TLS", 10*time.Second, func() bool {
		return counter(t, px.m.upstreamConnectFails.WithLabelValues("tls_handshake")) >= 1
	})
	if n := counter(t, px.m.upstreamConnectFails.WithLabelValues("closed_after_connect")); n != 0 {
		t.Errorf("TLS refusal also counted as closed_after_connect (%v)", n)
	}
	if !px.Logs.eventually(5*time.Second, "TLS handshake with member", "certificate") {
		t.Error("no log line naming the TLS refusal")
	}
}

// TestMemberRefusesProxyCertificateTLS13 covers a TLS 1.3 member that
// requires a client certificate the proxy does not have. The proxy's
// handshake then completes and the refusal comes as an alert at the first
// read. ZooKeeper 3.8.0 on this machine's JDK negotiates TLS 1.2, where the
// handshake itself fails, so the member here is a Go TLS server: fault
// injection a real one cannot produce here.
func TestMemberRefusesProxyCertificateTLS13(t *testing.T) {
	ca := zktest.NewCA(t)
	ip := zktest.LoopbackIP(t)
	cert := ca.KeyPair(t, "member", ip)
	ln, err := tls.Listen("tcp", ip+":2281", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13,
		ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.(*tls.Conn).Handshake() // fails: no client certificate; sends the alert
			}()
		}
	}()
	policy := &membertls.Policy{}
	policy.Add([]string{ln.Addr().String()}, &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12})
	px := startProxy(t, []string{ln.Addr().String()}, func(c *Config) { c.MemberTLS = policy; c.DialTimeout = 3 * time.Second })
	expectTLSRefusal(t, px)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := px.Ready(ctx); err == nil || !strings.Contains(err.Error(), "TLS handshake") {
		t.Errorf("Ready = %v, want the TLS refusal", err)
	}
}

// TestJavaTLSBothLegs is Kafka with TLS to ZooKeeper behind zkproxy: the
// Java client (Netty socket, zookeeper.client.secure) over TLS to the
// proxy, the proxy over TLS with a client certificate to a member's secure
// port. The whole workload's transcript must equal a direct plaintext run.
func TestJavaTLSBothLegs(t *testing.T) {
	prog := javaWorkload(t)
	ca := zktest.NewCA(t)
	server := zktest.Standalone(t, zktest.WithSecureClientPort(ca))
	policy := &membertls.Policy{}
	policy.Add([]string{server.SecureClientAddr()}, memberTLSConfig(t, ca))
	px := startProxyWrapped(t, []string{server.SecureClientAddr()}, tlsListener(t, ca, false),
		func(c *Config) { c.MemberTLS = policy })

	javaTLS := javaTLSOptions(ca)
	run := func(ctx context.Context, addr, root string, env ...string) []string {
		cmd := prog.Command(ctx, addr, root)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("Java workload on %s: %v\n%s", addr, err, out)
		}
		return transcript(string(out), root)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	want := run(ctx, server.ClientAddr(), "/direct")
	got := run(ctx, px.Addr, "/proxied", "JAVA_TOOL_OPTIONS="+javaTLS)
	if len(want) < 30 {
		t.Fatalf("direct transcript too short: %v", want)
	}
	// The one difference is ZooKeeper's, not the proxy's: a TLS
	// connection's certificate becomes an identity of the session
	// (X509AuthenticationProvider, docs/protocol.md §6.2), and the member sees
	// the proxy's certificate.
	const proxyIdentity = ", x509:CN=proxy-client"
	found := false
	for i, line := range got {
		if strings.HasPrefix(line, "whoAmI:") && strings.Contains(line, proxyIdentity) {
			got[i], found = strings.Replace(line, proxyIdentity, "", 1), true
		}
	}
	if !found {
		t.Errorf("whoAmI through the proxy lacks the proxy's certificate identity %q", proxyIdentity)
	}
	if !slices.Equal(got, want) {
		t.Errorf("workload through the proxy differs:\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
	if !px.Logs.contains("session open", "member="+server.SecureClientAddr()) {
		t.Error("no session opened on the member's secure port")
	}
	if n := counter(t, px.m.upstreamConnectFails.WithLabelValues("tls_handshake")); n != 0 {
		t.Errorf("%v TLS handshake failures", n)
	}
}
