package mitosis

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zkproxy/zkproxy/internal/fourlw"
)

// ProxiedSession is one session a zkproxy carries, and the member it is on.
type ProxiedSession struct {
	ID     string
	Member string
}

// Sessions lists the sessions zkproxy carries (its admin API's /sessions).
type Sessions interface {
	ProxiedSessions(ctx context.Context) ([]ProxiedSession, error)
}

// Prober answers whether a TCP connection from the address fromHost to
// toAddr gets through. probed is false when it cannot try from there (the
// address is not on this machine).
type Prober interface {
	Reaches(ctx context.Context, fromHost, toAddr string) (reached, probed bool)
}

// VerifyConfig is what Verify needs besides the stage.
type VerifyConfig struct {
	Plan       *Plan
	FourLetter FourLetter
	// Sessions: nil or failing makes the session checks fail (pre-split,
	// split) or warn (pre-join's connection limit).
	Sessions Sessions
	// Probe tests the split firewall; nil skips that (with a warning).
	Probe Prober
	// MaxLag is how many transactions a joined destination member may
	// trail the joint leader by.
	MaxLag int64
	// LocalAddrs is how many local addresses zkproxy spreads its upstream
	// connections over (its local-addrs; 0 means 1).
	LocalAddrs int
	// Timeout bounds each four-letter word; zero means 3s.
	Timeout time.Duration
}

// Item is one line of a verify result. Member is empty for items about an
// ensemble as a whole; Fix says what to do when the item fails.
type Item struct {
	Name    string `json:"name"`
	Member  string `json:"member,omitempty"`
	OK      bool   `json:"ok"`
	Warning bool   `json:"warning,omitempty"`
	Detail  string `json:"detail"`
	Fix     string `json:"fix,omitempty"`
}

// MemberView is one member as verify saw it.
type MemberView struct {
	ID            int    `json:"id"`
	Side          string `json:"side"` // source, destination (dormant included)
	Addr          string `json:"addr"`
	Reachable     bool   `json:"reachable"`
	Error         string `json:"error,omitempty"`
	Mode          string `json:"mode,omitempty"`
	Zxid          string `json:"zxid,omitempty"`
	Epoch         int64  `json:"epoch"`
	NodeCount     int    `json:"node_count"`
	ServerID      int    `json:"server_id,omitempty"`
	Members       []int  `json:"members,omitempty"`
	ConfigVersion string `json:"config_version,omitempty"`

	zxid           int64
	maxClientCnxns int
	mntr           map[string]string
	member         Member
}

func (v *MemberView) serving() bool { return v.Mode == "leader" || v.Mode == "follower" }

// Result is a stage's verdict.
type Result struct {
	Stage     string       `json:"stage"`
	OK        bool         `json:"ok"`
	Items     []Item       `json:"items"`
	Members   []MemberView `json:"members"`
	CheckedAt time.Time    `json:"checked_at"`
}

// Failed lists the failed items, one per line, for messages.
func (r *Result) Failed() string {
	var out []string
	for _, it := range r.Items {
		if !it.OK {
			s := it.Name + ": " + it.Detail
			if it.Fix != "" {
				s += " — fix: " + it.Fix
			}
			out = append(out, s)
		}
	}
	return strings.Join(out, "\n")
}

// fourLetterWords are the words zkproxy asks members (its sync check, split
// barrier and this verify): each must be in every member's
// 4lw.commands.whitelist (FourLetterCommands.isEnabled; 3.8's default
// whitelist is srvr alone).
var fourLetterWords = []string{"srvr", "conf", "mntr", "cons", "dump", "hash"}

// emptyNodeCount is what srvr's "Node count" says on a ZooKeeper 3.8 server
// that holds nothing but its own /zookeeper subtree (DataTree's
// constructor: the root, /zookeeper, /zookeeper/quota, /zookeeper/config;
// testdata/capture/*-srvr-*.txt).
const emptyNodeCount = 5

// ErrUnknownStage is returned for a stage Verify does not know.
var ErrUnknownStage = errors.New("mitosis: unknown stage (want pre-join, joined, pre-split, split or cleaned)")

