package cutover

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zkproxy/zkproxy/internal/fourlw"
)

// The split barrier hides the one window Yelp's procedure could not: from
// the firewall going up until the destination ensemble has elected its
// leader, the destination members serve nobody (they lost quorum and close
// every client connection; while LOOKING they refuse new ones). With the
// barrier up, every session holds its client's requests (pings are answered
// locally) and has nothing in flight, so when the destination members drop
// zkproxy's connections no request has an unknown outcome: each session
// re-attaches to the destination as soon as it serves again and is released
// then. The client sees latency, never Disconnected.

// BarrierStatus is the barrier part of Status.
type BarrierStatus struct {
	Up       bool      `json:"up"`
	Since    time.Time `json:"since,omitzero"`
	Deadline time.Time `json:"deadline,omitzero"`
	// Held sessions still hold their requests; Released ones re-attached
	// after the split (or were released when the barrier came down).
	Held     int    `json:"held"`
	Released int    `json:"released"`
	NotHeld  int    `json:"not_held"`
	LastEnd  string `json:"last_end,omitempty"` // why the last barrier came down
	// LongestHold is the longest time one session's requests were held by
	// the last barrier: the client-visible pause of the split.
	LongestHold time.Duration `json:"longest_hold_ns"`
}

// SplitPlan is the answer to PrepareSplit.
type SplitPlan struct {
	// Leader is the joint ensemble's leader and the ensemble it belongs to.
	Leader         string   `json:"leader"`
	LeaderEnsemble Ensemble `json:"leader_ensemble"`
	Warnings       []string `json:"warnings"`
	// Items are the pre-split checks: destination zxids equal to the
	// leader's, tree digests equal.
	Items   []Item        `json:"items"`
	Barrier BarrierStatus `json:"barrier"`
	Message string        `json:"message"`
}

// ErrLeaderOnDestination refuses a split (without force) whose joint leader
// is a destination member.
var ErrLeaderOnDestination = errors.New("cutover: the joint leader is a destination member")

// ErrPeersOnSource refuses a split (without force) while a peer zkproxy's
// sessions are still on source members.
var ErrPeersOnSource = errors.New("cutover: peer zkproxies still have sessions on the source")

type barrier struct {
	since, deadline time.Time
	sessions        map[int64]*heldSession
	stop            chan struct{} // closed once, through stopOnce, to end watchBarrier
	stopOnce        sync.Once
	done            chan struct{}
	longest         time.Duration
	notHeld         int
}

type heldSession struct {
	s        Session
	attaches uint64
	released bool
	heldFor  time.Duration
}

