package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/admin"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// health runs `zkproxy health args...` and returns its output.
func health(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), append([]string{"health"}, args...), &out, io.Discard)
	return out.String(), err
}

// TestHealthCommand asks a real `zkproxy serve` in front of a real
// ZooKeeper: /healthz and /readyz answer healthy; the address comes from
// the serve configuration when --admin is not given; once the only source
// member stops, --ready fails with the server's reason on one line while
// /healthz stays healthy; nothing listening fails naming the address.
func TestHealthCommand(t *testing.T) {
	zktest.RequireIntegration(t)
	server := zktest.Standalone(t)
	ip := zktest.LoopbackIP(t)
	listen, adminAddr := net.JoinHostPort(ip, "2181"), net.JoinHostPort(ip, "9181")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--listen", listen, "--source", server.ClientAddr(), "--admin-listen", adminAddr,
			"--admin-token", "s3cret", "--data-dir", t.TempDir()}, io.Discard, io.Discard)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	base := "http://" + adminAddr

	// Wait for the admin listener: health fails until serve is up.
	var out string
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if out, err = health(t, "--admin", base); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("zkproxy health never passed: %v", err)
		}
	}
	if want := "healthy: GET " + base + "/healthz: ok\n"; out != want {
		t.Errorf("health printed %q, want %q", out, want)
	}
	if out, err := health(t, "--admin", base, "--ready"); err != nil || out != "healthy: GET "+base+"/readyz: ready\n" {
		t.Errorf("health --ready: %q, %v", out, err)
	}

	// No --admin: the serve configuration's admin-listen, as in the
	// container, where ZKPROXY_* env configures serve and HEALTHCHECK alike.
	t.Setenv("ZKPROXY_ADMIN_URL", "")
	t.Setenv("ZKPROXY_ADMIN_LISTEN", adminAddr)
	if out, err := health(t); err != nil || !strings.HasPrefix(out, "healthy: GET "+base+"/healthz") {
		t.Errorf("health from the serve configuration: %q, %v", out, err)
	}
	t.Setenv("ZKPROXY_ADMIN_LISTEN", "") // viper takes an empty variable for unset
	file := filepath.Join(t.TempDir(), "zkproxy.yaml")
	writeFile(t, file, "admin-listen: \"\"\n")
	t.Setenv("ZKPROXY_CONFIG", file)
	if _, err := health(t); err == nil || !strings.Contains(err.Error(), "admin-listen is empty") {
		t.Errorf("health with the admin API off: %v", err)
	}

	if err := server.Stop(); err != nil {
		t.Fatal(err)
	}
	_, err = health(t, "--admin", base, "--ready")
	if err == nil {
		t.Fatal("health --ready passed with the only source member stopped")
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "unhealthy: GET "+base+"/readyz: HTTP 503: not ready: ") || strings.Contains(msg, "\n") {
		t.Errorf("health --ready: %q, want one line with the server's reason", msg)
	}
	if _, err := health(t, "--admin", base); err != nil {
		t.Errorf("health (alive) failed with the source down: %v", err)
	}

	dead := "http://" + net.JoinHostPort(zktest.LoopbackIP(t), "9181")
	if _, err := health(t, "--admin", dead); err == nil || !strings.HasPrefix(err.Error(), "unhealthy: GET "+dead+"/healthz: ") {
		t.Errorf("health with nothing listening: %v", err)
	}
}

// TestHealthOverHTTPS asks a real `zkproxy serve` whose admin API speaks
// HTTPS only: found from the serve configuration (admin-tls-cert set means
// https), verified against --ca and --server-name; another CA or a name the
// certificate does not carry fails, saying so.
func TestHealthOverHTTPS(t *testing.T) {
	adminAddr, ca := startAdminTLSServe(t)
	ip, _, _ := net.SplitHostPort(adminAddr)
	cert := filepath.Join(t.TempDir(), "unread.pem") // health only looks whether admin-tls-cert is set
	base := "https://" + adminAddr

	t.Setenv("ZKPROXY_ADMIN_URL", "")
	t.Setenv("ZKPROXY_ADMIN_LISTEN", adminAddr)
	t.Setenv("ZKPROXY_ADMIN_TLS_CERT", cert)
	var out string
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if out, err = health(t, "--ca", ca.CertFile); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("zkproxy health over https never passed: %v", err)
		}
	}
	if want := "healthy: GET " + base + "/healthz: ok\n"; out != want {
		t.Errorf("health printed %q, want %q", out, want)
	}
	if _, err := health(t, "--ca", ca.CertFile, "--server-name", ip); err != nil {
		t.Errorf("health with the certificate's address as server name: %v", err)
	}
	if _, err := health(t, "--ca", ca.CertFile, "--server-name", "zkproxy.example"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("health verifying a name the certificate lacks: %v", err)
	}
	if _, err := health(t, "--ca", zktest.NewCA(t).CertFile); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("health trusting another CA: %v", err)
	}
}

// TestHealthSendsToken: the configured token goes with the request (the
// admin API asks none for /healthz, so the request is looked at here).
func TestHealthSendsToken(t *testing.T) {
	h := admin.NewHandler(admin.Options{})
	gotAuth := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth <- r.Header.Get("Authorization")
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	t.Setenv("ZKPROXY_ADMIN_TOKEN", "s3cret")
	if out, err := health(t, "--admin", srv.URL); err != nil || out != "healthy: GET "+srv.URL+"/healthz: ok\n" {
		t.Fatalf("health: %q, %v", out, err)
	}
	if auth := <-gotAuth; auth != "Bearer s3cret" {
		t.Errorf("Authorization %q, want the configured token", auth)
	}
}
