// Package memtrim gives the heap a quiet process keeps free back to the
// operating system.
//
// The Go runtime keeps the heap memory that a collection frees for the
// allocations to come, and its background scavenger returns to the OS only
// what lies beyond about 110 % of the next collection's goal. After a burst
// that allocated much and left little (the connection storm when brokers
// start, a cutover, an upgrade) a proxy whose sessions then sit idle keeps
// that free heap resident for as long as it runs, though it allocates next
// to nothing: its relaying allocates nothing per request. With 9,000 idle
// sessions that was about 0.6 KiB of RSS per session (docs/benchmarks.md).
// A Trimmer notices such a process — free heap that the allocations of a
// whole interval would not have used half of — and releases it once;
// it does nothing while the process allocates, when a collection's worth of
// freed memory would soon be taken again, and nothing again until a new
// burst has left free heap behind.
package memtrim

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultInterval is how often a Trimmer looks.
const DefaultInterval = 30 * time.Second

// MinFree is the least free heap worth a release: below it the forced
// collection costs more than the memory is worth.
const MinFree = 1 << 20

// Sample is what the runtime reports at one look.
type Sample struct {
	// Allocated is the bytes ever allocated on the heap
	// (/gc/heap/allocs:bytes).
	Allocated uint64
	// Free is heap memory that is free and still held from the OS
	// (/memory/classes/heap/free:bytes).
	Free uint64
	// Released is heap memory returned to the OS and not yet reused
	// (/memory/classes/heap/released:bytes).
	Released uint64
}

// Quiet reports whether the process allocated so little between prev and
// cur that cur's free heap is worth giving back: at least MinFree free, and
// the interval's allocations under half of it, so that at that pace the
// free heap would not be used up within two more intervals.
func Quiet(prev, cur Sample) bool {
	if cur.Free < MinFree || cur.Allocated < prev.Allocated {
		return false
	}
	return (cur.Allocated-prev.Allocated)*2 < cur.Free
}

// Trimmer releases a quiet process's free heap (see the package comment).
type Trimmer struct {
	Interval time.Duration // DefaultInterval when zero
	Log      *slog.Logger  // may be nil

	released prometheus.Counter
	releases prometheus.Counter
}

// New returns a Trimmer counting its work in reg (may be nil).
func New(reg prometheus.Registerer, log *slog.Logger) *Trimmer {
	t := &Trimmer{
		Log: log,
		released: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zkproxy_memory_released_bytes_total",
			Help: "Free heap memory given back to the operating system after a burst of allocation was over (the process then allocated little).",
		}),
		releases: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zkproxy_memory_releases_total",
			Help: "Times the free heap was given back to the operating system because the process had gone quiet.",
		}),
	}
	if reg != nil {
		reg.MustRegister(t.released, t.releases)
	}
	return t
}

// Run looks every Interval until ctx ends.
func (t *Trimmer) Run(ctx context.Context) {
	interval := t.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	prev := Read()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cur := Read()
		if Quiet(prev, cur) {
			cur = t.Release(cur)
		}
		prev = cur
	}
}

// Release collects and returns all free heap to the OS, and returns the
// sample after it; before is a sample taken just before the call. The
// collection runs concurrently with the program, as every collection does;
// the call blocks its caller until the memory is returned (tens of
// milliseconds for a heap of tens of MiB).
func (t *Trimmer) Release(before Sample) Sample {
	start := time.Now()
	debug.FreeOSMemory()
	after := Read()
	var released uint64
	if after.Released > before.Released {
		released = after.Released - before.Released
	}
	if t.released != nil {
		t.released.Add(float64(released))
		t.releases.Inc()
	}
	if t.Log != nil {
		t.Log.Debug("released free heap to the OS after a quiet interval",
			"released_bytes", released, "free_before_bytes", before.Free, "free_after_bytes", after.Free,
			"took", time.Since(start))
	}
	return after
}

// Read samples the runtime.
func Read() Sample {
	s := [...]metrics.Sample{
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}
	metrics.Read(s[:])
	var v [len(s)]uint64
	for i, m := range s {
		if m.Value.Kind() == metrics.KindUint64 {
			v[i] = m.Value.Uint64()
		}
	}
	return Sample{Allocated: v[0], Free: v[1], Released: v[2]}
}