// PrepareSplit raises the split barrier. It refuses unless every session is
// on the destination (phase destination, no split yet); it reports where the
// joint leader is and refuses, unless force, when it is a destination member
// (at the split the source would re-elect and drop its own, non-proxied
// clients); it holds every session and waits until none has a request in
// flight; then it checks that every destination member has the leader's
// zxid and the same tree digest. On success the barrier is up until every
// session has re-attached after the split, RecordSplit or ReleaseBarrier is
// called, or maxHold passes (then it releases by itself and says so).
func (c *Controller) PrepareSplit(ctx context.Context, force bool) (*SplitPlan, error) {
	c.mu.Lock()
	if c.state.Phase != PhaseDestination || c.state.Split || c.running != nil {
		st := c.state
		c.mu.Unlock()
		return nil, &TransitionError{From: st, Event: EventSplit, Reason: "the barrier needs every session on the destination and no split recorded yet"}
	}
	if c.barrier != nil {
		defer c.mu.Unlock()
		return &SplitPlan{Barrier: c.barrierStatus(), Message: "barrier already up: apply the firewall now"}, nil
	}
	if c.raising {
		c.mu.Unlock()
		return nil, ErrHoldUp
	}
	// Claimed under the lock: the checks and holdAll below run without it,
	// and a second caller must not raise a second barrier meanwhile.
	c.raising = true
	c.mu.Unlock()
	installed := false
	defer func() {
		if !installed {
			c.endRaising()
		}
	}()

	plan := &SplitPlan{}
	leader, rep, err := c.jointLeader(ctx)
	if err != nil {
		return nil, fmt.Errorf("cutover: split: %w", err)
	}
	plan.Leader, plan.LeaderEnsemble = leader.Addr, leader.Ensemble
	// A client of a moved tenant that never came through zkproxy stays
	// with the source: after the split it works on the source's copy of
	// the tenant's data while the rest of the tenant uses the destination.
	// Warned, not refused: a zkproxy not named in peers looks the same.
	for _, d := range rep.Direct {
		if d.BesideProxied {
			msg := fmt.Sprintf("session %s is not behind zkproxy and stays with the source at the split, away from the rest of its tenant; point that client at zkproxy first", d.describe())
			plan.Warnings = append(plan.Warnings, msg)
			c.log.Warn("cutover: split: " + msg)
		}
	}
	// Another zkproxy in front of the same ensembles that has not cut over
	// would have its sessions left on the source by the split.
	if len(rep.PeersOnSource) > 0 {
		msg := fmt.Sprintf("%d sessions of peer zkproxies are still on source members (%s): cut over every zkproxy before the split", len(rep.PeersOnSource), strings.Join(rep.PeersOnSource, ", "))
		plan.Warnings = append(plan.Warnings, msg)
		c.log.Warn("cutover: split: " + msg)
		if !force {
			return plan, fmt.Errorf("%w: %d sessions", ErrPeersOnSource, len(rep.PeersOnSource))
		}
	}
	if leader.Ensemble == Destination {
		// Who that hurts is known when the look for direct sessions
		// succeeded: the clients connected to source members directly.
		exposed, known := rep.directOnSource(c.cfg.Source)
		if !known || len(exposed) > 0 {
			who := "every client connected to it directly (not through zkproxy)"
			if known {
				who = fmt.Sprintf("the %d sessions connected to its members directly (not through zkproxy): %s", len(exposed), strings.Join(exposed, ", "))
			}
			msg := fmt.Sprintf("the joint leader %s is a destination member: at the split the source side re-elects and drops %s; move leadership to a source member first (restart the leader) or go on with force", leader.Addr, who)
			plan.Warnings = append(plan.Warnings, msg)
			c.log.Warn("cutover: split: " + msg)
			if !force {
				return plan, fmt.Errorf("%w (%s)", ErrLeaderOnDestination, leader.Addr)
			}
		}
	}

	b := &barrier{sessions: map[int64]*heldSession{}, stop: make(chan struct{}), done: make(chan struct{})}
	b.since = c.now()
	b.deadline = b.since.Add(c.cfg.BarrierMaxHold)
	if err := c.holdAll(ctx, b, nil); err != nil {
		c.releaseAll(b)
		return plan, err
	}
	items, ok := c.splitChecks(ctx)
	plan.Items = items
	if !ok && !force {
		c.releaseAll(b)
		return plan, fmt.Errorf("%w: destination not identical to the leader: %s", ErrNotReady, failed(items))
	}

	c.install(b)
	installed = true
	plan.Barrier = c.Status().Barrier
	plan.Message = fmt.Sprintf("barrier up: apply the firewall now; it releases by itself at %s", b.deadline.Format(time.RFC3339))
	c.log.Warn("cutover: split barrier up: apply the firewall now", "sessions", len(b.sessions), "max_hold", c.cfg.BarrierMaxHold)
	return plan, nil
}

func failed(items []Item) string {
	var out []string
	for _, it := range items {
		if !it.OK {
			out = append(out, it.Name+": "+it.Detail)
		}
	}
	return fmt.Sprint(out)
}

// holdAll holds every session that keep accepts (nil: all), MoveConcurrency
// at a time, each within MoveTimeout (its drain deadline).
func (c *Controller) holdAll(ctx context.Context, b *barrier, keep func(SessionView) bool) error {
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, c.cfg.MoveConcurrency)
	var wg sync.WaitGroup
	for _, s := range c.proxy.Sessions() {
		v := s.View()
		if keep != nil && !keep(v) {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			hctx, cancel := context.WithTimeout(ctx, c.cfg.MoveTimeout)
			err := s.Hold(hctx)
			cancel()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				// A session that cannot drain, or closed meanwhile, is
				// not held: the split may cost it one ConnectionLoss.
				b.notHeld++
				c.log.Warn("cutover: split barrier: session not held", "session", fmt.Sprintf("0x%016x", uint64(v.ID)), "err", err)
				return
			}
			b.sessions[v.ID] = &heldSession{s: s, attaches: s.View().Attaches}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		firstErr = fmt.Errorf("cutover: raising the barrier: %w", context.Cause(ctx))
	}
	return firstErr
}

// watchBarrier releases each held session once it has re-attached after
// the split (its attach count grew), and everything at the deadline.
func (c *Controller) watchBarrier(b *barrier) {
	defer close(b.done)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-tick.C:
		}
		now := c.now()
		c.mu.Lock()
		pending := 0
		for _, h := range b.sessions {
			if h.released {
				continue
			}
			v := h.s.View()
			if v.Attaches > h.attaches && v.Active {
				h.s.Release()
				h.released, h.heldFor = true, now.Sub(b.since)
				b.longest = max(b.longest, h.heldFor)
				c.m.barrierHold.Observe(h.heldFor.Seconds())
				continue
			}
			pending++
		}
		expired := !now.Before(b.deadline)
		c.mu.Unlock()
		if expired {
			c.log.Warn("cutover: split barrier reached its maximum hold time; releasing every session", "max_hold", c.cfg.BarrierMaxHold, "still_waiting", pending)
			c.endBarrier(b, "max hold time reached")
			return
		}
	}
}

