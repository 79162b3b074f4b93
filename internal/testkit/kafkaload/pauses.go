package kafkaload

import (
	"fmt"
	"slices"
	"time"
)

// Pauses summarises the client-visible pause of each session — its longest
// single request in the measured window (Report.SessionMaxOp) — over many
// sessions.
type Pauses struct {
	Sessions      int
	P50, P99, Max time.Duration
}

func (p Pauses) String() string {
	return fmt.Sprintf("%d sessions: pause p50 %s, p99 %s, max %s", p.Sessions,
		p.P50.Round(time.Millisecond), p.P99.Round(time.Millisecond), p.Max.Round(time.Millisecond))
}

// PausesOf collects the per-session pauses of reports (nearest-rank
// percentiles).
func PausesOf(reports ...Report) Pauses {
	var all []time.Duration
	for _, r := range reports {
		for _, d := range r.SessionMaxOp {
			all = append(all, d)
		}
	}
	if len(all) == 0 {
		return Pauses{}
	}
	slices.Sort(all)
	rank := func(q float64) time.Duration {
		i := int(q*float64(len(all))+0.999999) - 1
		return all[min(max(i, 0), len(all)-1)]
	}
	return Pauses{Sessions: len(all), P50: rank(0.50), P99: rank(0.99), Max: all[len(all)-1]}
}
