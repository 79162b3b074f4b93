package cutover

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metrics are the cutover's Prometheus metrics. Labels are bounded: phase
// and event names, ensemble, result and reason codes — never a session id.
type metrics struct {
	phase       *prometheus.GaugeVec
	transitions *prometheus.CounterVec
	moves       *prometheus.CounterVec
	moveSeconds prometheus.Histogram
	// moveConcurrency is the adaptive move concurrency (moveLimiter).
	moveConcurrency prometheus.Gauge

	barrierUp      prometheus.Gauge
	barrierSeconds prometheus.Histogram
	barrierHold    prometheus.Histogram

	// The last full sync check's verdict (Controller.Check, on demand and
	// every check-interval).
	syncReady prometheus.Gauge
	checkOK   *prometheus.GaugeVec
	destLag   *prometheus.GaugeVec
	direct    *prometheus.GaugeVec
	lastCheck prometheus.Gauge
}

// newMetrics registers the cutover metrics with reg (nil: a private registry).
func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	f := promauto.With(reg)
	return &metrics{
		phase: f.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "zkproxy", Subsystem: "cutover", Name: "phase",
			Help: "1 for the current cutover phase, 0 for the others.",
		}, []string{"phase"}),
		transitions: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "zkproxy", Subsystem: "cutover", Name: "transitions_total",
			Help: "Cutover phase transitions by event.",
		}, []string{"event", "from", "to"}),
		moves: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "zkproxy", Subsystem: "cutover", Name: "session_moves_total",
			Help: "Session moves by target ensemble, result (moved, fallback) and reason.",
		}, []string{"ensemble", "result", "reason"}),
		moveSeconds: f.NewHistogram(prometheus.HistogramOpts{
			Namespace: "zkproxy", Subsystem: "cutover", Name: "session_move_seconds",
			Help:    "Time to move one session, drain included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}),
		moveConcurrency: f.NewGauge(prometheus.GaugeOpts{
			Namespace: "zkproxy", Subsystem: "cutover", Name: "move_concurrency",
			Help: "How many sessions the running (or last) cutover moves at once: it adapts between 1 and cutover-concurrency-max to keep moves under cutover-pause-target.",
		}),
		barrierUp: f.NewGauge(prometheus.GaugeOpts{
			Namespace: "zkproxy", Subsystem: "cutover", Name: "barrier_up",
			Help: "1 while the split barrier holds client requests.",
		}),
		barrierSeconds: f.NewHistogram(prometheus.HistogramOpts{
			Namespace: "zkproxy", Subsystem: "cutover", Name: "barrier_seconds",
			Help:    "How long each split barrier was up.",
			Buckets: prometheus.ExponentialBuckets(0.25, 2, 8),
		}),
		barrierHold: f.NewHistogram(prometheus.HistogramOpts{
			Namespace: "zkproxy", Subsystem: "cutover", Name: "barrier_session_hold_seconds",
			Help:    "How long the split barrier held each session's requests: its client-visible pause.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}),
		syncReady: f.NewGauge(prometheus.GaugeOpts{
			Namespace: "zkproxy", Subsystem: "cutover", Name: "sync_ready",
			Help: "1 when the last sync check passed: mitosis sync confirmed, a cutover would start.",
		}),
		checkOK: f.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "zkproxy", Subsystem: "cutover", Name: "check_ok",
			Help: "Each item of the last sync check: 1 passed, 0 failed.",
		}, []string{"check"}),
		destLag: f.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "zkproxy", Subsystem: "cutover", Name: "destination_lag_transactions",
			Help: "How many transactions each serving destination member trailed the joint leader by at the last sync check.",
		}, []string{"member"}),
		direct: f.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "zkproxy", Subsystem: "cutover", Name: "direct_sessions",
			Help: "Sessions on the members that do not come through this proxy or its peers, at the last sync check; beside_proxied=\"true\": owning ephemeral nodes beside a proxied session's (a client of the same tenant never pointed at zkproxy). Absent when members could not be asked (cons/dump not whitelisted), except a found beside_proxied count.",
		}, []string{"beside_proxied"}),
		lastCheck: f.NewGauge(prometheus.GaugeOpts{
			Namespace: "zkproxy", Subsystem: "cutover", Name: "last_check_timestamp_seconds",
			Help: "When the last sync check ran (Unix time).",
		}),
	}
}

// observeCheck publishes a full sync check's verdict.
func (m *metrics) observeCheck(rep *Report) {
	m.syncReady.Set(boolValue(rep.Ready))
	m.checkOK.Reset() // items depend on what could be asked
	for _, it := range rep.Items {
		m.checkOK.WithLabelValues(it.Name).Set(boolValue(it.OK))
	}
	var leader *MemberStatus
	for i := range rep.Members {
		if rep.Members[i].Addr == rep.Leader {
			leader = &rep.Members[i]
		}
	}
	for i := range rep.Members {
		mem := &rep.Members[i]
		if mem.Ensemble != Destination {
			continue
		}
		if leader == nil || mem.Mode == "" {
			m.destLag.DeleteLabelValues(mem.Addr)
			continue
		}
		lag := max(leader.zxid-mem.zxid, 0)
		if idleNewEpoch(leader, mem) {
			lag = 0
		}
		m.destLag.WithLabelValues(mem.Addr).Set(float64(lag))
	}
	if rep.directLooked {
		beside := 0
		for _, d := range rep.Direct {
			if d.BesideProxied {
				beside++
			}
		}
		switch {
		case !rep.directIncomplete:
			m.direct.WithLabelValues("true").Set(float64(beside))
			m.direct.WithLabelValues("false").Set(float64(len(rep.Direct) - beside))
		case beside > 0:
			// Some member could not be asked: what was found is real, a
			// lower bound; the rest is unknown, not zero.
			m.direct.WithLabelValues("true").Set(float64(beside))
			m.direct.DeleteLabelValues("false")
		default:
			m.direct.Reset()
		}
	}
	m.lastCheck.Set(float64(rep.CheckedAt.UnixNano()) / 1e9)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (m *metrics) setPhase(p Phase) {
	for i := range phaseNames {
		v := 0.0
		if Phase(i) == p {
			v = 1
		}
		m.phase.WithLabelValues(Phase(i).String()).Set(v)
	}
}
