package cutover

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkproxy/zkproxy/internal/fourlw"
)

// onDestination returns a controller whose sessions have all moved to the
// destination, where the split barrier may be raised.
func onDestination(t *testing.T, sessions ...*scriptedSession) *Controller {
	t.Helper()
	c, _ := newTestController(t, &scriptedProxy{sessions: sessions}, t.TempDir())
	if _, err := c.Start(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	wait(t, c)
	if ph := c.Status().Phase; ph != PhaseDestination {
		t.Fatalf("phase %s after the cutover", ph)
	}
	return c
}

// TestConcurrentHoldsRaiseOneBarrier: holds and split barriers requested
// at the same moment raise one barrier; the others are refused. Each call
// looks for a barrier, then holds every session without the controller's
// lock; the session's Hold here waits until every caller has either
// returned or reached it, so all of them have looked before any installs.
func TestConcurrentHoldsRaiseOneBarrier(t *testing.T) {
	gate := make(chan struct{})
	s := &scriptedSession{id: 1, ensemble: Source}
	c := onDestination(t, s)
	s.holdGate, s.entered = gate, make(chan struct{}, 64)
	var gateOnce sync.Once
	t.Cleanup(func() { gateOnce.Do(func() { close(gate) }) })

	const callers = 8
	start := make(chan struct{})
	results := make(chan error, callers)
	for i := range callers {
		go func() {
			<-start
			var err error
			if i%2 == 0 {
				_, err = c.Hold(context.Background(), nil)
			} else {
				_, err = c.PrepareSplit(context.Background(), true)
			}
			results <- err
		}()
	}
	close(start)
	var errs []error
	for holding := 0; holding+len(errs) < callers; {
		select {
		case <-s.entered:
			holding++
		case err := <-results:
			errs = append(errs, err)
		}
	}
	gateOnce.Do(func() { close(gate) })
	for len(errs) < callers {
		errs = append(errs, <-results)
	}
	raised := 0
	for _, err := range errs {
		switch {
		case err == nil:
			raised++
		case !errors.Is(err, ErrHoldUp):
			t.Errorf("refused with %v, want ErrHoldUp", err)
		}
	}
	if raised != 1 {
		t.Fatalf("%d barriers raised at once, want 1", raised)
	}
	if !c.ReleaseBarrier("test") {
		t.Fatal("no barrier to lower")
	}
	if h, r := s.holds.Load(), s.releases.Load(); h != r {
		t.Fatalf("session held %d times, released %d times: a barrier's holds were never released", h, r)
	}
}

// TestConcurrentReleasesLowerTheBarrierOnce: an operator's release, a
// split record and shutdown (Close) can lower the barrier at the same
// moment; exactly one of them does, and none panics.
func TestConcurrentReleasesLowerTheBarrierOnce(t *testing.T) {
	s := &scriptedSession{id: 1, ensemble: Source}
	c := onDestination(t, s)
	for round := range 400 {
		if _, err := c.Hold(context.Background(), nil); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		const callers = 16
		start := make(chan struct{})
		var lowered, panics atomic.Int32
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				defer func() {
					if recover() != nil {
						panics.Add(1)
					}
				}()
				<-start
				if c.ReleaseBarrier("test") {
					lowered.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		if panics.Load() > 0 || lowered.Load() != 1 {
			t.Fatalf("round %d: %d callers lowered the barrier, %d panicked; want 1 and 0", round, lowered.Load(), panics.Load())
		}
		if c.Status().Barrier.Up {
			t.Fatalf("round %d: barrier still up", round)
		}
	}
	if h, r := s.holds.Load(), s.releases.Load(); h != r {
		t.Fatalf("session held %d times, released %d times", h, r)
	}
}

// TestHoldRefusedDuringAMoveSaysWhy: a hold during a move is refused as a
// hold, not as a "start".
func TestHoldRefusedDuringAMoveSaysWhy(t *testing.T) {
	block := make(chan struct{})
	p := &scriptedProxy{sessions: []*scriptedSession{{id: 1, ensemble: Source, block: block}}}
	c, _ := newTestController(t, p, t.TempDir())
	if _, err := c.Start(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	_, err := c.Hold(context.Background(), nil)
	close(block)
	wait(t, c)
	if !errors.Is(err, ErrMoveRunning) || strings.Contains(err.Error(), "start") || !strings.Contains(err.Error(), "hold") {
		t.Fatalf("hold during a move: %v", err)
	}
}

// TestStatusJSONHasReasonsOnce: the fallback reasons appear once in GET
// /cutover's answer.
func TestStatusJSONHasReasonsOnce(t *testing.T) {
	p := &scriptedProxy{sessions: []*scriptedSession{{id: 1, ensemble: Source, fail: refused{}}}}
	c, _ := newTestController(t, p, t.TempDir())
	if _, err := c.Start(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	wait(t, c)
	b, err := json.Marshal(c.Status())
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), `"reasons"`); n != 1 {
		t.Fatalf(`"reasons" %d times in %s`, n, b)
	}
	if !strings.Contains(string(b), `"reasons":{"refused":1}`) {
		t.Fatalf("reasons missing: %s", b)
	}
}

// TestSplitChecksStopWhenContextEnds: while the pre-split checks wait to
// retry (every client request is held meanwhile), an ended context ends
// them at once instead of after the wait.
func TestSplitChecksStopWhenContextEnds(t *testing.T) {
	members := joint()
	d4 := members["d4:2181"]
	d4.zxid-- // the split needs the leader's zxid: the checks retry
	members["d4:2181"] = d4
	c, err := NewController(Config{
		Source: []string{"s1:2181", "s2:2181", "s3:2181"}, Destination: []string{"d4:2181", "d5:2181"},
		Store: Store{Dir: t.TempDir()}, Members: fourlw.Members{Dial: fakeDial(members)},
	}, &scriptedProxy{}, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waiting := make(chan struct{}, 1)
	c.after = func(time.Duration) <-chan time.Time {
		select {
		case waiting <- struct{}{}:
		default:
		}
		return nil // the wait never ends by itself
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan bool, 1)
	go func() {
		_, ok := c.splitChecks(ctx)
		done <- ok
	}()
	select {
	case <-waiting:
	case <-time.After(30 * time.Second):
		t.Fatal("the split checks never waited to retry")
	}
	cancel()
	select {
	case ok := <-done:
		if ok {
			t.Fatal("split checks passed with a trailing member")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the split checks went on waiting after the context ended")
	}
}
