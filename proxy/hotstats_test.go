package proxy

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/zkproxy/zkproxy/jute"
)

// The shards are summed into the series they replaced: counts from
// sessions on different shards add up, histogram buckets are cumulative
// with the count in +Inf, ops sharing a label make one series, and the
// 4lw latency figures take the min and max over the shards.
func TestStatShardsSumIntoSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	a, b := m.stats.assign(), m.stats.assign()
	if a == b {
		t.Fatal("two sessions in a row got the same shard")
	}
	start := time.Unix(100, 0)
	observe := func(sh *statShard, op jute.Op, code jute.ErrCode, d time.Duration) {
		sh.countRequest(op)
		sh.observeReply(op, code, start.Add(d), &pendingRequest{op: op, start: start})
	}
	observe(a, jute.OpGetData, jute.ErrOK, 50*time.Microsecond)    // bucket le=0.0001
	observe(b, jute.OpGetData, jute.ErrOK, 300*time.Microsecond)   // le=0.0005
	observe(b, jute.OpGetData, jute.ErrNoNode, 20*time.Second)     // +Inf
	observe(a, jute.Op(10), jute.ErrOK, time.Millisecond)          // unused op 10: "unknown"
	observe(b, jute.Op(555), jute.ErrCode(-999), time.Millisecond) // unknown op and error
	a.clientBytesIn.Add(10)
	b.clientBytesIn.Add(5)
	b.upstreamBytesOut.Add(7)
	a.packetsSent.Add(2)
	b.packetsSent.Add(3)
	// A request held before it was written upstream: the member's latency
	// is counted from when it was sent.
	a.observeReply(jute.OpCreate, jute.ErrOK, start.Add(3*time.Second),
		&pendingRequest{op: jute.OpCreate, start: start, sent: start.Add(2 * time.Second)})

	if got := counterValue(t, reg, "zkproxy_requests_total", map[string]string{"op": "getData"}); got != 3 {
		t.Errorf("requests_total{getData} = %v, want 3", got)
	}
	if got := counterValue(t, reg, "zkproxy_requests_total", map[string]string{"op": "unknown"}); got != 2 {
		t.Errorf("requests_total{unknown} = %v, want 2 (op 10 and op 555)", got)
	}
	for _, c := range []struct {
		op, err string
		want    float64
	}{{"getData", "OK", 2}, {"getData", "NONODE", 1}, {"unknown", "OK", 1}, {"unknown", "unknown", 1}, {"create", "OK", 1}} {
		if got := counterValue(t, reg, "zkproxy_responses_total", map[string]string{"op": c.op, "err": c.err}); got != c.want {
			t.Errorf("responses_total{%s,%s} = %v, want %v", c.op, c.err, got, c.want)
		}
	}
	if got := counterValue(t, reg, "zkproxy_client_bytes_total", map[string]string{"direction": "in"}); got != 15 {
		t.Errorf("client_bytes_total{in} = %v, want 15", got)
	}
	if got := counterValue(t, reg, "zkproxy_upstream_bytes_total", map[string]string{"direction": "out"}); got != 7 {
		t.Errorf("upstream_bytes_total{out} = %v, want 7", got)
	}

	h := gatheredHistogram(t, reg, "zkproxy_request_duration_seconds", "getData")
	if h.GetSampleCount() != 3 {
		t.Errorf("request_duration_seconds{getData} count = %d, want 3", h.GetSampleCount())
	}
	if want := 20.00035; h.GetSampleSum() < want-1e-9 || h.GetSampleSum() > want+1e-9 {
		t.Errorf("request_duration_seconds{getData} sum = %v, want %v", h.GetSampleSum(), want)
	}
	cumulative := map[float64]uint64{}
	for _, bk := range h.GetBucket() {
		cumulative[bk.GetUpperBound()] = bk.GetCumulativeCount()
	}
	for bound, want := range map[float64]uint64{.0001: 1, .00025: 1, .0005: 2, 10: 2} {
		if cumulative[bound] != want {
			t.Errorf("request_duration_seconds{getData} le=%v: %d, want %d", bound, cumulative[bound], want)
		}
	}
	up := gatheredHistogram(t, reg, "zkproxy_upstream_request_duration_seconds", "create")
	if up.GetSampleCount() != 1 || up.GetSampleSum() != 1 {
		t.Errorf("upstream_request_duration_seconds{create} = %d samples, sum %v; want 1, 1 s", up.GetSampleCount(), up.GetSampleSum())
	}

	tot := m.stats.totals()
	if tot.packetsSent != 5 || tot.latencyCount != 6 || tot.latencyMin != int64(50*time.Microsecond) || tot.latencyMax != int64(20*time.Second) {
		t.Errorf("totals = %+v", tot)
	}
}

func gatheredHistogram(t *testing.T, reg *prometheus.Registry, name, op string) *dto.Histogram {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelsMatch(m, map[string]string{"op": op}) {
				return m.GetHistogram()
			}
		}
	}
	t.Fatalf("no %s{op=%q}", name, op)
	return nil
}
