package admin

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/cutover/proxyadapter"
	"github.com/zkproxy/zkproxy/internal/fourlw"
	"github.com/zkproxy/zkproxy/internal/membertls"
	"github.com/zkproxy/zkproxy/proxy"
)

// Defaults for StatusConfig's zero values.
const (
	// DefaultProbeInterval is the least time between two srvr probes of the
	// members: /status may be polled by dashboards and scripts every second,
	// and each probe is a TCP connection the member has to accept.
	DefaultProbeInterval = 5 * time.Second
	// DefaultProbeTimeout bounds one member's srvr probe. A healthy member
	// answers srvr from memory (FourLetterCommands / StatCommand), so a
	// member that takes longer is reported as unreachable rather than
	// allowed to hold up the report.
	DefaultProbeTimeout = time.Second
)

// StatusConfig configures a Status. Zero values mean the documented
// defaults.
type StatusConfig struct {
	// Version is zkproxy's build version.
	Version string
	// Source and Destination list the members of each ensemble.
	Source, Destination []string
	// ProbeInterval is the least time between two probe rounds; zero means
	// DefaultProbeInterval.
	ProbeInterval time.Duration
	// ProbeTimeout bounds one member's probe; zero means
	// DefaultProbeTimeout.
	ProbeTimeout time.Duration
	// Members answers the srvr probes (the same the cutover controller asks
	// through); nil asks over TCP.
	Members cutover.Members
	// MemberTLS says which members the proxy reaches over TLS (nil: none),
	// shown per member.
	MemberTLS *membertls.Policy
}

// Status builds the answer to GET /status. Member roles and zxids come from
// a cache refreshed in the background at most every ProbeInterval, so a
// report never waits on a slow member (only the very first report waits,
// at most about ProbeTimeout, for the first round). Its methods are safe
// for concurrent use.
type Status struct {
	cfg     StatusConfig
	srv     *proxy.Server
	ctl     *cutover.Controller
	started time.Time
	now     func() time.Time

	mu       sync.Mutex
	members  map[string]MemberStatus // by address; nil until the first round ends
	probedAt time.Time               // when the last round started
	round    chan struct{}           // closed when the running round ends; nil when none runs
}

// NewStatus returns a Status for srv and ctl. Uptime counts from this call,
// which serve makes while starting.
func NewStatus(cfg StatusConfig, srv *proxy.Server, ctl *cutover.Controller) *Status {
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = DefaultProbeInterval
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = DefaultProbeTimeout
	}
	if cfg.Members == nil {
		cfg.Members = fourlw.Members{}
	}
	return &Status{
		cfg: cfg, srv: srv, ctl: ctl,
		started: time.Now(), now: time.Now,
	}
}

// StatusReport is the answer to GET /status.
type StatusReport struct {
	Version       string    `json:"version"`
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	// Phase, Split and Target are the cutover controller's (GET /cutover
	// has the move progress).
	Phase  cutover.Phase    `json:"phase"`
	Split  bool             `json:"split"`
	Target cutover.Ensemble `json:"target"`
	// TargetMembers are the members new client connections go to.
	TargetMembers []string       `json:"target_members"`
	Ensembles     EnsembleStatus `json:"ensembles"`
	Sessions      SessionCounts  `json:"sessions"`
	Proxy         ProxyStats     `json:"proxy"`
	// SyncCheck sums up the last sync check (GET /cutover/check has it
	// whole); absent before the first.
	SyncCheck *SyncCheckSummary `json:"sync_check,omitempty"`
}

// SyncCheckSummary is the last sync check in a few lines.
type SyncCheckSummary struct {
	CheckedAt time.Time `json:"checked_at"`
	Ready     bool      `json:"ready"`
	// Failing and Warnings are "item: detail" lines.
	Failing  []string `json:"failing"`
	Warnings []string `json:"warnings"`
	// DirectBesideProxied counts the sessions not behind zkproxy that own
	// ephemeral nodes beside proxied sessions'; PeerSessionsOnSource the
	// peers' sessions still on source members.
	DirectBesideProxied  int `json:"direct_beside_proxied"`
	PeerSessionsOnSource int `json:"peer_sessions_on_source"`
}

