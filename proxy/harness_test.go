package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/jute"
)

// testProxy is a Server listening on its own loopback address.
type testProxy struct {
	*Server
	Addr string
	Reg  *prometheus.Registry
	Logs *logBuffer
}

// startProxy starts a proxy in front of members; it is closed, and its
// goroutines checked, in t.Cleanup.
func startProxy(t *testing.T, members []string, mod ...func(*Config)) *testProxy {
	t.Helper()
	return startProxyWrapped(t, members, nil, mod...)
}

// startProxyWrapped is startProxy with the listener passed through wrap
// (a TLS listener, say) when wrap is not nil.
func startProxyWrapped(t *testing.T, members []string, wrap func(net.Listener) net.Listener, mod ...func(*Config)) *testProxy {
	t.Helper()
	cfg := Config{Source: members}
	for _, m := range mod {
		m(&cfg)
	}
	logs := &logBuffer{t: t}
	reg := prometheus.NewRegistry()
	srv, err := New(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), reg)
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(zktest.LoopbackIP(t), "2181"))
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().String()
	if wrap != nil {
		ln = wrap(ln)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		logs.stop()
	})
	return &testProxy{Server: srv, Addr: addr, Reg: reg, Logs: logs}
}

// logBuffer sends proxy logs to the test log and keeps them for assertions.
type logBuffer struct {
	t       *testing.T
	mu      sync.Mutex
	lines   []string
	stopped bool
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	line := strings.TrimRight(string(p), "\n")
	l.lines = append(l.lines, line)
	if !l.stopped {
		l.t.Log(line)
	}
	return len(p), nil
}

func (l *logBuffer) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
}

// reset forgets the lines kept so far.
func (l *logBuffer) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = nil
}

// eventually reports whether a log line holding every one of parts
// appears within d.
func (l *logBuffer) eventually(d time.Duration, parts ...string) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
		if l.contains(parts...) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// contains reports whether a log line holds every one of parts.
func (l *logBuffer) contains(parts ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
next:
	for _, line := range l.lines {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue next
			}
		}
		return true
	}
	return false
}

// sessionByID returns srv's session with id, or nil.
func sessionByID(srv *Server, id jute.SessionID) *Session {
	for _, s := range srv.Sessions() {
		if s.ID() == id {
			return s
		}
	}
	return nil
}

// counter returns the value of a counter (or gauge) series.
func counter(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}

// waitFor polls cond until it holds or the deadline passes. Deadlines here
// only bound a wait for a state, they never assert a duration.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// goroutineBaseline returns a check that the goroutine count came back to
// what it is now.
func goroutineBaseline(t *testing.T) func() {
	before := runtime.NumGoroutine()
	return func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			now := runtime.NumGoroutine()
			if now <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Fatalf("goroutines: %d now, %d before\n%s", now, before, buf[:n])
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// rawConnect dials addr and completes a handshake for a new session with
// the given requested timeout, returning the connection.
func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readAllTimeout reads until EOF or timeout.
func readAllTimeout(c net.Conn, d time.Duration) ([]byte, error) {
	c.SetReadDeadline(time.Now().Add(d))
	return io.ReadAll(c)
}

var _ = context.Background
