package mitosis

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// TestCaptureSourceConf refreshes testdata/*.conf, the conf answers of a
// real 3-member ZooKeeper 3.8 ensemble (plain, and TLS on a secure client
// port) that the golden plan tests read. It runs only with
// ZKPROXY_CAPTURE=1; the golden tests then show what changed.
func TestCaptureSourceConf(t *testing.T) {
	if os.Getenv("ZKPROXY_CAPTURE") == "" {
		t.Skip("set ZKPROXY_CAPTURE=1 to capture conf answers from real servers")
	}
	for _, c := range []struct {
		name string
		opts []zktest.Option
	}{
		{"plain", nil},
		{"tls", []zktest.Option{zktest.WithSecureClientPort(zktest.NewCA(t))}},
	} {
		e := zktest.NewEnsemble(t, 3, c.opts...)
		for _, s := range e.Members {
			for _, cmd := range []string{"conf", "srvr", "mntr"} {
				ans, err := s.FourLetter(cmd)
				if err != nil {
					t.Fatal(err)
				}
				name := filepath.Join("testdata", "capture", c.name+"-"+cmd+"-"+string(rune('0'+s.ID))+".txt")
				if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(name, []byte(normalise(ans, e)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

var capturedDir = regexp.MustCompile(`=/[^\n]*/data/version-2`)

// normalise replaces the test's random loopback addresses and temporary
// directories with stable ones (10.0.1.<id>, /var/lib/zookeeper), so the
// golden files do not change with every capture.
func normalise(ans string, e *zktest.Ensemble) string {
	for _, s := range e.Members {
		ans = strings.ReplaceAll(ans, s.IP, fmt.Sprintf("10.0.1.%d", s.ID))
	}
	return capturedDir.ReplaceAllString(ans, "=/var/lib/zookeeper/version-2")
}
