package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
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
	startServe(t, "--listen", listen, "--source", server.ClientAddr(), "--admin-listen", "",
		"--data-dir", t.TempDir(), "--tls-cert", cert, "--tls-key", key)

	roots := ca.Pool()
	openSession(t, func() (net.Conn, error) {
		return tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", listen, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
	})
}

// startServe runs `zkproxy serve` with args until the test ends; an error
// from it fails the test.
func startServe(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, append([]string{"serve"}, args...), io.Discard, io.Discard) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
}

// startAdminTLSServe runs `zkproxy serve` with args and its admin API on
// HTTPS only, with a certificate from a new CA for a fresh loopback address;
// no member runs (nothing opens a session). It returns the admin address
// and the CA.
func startAdminTLSServe(t *testing.T, args ...string) (string, *zktest.CA) {
	t.Helper()
	ip := zktest.LoopbackIP(t)
	adminAddr := net.JoinHostPort(ip, "9181")
	ca := zktest.NewCA(t)
	cert, key := ca.Issue(t, "proxy", ip)
	startServe(t, append([]string{"--listen", net.JoinHostPort(ip, "2181"), "--source", "127.0.0.1:1",
		"--admin-listen", adminAddr, "--admin-tls-cert", cert, "--admin-tls-key", key, "--data-dir", t.TempDir()}, args...)...)
	return adminAddr, ca
}

// openSession dials the starting proxy with dial until it answers (10 s),
// then opens a session and checks the ConnectResponse.
func openSession(t *testing.T, dial func() (net.Conn, error)) {
	t.Helper()
	var conn net.Conn
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if conn, err = dial(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dialing zkproxy: %v", err)
		}
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(jute.AppendFrame(nil, jute.Marshal(&jute.ConnectRequest{TimeOut: 10000, Passwd: make([]byte, 16)}))); err != nil {
		t.Fatal(err)
	}
	f, err := jute.NewFrameReader(conn, 0).Next()
	if err != nil {
		t.Fatalf("reading the ConnectResponse: %v", err)
	}
	var resp jute.ConnectResponse
	if err := jute.Unmarshal(f.Payload(), &resp); err != nil || resp.SessionID == 0 || resp.TimeOut <= 0 {
		t.Fatalf("ConnectResponse %+v: %v", resp, err)
	}
}

