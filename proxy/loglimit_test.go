package proxy

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// fakeClock is a clock a test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestLogLimiterBoundsLines(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	l := newLogLimiter(10 * time.Second)
	l.now = clock.now

	// 39,274 attempts over 90 s, as the overload that flooded the log:
	// one line per 10 s, each line reporting what it held back.
	const attempts = 39274
	step := 90 * time.Second / attempts
	lines, reported := 0, 0
	for range attempts {
		if ok, suppressed := l.allow("max_client_conns"); ok {
			lines++
			reported += suppressed
		}
		clock.advance(step)
	}
	if lines != 9 { // at 0 s, 10 s, … 80 s
		t.Errorf("%d lines in 90 s at one per 10 s, want 9", lines)
	}
	// The suppressed count of the last interval is still pending.
	clock.advance(10 * time.Second)
	ok, pending := l.allow("max_client_conns")
	if !ok {
		t.Fatal("a line 10 s after the last was suppressed")
	}
	if got := lines + reported + pending; got != attempts {
		t.Errorf("lines %d + reported suppressed %d + pending %d = %d, want every attempt (%d) accounted for",
			lines, reported, pending, got, attempts)
	}

	// Kinds are limited apart.
	if ok, _ := l.allow("accept_failed"); !ok {
		t.Error("the first line of another kind was suppressed")
	}
}

// TestRejectedConnectionsLogBounded: clients retrying against a proxy at
// max-client-conns are each rejected and counted, but logged once per
// interval, with the count of the rejections in between.
func TestRejectedConnectionsLogBounded(t *testing.T) {
	zktest.RequireIntegration(t)
	server := zktest.Standalone(t)
	px := startProxy(t, []string{server.ClientAddr()}, func(c *Config) { c.MaxClientConns = 1 })
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	px.warnings.mu.Lock()
	px.warnings.now = clock.now
	px.warnings.mu.Unlock()

	rawSession(t, px.Addr, 10000) // takes the only slot
	const rejected = 40
	for i := range rejected {
		if i == rejected/2 {
			clock.advance(repeatedWarningInterval)
		}
		expectClosed(t, dialRaw(t, px.Addr), 10*time.Second)
	}
	waitFor(t, "every rejection counted", 10*time.Second, func() bool {
		return counter(t, px.m.connectionsRejected.WithLabelValues("max_client_conns")) == rejected
	})
	var lines []string
	px.Logs.mu.Lock()
	for _, l := range px.Logs.lines {
		if strings.Contains(l, "max-client-conns reached") {
			lines = append(lines, l)
		}
	}
	px.Logs.mu.Unlock()
	if len(lines) != 2 {
		t.Fatalf("%d warning lines for %d rejections in two intervals, want 2", len(lines), rejected)
	}
	if !strings.Contains(lines[1], "suppressed_since_last=19") {
		t.Errorf("second line does not count the 19 rejections suppressed before it: %s", lines[1])
	}
}
