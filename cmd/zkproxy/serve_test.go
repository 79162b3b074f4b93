package main

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/internal/zktest"
	"github.com/zkproxy/zkproxy/jute"
)

// TestServeTLS starts `zkproxy serve` with tls-cert and tls-key in front of
// a real ZooKeeper and opens a session over TLS.
func TestServeTLS(t *testing.T) {
	zktest.RequireIntegration(t)
	server := zktest.Standalone(t)
	ip := zktest.LoopbackIP(t)
	listen := net.JoinHostPort(ip, "2181")
	ca := zktest.NewCA(t)
	cert, key := ca.Issue(t, "proxy", ip)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--listen", listen, "--source", server.ClientAddr(), "--admin-listen", "",
			"--data-dir", t.TempDir(), "--tls-cert", cert, "--tls-key", key}, io.Discard, io.Discard)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	roots := ca.Pool()
	var conn *tls.Conn
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		conn, err = tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", listen, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dialing zkproxy over TLS: %v", err)
		}
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(jute.AppendFrame(nil, jute.Marshal(&jute.ConnectRequest{TimeOut: 10000, Passwd: make([]byte, 16)}))); err != nil {
		t.Fatal(err)
	}
	f, err := jute.NewFrameReader(conn, 0).Next()
	if err != nil {
		t.Fatalf("reading the ConnectResponse over TLS: %v", err)
	}
	var resp jute.ConnectResponse
	if err := jute.Unmarshal(f.Payload(), &resp); err != nil || resp.SessionID == 0 || resp.TimeOut <= 0 {
		t.Fatalf("ConnectResponse %+v: %v", resp, err)
	}
}
