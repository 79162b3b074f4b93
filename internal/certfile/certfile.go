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
	"bytes"
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

	mu   sync.Mutex
	cert *tls.Certificate
	// certPEM and keyPEM are the files' contents cert was loaded from: a
	// rotation is any change to them (comparing contents, not modification
	// times, also sees a rewrite within the file system's time resolution).
	certPEM, keyPEM []byte
	checked         time.Time
	use             string
	log             *slog.Logger
	expiry          prometheus.Gauge
}

// New loads certFile and keyFile, failing as tls.LoadX509KeyPair does
// (except that a file that cannot be read fails with its os error).
func New(certFile, keyFile string) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile, interval: CheckInterval}
	certPEM, keyPEM, err := r.read()
	if err != nil {
		return nil, err
	}
	cert, err := parse(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	r.cert, r.certPEM, r.keyPEM, r.checked = cert, certPEM, keyPEM, time.Now()
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
	certPEM, keyPEM, err := r.read()
	if err != nil {
		r.warn("cannot read the certificate files; keeping the loaded certificate", err)
		return r.cert
	}
	if bytes.Equal(certPEM, r.certPEM) && bytes.Equal(keyPEM, r.keyPEM) {
		return r.cert
	}
	cert, err := parse(certPEM, keyPEM)
	if err != nil {
		r.warn("the certificate files changed but do not load; keeping the loaded certificate", err)
		return r.cert
	}
	r.cert, r.certPEM, r.keyPEM = cert, certPEM, keyPEM
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

// read returns both files' contents; certificates and keys are a few KiB.
func (r *Reloader) read() (certPEM, keyPEM []byte, err error) {
	if certPEM, err = os.ReadFile(r.certFile); err != nil {
		return nil, nil, err
	}
	if keyPEM, err = os.ReadFile(r.keyFile); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

// parse builds the certificate and parses its leaf, which logs and the
// expiry gauge read. Errors read as tls.LoadX509KeyPair's.
func parse(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("parsing the certificate: %w", err)
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
		Help: "Expiry (notAfter, Unix time) of the certificate in use, by use: listener, admin, source or destination (client certificates).",
	}, []string{"use"})}
	reg.MustRegister(m.expiry)
	return m
}
