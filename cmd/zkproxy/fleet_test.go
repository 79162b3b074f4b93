package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
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
