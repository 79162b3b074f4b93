package benchload

import (
	"math/bits"
	"time"
)

// subBuckets per power of two: 32 keeps every recorded latency within ~3%
// of its true value while the whole histogram stays a fixed 2,048 counters.
const (
	subBucketBits = 5
	subBuckets    = 1 << subBucketBits
	maxExponent   = 64 - subBucketBits
)

// Histogram is a fixed-size log-linear latency histogram. Memory does not
// grow with the number of samples, so a long soak run cannot exhaust it.
// The zero value is ready to use; it is not safe for concurrent use.
type Histogram struct {
	counts [maxExponent * subBuckets]uint64
	n      uint64
	max    time.Duration
}

func bucketOf(d time.Duration) int {
	v := uint64(max(d, 0))
	if v < subBuckets {
		return int(v)
	}
	exp := bits.Len64(v) - subBucketBits // ≥ 1
	return exp*subBuckets + int(v>>(exp-1)) - subBuckets
}

// lowerBound is the smallest duration that falls in bucket b.
func lowerBound(b int) time.Duration {
	if b < subBuckets*2 {
		return time.Duration(b)
	}
	exp := b/subBuckets - 1
	return time.Duration(uint64(b%subBuckets+subBuckets) << exp)
}

// Record adds one sample.
func (h *Histogram) Record(d time.Duration) {
	h.counts[bucketOf(d)]++
	h.n++
	h.max = max(h.max, d)
}

// Merge adds every sample of o to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// Count is the number of samples recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest sample recorded.
func (h *Histogram) Max() time.Duration { return h.max }

// Quantile returns the lower bound of the bucket holding quantile q (0..1).
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n-1)) + 1
	var seen uint64
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(lowerBound(b), h.max)
		}
	}
	return h.max
}
