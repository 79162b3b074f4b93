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

	barrierUp      prometheus.Gauge
	barrierSeconds prometheus.Histogram
	barrierHold    prometheus.Histogram
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
	}
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
