package main

import (
	"context"
	"crypto/tls"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/proxy"
)

// loadFor parses args as `zkproxy serve` would and loads the configuration.
func loadFor(t *testing.T, args ...string) (serveConfig, error) {
	t.Helper()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	bindServeFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	v, err := newViper(fs)
	if err != nil {
		return serveConfig{}, err
	}
	return loadServeConfig(v, fs)
}

func TestEveryBadKeyIsNamedAtOnce(t *testing.T) {
	t.Setenv("ZKPROXY_HANDSHAKE_TIMEOUT", "soon")
	t.Setenv("ZKPROXY_MAX_FRAME_SIZE", "-5")
	t.Setenv("ZKPROXY_PPROF", "perhaps")
	t.Setenv("ZKPROXY_PARK_IDLE_AFTER", "never")
	t.Setenv("ZKPROXY_CUTOVER_CHECK_INTERVAL", "-1m")
	_, err := loadFor(t,
		"--listen", "nohost",
		"--destination", "127.0.0.1:99999,ok-host:2181",
		"--log-format", "xml",
		"--log-level", "loud",
		"--local-addrs", "not-an-ip",
		"--peers", "zkproxy-b:9181",
		"--data-dir", filepath.Join(t.TempDir(), "d"),
	)
	if err == nil {
		t.Fatal("invalid configuration accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		"listen:", "source: required", "destination:", `"127.0.0.1:99999": bad port`,
		"log-format:", "log-level:", "local-addrs:", "handshake-timeout:", "max-frame-size: must not be negative",
		"pprof:", `park-idle-after: not a duration or off: "never"`, "cutover-check-interval: must not be negative",
		`peers: "zkproxy-b:9181" is not an admin URL`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not name %q:\n%s", want, msg)
		}
	}
}

func TestParkIdleAfter(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		arg  string
		want time.Duration
	}{{"", proxy.DefaultParkIdleAfter}, {"200ms", 200 * time.Millisecond}, {"off", -1}, {"OFF", -1}} {
		args := []string{"--source", "127.0.0.1:2181", "--data-dir", dir}
		if tc.arg != "" {
			args = append(args, "--park-idle-after", tc.arg)
		}
		cfg, err := loadFor(t, args...)
		if err != nil {
			t.Fatalf("%q: %v", tc.arg, err)
		}
		if cfg.Proxy.ParkIdleAfter != tc.want {
			t.Errorf("%q: ParkIdleAfter %s, want %s", tc.arg, cfg.Proxy.ParkIdleAfter, tc.want)
		}
	}
	if _, err := loadFor(t, "--source", "127.0.0.1:2181", "--data-dir", dir, "--park-idle-after", "0s"); err == nil ||
		!strings.Contains(err.Error(), "park-idle-after: must be positive") {
		t.Fatalf("0s accepted: %v", err)
	}
}

func TestAdminOffLoopbackNeedsToken(t *testing.T) {
	dir := t.TempDir()
	_, err := loadFor(t, "--source", "127.0.0.1:2181", "--admin-listen", "0.0.0.0:9181", "--data-dir", dir)
	if err == nil || !strings.Contains(err.Error(), "admin-token: required") {
		t.Fatalf("want admin-token error, got %v", err)
	}
	if _, err := loadFor(t, "--source", "127.0.0.1:2181", "--admin-listen", "0.0.0.0:9181", "--admin-token", "t", "--data-dir", dir); err != nil {
		t.Fatalf("with a token: %v", err)
	}
	if _, err := loadFor(t, "--source", "127.0.0.1:2181", "--admin-listen", "localhost:9181", "--data-dir", dir); err != nil {
		t.Fatalf("loopback without token: %v", err)
	}
}

func TestSourceAndDestinationMustDiffer(t *testing.T) {
	_, err := loadFor(t, "--source", "a:2181,b:2181", "--destination", "b:2181,c:2181", "--data-dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "members also in source: b:2181") {
		t.Fatalf("want overlap error, got %v", err)
	}
}

func TestFileThenEnvThenFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "zkproxy.yaml")
	writeFile(t, file, `
listen: 127.0.0.1:3000
source: [10.0.0.1:2181, 10.0.0.2:2181]
max-outstanding: 7
handshake-timeout: 3s
cutover-check-interval: 0s
data-dir: `+dir+`
`)
	t.Setenv("ZKPROXY_MAX_OUTSTANDING", "9")
	t.Setenv("ZKPROXY_DESTINATION", "10.0.1.1:2181, 10.0.1.2:2181")
	cfg, err := loadFor(t, "--config", file, "--listen", "127.0.0.1:4000")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:4000" {
		t.Errorf("listen = %q, want the flag's value", cfg.Listen)
	}
	if cfg.Proxy.MaxOutstandingPerSession != 9 {
		t.Errorf("max-outstanding = %d, want env's 9", cfg.Proxy.MaxOutstandingPerSession)
	}
	if cfg.Proxy.HandshakeTimeout != 3*time.Second {
		t.Errorf("handshake-timeout = %s, want file's 3s", cfg.Proxy.HandshakeTimeout)
	}
	if cfg.Cutover.CheckInterval != 0 {
		t.Errorf("cutover-check-interval = %s, want file's 0s (the default is 1m)", cfg.Cutover.CheckInterval)
	}
	if got := strings.Join(cfg.Proxy.Source, ","); got != "10.0.0.1:2181,10.0.0.2:2181" {
		t.Errorf("source = %s", got)
	}
	if got := strings.Join(cfg.Proxy.Destination, ","); got != "10.0.1.1:2181,10.0.1.2:2181" {
		t.Errorf("destination = %s", got)
	}
}

func TestUnknownFileKeyFails(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "zkproxy.yaml")
	writeFile(t, file, "source: [127.0.0.1:2181]\nmax-outstandig: 5\ndata-dir: "+dir+"\n")
	_, err := loadFor(t, "--config", file)
	if err == nil || !strings.Contains(err.Error(), "max-outstandig: unknown key") {
		t.Fatalf("want unknown-key error, got %v", err)
	}
}

// serveFlags returns the serve command's flag set, --check included.
func serveFlags() *pflag.FlagSet {
	return newServeCommand().Flags()
}

// TestEveryFlagIsAConfigKey: a flag added to the serve flag set is a key a
// config file may name, with no second list to update; the flag-only ones
// (--config, --check) are not, and an unknown key fails naming itself.
func TestEveryFlagIsAConfigKey(t *testing.T) {
	dir := t.TempDir()
	fs := serveFlags()
	fs.Int("brand-new-limit", 0, "a flag this test adds")
	keys := configKeys(fs)
	for _, want := range []string{"brand-new-limit", keyListen, keyMaxClientConns, sourceTLSKeys.serverName} {
		if !keys[want] {
			t.Errorf("%s is not a config key", want)
		}
	}
	for _, flagOnly := range []string{keyConfig, flagCheck} {
		if keys[flagOnly] {
			t.Errorf("flag-only %s is a config key", flagOnly)
		}
	}

	load := func(body string) error {
		file := filepath.Join(dir, "zkproxy.yaml")
		writeFile(t, file, "source: [127.0.0.1:2181]\ndata-dir: "+dir+"\n"+body)
		if err := fs.Parse([]string{"--config", file}); err != nil {
			t.Fatal(err)
		}
		v, err := newViper(fs)
		if err != nil {
			t.Fatal(err)
		}
		_, err = loadServeConfig(v, fs)
		return err
	}
	if err := load("brand-new-limit: 3\n"); err != nil {
		t.Fatalf("the new flag as a file key: %v", err)
	}
	err := load("brand-new-limt: 3\ncheck: true\nmax-client-conns: 10\n")
	if err == nil {
		t.Fatal("unknown keys accepted")
	}
	for _, want := range []string{"brand-new-limt: unknown key in " + filepath.Join(dir, "zkproxy.yaml"), "check: unknown key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "max-client-conns") {
		t.Errorf("a known key reported:\n%v", err)
	}
}