// Verify checks the live members against stage. Its error is only for an
// unknown stage; everything else is in the Result.
func Verify(ctx context.Context, stage string, cfg VerifyConfig) (*Result, error) {
	if !slices.Contains(Stages, stage) {
		return nil, fmt.Errorf("%w: %q", ErrUnknownStage, stage)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 3 * time.Second
	}
	if cfg.LocalAddrs <= 0 {
		cfg.LocalAddrs = 1
	}
	v := &verifier{cfg: cfg, p: cfg.Plan, res: &Result{Stage: stage, CheckedAt: time.Now()}}
	v.look(ctx)
	switch stage {
	case StagePreJoin:
		v.preJoin(ctx)
	case StageJoined:
		v.joined()
	case StagePreSplit:
		v.joint()
		v.sessionsOn(ctx, "destination", v.p.Destination)
		v.jointLeader()
	case StageSplit:
		v.ownQuorum("destination", v.p.Destination, DestinationFile)
		v.sourceServing()
		v.diverged()
		v.apart(ctx)
		v.sessionsOn(ctx, "destination", v.p.Destination)
	case StageCleaned:
		v.ownQuorum("source", v.p.Source, SourceFile)
		v.ownQuorum("destination", v.p.Destination, DestinationFile)
		v.diverged()
	}
	v.res.OK = true
	for _, it := range v.res.Items {
		v.res.OK = v.res.OK && it.OK
	}
	return v.res, nil
}

type verifier struct {
	cfg   VerifyConfig
	p     *Plan
	res   *Result
	views map[int]*MemberView
}

func (v *verifier) add(it Item) { v.res.Items = append(v.res.Items, it) }

func (v *verifier) ok(name, member, detail string) {
	v.add(Item{Name: name, Member: member, OK: true, Detail: detail})
}

func (v *verifier) fail(name, member, detail, fix string) {
	v.add(Item{Name: name, Member: member, Detail: detail, Fix: fix})
}

func (v *verifier) warn(name, member, detail, fix string) {
	v.add(Item{Name: name, Member: member, OK: true, Warning: true, Detail: detail, Fix: fix})
}

// look asks every planned member srvr, conf and mntr, concurrently.
func (v *verifier) look(ctx context.Context) {
	v.views = map[int]*MemberView{}
	var all []*MemberView
	for _, side := range []struct {
		name string
		ms   []Member
	}{{"source", v.p.Source}, {"destination", v.p.Destination}} {
		for _, m := range side.ms {
			mv := &MemberView{ID: m.ID, Side: side.name, Addr: m.ClientAddr(), member: m}
			v.views[m.ID] = mv
			all = append(all, mv)
		}
	}
	var wg sync.WaitGroup
	for _, mv := range all {
		wg.Go(func() { v.probe(ctx, mv) })
	}
	wg.Wait()
	for _, mv := range all {
		v.res.Members = append(v.res.Members, *mv)
	}
}

func (v *verifier) query(ctx context.Context, addr, cmd string) (string, error) {
	qctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer cancel()
	return v.cfg.FourLetter.Query(qctx, addr, cmd)
}

func (v *verifier) probe(ctx context.Context, mv *MemberView) {
	ans, err := v.query(ctx, mv.Addr, "srvr")
	if err != nil {
		mv.Error = err.Error()
		mv.Reachable = errors.Is(err, fourlw.ErrNotServing)
		return
	}
	mv.Reachable = true
	st, err := fourlw.ParseSrvr(ans)
	if err != nil {
		mv.Error = err.Error()
		return
	}
	mv.Mode, mv.zxid, mv.Epoch, mv.NodeCount = st.Mode, st.Zxid, st.Epoch(), st.NodeCount
	mv.Zxid = fmt.Sprintf("%#x", st.Zxid)
	if ans, err = v.query(ctx, mv.Addr, "conf"); err == nil {
		var c fourlw.Conf
		if c, err = fourlw.ParseConf(ans); err == nil {
			mv.ServerID, mv.ConfigVersion = c.ServerID, c.Version
			mv.Members = slices.Sorted(maps.Keys(c.Members))
			mv.maxClientCnxns, _ = strconv.Atoi(c.Settings["maxClientCnxns"])
		}
	}
	if err != nil {
		mv.Error = err.Error()
	}
	if ans, err := v.query(ctx, mv.Addr, "mntr"); err == nil {
		mv.mntr, _ = fourlw.ParseMntr(ans)
	}
}

func (v *verifier) view(id int) *MemberView { return v.views[id] }

