package proxy

import (
	"sync/atomic"

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
	reattaches           *prometheus.CounterVec // result
	moves                *prometheus.CounterVec // result
	handedOver           *prometheus.CounterVec // result
	adopted              *prometheus.CounterVec // result
	upstreamConnectFails *prometheus.CounterVec // reason
	decodeErrors         *prometheus.CounterVec // kind
	framesOverLimit      *prometheus.CounterVec // direction
	limitReached         *prometheus.CounterVec // limit
	heldRequests         prometheus.Counter
	heldRequestsNow      prometheus.Gauge
	parkedPumps          prometheus.Gauge
	fourLetterWords      *prometheus.CounterVec // command
	proxyPings           prometheus.Counter
	inlinePings          *prometheus.CounterVec
	// inlineClientPings and inlineMemberPings are inlinePings' two series,
	// looked up once: the inline relay runs for every idle ping.
	inlineClientPings, inlineMemberPings prometheus.Counter
	// clientDeadlineExpiries counts sessions whose client went silent past
	// its deadline: the upstream was closed without a CloseSession and the
	// session left to expire on the member (docs/session-expiry.md).
	clientDeadlineExpiries prometheus.Counter
	watchesReplayed        prometheus.Counter
	reconfigRefused        prometheus.Counter
	configRewrites         prometheus.Counter

	clientConnections prometheus.Gauge
	sessionsByState   [numEnsembleKinds][numSessionStates]prometheus.Gauge // ensemble, state
	sessionsByMember  *prometheus.GaugeVec                                 // member; resolved once per upstream
	watches           watchGauges
	notifications     prometheus.Counter
	heldBytes         prometheus.Gauge
	holdSeconds       prometheus.Observer
	moveDrainSeconds  prometheus.Observer

	connections atomic.Int64

	// The per-request counters, histograms and byte counts, sharded by
	// session (see hotstats.go); exported by a shardCollector.
	stats statShards
}

// watchGauges are the zkproxy_watches children by watch kind.
type watchGauges [numWatchKinds]prometheus.Gauge

// Slots of the per-op and per-error arrays; labels are resolved once.
const (
	numOpSlots       = 34
	unknownOpSlot    = numOpSlots - 1
	numErrSlots      = 45
	unknownErrSlot   = numErrSlots - 1
	numEnsembleKinds = 3 // source, destination, other
	numSessionStates = int(StateClosed) + 1
	numWatchKinds    = 5 // data, exist, child, persistent, persistent_recursive
)

var ensembleKindNames = [numEnsembleKinds]string{"source", "destination", "other"}

var watchKindNames = [numWatchKinds]string{"data", "exist", "child", "persistent", "persistent_recursive"}

// opSlot maps an opcode to its slot: 0..22 as is, 100..107 after them,
// then -10 and -11; everything else is the "unknown" slot.
func opSlot(op jute.Op) int {
	switch {
	case op >= 0 && op <= 22:
		return int(op)
	case op >= 100 && op <= 107:
		return 23 + int(op-100)
	case op == -10:
		return 31
	case op == -11:
		return 32
	}
	return unknownOpSlot
}

// opSlotLabel is the op label of a slot: the name of a known opcode, else
// "unknown" (op 10 is unused, so its slot shares that series).
func opSlotLabel(slot int) string {
	for op, name := range knownOps {
		if opSlot(op) == slot {
			return name
		}
	}
	return "unknown"
}

// errSlot maps a reply error code to its slot: 0..-15, then -100..-127.
func errSlot(c jute.ErrCode) int {
	switch {
	case c <= 0 && c >= -15:
		return int(-c)
	case c <= -100 && c >= -127:
		return 16 + int(-c-100)
	}
	return unknownErrSlot
}