// install makes b the barrier that is up and starts watching it. The
// caller claimed c.raising.
func (c *Controller) install(b *barrier) {
	c.mu.Lock()
	c.barrier = b
	c.raising = false
	c.m.barrierUp.Set(1)
	c.mu.Unlock()
	go c.watchBarrier(b)
}

// endRaising gives up the claim to raise a barrier, for a caller that did
// not install one.
func (c *Controller) endRaising() {
	c.mu.Lock()
	c.raising = false
	c.mu.Unlock()
}

// ReleaseBarrier lowers the barrier: every session still held is released.
// It reports whether this call lowered it; callers at the same time (an
// operator's release, a split record, Close) find it lowered.
func (c *Controller) ReleaseBarrier(reason string) bool {
	c.mu.Lock()
	b := c.barrier
	c.mu.Unlock()
	if b == nil {
		return false
	}
	b.stopOnce.Do(func() { close(b.stop) })
	<-b.done
	return c.endBarrier(b, reason)
}

// endBarrier lowers b unless another caller did already; it reports
// whether this call did.
func (c *Controller) endBarrier(b *barrier, reason string) bool {
	c.mu.Lock()
	if c.barrier != b {
		c.mu.Unlock()
		return false
	}
	c.barrier = nil
	c.lastBarrier = BarrierStatus{Since: b.since, Deadline: b.deadline, LastEnd: reason}
	c.m.barrierUp.Set(0)
	c.mu.Unlock()
	c.releaseAll(b)
	c.mu.Lock()
	for _, h := range b.sessions {
		c.lastBarrier.Released++
		b.longest = max(b.longest, h.heldFor)
	}
	c.lastBarrier.NotHeld, c.lastBarrier.LongestHold = b.notHeld, b.longest
	c.mu.Unlock()
	c.m.barrierSeconds.Observe(c.now().Sub(b.since).Seconds())
	c.log.Info("cutover: split barrier down", "reason", reason, "up_for", c.now().Sub(b.since), "longest_hold", b.longest)
	return true
}

// releaseAll releases every session of b not yet released.
func (c *Controller) releaseAll(b *barrier) {
	now := c.now()
	c.mu.Lock()
	var todo []*heldSession
	for _, h := range b.sessions {
		if !h.released {
			h.released, h.heldFor = true, now.Sub(b.since)
			todo = append(todo, h)
		}
	}
	c.mu.Unlock()
	for _, h := range todo {
		h.s.Release()
		c.m.barrierHold.Observe(h.heldFor.Seconds())
	}
}

// barrierStatus reports the current barrier, or the last one. The caller
// holds c.mu.
func (c *Controller) barrierStatus() BarrierStatus {
	b := c.barrier
	if b == nil {
		return c.lastBarrier
	}
	st := BarrierStatus{Up: true, Since: b.since, Deadline: b.deadline, NotHeld: b.notHeld, LongestHold: b.longest}
	for _, h := range b.sessions {
		if h.released {
			st.Released++
		} else {
			st.Held++
		}
	}
	return st
}

// jointLeader finds the member leading the joint ensemble, with the sync
// check that found it.
func (c *Controller) jointLeader(ctx context.Context) (MemberStatus, *Report, error) {
	rep := c.Check(ctx)
	for _, m := range rep.Members {
		if m.Mode == "leader" {
			return m, rep, nil
		}
	}
	return MemberStatus{}, rep, fmt.Errorf("no member leads the joint ensemble (%s)", rep.Reason())
}

// splitChecks compares each serving destination member with the leader:
// the same zxid and, at the newest zxid both recorded a digest for, the
// same tree digest (hash, ZooKeeper 3.6+; DataTree digests are logged every
// 128 transactions). Writes by clients not behind zkproxy can still move
// the leader on, so it retries for a moment — every client request is held
// meanwhile, so an ended ctx ends the wait at once.
func (c *Controller) splitChecks(ctx context.Context) ([]Item, bool) {
	deadline := time.Now().Add(3 * time.Second)
	for {
		items, ok := c.splitChecksOnce(ctx)
		if ok || time.Now().After(deadline) || ctx.Err() != nil {
			return items, ok
		}
		select {
		case <-ctx.Done():
			return items, ok
		case <-c.after(100 * time.Millisecond):
		}
	}
}

