package proxy

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkproxy/zkproxy/jute"
)

// The counters every relayed request touches — bytes and frames each way,
// requests and replies by opcode, the two latency histograms and the 4lw
// latency figures — live in shards, and each session writes only its own
// shard. With one set of counters for the whole proxy the two CPUs'
// pumps wrote the same cache lines about twenty times per request, and
// each write waited for the line to come over from the other CPU: at a
// fixed 20,000 reads/s that was ~0.75 µs of the proxy's ~19 µs CPU per
// request (the same binary with these counters removed, relaybench rig).
// The shards are summed when they are read: a Prometheus scrape, the
// 4lw and admin stats.
const numStatShards = 16

// statShard is one shard. Sessions are spread over the shards round-robin,
// so pumps running at the same time rarely share one.
type statShard struct {
	_ [64]byte // keeps the previous shard's last fields off this one's lines

	clientBytesIn, clientBytesOut     atomic.Uint64
	upstreamBytesIn, upstreamBytesOut atomic.Uint64
	packetsReceived, packetsSent      atomic.Uint64

	requests  [numOpSlots]atomic.Uint64
	responses [numOpSlots][numErrSlots]atomic.Uint64
	// Request in → reply out, and written upstream → reply read.
	requestDuration, upstreamDuration [numOpSlots]shardHistogram

	latency latencyExtremes
}

// latencyBounds are the histograms' bucket upper bounds.
var latencyBounds = [...]float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// latencyBoundsNanos are latencyBounds as durations, so observing compares
// integers.
var latencyBoundsNanos = func() (b [len(latencyBounds)]int64) {
	for i, s := range latencyBounds {
		b[i] = int64(math.Round(s * 1e9))
	}
	return b
}()

// shardHistogram is one shard's part of a latency histogram: the sum in
// nanoseconds and the counts per bucket (not cumulative; the last is
// +Inf). The sum comes first so that it shares a cache line with the
// low buckets where nearly all requests fall: an observation then
// usually touches one line, which matters when the pumps run far
// apart and find their lines evicted.
type shardHistogram struct {
	sumNanos atomic.Uint64
	buckets  [len(latencyBounds) + 1]atomic.Uint64
}

func (h *shardHistogram) observe(d time.Duration) {
	n := max(int64(d), 0)
	i := 0
	for i < len(latencyBoundsNanos) && n > latencyBoundsNanos[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sumNanos.Add(uint64(n))
}

// latencyExtremes keeps the min and max request latency for srvr/mntr,
// like ZooKeeper's ServerStats (which the 4lw srst resets; the proxy's
// never reset); the average comes from the requestDuration histograms'
// counts and sums, which see the same replies. Once they settle, an
// observation only reads them.
type latencyExtremes struct {
	min, max atomic.Int64 // nanoseconds; min 0 means none yet
}

func (l *latencyExtremes) observe(d time.Duration) {
	n := max(int64(d), 1)
	for {
		cur := l.max.Load()
		if n <= cur || l.max.CompareAndSwap(cur, n) {
			break
		}
	}
	for {
		cur := l.min.Load()
		if (cur != 0 && n >= cur) || l.min.CompareAndSwap(cur, n) {
			break
		}
	}
}

// statShards are a proxy's shards.
type statShards struct {
	shards [numStatShards]statShard
	next   atomic.Uint32
}

// assign returns the shard for a new session.
func (s *statShards) assign() *statShard {
	return &s.shards[s.next.Add(1)%numStatShards]
}

// statTotals are the shards summed.
type statTotals struct {
	clientBytesIn, clientBytesOut     uint64
	upstreamBytesIn, upstreamBytesOut uint64
	packetsReceived, packetsSent      uint64
	latencyCount, latencySum          int64
	latencyMin, latencyMax            int64
}

func (s *statShards) totals() statTotals {
	var t statTotals
	for i := range s.shards {
		sh := &s.shards[i]
		t.clientBytesIn += sh.clientBytesIn.Load()
		t.clientBytesOut += sh.clientBytesOut.Load()
		t.upstreamBytesIn += sh.upstreamBytesIn.Load()
		t.upstreamBytesOut += sh.upstreamBytesOut.Load()
		t.packetsReceived += sh.packetsReceived.Load()
		t.packetsSent += sh.packetsSent.Load()
		for slot := range sh.requestDuration {
			h := &sh.requestDuration[slot]
			for b := range h.buckets {
				t.latencyCount += int64(h.buckets[b].Load())
			}
			t.latencySum += int64(h.sumNanos.Load())
		}
		t.latencyMax = max(t.latencyMax, sh.latency.max.Load())
		if mn := sh.latency.min.Load(); mn != 0 && (t.latencyMin == 0 || mn < t.latencyMin) {
			t.latencyMin = mn
		}
	}
	return t
}

// countRequest counts one client request.
func (sh *statShard) countRequest(op jute.Op) { sh.requests[opSlot(op)].Add(1) }

// countResponse counts a reply by op and error.
func (sh *statShard) countResponse(op jute.Op, code jute.ErrCode) {
	sh.responses[opSlot(op)][errSlot(code)].Add(1)
}

// observeReply records a matched reply's latencies: since the request
// arrived from the client and since it was written upstream.
func (sh *statShard) observeReply(op jute.Op, code jute.ErrCode, now time.Time, req *pendingRequest) {
	slot := opSlot(op)
	d := now.Sub(req.start)
	sh.requestDuration[slot].observe(d)
	sent := req.sent
	if sent.IsZero() {
		sent = req.start
	}
	sh.upstreamDuration[slot].observe(now.Sub(sent))
	sh.latency.observe(d)
	sh.responses[slot][errSlot(code)].Add(1)
}

// shardCollector exports the shards as the Prometheus series they replace:
// zkproxy_requests_total, zkproxy_responses_total, the two latency
// histograms and the byte counters, with the names, labels and help they
// always had.
type shardCollector struct {
	s                          *statShards
	requests, responses        *prometheus.Desc
	requestDur, upstreamDur    *prometheus.Desc
	clientBytes, upstreamBytes *prometheus.Desc
}

func newShardCollector(s *statShards) *shardCollector {
	const ns = "zkproxy"
	return &shardCollector{
		s: s,
		requests: prometheus.NewDesc(ns+"_requests_total",
			"Client requests received, by opcode.", []string{"op"}, nil),
		responses: prometheus.NewDesc(ns+"_responses_total",
			"Replies to client requests relayed from members, by opcode and error code.", []string{"op", "err"}, nil),
		requestDur: prometheus.NewDesc(ns+"_request_duration_seconds",
			"Client request latency at the proxy: request read from the client to reply read from the member (then written on).", []string{"op"}, nil),
		upstreamDur: prometheus.NewDesc(ns+"_upstream_request_duration_seconds",
			"Member latency: request written upstream to reply read (excludes time held during re-attach or move).", []string{"op"}, nil),
		clientBytes: prometheus.NewDesc(ns+"_client_bytes_total",
			"Bytes read from (in) and written to (out) client connections.", []string{"direction"}, nil),
		upstreamBytes: prometheus.NewDesc(ns+"_upstream_bytes_total",
			"Bytes read from (in) and written to (out) member connections.", []string{"direction"}, nil),
	}
}

func (c *shardCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.requests, c.responses, c.requestDur, c.upstreamDur, c.clientBytes, c.upstreamBytes} {
		ch <- d
	}
}