func syncCheckSummary(rep *cutover.Report) *SyncCheckSummary {
	if rep == nil {
		return nil
	}
	sum := &SyncCheckSummary{CheckedAt: rep.CheckedAt, Ready: rep.Ready, Failing: []string{}, Warnings: []string{},
		PeerSessionsOnSource: len(rep.PeersOnSource)}
	for _, it := range rep.Items {
		switch {
		case !it.OK:
			sum.Failing = append(sum.Failing, it.Name+": "+it.Detail)
		case it.Warning:
			sum.Warnings = append(sum.Warnings, it.Name+": "+it.Detail)
		}
	}
	for _, d := range rep.Direct {
		if d.BesideProxied {
			sum.DirectBesideProxied++
		}
	}
	return sum
}

// ProxyStats are the proxy's own counters (proxy.Server.Stats): what srvr
// and mntr on the client port report, with latency measured at the proxy.
type ProxyStats struct {
	Connections     int    `json:"connections"`
	Outstanding     int    `json:"outstanding"`
	Held            int    `json:"held"`
	Watches         int    `json:"watches"`
	MaxLastZxidSeen string `json:"max_last_zxid_seen"`
	// Latency of every reply relayed since the start, in milliseconds
	// (zero before the first).
	LatencyMinMS     float64 `json:"latency_min_ms"`
	LatencyAvgMS     float64 `json:"latency_avg_ms"`
	LatencyMaxMS     float64 `json:"latency_max_ms"`
	PacketsReceived  uint64  `json:"packets_received"`
	PacketsSent      uint64  `json:"packets_sent"`
	ClientBytesIn    uint64  `json:"client_bytes_in"`
	ClientBytesOut   uint64  `json:"client_bytes_out"`
	UpstreamBytesIn  uint64  `json:"upstream_bytes_in"`
	UpstreamBytesOut uint64  `json:"upstream_bytes_out"`
}

func proxyStats(st proxy.Stats) ProxyStats {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return ProxyStats{
		Connections: st.Connections, Outstanding: st.Outstanding, Held: st.Held, Watches: st.Watches,
		MaxLastZxidSeen: fmt.Sprintf("0x%x", int64(st.MaxLastZxid)),
		LatencyMinMS:    ms(st.LatencyMin), LatencyAvgMS: ms(st.LatencyAvg), LatencyMaxMS: ms(st.LatencyMax),
		PacketsReceived: st.PacketsReceived, PacketsSent: st.PacketsSent,
		ClientBytesIn: st.ClientBytesIn, ClientBytesOut: st.ClientBytesOut,
		UpstreamBytesIn: st.UpstreamBytesIn, UpstreamBytesOut: st.UpstreamBytesOut,
	}
}

// EnsembleStatus lists each ensemble's members, in configuration order.
type EnsembleStatus struct {
	Source      []MemberStatus `json:"source"`
	Destination []MemberStatus `json:"destination"`
}

// MemberStatus is one member as last probed with srvr. Mode and Zxid are
// from the last successful probe (SeenAt); Error is the last probe's
// failure, empty when it succeeded.
type MemberStatus struct {
	Addr string `json:"addr"`
	// TLS: the proxy reaches this member over TLS (its secureClientPort).
	TLS bool `json:"tls"`
	// Mode is the member's role as srvr prints it: leader, follower,
	// observer, standalone, read-only.
	Mode string `json:"mode,omitempty"`
	// Zxid is the last zxid the member had applied, in hex.
	Zxid string `json:"zxid,omitempty"`
	// Connections is the member's own count of client connections; nil
	// (absent) until a probe succeeded.
	Connections *int      `json:"connections,omitempty"`
	SeenAt      time.Time `json:"seen_at,omitzero"`
	ProbedAt    time.Time `json:"probed_at,omitzero"`
	Error       string    `json:"error,omitempty"`
}

// SessionCounts counts the proxy's established sessions.
type SessionCounts struct {
	Total      int            `json:"total"`
	ByEnsemble map[string]int `json:"by_ensemble"`
	ByState    map[string]int `json:"by_state"`
	// ByMember counts sessions per upstream member; a session that is
	// re-attaching has none and is counted under "".
	ByMember map[string]int `json:"by_member"`
}