// TestValidationLeavesTheDataDirAlone: loading the configuration only reads;
// serve creates a missing data directory when it starts, and a data-dir
// that is a file is reported at validation.
func TestValidationLeavesTheDataDirAlone(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "zkproxy")
	if _, err := loadFor(t, "--source", "127.0.0.1:2181", "--data-dir", dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("validation touched the data dir: stat says %v", err)
	}
	if err := prepareDataDir(dir); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("prepareDataDir did not create it: %v", err)
	}
	file := filepath.Join(dir, "file")
	writeFile(t, file, "")
	if _, err := loadFor(t, "--source", "127.0.0.1:2181", "--data-dir", file); err == nil || !strings.Contains(err.Error(), "data-dir: "+file+" is not a directory") {
		t.Fatalf("want a not-a-directory error, got %v", err)
	}
}

func TestServeRefusesBadConfigBeforeListening(t *testing.T) {
	err := run(context.Background(), []string{"serve", "--listen", "127.0.0.1:0", "--admin-listen", "", "--data-dir", t.TempDir()}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "source: required") {
		t.Fatalf("want source error, got %v", err)
	}
}

func writeFile(t *testing.T, name, body string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestListenerTLS(t *testing.T) {
	dir := t.TempDir()
	ca := zktest.NewCA(t)
	cert, key := ca.Issue(t, "proxy", "127.0.0.1")
	base := []string{"--source", "127.0.0.1:2181", "--data-dir", dir}

	cfg, err := loadFor(t, append(base, "--tls-cert", cert, "--tls-key", key)...)
	if err != nil || cfg.TLS == nil || cfg.TLS.ClientAuth != tls.NoClientCert {
		t.Fatalf("certificate and key: TLS %v, %v", cfg.TLS, err)
	}
	cfg, err = loadFor(t, append(base, "--tls-cert", cert, "--tls-key", key, "--tls-client-ca", ca.CertFile)...)
	if err != nil || cfg.TLS == nil || cfg.TLS.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Fatalf("with a client CA: TLS %v, %v", cfg.TLS, err)
	}
	if cfg, err := loadFor(t, base...); err != nil || cfg.TLS != nil {
		t.Fatalf("no TLS keys: TLS %v, %v", cfg.TLS, err)
	}

	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not pem"), 0o600)
	expectConfigErrors(t, base, []configErrorCase{
		{[]string{"--tls-cert", cert}, []string{"tls-key: required with tls-cert"}},
		{[]string{"--tls-key", key, "--tls-client-ca", ca.CertFile}, []string{"tls-cert: required"}},
		{[]string{"--tls-cert", cert, "--tls-key", garbage}, []string{"tls-cert: loading " + cert}},
		{[]string{"--tls-cert", ca.CertFile, "--tls-key", key}, []string{"tls-cert: loading"}}, // key of another certificate
		{[]string{"--tls-cert", cert, "--tls-key", key, "--tls-client-ca", garbage}, []string{"tls-client-ca: " + garbage + " holds no PEM certificate"}},
		{[]string{"--tls-cert", cert, "--tls-key", key, "--tls-client-ca", filepath.Join(dir, "missing.pem")}, []string{"tls-client-ca: open"}},
		{[]string{"--tls-cert", ca.CertFile, "--tls-key", key, "--tls-client-ca", garbage}, []string{"tls-cert: loading", "tls-client-ca: " + garbage}},
	})
}