func (v *verifier) step(title string) string {
	for _, s := range v.p.Steps {
		if strings.HasPrefix(s.Title, title) {
			return fmt.Sprintf(" (runbook step %d)", s.N)
		}
	}
	return ""
}

func (v *verifier) leaderOf(ms []Member) (*MemberView, []int) {
	var leader *MemberView
	var leaders []int
	for _, m := range ms {
		if mv := v.view(m.ID); mv.Mode == "leader" {
			leader = mv
			leaders = append(leaders, m.ID)
		}
	}
	return leader, leaders
}

func (v *verifier) preJoin(ctx context.Context) {
	// The source: one healthy quorum on its own membership.
	v.ownQuorum("source", v.p.Source, SourceFile)
	srcLeader, _ := v.leaderOf(v.p.Source)
	for _, m := range v.p.Destination {
		mv := v.view(m.ID)
		dormant := slices.Contains(v.p.Dormant, m.ID)
		if !mv.Reachable {
			if dormant {
				v.ok("destination empty", m.String(), "not running (dormant until the split)")
			} else {
				v.warn("destination empty", m.String(), "not running: its data cannot be checked", "start the destination ensemble empty so verify can see it, or make sure its dataDir holds no version-2 directory")
			}
			continue
		}
		wipe := fmt.Sprintf("stop %s, delete the version-2 directory in its dataDir (keep myid) and start it again empty", m)
		switch {
		case mv.NodeCount > emptyNodeCount:
			v.fail("destination empty", m.String(), fmt.Sprintf("holds %d znodes; an empty server holds %d (only /zookeeper): the joint ensemble could keep its data over the source's", mv.NodeCount, emptyNodeCount), wipe)
		case mv.zxid&0xffffffff != 0:
			// A transaction of its own (even a session's creation) at a
			// zxid the source also used would be taken as the source's
			// by the leader's DIFF sync (LearnerHandler.syncFollower).
			v.fail("destination empty", m.String(), fmt.Sprintf("has applied transactions of its own (zxid %s)", mv.Zxid), wipe)
		default:
			v.ok("destination empty", m.String(), fmt.Sprintf("%d znodes, zxid %s", mv.NodeCount, mv.Zxid))
		}
		if srcLeader != nil {
			// FastLeaderElection.totalOrderPredicate orders votes by epoch
			// first: a destination member ahead wins any joint election
			// it takes part in, and its empty tree would replace the
			// source's on every member.
			if mv.Epoch > srcLeader.Epoch {
				v.fail("destination epoch", m.String(), fmt.Sprintf("epoch %d is ahead of the source's %d", mv.Epoch, srcLeader.Epoch), wipe+" (an empty member starts at epoch 0)")
			} else {
				v.ok("destination epoch", m.String(), fmt.Sprintf("epoch %d, source %d", mv.Epoch, srcLeader.Epoch))
			}
		}
	}
	v.serverIDs()
	v.whitelist(ctx)
	v.connectionLimit(ctx)
}

// serverIDs: each running member runs with the id the plan gives it.
func (v *verifier) serverIDs() {
	for _, m := range slices.Concat(v.p.Source, v.p.Destination) {
		mv := v.view(m.ID)
		if !mv.Reachable || mv.ServerID == 0 {
			continue
		}
		if mv.ServerID == m.ID {
			v.ok("server id", m.String(), fmt.Sprintf("myid %d", m.ID))
			continue
		}
		detail := fmt.Sprintf("runs as myid %d, the plan makes it %d", mv.ServerID, m.ID)
		if other, ok := v.p.Member(mv.ServerID); ok && other.ID != m.ID {
			detail += fmt.Sprintf("; myid %d is %s's: the two would clash in the joint ensemble", mv.ServerID, other)
		}
		v.fail("server id", m.String(), detail, fmt.Sprintf("write %d into myid in the dataDir of %s (with an empty dataDir) and restart it", m.ID, m.Host))
	}
}

func (v *verifier) whitelist(ctx context.Context) {
	for _, m := range slices.Concat(v.p.Source, v.p.Destination) {
		if !v.view(m.ID).Reachable {
			continue
		}
		var refused []string
		for _, w := range fourLetterWords {
			if _, err := v.query(ctx, m.ClientAddr(), w); errors.Is(err, fourlw.ErrNotWhitelisted) {
				refused = append(refused, w)
			}
		}
		if len(refused) > 0 {
			v.fail("4lw whitelist", m.String(), "refuses "+strings.Join(refused, ", "), fmt.Sprintf("add %s to 4lw.commands.whitelist in the zoo.cfg of %s and in the plan's files (re-run mitosis plan), then restart it", strings.Join(fourLetterWords, ","), m))
		} else {
			v.ok("4lw whitelist", m.String(), "answers "+strings.Join(fourLetterWords, ", "))
		}
	}
}