// Report returns the current status. It starts a probe round when the last
// one is older than ProbeInterval, without waiting for it unless no round
// has completed yet.
func (s *Status) Report(ctx context.Context) StatusReport {
	members := s.memberCache(ctx)
	cs := s.ctl.Status()
	now := s.now()
	r := StatusReport{
		Version: s.cfg.Version, StartedAt: s.started, UptimeSeconds: now.Sub(s.started).Seconds(),
		Phase: cs.Phase, Split: cs.Split, Target: cs.Target, TargetMembers: s.srv.Target(),
		Ensembles: EnsembleStatus{
			Source:      memberList(s.cfg.Source, members, s.cfg.MemberTLS),
			Destination: memberList(s.cfg.Destination, members, s.cfg.MemberTLS),
		},
		Sessions:  s.countSessions(),
		Proxy:     proxyStats(s.srv.Stats()),
		SyncCheck: syncCheckSummary(s.ctl.LastCheck()),
	}
	if r.TargetMembers == nil {
		r.TargetMembers = []string{}
	}
	return r
}

func memberList(addrs []string, cache map[string]MemberStatus, tls *membertls.Policy) []MemberStatus {
	out := make([]MemberStatus, 0, len(addrs))
	for _, a := range addrs {
		m, ok := cache[a]
		if !ok {
			m = MemberStatus{Addr: a, Error: "not probed yet"}
		}
		m.TLS = tls.For(a) != nil
		out = append(out, m)
	}
	return out
}

func (s *Status) countSessions() SessionCounts {
	c := SessionCounts{
		ByEnsemble: map[string]int{string(cutover.Source): 0, string(cutover.Destination): 0},
		ByState:    map[string]int{},
		ByMember:   map[string]int{},
	}
	for _, st := range []proxy.SessionState{proxy.StateActive, proxy.StateDraining, proxy.StateReattaching} {
		c.ByState[st.String()] = 0
	}
	for _, sess := range s.srv.Sessions() {
		info := sess.Info()
		c.Total++
		c.ByEnsemble[string(proxyadapter.EnsembleOf(s.cfg.Destination, info.Ensemble))]++
		c.ByState[info.State.String()]++
		c.ByMember[info.Member]++
	}
	return c
}

// memberCache returns the cached probe results, starting a round if the
// cache is stale. Only while no round has ever completed does it wait, for
// the running round or ctx.
func (s *Status) memberCache(ctx context.Context) map[string]MemberStatus {
	s.mu.Lock()
	if s.round == nil && (s.probedAt.IsZero() || s.now().Sub(s.probedAt) >= s.cfg.ProbeInterval) {
		s.probedAt = s.now()
		s.round = make(chan struct{})
		go s.probeAll(s.round)
	}
	members, round := s.members, s.round
	s.mu.Unlock()
	if members != nil || round == nil {
		return members
	}
	select {
	case <-round:
	case <-ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.members
}

// probeAll probes every configured member at once, each bounded by
// ProbeTimeout, and folds the results into the cache.
func (s *Status) probeAll(done chan struct{}) {
	addrs := slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(s.cfg.Source), s.cfg.Destination...))))
	results := make([]MemberStatus, len(addrs))
	var wg sync.WaitGroup
	for i, addr := range addrs {
		wg.Go(func() { results[i] = s.probe(addr) })
	}
	wg.Wait()

	s.mu.Lock()
	defer s.mu.Unlock()
	next := make(map[string]MemberStatus, len(addrs))
	for _, r := range results {
		if r.Error != "" {
			// Keep the role and zxid last seen: an operator looking at a
			// member that just went away wants to know what it was.
			prev := s.members[r.Addr]
			r.Mode, r.Zxid, r.Connections, r.SeenAt = prev.Mode, prev.Zxid, prev.Connections, prev.SeenAt
		}
		next[r.Addr] = r
	}
	s.members = next
	s.round = nil
	close(done)
}

func (s *Status) probe(addr string) MemberStatus {
	m := MemberStatus{Addr: addr, ProbedAt: s.now()}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ProbeTimeout)
	defer cancel()
	// srvr is the one word every 3.5+ server allows by default
	// (FourLetterCommands.isEnabled), so the probe works without changing
	// the members' 4lw.commands.whitelist.
	answer, err := s.cfg.Members.Query(ctx, addr, "srvr")
	if err == nil {
		var srvr fourlw.Srvr
		srvr, err = fourlw.ParseSrvr(answer)
		if err == nil {
			m.Mode, m.Zxid, m.Connections, m.SeenAt = srvr.Mode, fmt.Sprintf("0x%x", srvr.Zxid), &srvr.Connections, m.ProbedAt
			return m
		}
	}
	m.Error = err.Error()
	return m
}

// RegisterStatus serves GET /status on h, behind the token: the sync
// check's warnings name sessions by id.
func RegisterStatus(h *Handler, st *Status) {
	h.Handle("GET /status", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, st.Report(r.Context()))
	})
}