// opLabel is one op label and the slots counted under it.
type opLabel struct {
	label string
	slots []int
}

// opLabelSlots lists the distinct op labels (op 10's slot and the unknown
// slot share "unknown"): one series per label.
var opLabelSlots = func() (out []opLabel) {
	index := map[string]int{}
	for slot := range numOpSlots {
		l := opSlotLabel(slot)
		i, ok := index[l]
		if !ok {
			i = len(out)
			index[l] = i
			out = append(out, opLabel{label: l})
		}
		out[i].slots = append(out[i].slots, slot)
	}
	return out
}()

// errSlotLabels is the err label of each error slot.
var errSlotLabels = func() (l [numErrSlots]string) {
	for c := jute.ErrCode(0); c >= -200; c-- {
		if s := errSlot(c); l[s] == "" {
			l[s] = errLabel(c)
		}
	}
	for i := range l {
		if l[i] == "" {
			l[i] = "unknown"
		}
	}
	return l
}()

func (c *shardCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.s.totals()
	ch <- prometheus.MustNewConstMetric(c.clientBytes, prometheus.CounterValue, float64(t.clientBytesIn), "in")
	ch <- prometheus.MustNewConstMetric(c.clientBytes, prometheus.CounterValue, float64(t.clientBytesOut), "out")
	ch <- prometheus.MustNewConstMetric(c.upstreamBytes, prometheus.CounterValue, float64(t.upstreamBytesIn), "in")
	ch <- prometheus.MustNewConstMetric(c.upstreamBytes, prometheus.CounterValue, float64(t.upstreamBytesOut), "out")

	for _, ls := range opLabelSlots {
		op := ls.label
		var requests uint64
		var req, up histogramSum
		responses := map[string]uint64{}
		for _, slot := range ls.slots {
			for sh := range c.s.shards {
				shard := &c.s.shards[sh]
				requests += shard.requests[slot].Load()
				req.add(&shard.requestDuration[slot])
				up.add(&shard.upstreamDuration[slot])
				for e := range numErrSlots {
					if n := shard.responses[slot][e].Load(); n > 0 {
						responses[errSlotLabels[e]] += n
					}
				}
			}
		}
		ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue, float64(requests), op)
		// Every op has its OK series from the start, at zero like
		// requests_total, so rate() and ratios over it have a series
		// before the first reply; other errors appear when they happen.
		if _, ok := responses["OK"]; !ok {
			responses["OK"] = 0
		}
		for errLabel, n := range responses {
			ch <- prometheus.MustNewConstMetric(c.responses, prometheus.CounterValue, float64(n), op, errLabel)
		}
		ch <- req.metric(c.requestDur, op)
		ch <- up.metric(c.upstreamDur, op)
	}
}

// histogramSum adds shards' parts of one histogram.
type histogramSum struct {
	buckets  [len(latencyBounds) + 1]uint64
	sumNanos uint64
}

func (h *histogramSum) add(s *shardHistogram) {
	for i := range s.buckets {
		h.buckets[i] += s.buckets[i].Load()
	}
	h.sumNanos += s.sumNanos.Load()
}

// metric returns the histogram as a Prometheus one: cumulative buckets,
// the count being the +Inf bucket's.
func (h *histogramSum) metric(desc *prometheus.Desc, label string) prometheus.Metric {
	cumulative := make(map[float64]uint64, len(latencyBounds))
	var n uint64
	for i, bound := range latencyBounds {
		n += h.buckets[i]
		cumulative[bound] = n
	}
	n += h.buckets[len(latencyBounds)]
	return prometheus.MustNewConstHistogram(desc, n, float64(h.sumNanos)/1e9, cumulative, label)
}
