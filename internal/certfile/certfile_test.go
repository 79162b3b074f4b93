package certfile

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// copyFile rewrites dst with src's contents, as a rotation does.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// serial is the serial number of the certificate a TLS client is shown by
// a listener serving r's certificate.
func servedSerial(t *testing.T, r *Reloader, ca *zktest.CA) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: r.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func TestRotation(t *testing.T) {
	ca := zktest.NewCA(t)
	certA, keyA := ca.Issue(t, "a", "127.0.0.1")
	certB, keyB := ca.Issue(t, "b", "127.0.0.1")
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	copyFile(t, certA, cert)
	copyFile(t, keyA, key)

	r, err := New(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	r.Observe("listener", m, slog.New(slog.NewTextHandler(&logs, nil)))
	gauge := m.expiry.WithLabelValues("listener")
	first := servedSerial(t, r, ca)
	if got, want := testutil.ToFloat64(gauge), float64(r.Certificate().Leaf.NotAfter.Unix()); got != want {
		t.Errorf("expiry gauge %v, want %v", got, want)
	}

	// Within the interval the files are not looked at.
	copyFile(t, certB, cert)
	copyFile(t, keyB, key)
	if s := servedSerial(t, r, ca); s != first {
		t.Fatalf("certificate changed within the check interval: %s, was %s", s, first)
	}

	// Past it, the rotated pair is served without a restart.
	r.interval = 0
	second := servedSerial(t, r, ca)
	if second == first {
		t.Fatal("rotated certificate not picked up")
	}
	if !strings.Contains(logs.String(), "TLS certificate reloaded") {
		t.Errorf("no reload log line: %s", logs.String())
	}

	// A rotation caught half-written (new certificate, old key) keeps the
	// certificate in use and says why.
	copyFile(t, certA, cert)
	if s := servedSerial(t, r, ca); s != second {
		t.Fatalf("a certificate without its key was served: %s", s)
	}
	if !strings.Contains(logs.String(), "do not load; keeping the loaded certificate") {
		t.Errorf("no warning for the half-written pair: %s", logs.String())
	}
	copyFile(t, keyA, key)
	if s := servedSerial(t, r, ca); s != first {
		t.Fatalf("completed rotation not picked up: %s, want %s", s, first)
	}

	// Files gone: the loaded certificate stays.
	os.Remove(cert)
	if s := servedSerial(t, r, ca); s != first {
		t.Fatalf("certificate lost with its files: %s", s)
	}
	if _, err := New(cert, key); err == nil {
		t.Error("New accepted a missing certificate file")
	}
}

func TestClientCertificateRotation(t *testing.T) {
	ca := zktest.NewCA(t)
	certA, keyA := ca.Issue(t, "client-a", "127.0.0.1")
	certB, keyB := ca.Issue(t, "client-b", "127.0.0.1")
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key")
	copyFile(t, certA, cert)
	copyFile(t, keyA, key)
	r, err := New(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	r.interval = 0
	sc := ca.KeyPair(t, "server", "127.0.0.1")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{sc},
		ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan string, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			if tc.Handshake() == nil {
				seen <- tc.ConnectionState().PeerCertificates[0].Subject.CommonName
			}
			c.Close()
		}
	}()
	cfg := &tls.Config{RootCAs: ca.Pool(), GetClientCertificate: r.GetClientCertificate}
	for _, want := range []string{"client-a", "client-b"} {
		if want == "client-b" {
			copyFile(t, certB, cert)
			copyFile(t, keyB, key)
		}
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.Handshake()
		c.Close()
		select {
		case got := <-seen:
			if got != want {
				t.Errorf("member saw client certificate %s, want %s", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the member's handshake did not complete (want client certificate %s)", want)
		}
	}
}