// TestAdminTLS: admin-tls-cert and admin-tls-key make the admin listener
// HTTPS, their certificate reloaded like the others; every problem names
// its key.
func TestAdminTLS(t *testing.T) {
	dir := t.TempDir()
	ca := zktest.NewCA(t)
	cert, key := ca.Issue(t, "proxy", "127.0.0.1")
	base := []string{"--source", "127.0.0.1:2181", "--data-dir", dir}

	cfg, err := loadFor(t, append(base, "--admin-tls-cert", cert, "--admin-tls-key", key)...)
	if err != nil || cfg.AdminTLS == nil || cfg.AdminTLS.GetCertificate == nil || cfg.Certs["admin"] == nil {
		t.Fatalf("certificate and key: TLS %v, reloader %v, %v", cfg.AdminTLS, cfg.Certs["admin"], err)
	}
	if cfg, err := loadFor(t, base...); err != nil || cfg.AdminTLS != nil {
		t.Fatalf("no admin TLS keys: TLS %v, %v", cfg.AdminTLS, err)
	}
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not pem"), 0o600)
	expectConfigErrors(t, base, []configErrorCase{
		{[]string{"--admin-tls-cert", cert}, []string{"admin-tls-key: required with admin-tls-cert"}},
		{[]string{"--admin-tls-key", key}, []string{"admin-tls-cert: required with admin-tls-key"}},
		{[]string{"--admin-tls-cert", cert, "--admin-tls-key", garbage}, []string{"admin-tls-cert: loading " + cert}},
		{[]string{"--admin-tls-cert", cert, "--admin-tls-key", key, "--admin-listen", ""}, []string{"admin-tls-cert: has no effect without admin-listen"}},
		{[]string{"--admin-tls-cert", cert, "--tls-cert", cert}, []string{"admin-tls-key: required with admin-tls-cert", "tls-key: required with tls-cert"}},
	})
}