// TestServeMemberTLS starts `zkproxy serve` with source-tls in front of a
// real ZooKeeper reachable only on its TLS port (as far as the proxy
// knows): a plain client gets a session, and /readyz and /status see the
// member over TLS.
func TestServeMemberTLS(t *testing.T) {
	zktest.RequireIntegration(t)
	ca := zktest.NewCA(t)
	server := zktest.Standalone(t, zktest.WithSecureClientPort(ca))
	ip := zktest.LoopbackIP(t)
	listen := net.JoinHostPort(ip, "2181")
	admin := net.JoinHostPort(ip, "9181")
	cert, key := ca.Issue(t, "zkproxy", ip)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--listen", listen, "--source", server.SecureClientAddr(), "--admin-listen", admin,
			"--data-dir", t.TempDir(), "--source-tls", "--source-tls-ca", ca.CertFile,
			"--source-tls-cert", cert, "--source-tls-key", key}, io.Discard, io.Discard)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	openSession(t, func() (net.Conn, error) { return net.DialTimeout("tcp", listen, time.Second) })

	get := func(path string) (int, string) {
		r, err := http.Get("http://" + admin + path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz: %d %s", code, body)
	}
	var st struct {
		Ensembles struct {
			Source []struct {
				Addr, Mode, Error string
				TLS               bool
			} `json:"source"`
		} `json:"ensembles"`
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, body := get("/status")
		if code != http.StatusOK {
			t.Fatalf("/status: %d %s", code, body)
		}
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("/status: %v\n%s", err, body)
		}
		if len(st.Ensembles.Source) == 1 && st.Ensembles.Source[0].Mode == "standalone" {
			if !st.Ensembles.Source[0].TLS {
				t.Errorf("/status does not say the member is reached over TLS: %s", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/status does not see the member over TLS: %s", body)
		}
	}
}

// TestServeCheck runs `zkproxy serve --check` against a real ZooKeeper
// serving plain and TLS ports: every member is probed the way the proxy
// reaches it, a TLS problem is named, and only a source with no serving
// member fails the check.
func TestServeCheck(t *testing.T) {
	zktest.RequireIntegration(t)
	ca := zktest.NewCA(t)
	server := zktest.Standalone(t, zktest.WithSecureClientPort(ca))
	cert, key := ca.Issue(t, "zkproxy", "127.0.0.1")
	dead := net.JoinHostPort(zktest.LoopbackIP(t), "2181") // nothing listens there
	check := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"serve", "--check", "--admin-listen", "", "--data-dir", t.TempDir()}, args...), &out, io.Discard)
		return out.String(), err
	}

	out, err := check("--source", server.ClientAddr(), "--destination", server.SecureClientAddr()+","+dead,
		"--destination-tls", "--destination-tls-ca", ca.CertFile, "--destination-tls-cert", cert, "--destination-tls-key", key)
	if err != nil {
		t.Fatalf("check failed: %v\n%s", err, out)
	}
	spaced := regexp.MustCompile(` +`).ReplaceAllString(out, " ") // the table's columns are as wide as the addresses
	for _, want := range []string{
		"source " + server.ClientAddr() + " off standalone",
		"destination " + server.SecureClientAddr() + " on standalone",
		"destination " + dead + " on error: ",
		"source: 1 of 1 members serving; destination: 1 of 2 serving (members not started yet are expected before the join)",
	} {
		if !strings.Contains(spaced, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// Without a client certificate the TLS member refuses, and says so.
	out, err = check("--source", server.ClientAddr(), "--destination", server.SecureClientAddr(),
		"--destination-tls", "--destination-tls-ca", ca.CertFile)
	if err != nil || !strings.Contains(out, "TLS handshake with member "+server.SecureClientAddr()) {
		t.Errorf("check without a client certificate: %v\n%s", err, out)
	}

	// No source member serving fails the check.
	out, err = check("--source", dead)
	if err == nil || !strings.Contains(err.Error(), "no source member serves") {
		t.Errorf("check with a dead source: %v\n%s", err, out)
	}
	// A bad configuration fails before probing, naming the key.
	if _, err := check("--source", server.ClientAddr(), "--destination-tls-ca", ca.CertFile); err == nil ||
		!strings.Contains(err.Error(), "destination-tls-ca: has no effect without destination-tls=true") {
		t.Errorf("check with a bad configuration: %v", err)
	}
}

// TestServeAdminTLS: with admin-tls-cert and admin-tls-key the admin API
// answers over HTTPS only, and with admin-token set the session list needs
// the token while the health probe does not.
func TestServeAdminTLS(t *testing.T) {
	adminAddr, ca := startAdminTLSServe(t, "--admin-token", "t0ken")
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}}}
	get := func(path, token string) (int, error) {
		req, err := http.NewRequest(http.MethodGet, "https://"+adminAddr+path, nil)
		if err != nil {
			return 0, err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	var code int
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if code, err = get("/healthz", ""); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin API over HTTPS: %v", err)
		}
	}
	if code != http.StatusOK {
		t.Fatalf("/healthz over HTTPS: %d", code)
	}
	for _, tc := range []struct {
		token string
		want  int
	}{{"", http.StatusUnauthorized}, {"wrong", http.StatusUnauthorized}, {"t0ken", http.StatusOK}} {
		if code, err := get("/sessions", tc.token); err != nil || code != tc.want {
			t.Errorf("/sessions with token %q: %d, %v; want %d", tc.token, code, err, tc.want)
		}
	}
	// Plain HTTP is not served.
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + adminAddr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("the admin API answered plain HTTP")
		}
	}
}