// connectionLimit: every session zkproxy carries ends up on a destination
// member through zkproxy's few local addresses, and ZooKeeper limits
// connections per client address (maxClientCnxns,
// NIOServerCnxnFactory/NettyServerCnxnFactory).
func (v *verifier) connectionLimit(ctx context.Context) {
	n, err := v.sessionCount(ctx)
	if err != nil {
		v.warn("maxClientCnxns", "", "could not ask zkproxy for its sessions: "+err.Error(), "pass --admin (the zkproxy in front of the source)")
		return
	}
	need := (n+v.cfg.LocalAddrs-1)/v.cfg.LocalAddrs + 1
	need += need / 10 // moves in flight hold a second connection briefly
	for _, m := range slices.Concat(v.p.Source, v.p.Destination) {
		mv := v.view(m.ID)
		if !mv.Reachable {
			continue
		}
		if mv.maxClientCnxns == 0 || mv.maxClientCnxns >= need {
			v.ok("maxClientCnxns", m.String(), fmt.Sprintf("%d (0 = no limit) fits %d proxied sessions", mv.maxClientCnxns, n))
			continue
		}
		v.fail("maxClientCnxns", m.String(), fmt.Sprintf("allows %d connections per client address; zkproxy carries %d sessions over %d local address(es)", mv.maxClientCnxns, n, v.cfg.LocalAddrs),
			fmt.Sprintf("set maxClientCnxns=0 or at least %d on %s (and in the plan's files), or give zkproxy more local-addrs", need, m))
	}
}

func (v *verifier) sessionCount(ctx context.Context) (int, error) {
	if v.cfg.Sessions == nil {
		return 0, errors.New("no zkproxy admin API given")
	}
	ss, err := v.cfg.Sessions.ProxiedSessions(ctx)
	return len(ss), err
}

func (v *verifier) joined() {
	v.joint()
	leader, _ := v.leaderOf(v.p.Joint())
	for _, id := range v.p.Joined {
		m, _ := byID(v.p.Destination, id)
		mv := v.view(id)
		if leader == nil || !mv.serving() {
			continue
		}
		if lag := zxidLag(leader.zxid, mv.zxid); lag > v.cfg.MaxLag {
			v.fail("destination caught up", m.String(), fmt.Sprintf("%d transactions behind the leader (zxid %s, leader %s)", lag, mv.Zxid, leader.Zxid), "wait and verify again (zkproxy cutover check --wait 10m waits for it)")
		} else {
			v.ok("destination caught up", m.String(), fmt.Sprintf("zxid %s, leader %s", mv.Zxid, leader.Zxid))
		}
	}
	for _, id := range v.p.Dormant {
		m, _ := byID(v.p.Destination, id)
		if v.view(id).Reachable {
			v.fail("dormant stopped", m.String(), "is running: it must stay out until the split", fmt.Sprintf("stop ZooKeeper on %s", m.Host))
		} else {
			v.ok("dormant stopped", m.String(), "not running")
		}
	}
}

// joint: one quorum of every joint member, on the joint membership, one
// config version.
func (v *verifier) joint() {
	joint := v.p.Joint()
	want := ids(joint)
	versions := map[string][]int{}
	for _, m := range joint {
		mv := v.view(m.ID)
		switch {
		case !mv.serving():
			v.fail("joint quorum", m.String(), "not serving: "+orNotServing(mv), fmt.Sprintf("start it with %s and wait for it to follow", JointFile(m.ID)))
		case !slices.Equal(mv.Members, want):
			v.fail("joint quorum", m.String(), fmt.Sprintf("runs members %v, not the joint %v", mv.Members, want), fmt.Sprintf("install %s on %s and restart it%s", JointFile(m.ID), m.Host, v.step("Restart source member "+m.String())))
		default:
			v.ok("joint quorum", m.String(), mv.Mode)
			versions[mv.ConfigVersion] = append(versions[mv.ConfigVersion], m.ID)
		}
	}
	_, leaders := v.leaderOf(joint)
	if len(leaders) != 1 {
		v.fail("joint quorum", "", fmt.Sprintf("%d leaders (%v): not one quorum", len(leaders), leaders), "wait for the election to settle and verify again")
	}
	if len(versions) > 1 {
		v.fail("config version", "", fmt.Sprintf("members disagree: %v", versions), "restart the members with the joint files so each loads the same configuration")
	} else {
		for ver := range versions {
			v.ok("config version", "", "every member at version "+ver)
		}
	}
}

