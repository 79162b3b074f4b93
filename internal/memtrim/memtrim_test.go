package memtrim

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestQuiet(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name      string
		prev, cur Sample
		want      bool
	}{
		{"idle with much free heap", Sample{Allocated: 100 * mib, Free: 0}, Sample{Allocated: 100*mib + 1000, Free: 20 * mib}, true},
		{"allocating half the free heap per interval", Sample{Allocated: 100 * mib, Free: 0}, Sample{Allocated: 110 * mib, Free: 20 * mib}, false},
		{"allocating a little under it", Sample{Allocated: 100 * mib, Free: 0}, Sample{Allocated: 109*mib + mib/2, Free: 20 * mib}, true},
		{"too little free to bother", Sample{Allocated: 100 * mib, Free: 0}, Sample{Allocated: 100 * mib, Free: MinFree - 1}, false},
		{"counter went backwards (never)", Sample{Allocated: 100 * mib, Free: 0}, Sample{Allocated: 99 * mib, Free: 20 * mib}, false},
	} {
		if got := Quiet(c.prev, c.cur); got != c.want {
			t.Errorf("%s: Quiet(%+v, %+v) = %v, want %v", c.name, c.prev, c.cur, got, c.want)
		}
	}
}

// TestReleaseGivesFreeHeapBack makes a real burst — 64 MiB allocated, then
// dropped and collected — and checks that Release returns the free heap it
// left and counts it.
func TestReleaseGivesFreeHeapBack(t *testing.T) {
	leaveFreeHeap()
	before := Read()
	if before.Free < MinFree {
		t.Fatalf("after dropping a 64 MiB burst only %d bytes of heap are free", before.Free)
	}
	reg := prometheus.NewRegistry()
	tr := New(reg, nil)
	after := tr.Release(before)
	if after.Free*2 > before.Free {
		t.Errorf("Release left %d of %d free bytes held", after.Free, before.Free)
	}
	if got := testutil.ToFloat64(tr.releases); got != 1 {
		t.Errorf("releases = %v, want 1", got)
	}
	if got := testutil.ToFloat64(tr.released); got < float64(before.Free-after.Free)/2 {
		t.Errorf("released_bytes = %v, though free heap went from %d to %d bytes", got, before.Free, after.Free)
	}
}

// TestRunReleasesOnceQuiet leaves a burst's free heap behind and checks
// that Run gives it back within a few quiet intervals, once.
func TestRunReleasesOnceQuiet(t *testing.T) {
	leaveFreeHeap()
	tr := New(prometheus.NewRegistry(), nil)
	tr.Interval = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); tr.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(tr.releases) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(5 * tr.Interval) // no second release without a new burst
	cancel()
	<-done
	if got := testutil.ToFloat64(tr.releases); got != 1 {
		t.Fatalf("releases = %v after a burst and quiet intervals, want 1 (free heap now %d bytes)", got, Read().Free)
	}
}

// leaveFreeHeap makes a real burst: 64 MiB allocated, dropped and
// collected, which leaves most of it free heap.
func leaveFreeHeap() {
	burst := make([][]byte, 0, 1024)
	for range 1024 {
		burst = append(burst, make([]byte, 64<<10))
	}
	runtime.KeepAlive(burst)
	runtime.GC()
}
