package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/zkproxy/zkproxy/jute"
)

// metrics holds the proxy's Prometheus collectors. Label values come from
// small fixed sets (reasons, results, opcode names); never a session id,
// member-supplied text or a znode path.
type metrics struct {
	connectionsAccepted  prometheus.Counter
	connectionsRejected  *prometheus.CounterVec // reason
	connectionsClosed    *prometheus.CounterVec // reason
	sessionsOpen         prometheus.Gauge
	requests             *prometheus.CounterVec // op
	reattaches           *prometheus.CounterVec // result
	moves                *prometheus.CounterVec // result
	upstreamConnectFails *prometheus.CounterVec // reason
	decodeErrors         *prometheus.CounterVec // kind
	framesOverLimit      *prometheus.CounterVec // direction
	limitReached         *prometheus.CounterVec // limit
	heldRequests         prometheus.Counter
	heldRequestsNow      prometheus.Gauge
	fourLetterWords      *prometheus.CounterVec // command
	proxyPings           prometheus.Counter
	watchesReplayed      prometheus.Counter

	requestsByOp  map[jute.Op]prometheus.Counter // requests, resolved once per op
	requestsOther prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	const ns = "zkproxy"
	m := &metrics{
		connectionsAccepted: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "connections_accepted_total",
			Help: "Client connections accepted by the listener.",
		}),
		connectionsRejected: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "connections_rejected_total",
			Help: "Client connections closed before a session was established, by reason.",
		}, []string{"reason"}),
		connectionsClosed: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "sessions_closed_total",
			Help: "Established client connections closed by the proxy or the client, by reason.",
		}, []string{"reason"}),
		sessionsOpen: f.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "sessions_open",
			Help: "Client connections with an established session.",
		}),
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "requests_total",
			Help: "Client requests received, by opcode.",
		}, []string{"op"}),
		reattaches: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "upstream_reattaches_total",
			Help: "Sessions whose upstream connection was lost, by outcome (ok: re-attached invisibly).",
		}, []string{"result"}),
		moves: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "session_moves_total",
			Help: "Session moves requested through Session.Move, by result.",
		}, []string{"result"}),
		upstreamConnectFails: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "upstream_connect_failures_total",
			Help: "Failed attempts to open a session connection on a member, by reason.",
		}, []string{"reason"}),
		decodeErrors: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "decode_errors_total",
			Help: "Frames the proxy could not decode, by kind.",
		}, []string{"kind"}),
		framesOverLimit: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "frames_over_limit_total",
			Help: "Frames larger than the configured maximum, by direction.",
		}, []string{"direction"}),
		limitReached: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "limit_reached_total",
			Help: "Times a per-session limit paused reading from the client (backpressure), by limit.",
		}, []string{"limit"}),
		heldRequests: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "held_requests_total",
			Help: "Client requests held while their session re-attached, moved or drained.",
		}),
		heldRequestsNow: f.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "held_requests",
			Help: "Client requests currently held.",
		}),
		fourLetterWords: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "four_letter_words_total",
			Help: "Four-letter words received on the client port, by command.",
		}, []string{"command"}),
		proxyPings: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "upstream_keepalive_pings_total",
			Help: "Pings the proxy sent upstream itself because the client's were too slow for the member's timeout.",
		}),
		watchesReplayed: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "watches_replayed_total",
			Help: "Watch registrations re-sent to a member after a re-attach or move.",
		}),
	}
	m.requestsByOp = map[jute.Op]prometheus.Counter{}
	for op, name := range knownOps {
		m.requestsByOp[op] = m.requests.WithLabelValues(name)
	}
	m.requestsOther = m.requests.WithLabelValues("unknown")
	return m
}

// countRequest counts one client request without a label lookup on the
// hot path.
func (m *metrics) countRequest(op jute.Op) {
	if c, ok := m.requestsByOp[op]; ok {
		c.Inc()
		return
	}
	m.requestsOther.Inc()
}

// knownOps is the opcode label set: anything else is "unknown", so a client
// sending random opcodes cannot create unbounded series.
var knownOps = func() map[jute.Op]string {
	m := map[jute.Op]string{}
	for _, op := range []int32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
		100, 101, 102, 103, 104, 105, 106, 107, -10, -11} {
		m[jute.Op(op)] = jute.Op(op).String()
	}
	return m
}()

// knownFourLetterWords bounds the command label (FourLetterCommands).
var knownFourLetterWords = map[string]bool{
	"conf": true, "cons": true, "crst": true, "dirs": true, "dump": true, "envi": true, "gtmk": true,
	"hash": true, "isro": true, "mntr": true, "ruok": true, "srst": true, "srvr": true, "stat": true,
	"stmk": true, "wchc": true, "wchp": true, "wchs": true,
}

func fourLetterLabel(cmd string) string {
	if knownFourLetterWords[cmd] {
		return cmd
	}
	return "other"
}
