package cutover

import (
	"context"
	"sync"
	"time"
)

// moveLimiter is how many sessions the cutover moves at once. A fixed
// number is wrong at both ends: too few leaves a large cutover waiting on
// round trips (each move is a connect, a session revalidation by the
// destination leader, SetWatches and auth replay), too many queues moves in
// the destination's request pipeline and the proxy's CPU, and each queued
// move is a pause a busy client sees (its requests are held for the move).
// So the number adapts to what the destination takes, the way TCP's window
// follows a path:
//
//   - It starts at the configured concurrency and, in slow start, grows by
//     one for each move that completes within the pause target (doubling
//     every round of moves).
//   - What counts is a move's attach time (MoveTimer: the old upstream's
//     close to the release on the new member), without the drain before
//     it, which depends on the requests in flight on the source, not on
//     the destination.
//   - A move slower than the target — longer than the pause target and
//     more than twice the fastest move seen so far, so that a slow machine
//     or a TLS destination whose every move takes 30 ms is not read as
//     congestion — or a move that failed, halves it and ends slow start;
//     afterwards it grows by one per round (1/limit per good move).
//   - One halving per round: moves already in flight when it halved started
//     under the old number and do not halve it again.
//   - It stays within [1, max]; with max at or below the start it is fixed
//     at the start.
type moveLimiter struct {
	mu   sync.Mutex
	cond *sync.Cond

	limit     float64
	max       float64
	fixed     bool // max at or below the start: no adapting
	target    time.Duration
	slowStart bool
	fastest   time.Duration
	inFlight  int
	// completed counts finished moves; no halving until it passes cutAt.
	completed, cutAt int

	// For the log and the status: the range the limit covered.
	low, high float64
}

func newMoveLimiter(start, ceiling int, target time.Duration) *moveLimiter {
	start = max(1, start)
	ceiling = max(start, ceiling)
	l := &moveLimiter{limit: float64(start), max: float64(ceiling), fixed: ceiling == start, target: target, slowStart: true,
		low: float64(start), high: float64(start)}
	l.cond = sync.NewCond(&l.mu)
	return l
}

// acquire waits for room for one more move; false when ctx ended first.
func (l *moveLimiter) acquire(ctx context.Context) bool {
	stop := context.AfterFunc(ctx, func() {
		l.mu.Lock()
		l.cond.Broadcast()
		l.mu.Unlock()
	})
	defer stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.inFlight >= int(l.limit) {
		if ctx.Err() != nil {
			return false
		}
		l.cond.Wait()
	}
	if ctx.Err() != nil {
		return false
	}
	l.inFlight++
	return true
}

// release ends one move that took took; ok is false for a failed one. A
// zero took with ok is a session the cutover disconnected on purpose (an
// unmovable one): no move, nothing learnt.
func (l *moveLimiter) release(took time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inFlight--
	l.completed++
	if l.fixed || (ok && took <= 0) {
		l.cond.Broadcast()
		return
	}
	if ok && (l.fastest == 0 || took < l.fastest) {
		l.fastest = took
	}
	slow := !ok || (took > l.target && took > 2*l.fastest)
	switch {
	case slow && l.completed > l.cutAt:
		l.limit = max(1, l.limit/2)
		l.slowStart = false
		l.cutAt = l.completed + l.inFlight
	case slow:
	case l.slowStart:
		l.limit = min(l.max, l.limit+1)
	default:
		l.limit = min(l.max, l.limit+1/l.limit)
	}
	l.low, l.high = min(l.low, l.limit), max(l.high, l.limit)
	l.cond.Broadcast()
}

// current returns the limit now (rounded down, at least 1) and the range
// it covered.
func (l *moveLimiter) current() (now, low, high int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int(l.limit), int(l.low), int(l.high)
}