func TestMemberTLS(t *testing.T) {
	dir := t.TempDir()
	ca := zktest.NewCA(t)
	cert, key := ca.Issue(t, "proxy", "127.0.0.1")
	base := []string{"--source", "10.0.0.1:2281,10.0.0.2:2281", "--destination", "10.0.1.1:2181", "--data-dir", dir}

	cfg, err := loadFor(t, base...)
	if err != nil || cfg.Proxy.MemberTLS != nil || cfg.Cutover.Members != nil {
		t.Fatalf("no TLS keys: policy %v, check dial set %v, %v", cfg.Proxy.MemberTLS, cfg.Cutover.Members != nil, err)
	}

	// TLS to the source only: the destination stays plain, so a cutover
	// can also move clients between a TLS and a plain ensemble.
	cfg, err = loadFor(t, append(base, "--source-tls", "--source-tls-ca", ca.CertFile,
		"--source-tls-cert", cert, "--source-tls-key", key)...)
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Proxy.MemberTLS
	for _, m := range []string{"10.0.0.1:2281", "10.0.0.2:2281"} {
		c := p.For(m)
		if c == nil || c.RootCAs == nil || c.GetClientCertificate == nil || c.ServerName != m[:len("10.0.0.x")] {
			t.Errorf("source member %s: TLS config %+v", m, c)
		}
	}
	if c := p.For("10.0.1.1:2181"); c != nil {
		t.Errorf("destination member reached over TLS: %+v", c)
	}
	if cfg.Cutover.Members == nil {
		t.Error("the sync checks do not dial over TLS")
	}

	// Env and a server name; no CA means the system's roots.
	t.Setenv("ZKPROXY_DESTINATION_TLS", "true")
	t.Setenv("ZKPROXY_DESTINATION_TLS_SERVER_NAME", "zk.example.com")
	cfg, err = loadFor(t, base...)
	if err != nil {
		t.Fatal(err)
	}
	if c := cfg.Proxy.MemberTLS.For("10.0.1.1:2181"); c == nil || c.ServerName != "zk.example.com" || c.RootCAs != nil {
		t.Errorf("destination TLS from env: %+v", c)
	}
	if c := cfg.Proxy.MemberTLS.For("10.0.0.1:2281"); c != nil {
		t.Errorf("source reached over TLS without source-tls: %+v", c)
	}
	t.Setenv("ZKPROXY_DESTINATION_TLS", "")
	t.Setenv("ZKPROXY_DESTINATION_TLS_SERVER_NAME", "")

	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not pem"), 0o600)
	expectConfigErrors(t, base, []configErrorCase{
		{[]string{"--source-tls-ca", ca.CertFile, "--destination-tls-cert", cert},
			[]string{"source-tls-ca: has no effect without source-tls=true", "destination-tls-cert: has no effect without destination-tls=true"}},
		{[]string{"--source-tls", "--source-tls-cert", cert}, []string{"source-tls-key: required with source-tls-cert"}},
		{[]string{"--destination-tls", "--destination-tls-key", key}, []string{"destination-tls-cert: required with destination-tls-key"}},
		{[]string{"--source-tls", "--source-tls-ca", garbage}, []string{"source-tls-ca: " + garbage + " holds no PEM certificate"}},
		{[]string{"--source-tls", "--source-tls-cert", ca.CertFile, "--source-tls-key", key}, []string{"source-tls-cert: loading"}},
		// Every problem at once, from both ensembles.
		{[]string{"--source-tls", "--source-tls-ca", filepath.Join(dir, "missing.pem"), "--destination-tls", "--destination-tls-cert", cert},
			[]string{"source-tls-ca: open", "destination-tls-key: required"}},
	})

	if _, err := loadFor(t, "--source", "10.0.0.1:2281", "--data-dir", dir, "--destination-tls"); err == nil ||
		!strings.Contains(err.Error(), "destination-tls: has no effect without destination members") {
		t.Errorf("destination-tls without a destination: %v", err)
	}

	// A bad boolean is the only problem named for its ensemble: the other
	// keys would just say they have no effect.
	t.Setenv("ZKPROXY_SOURCE_TLS", "maybe")
	_, err = loadFor(t, append(base, "--source-tls-ca", ca.CertFile)...)
	if err == nil || !strings.Contains(err.Error(), `source-tls: not a boolean: "maybe"`) || strings.Contains(err.Error(), "source-tls-ca") {
		t.Errorf("bad source-tls: %v", err)
	}
}

// configErrorCase is a set of flags (after a base) and what the resulting
// configuration error must say.
type configErrorCase struct {
	args []string
	want []string
}

// expectConfigErrors loads base plus each case's flags and requires an
// error that says every one of its wants.
func expectConfigErrors(t *testing.T, base []string, cases []configErrorCase) {
	t.Helper()
	for _, tc := range cases {
		_, err := loadFor(t, append(base, tc.args...)...)
		if err == nil {
			t.Errorf("%v: accepted", tc.args)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %q does not say %q", tc.args, err, w)
			}
		}
	}
}

// TestSampleConfig: deploy/zkproxy.yaml, the template operators start from,
// names every key zkproxy knows and loads; with its example members it is a
// working configuration (data-dir pointed at a temporary directory).
func TestSampleConfig(t *testing.T) {
	file := filepath.Join("..", "..", "deploy", "zkproxy.yaml")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for key := range configKeys(serveFlags()) {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(key) + `:`).Match(b) {
			t.Errorf("deploy/zkproxy.yaml lacks %s", key)
		}
	}
	cfg, err := loadFor(t, "--config", file, "--data-dir", t.TempDir())
	if err != nil {
		t.Fatalf("deploy/zkproxy.yaml does not load: %v", err)
	}
	if len(cfg.Proxy.Source) != 3 || len(cfg.Proxy.Destination) != 3 || cfg.Cutover.CheckInterval != time.Minute ||
		cfg.Proxy.ParkIdleAfter != 100*time.Millisecond || cfg.AdminListen != "127.0.0.1:9181" {
		t.Fatalf("loaded %+v", cfg)
	}
}
