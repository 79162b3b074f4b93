package benchload

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketsAreMonotonicAndTight(t *testing.T) {
	prev := -1
	for v := time.Duration(0); v < 10*time.Second; v = v*21/20 + 1 {
		b := bucketOf(v)
		if b < prev {
			t.Fatalf("bucket(%d)=%d < bucket of a smaller value %d", v, b, prev)
		}
		prev = b
		lo := lowerBound(b)
		if lo > v || float64(v-lo) > 0.04*float64(v)+1 {
			t.Fatalf("value %d in bucket %d with lower bound %d: error over 4%%", v, b, lo)
		}
	}
}

func TestQuantilesMatchSortedSamples(t *testing.T) {
	var h Histogram
	var all []time.Duration
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		d := time.Duration(r.ExpFloat64() * float64(300*time.Microsecond))
		h.Record(d)
		all = append(all, d)
	}
	slices.Sort(all)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := all[int(q*float64(len(all)-1))]
		got := h.Quantile(q)
		if diff := float64(exact-got) / float64(exact); diff < -0.001 || diff > 0.04 {
			t.Errorf("q%.3f = %s, exact %s (rel diff %.3f)", q, got, exact, diff)
		}
	}
	if h.Max() != all[len(all)-1] || h.Count() != uint64(len(all)) {
		t.Errorf("max %s count %d, want %s %d", h.Max(), h.Count(), all[len(all)-1], len(all))
	}
	var m Histogram
	m.Merge(&h)
	m.Merge(&h)
	if m.Count() != 2*h.Count() || m.Quantile(0.5) != h.Quantile(0.5) {
		t.Errorf("merge: count %d p50 %s", m.Count(), m.Quantile(0.5))
	}
}
