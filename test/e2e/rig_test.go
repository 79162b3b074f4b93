package e2e

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/internal/testkit/kafkaload"
	"github.com/zkproxy/zkproxy/internal/testkit/rig"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// startJava starts a Java workload, closed in t.Cleanup, whose JVM log is
// attached to the test output if the test fails.
func startJava(t *testing.T, ctx context.Context, prog *zktest.Java, cfg kafkaload.JavaConfig) *kafkaload.JavaWorkload {
	t.Helper()
	j, err := kafkaload.StartJava(ctx, prog, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		j.Close()
		if t.Failed() {
			t.Logf("java workload %s log (tail):\n%s", cfg.Prefix, j.Stderr())
		}
	})
	return j
}

// clients is a set of running workloads.
type clients []kafkaload.Client

func (cs clients) each(f func(kafkaload.Client)) {
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() { f(c) })
	}
	wg.Wait()
}

func (cs clients) snapshot() []kafkaload.Report {
	out := make([]kafkaload.Report, len(cs))
	for i, c := range cs {
		out[i] = c.Snapshot()
	}
	return out
}

func (cs clients) resetLatency() { cs.each(func(c kafkaload.Client) { c.ResetLatency() }) }

func (cs clients) stop() []kafkaload.Report {
	out := make([]kafkaload.Report, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() { out[i] = c.Stop() })
	}
	wg.Wait()
	return out
}

func (cs clients) watchesFire(t *testing.T, d time.Duration) {
	t.Helper()
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() { errs[i] = c.WatchesFire(rig.CtxFor(t, d)) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// window sums reports taken at the end of a window minus those at its
// start; pauses come from SessionMaxOp (reset at the window's start).
type window struct {
	name                             string
	sessions                         int
	acked, uncertain                 int
	disconnects, expired, watchEvent int64
	errors                           []string
	pauses                           kafkaload.Pauses
	reports                          []kafkaload.Report
}

func since(name string, end, base []kafkaload.Report) window {
	w := window{name: name}
	for i := range end {
		d := end[i].Since(base[i])
		w.reports = append(w.reports, d)
		w.sessions += len(d.Sessions)
		w.acked += d.AckedWrites - base[i].AckedWrites
		w.uncertain += d.Uncertain
		w.disconnects += d.Disconnects
		w.expired += d.Expired
		w.watchEvent += d.WatchEvents
		w.errors = append(w.errors, d.Errors...)
	}
	w.pauses = kafkaload.PausesOf(w.reports...)
	return w
}

func (w window) String() string {
	return fmt.Sprintf("%s: %s; acked writes %d, uncertain %d, disconnects %d, expired %d, watch events %d, errors %d",
		w.name, w.pauses, w.acked, w.uncertain, w.disconnects, w.expired, w.watchEvent, len(w.errors))
}

// verifyAll reads every client's writes back from addr and fails on any
// loss, unexplained duplicate, reordering or changed ephemeral owner.
func verifyAll(t *testing.T, cs clients, addr string) kafkaload.Verification {
	t.Helper()
	var total kafkaload.Verification
	total.OwnersIntact = true
	ctx := rig.CtxFor(t, 2*time.Minute)
	for i, c := range cs {
		v, err := c.Verify(ctx, addr)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		if !v.OK() {
			t.Errorf("client %d: %s: %v", i, v, v.Problems)
		}
		if _, ok := c.(*kafkaload.Workload); ok && v.Consumed == 0 {
			t.Errorf("client %d: its consumer read nothing: %s", i, v)
		}
		total.Acked += v.Acked
		total.Found += v.Found
		total.Lost += v.Lost
		total.Duplicates += v.Duplicates
		total.UnexplainedDuplicates += v.UnexplainedDuplicates
		total.OutOfOrder += v.OutOfOrder
		total.Unexpected += v.Unexpected
		total.Consumed += v.Consumed
		total.Phantom += v.Phantom
		total.ConsumerGaps += v.ConsumerGaps
		total.OwnersIntact = total.OwnersIntact && v.OwnersIntact
	}
	return total
}
