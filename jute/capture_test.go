package jute_test

import (
	"bufio"
	"context"
	_ "embed"
	"flag"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest/relay"
	"github.com/zkproxy/zkproxy/jute"
)

var updateGolden = flag.Bool("update", false, "capture testdata/golden/*.frames from a real ZooKeeper 3.8 (see testdata/golden/README.md)")

//go:embed testdata/golden/Capture.java
var captureJava string

//go:embed testdata/golden/capture_kazoo.py
var captureKazoo string

// TestCaptureGolden regenerates testdata/golden/*.frames: it runs the Java
// 3.8 client (Capture.java) and kazoo (capture_kazoo.py) against a real
// standalone ZooKeeper 3.8 through a capturing relay, keeps representative
// frames of every opcode, and checks that each decodes and re-encodes
// byte-identically. It runs only with -update and never under -short.
func TestCaptureGolden(t *testing.T) {
	if !*updateGolden {
		t.Skip("run with -update to capture golden frames from a real ZooKeeper")
	}
	zktest.RequireIntegration(t)
	jaas, saslOptions := zktest.DigestSASL(t)
	srv := zktest.Standalone(t, append(saslOptions,
		// createTTL and TTL sub-ops need extended types
		// (EphemeralType.extendedEphemeralTypesEnabled).
		zktest.WithJVMFlags("-Dzookeeper.extendedTypesEnabled=true"),
		zktest.WithConfig("reconfigEnabled=true"))...)
	ip := zktest.LoopbackIP(t)

	java := zktest.JavaProgram(t, captureJava)
	javaFrames := captureThroughRelay(t, ip, srv.ClientAddr(), func(addr string, r *relay.Relay) {
		runCaptureJava(t, java, r, addr, jaas)
	})
	kazooFrames := captureThroughRelay(t, ip, srv.ClientAddr(), func(addr string, _ *relay.Relay) {
		out := zktest.Python(t, captureKazoo, addr)
		if !strings.Contains(out, "DONE") {
			t.Fatalf("kazoo script did not finish:\n%s", out)
		}
	})
	jute.WriteGoldenCapture(t, "java.frames", "Java client 3.8 (testdata/golden/Capture.java)", javaFrames)
	jute.WriteGoldenCapture(t, "kazoo.frames", "kazoo 2.8 (testdata/golden/capture_kazoo.py)", kazooFrames)
}

// captureThroughRelay starts a relay to upstream, runs drive against it and
// returns the recorded frames.
func captureThroughRelay(t *testing.T, ip, upstream string, drive func(addr string, r *relay.Relay)) []jute.CapturedFrame {
	t.Helper()
	r, err := relay.Start(net.JoinHostPort(ip, "0"), upstream)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	drive(r.Addr(), r)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	var out []jute.CapturedFrame
	for _, f := range r.Frames() {
		if f.Raw {
			t.Logf("conn %d %v: skipping %d unframed bytes", f.Conn, f.Dir, len(f.Bytes))
			continue
		}
		out = append(out, jute.CapturedFrame{Conn: f.Conn, Index: f.Index, FromServer: f.Dir == relay.ServerToClient, Bytes: f.Bytes})
	}
	return out
}

func runCaptureJava(t *testing.T, java *zktest.Java, r *relay.Relay, addr, jaas string) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := java.Command(ctx, addr, jaas)
	var stderr strings.Builder
	var mu sync.Mutex
	cmd.Stderr = writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return stderr.Write(p)
	})
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		out = append(out, line)
		if line == "DROP" {
			// Capture.java waits for the reconnect this causes.
			r.DropConnections()
		}
	}
	err = cmd.Wait()
	mu.Lock()
	defer mu.Unlock()
	if err != nil || len(out) == 0 || out[len(out)-1] != "DONE" {
		t.Fatalf("Capture.java: %v\nstdout:\n%s\nstderr:\n%s", err, strings.Join(out, "\n"), stderr.String())
	}
	t.Logf("Capture.java:\n%s", strings.Join(out, "\n"))
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
