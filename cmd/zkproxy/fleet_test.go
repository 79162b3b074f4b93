package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/admin"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

func TestFleetConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	base := []string{"--source", "127.0.0.1:2181", "--data-dir", dir}
	cfg, err := loadFor(t, append(base, "--fleet", "kafka-prod")...)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Fleet.Name != "kafka-prod" || cfg.Fleet.Path != "/zkproxy/kafka-prod" || cfg.Fleet.StaleAfter != 10*time.Second {
		t.Fatalf("defaults: %+v", cfg.Fleet)
	}
	cfg, err = loadFor(t, append(base, "--fleet", "k")...)
	if err != nil || cfg.Fleet.Auth != "" {
		t.Fatalf("%+v %v", cfg.Fleet, err)
	}
	if cfg, err := loadFor(t, base...); err != nil || cfg.Fleet.Name != "" {
		t.Fatalf("no fleet: %+v %v", cfg.Fleet, err)
	}

	_, err = loadFor(t, append(base, "--fleet", "a/b", "--fleet-path", "relative/path", "--fleet-auth", "nopassword",
		"--fleet-stale-after", "0s", "--peers", "http://zkproxy-b:9181")...)
	if err == nil {
		t.Fatal("bad fleet configuration accepted")
	}
	for _, want := range []string{
		`fleet: "a/b" is not a znode name`, `fleet-path: "relative/path" is not an absolute znode path`,
		"fleet-auth: must be user:password", "fleet-stale-after: must be positive", "peers: not with fleet",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	_, err = loadFor(t, append(base, "--fleet-path", "/x", "--fleet-auth", "u:p")...)
	if err == nil || !strings.Contains(err.Error(), "fleet-path: has no effect without fleet") || !strings.Contains(err.Error(), "fleet-auth: has no effect without fleet") {
		t.Fatalf("fleet keys without fleet: %v", err)
	}
	_, err = loadFor(t, append(base, "--fleet", "k", "--fleet-path", "/zookeeper/k")...)
	if err == nil || !strings.Contains(err.Error(), "outside /zookeeper") {
		t.Fatalf("fleet under /zookeeper: %v", err)
	}
}

// getJSON GETs url into v and returns the status code.
func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if v != nil {
		_ = json.NewDecoder(resp.Body).Decode(v)
	}
	return resp.StatusCode
}

// TestServeFleet runs two `zkproxy serve --fleet` replicas in front of a
// real ZooKeeper: each shows both replicas in GET /cutover and `cutover
// status`, and is ready. A third, whose ensemble does not answer and whose
// data-dir is empty, accepts no client and says why on /readyz.
func TestServeFleet(t *testing.T) {
	zktest.RequireIntegration(t)
	server := zktest.Standalone(t)
	var admins []string
	for range 2 {
		ip := zktest.LoopbackIP(t)
		adminAddr := net.JoinHostPort(ip, "9181")
		admins = append(admins, adminAddr)
		startServe(t, "--listen", net.JoinHostPort(ip, "2181"), "--source", server.ClientAddr(), "--admin-listen", adminAddr,
			"--data-dir", t.TempDir(), "--fleet", "serve-test", "--fleet-auth", "zkproxy:pw")
	}
	var st admin.FleetStatus
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		st = admin.FleetStatus{}
		if getJSON(t, "http://"+admins[0]+"/cutover", &st) == http.StatusOK && len(st.Fleet.Live) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fleet never showed both replicas: %+v", st.Fleet)
		}
	}
	t.Logf("fleet: %+v", st.Fleet)
	if st.Fleet.StateZnode != "/zkproxy/serve-test/state" || st.Fleet.State.Phase.String() != "source" || st.Fleet.Totals.Replicas != 2 {
		t.Fatalf("fleet view: %+v", st.Fleet)
	}
	for _, a := range admins {
		if code := getJSON(t, "http://"+a+"/readyz", nil); code != http.StatusOK {
			t.Fatalf("%s /readyz: %d", a, code)
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"cutover", "status", "--admin", "http://" + admins[1]}, &out, io.Discard); err != nil {
		t.Fatalf("cutover status: %v", err)
	}
	t.Logf("zkproxy cutover status:\n%s", out.String())
	for _, want := range []string{"fleet", "REPLICA", strings.TrimSuffix(admins[0], ":9181") + ":2181", "TOTAL (2)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q", want)
		}
	}

	// No ensemble answers, no local state: nobody is accepted.
	ip := zktest.LoopbackIP(t)
	adminAddr := net.JoinHostPort(ip, "9181")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--listen", net.JoinHostPort(ip, "2181"), "--source", zktest.LoopbackIP(t) + ":2181",
			"--admin-listen", adminAddr, "--data-dir", t.TempDir(), "--fleet", "serve-test", "--fleet-stale-after", "1s"}, io.Discard, io.Discard)
	}()
	var ready map[string]string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if getJSON(t, "http://"+adminAddr+"/readyz", &ready) == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no /readyz 503 from a replica that cannot read the fleet state")
		}
	}
	t.Logf("/readyz: %v", ready)
	if !strings.Contains(ready["error"], "accepting no client until the fleet state is read") {
		t.Fatalf("/readyz does not say why: %v", ready)
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "2181"), time.Second); err == nil {
		c.Close()
		t.Fatal("the client port accepts connections before the fleet state was read")
	}
	cancel()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "fleet") {
		t.Fatalf("serve without the fleet state: %v", err)
	}
}
