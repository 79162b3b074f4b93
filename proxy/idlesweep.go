package proxy

import (
	"sync"
	"time"
)

// idleSweep tells running pumps that have been idle for parkAfter to park.
//
// A pump could find out itself with a read deadline at its last data +
// parkAfter, moved on each time it fires while data keeps coming. That is
// what the pumps did first, and it costs a deadline expiry per busy pump
// every parkAfter — a runtime timer firing, the pump's goroutine woken for
// nothing, the timer set again — which measured at about 1.1 µs of relay CPU
// per saturated 100-byte read (64 sessions, 128 pumps expiring 1,280 times a
// second) and 2.2 µs per 1 KiB write, and 6 % of the read throughput
// (relaybench and per-process CPU, A/B in one run). So a busy pump keeps only
// its silence deadline (the peer's timeout, which a busy connection moves
// rarely), and this sweep, one goroutine for the whole proxy, looks at the
// running pumps every parkAfter: a pump whose last data (or resume) is at
// least parkAfter old has its read deadline set to now, which ends its wait;
// the pump's readWatch then decides to park. A pump therefore parks between
// parkAfter and 2 × parkAfter after its last data.
//
// Only pumps that may park are watched (readWatch.parkAfter > 0). The
// goroutine runs while any pump is watched and ends at the first tick that
// finds none.
type idleSweep struct {
	mu      sync.Mutex
	every   time.Duration // set by the first watch
	pumps   map[*frameReader]struct{}
	running bool
}

// watch starts sweeping fr, whose pump is running with rw. Its last
// activity counts from now (a resumed pump reads before it parks again).
func (w *idleSweep) watch(fr *frameReader, rw *readWatch, now time.Time) {
	if rw.parkAfter <= 0 {
		return
	}
	fr.active.Store(now.UnixNano())
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pumps == nil {
		w.pumps = make(map[*frameReader]struct{})
	}
	w.pumps[fr] = struct{}{}
	if !w.running {
		w.running = true
		w.every = rw.parkAfter
		go w.run()
	}
}

// unwatch stops sweeping fr; once it returns, the sweep no longer touches
// fr's connection.
func (w *idleSweep) unwatch(fr *frameReader) {
	w.mu.Lock()
	delete(w.pumps, fr)
	w.mu.Unlock()
}

func (w *idleSweep) run() {
	w.mu.Lock()
	every := w.every
	w.mu.Unlock()
	t := time.NewTicker(every)
	defer t.Stop()
	for now := range t.C {
		if !w.sweep(now, every) {
			return
		}
	}
}

// sweep ends the waits of the pumps idle for at least idleFor at now, and
// reports whether any pump is still watched. The deadlines are set under
// the lock, so none lands after unwatch.
func (w *idleSweep) sweep(now time.Time, idleFor time.Duration) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.pumps) == 0 {
		w.running = false
		return false
	}
	cutoff := now.Add(-idleFor).UnixNano()
	for fr := range w.pumps {
		if fr.active.Load() <= cutoff {
			// Setting a deadline is non-blocking (a runtime timer
			// update); a closed connection just returns an error.
			fr.conn.SetReadDeadline(now)
		}
	}
	return true
}
