package cutover

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestMoveLimiterAdapts drives the limiter through its rules with made-up
// move times: slow start doubles each round, a slow move halves once per
// round, congestion avoidance adds one per round, and it stays in bounds.
func TestMoveLimiterAdapts(t *testing.T) {
	ms := time.Millisecond
	l := newMoveLimiter(4, 64, 20*ms)
	round := func(took time.Duration, ok bool) int {
		t.Helper()
		n, _, _ := l.current()
		for range n {
			if !l.acquire(context.Background()) {
				t.Fatal("acquire failed")
			}
		}
		for range n {
			l.release(took, ok)
		}
		now, _, _ := l.current()
		return now
	}
	if got := round(5*ms, true); got != 8 {
		t.Fatalf("slow start: 4 good moves made %d, want 8", got)
	}
	if got := round(5*ms, true); got != 16 {
		t.Fatalf("slow start: 8 good moves made %d, want 16", got)
	}
	// A round of slow moves (over the target and over twice the fastest)
	// halves once, not once per move.
	if got := round(50*ms, true); got != 8 {
		t.Fatalf("a slow round made %d, want 8 (one halving)", got)
	}
	// Congestion avoidance: about one per round (1/limit per move).
	round(5*ms, true)
	if l.limit < 8.9 || l.limit > 9.01 {
		t.Fatalf("after the halving a good round made %.2f, want about 9", l.limit)
	}
	// Over the target but within twice the fastest: not congestion.
	l2 := newMoveLimiter(4, 64, 20*ms)
	l2.release(0, true) // an unmovable session's disconnect: nothing learnt
	l2.inFlight++       // balance the release above
	for range 4 {
		l2.acquire(context.Background())
	}
	for range 4 {
		l2.release(30*ms, true)
	}
	if now, _, _ := l2.current(); now != 8 {
		t.Fatalf("uniformly 30 ms moves with a 20 ms target made %d, want 8 (30 ms is the floor here, not congestion)", now)
	}
	// Failures halve; the floor is 1.
	for range 10 {
		round(5*ms, false)
	}
	if now, low, high := l.current(); now != 1 || low != 1 || high != 16 {
		t.Fatalf("after failures: now %d low %d high %d, want 1, 1, 16", now, low, high)
	}
	// The ceiling holds.
	l3 := newMoveLimiter(8, 10, 20*ms)
	for range 5 {
		n, _, _ := l3.current()
		for range n {
			l3.acquire(context.Background())
		}
		for range n {
			l3.release(ms, true)
		}
	}
	if now, _, _ := l3.current(); now != 10 {
		t.Fatalf("ceiling 10: got %d", now)
	}
	// Fixed when the ceiling is at or below the start: failures do not
	// halve it either.
	l4 := newMoveLimiter(8, 0, 20*ms)
	for range 8 {
		l4.acquire(context.Background())
	}
	for range 8 {
		l4.release(time.Second, false)
	}
	if now, low, _ := l4.current(); now != 8 || low != 8 {
		t.Fatalf("ceiling 0 with start 8: now %d low %d, want fixed 8", now, low)
	}
}

// TestMoveLimiterBoundsInFlight: never more moves at once than the limit,
// and a cancelled context ends a wait.
func TestMoveLimiterBoundsInFlight(t *testing.T) {
	l := newMoveLimiter(3, 3, time.Second)
	var mu sync.Mutex
	running, most := 0, 0
	var wg sync.WaitGroup
	for range 50 {
		if !l.acquire(context.Background()) {
			t.Fatal("acquire failed")
		}
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		wg.Go(func() {
			time.Sleep(time.Millisecond)
			mu.Lock()
			running--
			mu.Unlock()
			l.release(time.Millisecond, true)
		})
	}
	wg.Wait()
	if most > 3 {
		t.Fatalf("%d moves at once, limit 3", most)
	}
	for range 3 {
		l.acquire(context.Background())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan bool)
	go func() { done <- l.acquire(ctx) }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	select {
	case ok := <-done:
		if ok {
			t.Fatal("acquire succeeded past the limit")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled acquire kept waiting")
	}
}
