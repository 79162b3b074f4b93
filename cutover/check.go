package cutover

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zkproxy/zkproxy/internal/fourlw"
)

// CheckConfig says what the sync check compares.
type CheckConfig struct {
	// Source and Destination list the members (host:port client addresses).
	Source, Destination []string
	// MaxLag is how many transactions a destination member may trail the
	// joint leader by; zero means 0 (exactly caught up).
	MaxLag int64
	// Members answers the four-letter words the check asks; nil asks over
	// TCP (fourlw.Members), each query bounded by fourlw.DefaultTimeout.
	Members Members
	// PeerSessions lists the sessions of the other zkproxies in front of
	// the same ensembles (an HA pair's partner): they count as proxied, not
	// as direct clients. problems name peers that could not be asked. Nil:
	// no peers.
	PeerSessions func(ctx context.Context) (ids []int64, problems []string)
	// IgnoreSessions lists sessions of zkproxy's own machinery — a fleet's
	// ZooKeeper clients (docs/fleet.md) — that are neither proxied nor
	// clients left out: the look for direct sessions skips them. Nil: none.
	IgnoreSessions func(ctx context.Context) []int64
	// SkipDirect leaves out the look for sessions not through this proxy
	// (cons on every member, dump on one): the split barrier's checks run
	// while client requests are held and need only the members' state.
	SkipDirect bool
	// Nudge commits a transaction through the member at addr without
	// touching the data tree and returns the session it used
	// (zksession.OpenClose). The check calls it once when the only thing
	// keeping a destination member behind the sessions is an idle epoch
	// (see idleNewEpoch), then checks again. Nil: never.
	Nudge func(ctx context.Context, addr string) (sessionID int64, err error)
}

// Members is how cutover reaches ZooKeeper outside of sessions: the sync
// check and the split barrier ask members four-letter words (srvr, conf,
// mntr, cons, dump, hash), which must be in each member's
// 4lw.commands.whitelist. fourlw.Members implements it.
type Members interface {
	// Query sends word to the member at addr and returns its answer; a
	// member that is not serving answers with an error wrapping
	// fourlw.ErrNotServing.
	Query(ctx context.Context, addr, word string) (string, error)
	// Hash returns the member's tree digests, oldest first; none while it
	// has logged none.
	Hash(ctx context.Context, addr string) ([]fourlw.Digest, error)
}

// SessionView is what the check needs to know of one proxied session.
type SessionView struct {
	ID           int64
	LastZxidSeen int64
	// SASL: the session authenticated with SASL, which cannot be replayed
	// on a new connection (docs/protocol.md §6.3).
	SASL bool
	// Ensemble and Member the session is attached to now.
	Ensemble Ensemble
	Member   string
	// Attaches counts completed upstream attachments; Active is true while
	// frames flow (not draining or re-attaching). The split barrier uses
	// both to see a session re-attached after the split.
	Attaches uint64
	Active   bool
}

// MemberStatus is one member as the check saw it.
type MemberStatus struct {
	Addr          string   `json:"addr"`
	Ensemble      Ensemble `json:"ensemble"`
	Reachable     bool     `json:"reachable"`
	Error         string   `json:"error,omitempty"`
	Mode          string   `json:"mode,omitempty"`
	Zxid          string   `json:"zxid,omitempty"`
	Epoch         int64    `json:"epoch"`
	NodeCount     int      `json:"node_count"`
	ServerID      int      `json:"server_id,omitempty"`
	ConfigVersion string   `json:"config_version,omitempty"`
	Members       int      `json:"members,omitempty"`
	// LocalSessions is mntr's zk_local_sessions: sessions that exist only
	// on this member (localSessionsEnabled=true) and cannot move.
	LocalSessions int `json:"local_sessions,omitempty"`

	zxid int64
}

// Item is one line of the check: what was compared, the numbers, the verdict.
type Item struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// Warning: worth an operator's look, but it does not fail the check.
	Warning bool   `json:"warning,omitempty"`
	Detail  string `json:"detail"`
}

