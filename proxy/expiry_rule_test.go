package proxy

import (
	"testing"
	"time"
)

func TestNextOwnPing(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := time.Second
	for _, tc := range []struct {
		name          string
		lastSend      time.Duration // after t0
		clientTimeout time.Duration // deadline = t0 + clientTimeout (client's last frame at t0)
		memberTimeout time.Duration
		wantAt        time.Duration // after t0
		wantOK        bool
	}{
		// Equal timeouts: the client's frame reached the member at t0, the
		// bound; the proxy never pings on its own.
		{"equal timeouts, frame forwarded", 0, 6 * s, 6 * s, 0, false},
		{"equal timeouts, later send", 2 * s, 6 * s, 6 * s, 0, false},
		// A held client's ping was not forwarded (last send before t0):
		// one ping just before the bound, which is t0 itself.
		{"equal timeouts, frame not forwarded", -1 * s, 6 * s, 6 * s, -100 * time.Millisecond, true},
		// Lower member timeout: every third of it until D - Tm = t0+4s.
		{"lower member timeout, regular", 0, 6 * s, 2 * s, 2 * s / 3, true},
		{"lower member timeout, last regular", 3 * s, 6 * s, 2 * s, 3*s + 2*s/3, true},
		{"lower member timeout, final", 3500 * time.Millisecond, 6 * s, 2 * s, 4*s - 100*time.Millisecond, true},
		{"lower member timeout, bound passed", 3950 * time.Millisecond, 6 * s, 2 * s, 0, false},
		// Higher member timeout: even the client's own frame carries the
		// session past D; the proxy adds nothing.
		{"higher member timeout", -1 * s, 6 * s, 9 * s, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at, ok := nextOwnPing(t0.Add(tc.lastSend), t0.Add(tc.clientTimeout), tc.memberTimeout)
			if ok != tc.wantOK || (ok && !at.Equal(t0.Add(tc.wantAt))) {
				t.Fatalf("nextOwnPing = %v, %v; want %v, %v", at.Sub(t0), ok, tc.wantAt, tc.wantOK)
			}
			if ok && !mayTouch(at, t0.Add(tc.clientTimeout), tc.memberTimeout) {
				t.Fatalf("a ping at %v would carry the session past the client's deadline", at.Sub(t0))
			}
		})
	}
}

func TestKeepAliveDelay(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := time.Second
	deadline := t0.Add(6 * s) // client's last frame at t0, 6 s timeout
	for _, tc := range []struct {
		name     string
		lastSend time.Duration
		now      time.Duration
		tm       time.Duration
		want     time.Duration
	}{
		{"next regular ping", 0, 100 * time.Millisecond, 2 * s, 2*s/3 - 100*time.Millisecond},
		{"regular ping overdue", 0, s, 2 * s, 0},
		{"final ping", 3500 * time.Millisecond, 3600 * time.Millisecond, 2 * s, 300 * time.Millisecond},
		// The timer came back after the bound (t0+4s) with a regular ping
		// still "due": nothing may be sent, so it must not spin.
		{"late past the bound", 3 * s, 4100 * time.Millisecond, 2 * s, 2 * s / 3},
		{"none allowed", 0, 100 * time.Millisecond, 6 * s, 2 * s},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := keepAliveDelay(t0.Add(tc.lastSend), deadline, t0.Add(tc.now), tc.tm); got != tc.want {
				t.Fatalf("keepAliveDelay = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestReattachTimeout(t *testing.T) {
	now := time.Unix(1000, 0)
	for _, tc := range []struct {
		name      string
		requested int32
		left      time.Duration
		want      int32
		wantOK    bool
	}{
		{"plenty left", 6000, 10 * time.Second, 6000, true},
		{"exactly the timeout left", 6000, 6 * time.Second, 6000, true},
		{"part left", 6000, 2500 * time.Millisecond, 2500, true},
		{"client asked nothing", 0, 2500 * time.Millisecond, 2500, true},
		{"deadline passed", 6000, -time.Millisecond, 0, false},
		{"deadline now", 6000, 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := reattachTimeout(tc.requested, now.Add(tc.left), now)
			if got != tc.want || ok != tc.wantOK {
				t.Fatalf("reattachTimeout = %d, %v; want %d, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestReadWatchExcuse(t *testing.T) {
	t0 := time.Unix(1000, 0)
	w := readWatch{timeout: time.Second}
	set := func(time.Time) error { return nil }
	if v := w.expired(t0.Add(time.Second), t0, set); v != peerSilent {
		t.Fatalf("quiet for the timeout: %v, want peerSilent", v)
	}
	w.excuse(t0.Add(time.Second), t0, set)
	if !w.at.Equal(t0.Add(2 * time.Second)) {
		t.Fatalf("deadline %v after the excuse, want 2s", w.at.Sub(t0))
	}
	if v := w.expired(t0.Add(1500*time.Millisecond), t0, set); v != keepWaiting {
		t.Fatalf("excused silence: %v, want keepWaiting", v)
	}
	if v := w.expired(t0.Add(2*time.Second), t0, set); v != peerSilent {
		t.Fatalf("silent a timeout after the excuse: %v, want peerSilent", v)
	}
	// Data after the excuse counts as usual.
	if v := w.expired(t0.Add(2500*time.Millisecond), t0.Add(2*time.Second), set); v != keepWaiting {
		t.Fatalf("data after the excuse: %v, want keepWaiting", v)
	}
}