func orNotServing(mv *MemberView) string {
	if mv.Error != "" {
		return mv.Error
	}
	return "mode " + mv.Mode
}

func (v *verifier) jointLeader() {
	leader, _ := v.leaderOf(v.p.Joint())
	if leader == nil {
		return
	}
	if leader.Side == "destination" {
		v.warn("joint leader", leader.member.String(), "a destination member leads: the source re-elects at the split and drops the clients connected to it directly", fmt.Sprintf("restart %s to move leadership to a source member, or accept it (zkproxy cutover split --prepare lists those clients)", leader.member))
		return
	}
	v.ok("joint leader", leader.member.String(), "a source member leads: the source keeps its leader at the split")
}

// sessionsOn: every proxied session is on a member of ms.
func (v *verifier) sessionsOn(ctx context.Context, side string, ms []Member) {
	if v.cfg.Sessions == nil {
		v.fail("proxied sessions", "", "no zkproxy admin API given: cannot see where the sessions are", "pass --admin")
		return
	}
	ss, err := v.cfg.Sessions.ProxiedSessions(ctx)
	if err != nil {
		v.fail("proxied sessions", "", "asking zkproxy: "+err.Error(), "check --admin and that zkproxy runs")
		return
	}
	addrs := map[string]bool{}
	for _, m := range ms {
		addrs[m.ClientAddr()] = true
	}
	var elsewhere []string
	for _, s := range ss {
		if !addrs[s.Member] {
			elsewhere = append(elsewhere, fmt.Sprintf("%s on %q", s.ID, s.Member))
		}
	}
	if len(elsewhere) > 0 {
		v.fail("proxied sessions", "", fmt.Sprintf("%d of %d not on a %s member: %s", len(elsewhere), len(ss), side, firstN(elsewhere, 5)), "zkproxy cutover start (it moves every session; zkproxy sessions shows where each is)")
		return
	}
	v.ok("proxied sessions", "", fmt.Sprintf("all %d on %s members", len(ss), side))
}

func firstN(xs []string, n int) string {
	if len(xs) > n {
		return strings.Join(xs[:n], ", ") + fmt.Sprintf(" and %d more", len(xs)-n)
	}
	return strings.Join(xs, ", ")
}

// ownQuorum: every member of one side serves on that side's own
// membership, with one leader.
func (v *verifier) ownQuorum(side string, ms []Member, file func(int) string) {
	name := side + " quorum"
	want := ids(ms)
	for _, m := range ms {
		mv := v.view(m.ID)
		switch {
		case !mv.serving():
			what := "not serving: " + orNotServing(mv)
			if side == "source" && v.res.Stage == StageCleaned {
				// A member the clean-up did not restart still runs the joint
				// configuration; once its leader restarts it cannot elect:
				// with the destination firewalled it never sees a majority
				// of the joint membership (FastLeaderElection counts votes
				// against its own QuorumVerifier).
				what += "; a member left on the joint configuration cannot elect with the destination gone"
			}
			v.fail(name, m.String(), what, fmt.Sprintf("install %s on %s and restart it", file(m.ID), m.Host))
		case !slices.Equal(mv.Members, want):
			what := fmt.Sprintf("runs members %v, not %v", mv.Members, want)
			if side == "source" && len(mv.Members) > len(want) {
				what = fmt.Sprintf("still runs the joint configuration (members %v)", mv.Members)
			}
			v.fail(name, m.String(), what, fmt.Sprintf("install %s on %s and restart it", file(m.ID), m.Host))
		default:
			v.ok(name, m.String(), mv.Mode)
		}
	}
	if _, leaders := v.leaderOf(ms); len(leaders) != 1 {
		v.fail(name, "", fmt.Sprintf("%d leaders among %v", len(leaders), want), "wait for the election to settle and verify again")
	}
}