// Unmovable is a session that will take the reconnect fallback.
type Unmovable struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`

	id   int64
	code string // the bounded reason label: sasl, local_session, zxid_ahead
}

// Report is the answer to "is mitosis sync confirmed?".
type Report struct {
	Ready     bool           `json:"ready"`
	Leader    string         `json:"leader,omitempty"`
	Members   []MemberStatus `json:"members"`
	Items     []Item         `json:"items"`
	Unmovable []Unmovable    `json:"unmovable_sessions"`
	// Direct are the sessions on the members that do not come through
	// this proxy (see DirectSession).
	Direct []DirectSession `json:"direct_sessions"`
	// PeersOnSource are the sessions of peer zkproxies (PeerSessions) still
	// connected to a source member.
	PeersOnSource []string `json:"peer_sessions_on_source,omitempty"`
	// directLooked: Direct was looked for; directIncomplete: some member
	// or peer could not be asked, so Direct may miss sessions.
	directLooked, directIncomplete bool
	CheckedAt                      time.Time `json:"checked_at"`
	// Usable are the destination members sessions may move to: serving and
	// caught up, and not behind any session's last zxid.
	Usable []string `json:"usable_destination_members"`
}

// Reason summarises the failed items in one line, for errors and logs.
func (r *Report) Reason() string {
	var failed []string
	for _, it := range r.Items {
		if !it.OK {
			failed = append(failed, it.Name+": "+it.Detail)
		}
	}
	return strings.Join(failed, "; ")
}

// Unreachable destination members are allowed: Yelp's procedure keeps the
// third destination node dormant (not running) until the split.

// Check queries every member of both ensembles (srvr, conf, and mntr where
// useful) and compares the destination against the source: one quorum, one
// leader, caught up, no session ahead, same znode count.
func Check(ctx context.Context, cfg CheckConfig, sessions []SessionView) *Report {
	if cfg.Members == nil {
		cfg.Members = fourlw.Members{}
	}
	r := check(ctx, cfg, sessions, nil)
	if !r.idleEpochBehind || cfg.Nudge == nil {
		return r.rep
	}
	// The idle epoch (docs/protocol.md §7.2): every destination member
	// behind the sessions is a follower that synced before the new
	// epoch's first transaction: one transaction moves it past them. Which member takes the session does not matter
	// (createSession is a quorum transaction wherever it is opened); the
	// leader is tried first, then the others, in case leaderServes=no.
	var tried, failures []string
	for _, m := range append([]*MemberStatus{r.leader}, r.serving...) {
		if slices.Contains(tried, m.Addr) {
			continue
		}
		tried = append(tried, m.Addr)
		id, err := cfg.Nudge(ctx, m.Addr)
		if err != nil {
			failures = append(failures, m.Addr+": "+err.Error())
			continue
		}
		again := check(ctx, cfg, sessions, []int64{id})
		again.rep.Items = append(again.rep.Items, Item{Name: "idle epoch ended", OK: true, Detail: fmt.Sprintf(
			"followers synced before epoch %d's first transaction were behind the sessions' last zxid; session 0x%016x opened and closed through %s committed one",
			r.leader.Epoch, uint64(id), m.Addr)})
		return again.rep
	}
	r.rep.Items = append(r.rep.Items, Item{Name: "idle epoch ended", OK: false, Detail: "no member took the session that would end the idle epoch" + listIf(failures)})
	r.rep.Ready = false
	return r.rep
}

// check is one pass of Check; ignore are sessions of the check's own
// (a nudge's) that the look for direct sessions skips.
func check(ctx context.Context, cfg CheckConfig, sessions []SessionView, ignore []int64) *checkRun {
	r := &checkRun{ctx: ctx, cfg: cfg, sessions: sessions, rep: &Report{CheckedAt: time.Now()}, ignore: ignore}
	r.probeMembers()
	r.oneQuorum()
	r.caughtUp()
	r.sessionsNotAhead()
	r.unmovableSessions()
	if !cfg.SkipDirect {
		r.directSessions()
	}
	r.rep.Ready = true
	for _, it := range r.rep.Items {
		r.rep.Ready = r.rep.Ready && it.OK
	}
	return r
}

// checkRun is one sync check: what the steps share while they add their
// items to rep.
type checkRun struct {
	ctx      context.Context
	cfg      CheckConfig
	sessions []SessionView
	rep      *Report

	ignore []int64
	// idleEpochBehind: destination members are behind the sessions, each
	// only because it has not seen the new epoch's first transaction.
	idleEpochBehind bool

	leader  *MemberStatus   // the one leader; nil unless exactly one
	dest    []*MemberStatus // reachable destination members
	serving []*MemberStatus // reachable members with a mode
}

func (r *checkRun) add(name string, ok bool, format string, args ...any) {
	r.rep.Items = append(r.rep.Items, Item{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
}

// probeMembers asks every member of both ensembles at once.
func (r *checkRun) probeMembers() {
	all := append(slices.Clone(r.cfg.Source), r.cfg.Destination...)
	r.rep.Members = make([]MemberStatus, len(all))
	var wg sync.WaitGroup
	for i, addr := range all {
		ens := Source
		if i >= len(r.cfg.Source) {
			ens = Destination
		}
		wg.Go(func() { r.rep.Members[i] = probe(r.ctx, r.cfg.Members, addr, ens) })
	}
	wg.Wait()
	for i := range r.rep.Members {
		m := &r.rep.Members[i]
		if m.Ensemble == Destination && m.Reachable {
			r.dest = append(r.dest, m)
		}
		if m.Reachable && m.Mode != "" {
			r.serving = append(r.serving, m)
		}
	}
}

// oneQuorum: exactly one leader among every reachable member, the
// destination members serving, and every serving member in the leader's
// epoch with the same config version. Two leaders means the ensembles are
// already split (or were never joined); a different epoch or config means a
// member follows another quorum.
func (r *checkRun) oneQuorum() {
	var leaders []*MemberStatus
	for i := range r.rep.Members {
		if r.rep.Members[i].Mode == "leader" {
			leaders = append(leaders, &r.rep.Members[i])
		}
	}
	switch len(leaders) {
	case 1:
		r.leader = leaders[0]
		r.rep.Leader = r.leader.Addr
		r.add("one leader", true, "%s (%s, server id %d) leads, epoch %d, zxid %s", r.leader.Addr, r.leader.Ensemble, r.leader.ServerID, r.leader.Epoch, r.leader.Zxid)
	case 0:
		r.add("one leader", false, "no reachable member leads (election in progress, or members unreachable)")
	default:
		var names []string
		for _, l := range leaders {
			names = append(names, l.Addr+" ("+string(l.Ensemble)+")")
		}
		r.add("one leader", false, "%d leaders: %s — the ensembles are not one quorum (already split?)", len(leaders), strings.Join(names, ", "))
	}

	if len(r.dest) == 0 {
		r.add("destination serves", false, "no destination member reachable")
	} else {
		var bad []string
		for _, m := range r.dest {
			if m.Mode != "follower" && m.Mode != "leader" && m.Mode != "observer" {
				reason := m.Mode
				if reason == "" {
					reason = m.Error
				}
				bad = append(bad, m.Addr+": "+reason)
			}
		}
		r.add("destination serves", len(bad) == 0, "%d of %d destination members reachable and serving as part of a quorum%s",
			len(r.dest)-len(bad), len(r.cfg.Destination), listIf(bad))
	}

	if r.leader == nil {
		return
	}
	var bad []string
	for _, m := range r.serving {
		if m.Epoch != r.leader.Epoch && !idleNewEpoch(r.leader, m) {
			bad = append(bad, fmt.Sprintf("%s epoch %d", m.Addr, m.Epoch))
		}
		if m.ConfigVersion != r.leader.ConfigVersion {
			bad = append(bad, fmt.Sprintf("%s config version %s (leader %s)", m.Addr, m.ConfigVersion, r.leader.ConfigVersion))
		}
	}
	r.add("same quorum", len(bad) == 0, "every serving member in epoch %d with config version %s (%d members)%s",
		r.leader.Epoch, r.leader.ConfigVersion, r.leader.Members, listIf(bad))
}

// caughtUp: each destination member's zxid within MaxLag of the leader's,
// and its znode count equal to the leader's.
func (r *checkRun) caughtUp() {
	leader := r.leader
	if leader == nil {
		return
	}
	var lagging, counts []string
	skipped := 0
	for _, m := range r.dest {
		if m.Mode == "" {
			continue
		}
		lag := leader.zxid - m.zxid
		if idleNewEpoch(leader, m) {
			lag = 0
		}
		if (m.Epoch != leader.Epoch && lag != 0) || lag > r.cfg.MaxLag {
			lagging = append(lagging, fmt.Sprintf("%s at %s (%d behind)", m.Addr, m.Zxid, lag))
		}
		// Counts are comparable only at the same point in history; under
		// a write load the member may trail by a few transactions (allowed
		// by MaxLag above). srvr reads the zxid and the node count at
		// different moments, so a mismatch at the same zxid is probed
		// again before it counts.
		if m.zxid == leader.zxid && m.NodeCount != leader.NodeCount {
			again, lagain := probe(r.ctx, r.cfg.Members, m.Addr, m.Ensemble), probe(r.ctx, r.cfg.Members, leader.Addr, leader.Ensemble)
			if again.zxid == lagain.zxid && again.NodeCount != lagain.NodeCount {
				counts = append(counts, fmt.Sprintf("%s has %d at the same zxid (leader %d)", m.Addr, again.NodeCount, lagain.NodeCount))
			} else if again.zxid != lagain.zxid {
				skipped++
			}
		} else if m.zxid != leader.zxid {
			skipped++
		}
	}
	r.add("caught up", len(lagging) == 0, "destination members within %d transactions of leader zxid %s%s", r.cfg.MaxLag, leader.Zxid, listIf(lagging))
	note := ""
	if skipped > 0 {
		note = fmt.Sprintf(" (%d members at another zxid not compared)", skipped)
	}
	r.add("znode counts agree", len(counts) == 0, "leader has %d znodes%s%s", leader.NodeCount, note, listIf(counts))
}

// sessionsNotAhead: no proxied session is ahead of the destination members
// it may use — a member behind a client's lastZxidSeen refuses it without a
// reply (ZooKeeperServer.processConnectRequest) — and which destination
// members sessions may move to (Usable).
func (r *checkRun) sessionsNotAhead() {
	var maxSeen int64
	for _, s := range r.sessions {
		maxSeen = max(maxSeen, s.LastZxidSeen)
	}
	// Under a write load a member may trail a session's last zxid by a few
	// transactions for a moment; it catches up within milliseconds and a
	// refused connect is retried, so the same MaxLag applies.
	leader := r.leader
	var behind []string
	idle := true
	for _, m := range r.dest {
		if m.Mode == "" {
			continue
		}
		if maxSeen-m.zxid > r.cfg.MaxLag {
			behind = append(behind, fmt.Sprintf("%s at %s", m.Addr, m.Zxid))
			// ZooKeeper refuses such a member the session (its
			// lastProcessedZxid is below lastZxidSeen) even though it has
			// every transaction: the session saw the new epoch's first
			// zxid from the leader or from a follower synced later.
			idle = idle && leader != nil && idleNewEpoch(leader, m) && maxSeen <= leader.zxid
		} else if leader != nil && ((m.Epoch == leader.Epoch && leader.zxid-m.zxid <= r.cfg.MaxLag) || idleNewEpoch(leader, m)) {
			r.rep.Usable = append(r.rep.Usable, m.Addr)
		}
	}
	r.idleEpochBehind = len(behind) > 0 && idle
	r.add("sessions not ahead", len(behind) == 0,
		"highest last zxid seen by %d proxied sessions is 0x%x (allowed lag %d)%s", len(r.sessions), maxSeen, r.cfg.MaxLag, listIf(behind))
}

// unmovableSessions lists the sessions that cannot move transparently.
// Which sessions are local is not visible from outside the server, so every
// session on a member holding local sessions is treated as one.
func (r *checkRun) unmovableSessions() {
	local := map[string]bool{}
	for _, m := range r.rep.Members {
		if m.LocalSessions > 0 {
			local[m.Addr] = true
		}
	}
	for _, s := range r.sessions {
		if s.Ensemble == Destination {
			continue
		}
		id := fmt.Sprintf("0x%016x", uint64(s.ID))
		switch {
		case s.SASL:
			r.rep.Unmovable = append(r.rep.Unmovable, Unmovable{id, "sasl: SASL authentication cannot be replayed on a new connection", s.ID, "sasl"})
		case local[s.Member]:
			r.rep.Unmovable = append(r.rep.Unmovable, Unmovable{id, "local_session: its member holds local sessions (localSessionsEnabled=true), unknown to other members", s.ID, "local_session"})
		case !slices.ContainsFunc(r.dest, func(m *MemberStatus) bool { return m.Mode != "" && s.LastZxidSeen-m.zxid <= r.cfg.MaxLag }):
			r.rep.Unmovable = append(r.rep.Unmovable, Unmovable{id, "zxid_ahead: last zxid seen is ahead of every destination member", s.ID, "zxid_ahead"})
		}
	}
	r.add("sessions movable", true, "%d sessions will move live, %d will reconnect instead", len(r.sessions)-len(r.rep.Unmovable), len(r.rep.Unmovable))
}

// directSessions finds the clients of the same tenants that do not come
// through the proxy: the cutover cannot move them, and the split leaves
// them behind.
func (r *checkRun) directSessions() {
	proxied := make(map[int64]bool, len(r.sessions))
	for _, s := range r.sessions {
		proxied[s.ID] = true
	}
	var problems []string
	peers := map[int64]bool{}
	if r.cfg.PeerSessions != nil {
		ids, peerProblems := r.cfg.PeerSessions(r.ctx)
		for _, id := range ids {
			peers[id] = true
		}
		problems = append(problems, peerProblems...)
	}
	ignore := map[int64]bool{}
	for _, id := range r.ignore {
		ignore[id] = true
	}
	if r.cfg.IgnoreSessions != nil {
		for _, id := range r.cfg.IgnoreSessions(r.ctx) {
			ignore[id] = true
		}
	}
	direct, peersOnSource, memberProblems := findDirect(r.ctx, r.cfg, r.rep.Members, r.rep.Leader, proxied, peers, ignore)
	r.rep.PeersOnSource = peersOnSource
	problems = append(problems, memberProblems...)
	r.rep.Direct, r.rep.directLooked, r.rep.directIncomplete = direct, true, len(problems) > 0
	r.rep.Items = append(r.rep.Items, directItem(direct, problems))
}

// idleNewEpoch: right after an election the leader reports the new epoch's
// first zxid (counter 0) while its synced followers still report the last
// zxid of the previous epoch, until the first transaction of the new epoch
// (Leader.lead / Learner.syncWithLeader). Such a follower has every
// transaction there is.
func idleNewEpoch(leader, m *MemberStatus) bool {
	return leader.zxid&0xffffffff == 0 && m.Epoch < leader.Epoch && m.Mode != ""
}

func listIf(items []string) string {
	if len(items) == 0 {
		return ""
	}
	return "; not: " + strings.Join(items, ", ")
}

// probe asks one member srvr, then conf and mntr.
func probe(ctx context.Context, members Members, addr string, ens Ensemble) MemberStatus {
	m := MemberStatus{Addr: addr, Ensemble: ens}
	ans, err := members.Query(ctx, addr, "srvr")
	if err != nil {
		m.Reachable = errors.Is(err, fourlw.ErrNotServing)
		m.Error = err.Error()
		return m
	}
	m.Reachable = true
	s, err := fourlw.ParseSrvr(ans)
	if err != nil {
		m.Error = err.Error()
		return m
	}
	m.Mode, m.zxid, m.Zxid, m.Epoch, m.NodeCount = s.Mode, s.Zxid, fmt.Sprintf("0x%x", s.Zxid), s.Epoch(), s.NodeCount
	if ans, err := members.Query(ctx, addr, "conf"); err == nil {
		if c, err := fourlw.ParseConf(ans); err == nil {
			m.ServerID, m.ConfigVersion, m.Members = c.ServerID, c.Version, len(c.Members)
		}
	} else {
		m.Error = "conf: " + err.Error()
	}
	if ans, err := members.Query(ctx, addr, "mntr"); err == nil {
		if kv, err := fourlw.ParseMntr(ans); err == nil {
			m.LocalSessions, _ = strconv.Atoi(kv["zk_local_sessions"])
		}
	}
	return m
}
