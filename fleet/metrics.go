package fleet

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the fleet's gauges and counters; a nil *Metrics records
// nothing.
type Metrics struct {
	stateEpoch   prometheus.Gauge
	appliedEpoch prometheus.Gauge
	lastRead     prometheus.Gauge
	ready        prometheus.Gauge
	replicas     *prometheus.GaugeVec
	readErrors   *prometheus.CounterVec
	conflicts    prometheus.Counter
}

// NewMetrics registers the fleet metrics (zkproxy_fleet_*) on reg; serve
// registers them when fleet is set.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		stateEpoch: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "zkproxy_fleet_state_epoch",
			Help: "Epoch of the fleet state as this replica last read it (docs/fleet.md).",
		}),
		appliedEpoch: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "zkproxy_fleet_applied_epoch",
			Help: "Last fleet state epoch this replica applied to its sessions; below zkproxy_fleet_state_epoch only for a moment.",
		}),
		lastRead: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "zkproxy_fleet_last_read_timestamp_seconds",
			Help: "When (Unix time) this replica last read the fleet state; older than fleet-stale-after makes it not ready.",
		}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "zkproxy_fleet_ready",
			Help: "1 while the fleet state is readable and fresh (within fleet-stale-after), 0 otherwise (/readyz answers 503).",
		}),
		replicas: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "zkproxy_fleet_replicas",
			Help: "Replicas of the fleet by state: live (member znode present) or vanished (registered, no member znode: died or cut off without leaving).",
		}, []string{"state"}),
		readErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zkproxy_fleet_state_read_errors_total",
			Help: "Failed reads of the fleet state by reason: no_answer (neither ensemble answered), format (garbage or unknown format version: not ready until fixed), other.",
		}, []string{"reason"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zkproxy_fleet_write_conflicts_total",
			Help: "Changes of the fleet state refused because another replica changed it first (the operator got 409).",
		}),
	}
	reg.MustRegister(m.stateEpoch, m.appliedEpoch, m.lastRead, m.ready, m.replicas, m.readErrors, m.conflicts)
	for _, r := range []string{"no_answer", "format", "other"} {
		m.readErrors.WithLabelValues(r)
	}
	for _, s := range []string{"live", "vanished"} {
		m.replicas.WithLabelValues(s)
	}
	return m
}

func (m *Metrics) observeRead(r Reading, err error) {
	if m == nil {
		return
	}
	var fe *FormatError
	switch {
	case err == nil:
		m.stateEpoch.Set(float64(r.State.Epoch))
	case errors.Is(err, ErrNoAnswer):
		m.readErrors.WithLabelValues("no_answer").Inc()
	case errors.As(err, &fe):
		m.readErrors.WithLabelValues("format").Inc()
	default:
		m.readErrors.WithLabelValues("other").Inc()
	}
}

func (m *Metrics) observeRoster(ro Roster) {
	if m == nil {
		return
	}
	m.replicas.WithLabelValues("live").Set(float64(len(ro.Live)))
	m.replicas.WithLabelValues("vanished").Set(float64(len(ro.Vanished)))
}

func (m *Metrics) setBool(g prometheus.Gauge, b bool) {
	if m == nil {
		return
	}
	if b {
		g.Set(1)
	} else {
		g.Set(0)
	}
}

func (m *Metrics) readyGauge() prometheus.Gauge {
	if m == nil {
		return nil
	}
	return m.ready
}
