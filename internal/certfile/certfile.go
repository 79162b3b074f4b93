// Package certfile serves a TLS certificate from PEM files and picks up a
// rotated certificate without a restart.
//
// Certificates that protect ZooKeeper traffic are short-lived where they
// are managed well (cert-manager, Vault agents rewrite the files before
// expiry), and zkproxy is meant to stay up for a whole migration and
// beyond: restarting it to load a new certificate would drop every client
// connection, the one thing it exists to avoid. So the TLS configurations
// of the client listener and of the member connections ask a Reloader for
// the certificate at each handshake, and the Reloader reads the files again
// when they change.
package certfile

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// CheckInterval is the least time between two looks at the files: a
// handshake storm does not turn into a stat storm, and a rotation reaches
// new handshakes within this long.
const CheckInterval = 10 * time.Second

// Reloader holds the certificate and key of one use (the client listener,
// or one ensemble's client certificate). It is safe for concurrent use.
type Reloader struct {
	certFile, keyFile string
	interval          time.Duration // CheckInterval; tests shorten it

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   stamp
	checked time.Time
	use     string
	log     *slog.Logger
	expiry  prometheus.Gauge
}

// stamp identifies the files' contents cheaply: a rewrite changes the
// modification time or the size of at least one of them.
type stamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

// New loads certFile and keyFile, failing as tls.LoadX509KeyPair does.
func New(certFile, keyFile string) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile, interval: CheckInterval}
	st, err := r.stat()
	if err != nil {
		return nil, err
	}
	cert, err := load(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	r.cert, r.stamp, r.checked = cert, st, time.Now()
	return r, nil
}

// Observe names the reloader's use in logs and in m's expiry gauge, and
// sets the gauge for the certificate loaded now.
func (r *Reloader) Observe(use string, m *Metrics, log *slog.Logger) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.use, r.log = use, log
	if m != nil {
		r.expiry = m.expiry.WithLabelValues(use)
		r.expiry.Set(notAfter(r.cert))
	}
}

// Certificate returns the current certificate, first reading the files
// again if CheckInterval has passed and they changed. A new pair that does
// not load (a rotation caught half-written, a key that does not match) is
// logged and the previous certificate kept; the next check retries.
func (r *Reloader) Certificate() *tls.Certificate {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if now.Sub(r.checked) < r.interval {
		return r.cert
	}
	r.checked = now
	st, err := r.stat()
	if err != nil {
		r.warn("cannot read the certificate files; keeping the loaded certificate", err)
		return r.cert
	}
	if st == r.stamp {
		return r.cert
	}
	cert, err := load(r.certFile, r.keyFile)
	if err != nil {
		r.warn("the certificate files changed but do not load; keeping the loaded certificate", err)
		return r.cert
	}
	r.cert, r.stamp = cert, st
	if r.expiry != nil {
		r.expiry.Set(notAfter(cert))
	}
	if r.log != nil {
		r.log.Info("TLS certificate reloaded", "use", r.use, "cert", r.certFile,
			"subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter)
	}
	return r.cert
}

// GetCertificate fits tls.Config.GetCertificate (a server's certificate).
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.Certificate(), nil
}

// GetClientCertificate fits tls.Config.GetClientCertificate.
func (r *Reloader) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return r.Certificate(), nil
}

func (r *Reloader) warn(msg string, err error) {
	if r.log != nil {
		r.log.Warn(msg, "use", r.use, "cert", r.certFile, "key", r.keyFile, "err", err)
	}
}

func (r *Reloader) stat() (stamp, error) {
	c, err := os.Stat(r.certFile)
	if err != nil {
		return stamp{}, err
	}
	k, err := os.Stat(r.keyFile)
	if err != nil {
		return stamp{}, err
	}
	return stamp{certMod: c.ModTime(), keyMod: k.ModTime(), certSize: c.Size(), keySize: k.Size()}, nil
}

// load reads the pair and parses the leaf, which logs and the expiry
// gauge read.
func load(certFile, keyFile string) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", certFile, err)
		}
		cert.Leaf = leaf
	}
	return &cert, nil
}

func notAfter(cert *tls.Certificate) float64 {
	return float64(cert.Leaf.NotAfter.Unix())
}

// Metrics is the certificates' expiry, for an alert well before it.
type Metrics struct {
	expiry *prometheus.GaugeVec
}

// NewMetrics registers zkproxy_tls_certificate_expiry_timestamp_seconds.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "zkproxy_tls_certificate_expiry_timestamp_seconds",
		Help: "Expiry (notAfter, Unix time) of the certificate in use, by use: listener, source or destination (client certificates).",
	}, []string{"use"})}
	reg.MustRegister(m.expiry)
	return m
}