func (c *Controller) splitChecksOnce(ctx context.Context) ([]Item, bool) {
	rep := c.check(ctx, false) // sessions are held: only what the split needs
	var leader *MemberStatus
	for i := range rep.Members {
		if rep.Members[i].Mode == "leader" {
			leader = &rep.Members[i]
		}
	}
	if leader == nil {
		return []Item{{Name: "leader", OK: false, Detail: "no member leads"}}, false
	}
	leaderDigests, _ := c.cfg.Members.Hash(ctx, leader.Addr)
	var items []Item
	ok := true
	for _, m := range rep.Members {
		if m.Ensemble != Destination || m.Mode == "" {
			continue
		}
		same := m.zxid == leader.zxid || idleNewEpoch(leader, &m)
		items = append(items, Item{Name: "zxid " + m.Addr, OK: same, Detail: fmt.Sprintf("%s, leader %s", m.Zxid, leader.Zxid)})
		ok = ok && same
		digests, err := c.cfg.Members.Hash(ctx, m.Addr)
		if err != nil {
			items = append(items, Item{Name: "digest " + m.Addr, OK: false, Detail: "hash: " + err.Error()})
			ok = false
			continue
		}
		match, at, found := compareDigests(leaderDigests, digests)
		detail := "no common digest yet (digests are logged every 128 transactions)"
		if found {
			detail = fmt.Sprintf("digest at zxid 0x%x equal: %t", at, match)
		}
		items = append(items, Item{Name: "digest " + m.Addr, OK: !found || match, Detail: detail})
		ok = ok && (!found || match)
	}
	return items, ok
}

// compareDigests finds the newest zxid both lists recorded and compares
// the digests there.
func compareDigests(a, b []fourlw.Digest) (equal bool, at int64, found bool) {
	byZxid := make(map[int64]int64, len(a))
	for _, d := range a {
		byZxid[d.Zxid] = d.Digest
	}
	for i := len(b) - 1; i >= 0; i-- {
		if d, ok := byZxid[b[i].Zxid]; ok {
			return d == b[i].Digest, b[i].Zxid, true
		}
	}
	return false, 0, false
}

// ErrHoldUp refuses a second hold or barrier while one is up or being
// raised.
var ErrHoldUp = errors.New("cutover: a hold or split barrier is already up or being raised")

// ErrMoveRunning refuses a hold while sessions are being moved.
var ErrMoveRunning = errors.New("cutover: hold refused: sessions are being moved; hold after the move ends")

// Hold is the split barrier's mechanism for planned member restarts — the
// rolling restarts of the join and of the source after the split. A member
// that restarts closes its clients' connections, and a restarted leader
// makes every member drop its clients for the election; requests in flight
// then have an unknown outcome, so the client must be told (ConnectionLoss).
// Hold prevents that: it holds the sessions attached to members (every
// session when members is empty — use that for the leader) until none has
// a request in flight. Each held session is released as soon as it has
// re-attached after the restart; Release or BarrierMaxHold release the rest
// (sessions whose member did not restart simply resume). Any phase but a
// running move allows it.
func (c *Controller) Hold(ctx context.Context, members []string) (BarrierStatus, error) {
	c.mu.Lock()
	if c.barrier != nil || c.raising {
		st := c.barrierStatus()
		c.mu.Unlock()
		return st, ErrHoldUp
	}
	if c.running != nil {
		phase := c.state.Phase
		c.mu.Unlock()
		return BarrierStatus{}, fmt.Errorf("%w (phase %s)", ErrMoveRunning, phase)
	}
	// Claimed under the lock: holdAll runs without it (see PrepareSplit).
	c.raising = true
	c.mu.Unlock()
	installed := false
	defer func() {
		if !installed {
			c.endRaising()
		}
	}()
	var keep func(SessionView) bool
	if len(members) > 0 {
		keep = func(v SessionView) bool { return slices.Contains(members, v.Member) }
	}
	b := &barrier{sessions: map[int64]*heldSession{}, stop: make(chan struct{}), done: make(chan struct{})}
	b.since = c.now()
	b.deadline = b.since.Add(c.cfg.BarrierMaxHold)
	if err := c.holdAll(ctx, b, keep); err != nil {
		c.releaseAll(b)
		return BarrierStatus{}, err
	}
	c.install(b)
	installed = true
	c.log.Warn("cutover: hold up: restart the member now", "members", members, "sessions", len(b.sessions), "max_hold", c.cfg.BarrierMaxHold)
	return c.Status().Barrier, nil
}
