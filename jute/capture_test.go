package jute

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/internal/zktest"
	"github.com/zkproxy/zkproxy/internal/zktest/relay"
)

var updateGolden = flag.Bool("update", false, "capture testdata/golden/*.frames from a real ZooKeeper 3.8 (see testdata/golden/README.md)")

//go:embed testdata/golden/Capture.java
var captureJava string

//go:embed testdata/golden/capture_kazoo.py
var captureKazoo string

// goldenPerKind caps how many distinct frames of one direction, kind and
// error code a golden file keeps; the capture repeats pings and the like.
const goldenPerKind = 4

const captureJAAS = `Server {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_bob="bobsecret";
};
SaslClient {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    username="bob"
    password="bobsecret";
};
`

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
	jaas := filepath.Join(t.TempDir(), "jaas.conf")
	if err := os.WriteFile(jaas, []byte(captureJAAS), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := zktest.Standalone(t,
		// createTTL and TTL sub-ops need extended types
		// (EphemeralType.extendedEphemeralTypesEnabled).
		zktest.WithJVMFlags("-Dzookeeper.extendedTypesEnabled=true",
			"-Djava.security.auth.login.config="+jaas),
		zktest.WithConfig("authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider"),
		zktest.WithConfig("reconfigEnabled=true"))
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
	writeGolden(t, "java.frames", "Java client 3.8 (testdata/golden/Capture.java)", javaFrames)
	writeGolden(t, "kazoo.frames", "kazoo 2.8 (testdata/golden/capture_kazoo.py)", kazooFrames)
}

// captureThroughRelay starts a relay to upstream, runs drive against it and
// returns the recorded frames labelled with their kind.
func captureThroughRelay(t *testing.T, ip, upstream string, drive func(addr string, r *relay.Relay)) []goldenFrame {
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
	return labelFrames(t, r.Frames())
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

// labelFrames names each recorded frame: connect records first on each
// connection, requests by their header, replies by the op of the request
// with the same xid on the same connection.
func labelFrames(t *testing.T, frames []relay.Frame) []goldenFrame {
	t.Helper()
	pending := map[int]map[Xid]Op{}
	var out []goldenFrame
	for _, f := range frames {
		if f.Raw {
			t.Logf("conn %d %v: skipping %d unframed bytes", f.Conn, f.Dir, len(f.Bytes))
			continue
		}
		if pending[f.Conn] == nil {
			pending[f.Conn] = map[Xid]Op{}
		}
		g := goldenFrame{Frame: f.Bytes, Line: f.Conn}
		if f.Dir == relay.ServerToClient {
			g.Dir = dirReply
		}
		switch {
		case f.Index == 0:
			g.Kind = goldenConnect
		case f.Dir == relay.ClientToServer:
			h, err := PeekRequestHeader(f.Bytes[4:])
			if err != nil {
				t.Fatalf("conn %d request %d: %v", f.Conn, f.Index, err)
			}
			pending[f.Conn][h.Xid] = h.Op
			g.Op = h.Op
		default:
			h, err := PeekReplyHeader(f.Bytes[4:])
			if err != nil {
				t.Fatalf("conn %d reply %d: %v", f.Conn, f.Index, err)
			}
			op, ok := pending[f.Conn][h.Xid]
			if h.Xid == XidNotification {
				op, ok = OpNotification, true
			}
			if !ok {
				t.Fatalf("conn %d reply %d: xid %d answers no request", f.Conn, f.Index, h.Xid)
			}
			g.Op = op
		}
		if g.Kind == "" {
			g.Kind = g.Op.String()
		}
		out = append(out, g)
	}
	return out
}

// writeGolden keeps up to goldenPerKind distinct frames per direction, kind
// and error code, checks each, and writes them with a decoded comment.
func writeGolden(t *testing.T, name, source string, frames []goldenFrame) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "# Golden frames: %s against ZooKeeper 3.8, captured through\n", source)
	b.WriteString("# internal/zktest/relay by TestCaptureGolden (go test ./jute -run TestCaptureGolden -update).\n")
	b.WriteString("# Format: <dir> <kind> <frame hex>; > client to server, < server to client. Do not edit.\n")
	count := map[string]int{}
	seen := map[string]bool{}
	conn := -1
	for _, g := range frames {
		key := fmt.Sprintf("%d %s", g.Dir, g.Kind)
		if g.Dir == dirReply && g.Kind != goldenConnect {
			h, _ := PeekReplyHeader(g.Frame[4:])
			key += " " + h.Err.String()
		}
		if seen[string(g.Frame)] || count[key] >= goldenPerKind {
			continue
		}
		desc, err := checkGoldenFrame(g)
		if err != nil {
			t.Errorf("%s conn %d %s: %v", name, g.Line, g.Kind, err)
			continue
		}
		seen[string(g.Frame)] = true
		count[key]++
		if g.Line != conn {
			conn = g.Line
			fmt.Fprintf(&b, "\n# connection %d\n", conn)
		}
		dir := ">"
		if g.Dir == dirReply {
			dir = "<"
		}
		fmt.Fprintf(&b, "# %s\n%s %s %s\n", desc, dir, g.Kind, hex.EncodeToString(g.Frame))
	}
	path := filepath.Join("testdata", "golden", name)
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}