// sourceServing: after the split and before the clean-up restart the source
// members still run the joint configuration, so only serving is checked.
func (v *verifier) sourceServing() {
	for _, m := range v.p.Source {
		if mv := v.view(m.ID); mv.serving() {
			v.ok("source serving", m.String(), mv.Mode)
		} else {
			v.fail("source serving", m.String(), "not serving: "+orNotServing(mv), fmt.Sprintf("start ZooKeeper on %s", m.Host))
		}
	}
}

// diverged: each side has a leader of its own. Each elected separately, so
// their histories diverge from the split on (Leader.lead starts a new epoch
// at every election; both sides may well pick the same next epoch number,
// which is why they must never be joined again).
func (v *verifier) diverged() {
	s, _ := v.leaderOf(v.p.Source)
	d, _ := v.leaderOf(v.p.Destination)
	if s == nil || d == nil {
		return
	}
	detail := fmt.Sprintf("source leader zk%d (epoch %d), destination leader zk%d (epoch %d)", s.ID, s.Epoch, d.ID, d.Epoch)
	for _, m := range v.p.Destination {
		if mv := v.view(m.ID); slices.ContainsFunc(mv.Members, v.p.isSource) {
			v.fail("epochs diverged", m.String(), fmt.Sprintf("still lists source members %v: one ensemble", mv.Members), "restart every destination member at once with its destination file, behind the firewall")
			return
		}
	}
	v.ok("epochs diverged", "", detail)
}

// apart: neither side reaches the other. The members' own view: each
// leader has only its side's followers (mntr zk_synced_followers). The
// firewall: a TCP connection from each side's address to the other's
// client and election ports must fail.
func (v *verifier) apart(ctx context.Context) {
	for _, side := range []struct {
		name string
		ms   []Member
	}{{"source", v.p.Source}, {"destination", v.p.Destination}} {
		leader, _ := v.leaderOf(side.ms)
		if leader == nil || leader.mntr == nil {
			continue
		}
		if n, err := strconv.Atoi(leader.mntr["zk_synced_followers"]); err == nil && n > len(side.ms)-1 {
			v.fail("sides apart", leader.member.String(), fmt.Sprintf("leads %d synced followers, more than the %d other %s members", n, len(side.ms)-1, side.name), "apply the split firewall on every destination member and restart the destination")
		}
	}
	if v.cfg.Probe == nil {
		v.warn("firewall", "", "not probed", "run zkproxy mitosis verify split on the member hosts")
		return
	}
	unprobed := 0
	for _, d := range v.p.Destination {
		fix := fmt.Sprintf("on %s: sudo sh %s (the split firewall of %s is missing)", d.Host, FirewallFile("iptables", "apply", d.ID), d)
		var leaks []string
		probed := false
		for _, s := range v.p.Source {
			for _, pair := range [][2]Member{{d, s}, {s, d}} {
				from, to := pair[0], pair[1]
				for _, port := range []int{to.ClientPort, to.ElectionPort} {
					addr := fmt.Sprintf("%s:%d", to.Host, port)
					if strings.Contains(to.Host, ":") {
						addr = fmt.Sprintf("[%s]:%d", to.Host, port)
					}
					reached, ok := v.cfg.Probe.Reaches(ctx, from.Host, addr)
					probed = probed || ok
					if reached {
						leaks = append(leaks, fmt.Sprintf("zk%d→zk%d:%d", from.ID, to.ID, port))
					}
				}
			}
		}
		switch {
		case len(leaks) > 0:
			v.fail("firewall", d.String(), "connections get through: "+firstN(leaks, 4), fix)
		case probed:
			v.ok("firewall", d.String(), "every connection to and from the source members is refused")
		default:
			unprobed++
		}
	}
	if unprobed > 0 {
		v.warn("firewall", "", fmt.Sprintf("%d destination member(s) not probed: their addresses are not on this machine", unprobed), "run zkproxy mitosis verify split on each destination host")
	}
}

// zxidLag is how many transactions member trails leader by. A new leader's
// zxid is (new epoch, 0) until the first transaction of its epoch
// (Leader.lead sets it), while a follower's srvr zxid stays at the last
// transaction it applied: a follower at an earlier epoch is caught up as
// long as the leader has committed nothing in the new one.
func zxidLag(leader, member int64) int64 {
	if leader>>32 > member>>32 && leader&0xffffffff == 0 {
		return 0
	}
	return max(leader-member, 0)
}
