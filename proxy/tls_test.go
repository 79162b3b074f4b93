package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/jute"
)

// tlsListener returns a wrap for startProxyWrapped that serves TLS with a
// certificate for the listener's IP issued by ca, requiring client
// certificates from ca when clientAuth (cmd/zkproxy builds the same from
// tls-cert, tls-key and tls-client-ca).
func tlsListener(t *testing.T, ca *zktest.CA, clientAuth bool) func(net.Listener) net.Listener {
	return func(ln net.Listener) net.Listener {
		ip, _, _ := net.SplitHostPort(ln.Addr().String())
		cert := ca.KeyPair(t, "proxy-"+ip, ip)
		cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if clientAuth {
			cfg.ClientCAs = ca.Pool()
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
		return tls.NewListener(ln, cfg)
	}
}

// connectGoTLS connects go-zookeeper to addr over TLS, trusting ca, with
// the client certificate cert when it is not nil.
func connectGoTLS(t *testing.T, addr string, ca *zktest.CA, cert *tls.Certificate) (*zk.Conn, *stateRecorder) {
	t.Helper()
	cfg := &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	dial := func(network, address string, timeout time.Duration) (net.Conn, error) {
		return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, network, address, cfg)
	}
	rec := &stateRecorder{}
	conn, _, err := zk.Connect([]string{addr}, 10*time.Second, zk.WithDialer(dial), zk.WithLogInfo(false),
		zk.WithLogger(zkLogger{t}), zk.WithEventCallback(rec.record))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	return conn, rec
}

// TestTLSClients runs clients over TLS to the proxy, which relays to a
// plaintext member: go-zookeeper with watches and an ephemeral, the Java
// client (Kafka's, with zookeeper.client.secure and the Netty socket) with
// the whole workload, whose transcript must equal a direct plaintext run. A
// plaintext client on the TLS port is closed at the handshake, and nobody
// else notices.
func TestTLSClients(t *testing.T) {
	prog := javaWorkload(t)
	server := zktest.Standalone(t)
	ca := zktest.NewCA(t)
	px := startProxyWrapped(t, []string{server.ClientAddr()}, tlsListener(t, ca, false))

	conn, rec := connectGoTLS(t, px.Addr, ca, nil)
	if _, err := conn.Create("/tls", []byte("x"), zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	_, _, ch, err := conn.GetW("/tls")
	if err != nil {
		t.Fatal(err)
	}

	// A plaintext ZooKeeper client on the TLS port.
	plain := dialRaw(t, px.Addr)
	plain.Write(jute.AppendFrame(nil, jute.Marshal(&jute.ConnectRequest{TimeOut: 10000, Passwd: make([]byte, 16)})))
	expectClosed(t, plain, 10*time.Second)
	if !px.Logs.eventually(5*time.Second, "client connection closed during handshake", "reason=tls_handshake", "first record does not look like a TLS handshake") {
		t.Error("the plaintext client's rejection was not logged")
	}

	direct, _ := connectGo(t, []string{server.ClientAddr()}, 10*time.Second)
	if _, err := direct.Set("/tls", []byte("y"), -1); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, "data watch over TLS", ch, zk.EventNodeDataChanged, "/tls")
	if ok, stat, err := direct.Exists("/tls"); err != nil || !ok || stat.EphemeralOwner != conn.SessionID() {
		t.Fatalf("ephemeral over TLS: exists %v, %+v, %v", ok, stat, err)
	}
	if n := rec.count(zk.StateDisconnected); n != 0 {
		t.Errorf("TLS client saw %d disconnects", n)
	}

	javaTLS := javaTLSOptions(ca)
	compareWorkload(t, "Java over TLS", server, px, 30, func(ctx context.Context, addr, root string) (string, error) {
		cmd := prog.Command(ctx, addr, root)
		if addr == px.Addr {
			cmd.Env = append(os.Environ(), "JAVA_TOOL_OPTIONS="+javaTLS)
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("%w\n%s", err, out)
		}
		return string(out), nil
	})
}

// TestTLSClientCertificates requires client certificates: a TLS client
// without one is refused at the handshake, one with a certificate from the
// CA gets its session.
func TestTLSClientCertificates(t *testing.T) {
	zktest.RequireIntegration(t)
	server := zktest.Standalone(t)
	ca := zktest.NewCA(t)
	px := startProxyWrapped(t, []string{server.ClientAddr()}, tlsListener(t, ca, true))

	anonymous, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", px.Addr,
		&tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12})
	if err == nil {
		defer anonymous.Close()
		// TLS 1.3 reports the server's refusal on the first read.
		anonymous.Write(jute.AppendFrame(nil, jute.Marshal(&jute.ConnectRequest{TimeOut: 10000, Passwd: make([]byte, 16)})))
		anonymous.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err = anonymous.Read(make([]byte, 64)); err == nil {
			t.Fatal("a client without a certificate got an answer")
		}
	}
	if !px.Logs.eventually(5*time.Second, "client connection closed during handshake", "reason=tls_handshake", "certificate") {
		t.Error("the refused client was not logged")
	}

	cert := ca.KeyPair(t, "broker-1", "127.0.0.1")
	conn, _ := connectGoTLS(t, px.Addr, ca, &cert)
	if _, err := conn.Create("/mtls", nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatalf("client with a certificate: %v", err)
	}
}

// javaTLSOptions are the JVM options that make the Java client (Kafka's)
// connect over TLS, trusting ca: zookeeper.client.secure with the Netty
// socket, as Kafka's zookeeper.ssl.client.enable sets them.
func javaTLSOptions(ca *zktest.CA) string {
	return strings.Join([]string{
		"-Dzookeeper.client.secure=true",
		"-Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty",
		"-Dzookeeper.ssl.trustStore.location=" + ca.CertFile,
		"-Dzookeeper.ssl.trustStore.type=PEM",
	}, " ")
}