func errLabel(c jute.ErrCode) string {
	if errSlot(c) == unknownErrSlot || !c.Known() {
		return "unknown"
	}
	return c.String()
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
		reattaches: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "upstream_reattaches_total",
			Help: "Sessions whose upstream connection was lost, by outcome (ok: re-attached invisibly).",
		}, []string{"result"}),
		moves: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "session_moves_total",
			Help: "Session moves requested through Session.Move, by result.",
		}, []string{"result"}),
		handedOver: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "handoff_sessions_total",
			Help: "Sessions an upgrade tried to hand to a new zkproxy process, by result (ok; tls, sasl: drained and disconnected instead; kept: stayed with this process).",
		}, []string{"result"}),
		adopted: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "handoff_adopted_sessions_total",
			Help: "Sessions taken over from the zkproxy process this one replaced, by result (ok: re-attached; reattach_failed: the client was disconnected).",
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
		parkedPumps: f.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "parked_pumps",
			Help: "Session pumps (one per direction) parked without a goroutine because their connection is idle.",
		}),
		fourLetterWords: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "four_letter_words_total",
			Help: "Four-letter words received on the client port, by command.",
		}, []string{"command"}),
		inlinePings: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "zkproxy", Name: "inline_pings_total",
			Help: "Pings of parked idle sessions relayed by the parker itself, without resuming the pump, by direction: client (to the member) and member (the reply to the client).",
		}, []string{"from"}),
		proxyPings: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "upstream_keepalive_pings_total",
			Help: "Pings the proxy sent upstream itself because the client's were too slow for the member's timeout.",
		}),
		clientDeadlineExpiries: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "client_silent_expiries_total",
			Help: "Sessions whose client sent nothing for its negotiated timeout: the proxy closed the upstream without a CloseSession and left the session to expire on the member, on ZooKeeper's schedule.",
		}),
		reconfigRefused: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "reconfig_refused_total",
			Help: "Client reconfig requests answered ReconfigDisabled by the proxy (allow-reconfig off).",
		}),
		configRewrites: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "config_rewrites_total",
			Help: "Replies carrying /zookeeper/config whose membership the proxy replaced with its advertised addresses.",
		}),
		watchesReplayed: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "watches_replayed_total",
			Help: "Watch registrations re-sent to a member after a re-attach or move.",
		}),
	}
	m.clientConnections = f.NewGauge(prometheus.GaugeOpts{
		Namespace: ns, Name: "client_connections",
		Help: "Client connections open (handshaking and established).",
	})
	sessions := f.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: ns, Name: "sessions",
		Help: "Established sessions by the ensemble they are on (source, destination, other) and state.",
	}, []string{"ensemble", "state"})
	for e := range numEnsembleKinds {
		for st := range numSessionStates {
			m.sessionsByState[e][st] = sessions.WithLabelValues(ensembleKindNames[e], SessionState(st).String())
		}
	}
	m.sessionsByMember = f.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: ns, Name: "sessions_by_member",
		Help: "Established sessions attached to each upstream member.",
	}, []string{"member"})
	if reg != nil {
		reg.MustRegister(newShardCollector(&m.stats))
	}
	watches := f.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: ns, Name: "watches",
		Help: "Watch registrations tracked for re-attach, by kind.",
	}, []string{"kind"})
	for k := range numWatchKinds {
		m.watches[k] = watches.WithLabelValues(watchKindNames[k])
	}
	m.notifications = f.NewCounter(prometheus.CounterOpts{
		Namespace: ns, Name: "notifications_total",
		Help: "Watch events relayed to clients.",
	})
	m.heldBytes = f.NewGauge(prometheus.GaugeOpts{
		Namespace: ns, Name: "held_bytes",
		Help: "Bytes of client requests currently held.",
	})
	pauseBuckets := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	m.holdSeconds = f.NewHistogram(prometheus.HistogramOpts{
		Namespace: ns, Name: "hold_seconds",
		Help:    "How long a session could not forward requests (client-visible pause), per hold, move or re-attach that ended with the session resumed.",
		Buckets: pauseBuckets,
	})
	m.moveDrainSeconds = f.NewHistogram(prometheus.HistogramOpts{
		Namespace: ns, Name: "move_drain_seconds",
		Help:    "Time a move waited for the requests in flight to be answered.",
		Buckets: pauseBuckets,
	})
	m.inlineClientPings = m.inlinePings.WithLabelValues("client")
	m.inlineMemberPings = m.inlinePings.WithLabelValues("member")

	return m
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
