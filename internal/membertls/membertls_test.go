package membertls

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

func TestPolicyServerNames(t *testing.T) {
	var nilPolicy *Policy
	if nilPolicy.For("a:1") != nil || nilPolicy.Enabled() {
		t.Fatal("a nil policy reaches members over TLS")
	}
	p := &Policy{}
	p.Add([]string{"10.0.0.1:2281", "zk2.example.com:2281"}, &tls.Config{MinVersion: tls.VersionTLS12})
	p.Add([]string{"10.0.1.1:2281"}, &tls.Config{ServerName: "dst.example.com"})
	p.Add([]string{"10.0.2.1:2181"}, nil)
	for member, want := range map[string]string{
		"10.0.0.1:2281": "10.0.0.1", "zk2.example.com:2281": "zk2.example.com", "10.0.1.1:2281": "dst.example.com",
	} {
		if c := p.For(member); c == nil || c.ServerName != want {
			t.Errorf("%s: config %+v, want server name %s", member, c, want)
		}
	}
	if p.For("10.0.2.1:2181") != nil || p.For("10.9.9.9:2181") != nil {
		t.Error("a plain member is reached over TLS")
	}
	if !p.Enabled() {
		t.Error("Enabled = false")
	}
}

// echoTLS serves TLS on a loopback port with a certificate for its IP from
// ca, requiring a client certificate from ca, and echoes one read back.
func echoTLS(t *testing.T, ca *zktest.CA) string {
	t.Helper()
	ip := zktest.LoopbackIP(t)
	cert := ca.KeyPair(t, "member-"+ip, ip)
	ln, err := tls.Listen("tcp", ip+":0", &tls.Config{Certificates: []tls.Certificate{cert},
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
				buf := make([]byte, 4)
				if _, err := io.ReadFull(c, buf); err == nil {
					c.Write(buf)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func clientConfig(t *testing.T, ca *zktest.CA) *tls.Config {
	cert := ca.KeyPair(t, "client", "127.0.0.1")
	return &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

func TestDialContext(t *testing.T) {
	ca := zktest.NewCA(t)
	addr := echoTLS(t, ca)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	good := &Policy{}
	good.Add([]string{addr}, clientConfig(t, ca))
	conn, err := good.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if !IsTLS(conn) {
		t.Fatalf("connection is a %T", conn)
	}
	conn.Write([]byte("ruok"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ruok" {
		t.Fatalf("echo over TLS: %q %v", buf, err)
	}
	conn.Close()

	other := zktest.NewCA(t)
	for name, cfg := range map[string]*tls.Config{
		"untrusted member": clientConfig(t, other),
		"wrong name":       func() *tls.Config { c := clientConfig(t, ca); c.ServerName = "elsewhere"; return c }(),
	} {
		p := &Policy{}
		p.Add([]string{addr}, cfg)
		_, err := p.DialContext(ctx, "tcp", addr)
		var he *HandshakeError
		if !errors.As(err, &he) || he.Member != addr {
			t.Errorf("%s: err %v, want a HandshakeError naming %s", name, err, addr)
		}
	}

	// No client certificate for a member that requires one: under TLS
	// 1.3 the handshake completes and the refusal arrives at the first
	// read, where Refused recognises it.
	noCert := &Policy{}
	noCert.Add([]string{addr}, &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS13})
	conn, err = noCert.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("TLS 1.3 handshake without a client certificate: %v", err)
	}
	conn.Write([]byte("ruok"))
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadFull(conn, buf)
	if he, ok := Refused(conn, addr, err); !ok || he.Member != addr || !strings.Contains(he.Error(), "certificate required") {
		t.Errorf("read error %v: Refused = %v, %v", err, he, ok)
	}
	if _, ok := Refused(conn, addr, io.EOF); ok {
		t.Error("EOF counted as a TLS refusal")
	}
	conn.Close()

	// A plain member: the TCP connection itself.
	plain, err := net.Listen("tcp", zktest.LoopbackIP(t)+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	conn, err = good.DialContext(ctx, "tcp", plain.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := conn.(*net.TCPConn); !ok {
		t.Errorf("plain member's connection is a %T", conn)
	}
	conn.Close()
}
