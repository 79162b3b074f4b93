package cutover

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkproxy/zkproxy/internal/fourlw"
	"github.com/zkproxy/zkproxy/internal/zksession"
)

// Session is one proxied session as the controller drives it.
type Session interface {
	View() SessionView
	// Move re-establishes the session on one of members, invisibly to the
	// client: drain, connect with the same id/password/last zxid, replay
	// auth and watches, release. On error the session is still attached
	// where it was, or its client was disconnected (see MoveError).
	Move(ctx context.Context, members []string) error
	// Disconnect closes the client's connection so it reconnects through
	// zkproxy — the fallback when a live move is impossible. It lets the
	// requests in flight finish first, until ctx ends, so no request is
	// left with an unknown outcome; an ended ctx closes at once.
	Disconnect(ctx context.Context, reason string)
	// Hold makes the session hold new client requests (answering pings)
	// and returns once none is in flight; it survives re-attaches.
	Hold(ctx context.Context) error
	// Release ends a Hold: held requests go upstream in order.
	Release()
}

// MoveTimer is a Session that can say how long its last successful move
// took without the drain before it: the part a loaded destination makes
// longer, which the adaptive move concurrency (moveLimiter) watches. For
// sessions without it the whole move counts.
type MoveTimer interface {
	LastMoveAttach() time.Duration
}

// MoveError lets a Session classify why a move failed (a bounded label:
// "drain_timeout", "refused", "expired", ...). Errors without it count as
// "error".
type MoveError interface {
	error
	MoveReason() string
}

// Proxy is what the controller needs of the proxy.
type Proxy interface {
	// SetTarget routes new client connections to members.
	SetTarget(members []string)
	// Sessions lists the established sessions.
	Sessions() []Session
}

// Config configures a Controller.
type Config struct {
	Source, Destination []string
	// MaxLag for the sync check (see CheckConfig).
	MaxLag int64
	// MoveConcurrency is how many sessions move at once at the start;
	// zero means 8. The number then adapts (moveLimiter) up to
	// MoveConcurrencyMax, at which zero (or a value below MoveConcurrency)
	// keeps it fixed.
	MoveConcurrency    int
	MoveConcurrencyMax int
	// MovePauseTarget is the move duration (a busy session's pause) the
	// adaptive concurrency keeps under; zero means 20ms.
	MovePauseTarget time.Duration
	// MoveTimeout bounds one session's move (drain included); zero means
	// 10s, well under Kafka's 18s session timeout.
	MoveTimeout time.Duration
	// Store persists the phase; its Dir must exist.
	Store Store
	// Members answers the sync check's and the split barrier's
	// four-letter words; nil asks over TCP (fourlw.Members).
	Members Members
	// Nudge ends an idle epoch for the sync check (CheckConfig.Nudge).
	// Nil with Members nil: a session opened and closed over TCP
	// (zksession.OpenClose); nil with Members set: never.
	Nudge func(ctx context.Context, addr string) (sessionID int64, err error)
	// BarrierMaxHold bounds how long the split barrier holds requests
	// before it releases by itself; zero means 10s. Keep it well under the
	// session timeout (Kafka: 18s).
	BarrierMaxHold time.Duration
	// PeerSessions and IgnoreSessions: see CheckConfig.
	PeerSessions   func(ctx context.Context) (ids []int64, problems []string)
	IgnoreSessions func(ctx context.Context) []int64
	// CheckInterval runs the sync check in the background this often while
	// a destination is configured and no split is recorded, so its verdict
	// is on /metrics during the join; zero: only on demand.
	CheckInterval time.Duration
}

// Controller runs the cutover state machine and performs its side effects.
// Its methods are safe for concurrent use.
type Controller struct {
	cfg   Config
	proxy Proxy
	log   *slog.Logger
	m     *metrics
	now   func() time.Time
	// after is time.After; tests see the split checks' retry wait with it.
	after func(time.Duration) <-chan time.Time

	mu       sync.Mutex
	state    State
	progress Progress
	cancel   context.CancelFunc // stops the running move loop
	running  chan struct{}      // closed when the move loop ends

	barrier     *barrier      // the split barrier, while up
	raising     bool          // a hold or barrier is being raised (holdAll runs without c.mu)
	lastBarrier BarrierStatus // the last barrier, once down
	lastCheck   *Report       // the last full sync check

	stopWatch context.CancelFunc // called by Close: ends watchSync
	watchDone chan struct{}      // closed when watchSync returned
}

// Progress counts the sessions of the current (or last) move.
type Progress struct {
	Total   int `json:"total"`
	Moved   int `json:"moved"`
	Failed  int `json:"failed"`
	Pending int `json:"pending"`
	// Reasons counts fallbacks by reason; in JSON it is Status.Reasons.
	Reasons map[string]int `json:"-"`
}

// Status is the answer to GET /cutover.
type Status struct {
	Phase      Phase          `json:"phase"`
	Split      bool           `json:"split"`
	Target     Ensemble       `json:"target"`
	Sessions   Progress       `json:"sessions"`
	Reasons    map[string]int `json:"reasons"`
	StartedAt  time.Time      `json:"started_at,omitzero"`
	FinishedAt time.Time      `json:"finished_at,omitzero"`
	SplitAt    time.Time      `json:"split_at,omitzero"`
	Barrier    BarrierStatus  `json:"barrier"`
}

// NewController loads the persisted state, resolves a move interrupted by a
// restart (see Restored) and routes new connections accordingly.
func NewController(cfg Config, p Proxy, log *slog.Logger, reg prometheus.Registerer) (*Controller, error) {
	if len(cfg.Source) == 0 {
		return nil, errors.New("cutover: no source members")
	}
	if cfg.MoveConcurrency <= 0 {
		cfg.MoveConcurrency = 8
	}
	if cfg.MovePauseTarget <= 0 {
		cfg.MovePauseTarget = 20 * time.Millisecond
	}
	if cfg.MoveTimeout <= 0 {
		cfg.MoveTimeout = 10 * time.Second
	}
	if cfg.BarrierMaxHold <= 0 {
		cfg.BarrierMaxHold = 10 * time.Second
	}
	if cfg.Members == nil {
		cfg.Members = fourlw.Members{}
		if cfg.Nudge == nil {
			cfg.Nudge = func(ctx context.Context, addr string) (int64, error) { return zksession.OpenClose(ctx, nil, addr) }
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Controller{cfg: cfg, proxy: p, log: log, m: newMetrics(reg), now: time.Now, after: time.After}
	st, err := cfg.Store.Load()
	if err != nil {
		return nil, err
	}
	if restored, changed := Restored(st, c.now()); changed {
		log.Warn("cutover: resuming after restart; clients reconnect to where new connections go",
			"was", st.Phase.String(), "now", restored.Phase.String())
		if err := cfg.Store.Save(restored); err != nil {
			return nil, err
		}
		st = restored
	}
	if st.Phase.Target() == Destination && len(cfg.Destination) == 0 {
		return nil, fmt.Errorf("cutover: persisted phase %s routes to the destination, but no destination members are configured", st.Phase)
	}
	c.state = st
	c.progress.Reasons = map[string]int{}
	p.SetTarget(c.members(st.Phase.Target()))
	c.m.setPhase(st.Phase)
	log.Info("cutover: state loaded", "phase", st.Phase.String(), "split", st.Split, "target", string(st.Phase.Target()))
	watchCtx, stop := context.WithCancel(context.Background())
	c.stopWatch, c.watchDone = stop, make(chan struct{})
	if cfg.CheckInterval > 0 && len(cfg.Destination) > 0 {
		go c.watchSync(watchCtx, cfg.CheckInterval)
	} else {
		close(c.watchDone)
	}
	return c, nil
}

// watchSync runs the sync check every interval until Close; once the split
// is recorded (the ensembles are apart for good) it checks the
// destination's health instead (DestinationHealth).
func (c *Controller) watchSync(ctx context.Context, interval time.Duration) {
	defer close(c.watchDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		c.mu.Lock()
		split := c.state.Split
		c.mu.Unlock()
		if !split {
			c.Check(ctx)
		} else {
			c.checkHealth(ctx) // health.go
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *Controller) members(e Ensemble) []string {
	if e == Destination {
		return c.cfg.Destination
	}
	return c.cfg.Source
}

// Status reports the phase and the progress of the current or last move.
func (c *Controller) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.progress
	p.Reasons = cloneMap(c.progress.Reasons)
	return Status{
		Phase: c.state.Phase, Split: c.state.Split, Target: c.state.Phase.Target(), Sessions: p,
		Reasons: p.Reasons, StartedAt: c.state.StartedAt, FinishedAt: c.state.FinishedAt, SplitAt: c.state.SplitAt,
		Barrier: c.barrierStatus(),
	}
}

// Check runs the sync check against the proxy's current sessions and
// publishes its verdict as metrics.
func (c *Controller) Check(ctx context.Context) *Report {
	rep := c.check(ctx, true)
	c.m.observeCheck(rep)
	c.mu.Lock()
	c.lastCheck = rep
	c.mu.Unlock()
	return rep
}

// LastCheck is the last full sync check (Check, on demand or in the
// background), or nil before the first. Do not modify it.
func (c *Controller) LastCheck() *Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastCheck
}

// check is Check, with or without the look for direct sessions.
func (c *Controller) check(ctx context.Context, direct bool) *Report {
	var views []SessionView
	for _, s := range c.proxy.Sessions() {
		views = append(views, s.View())
	}
	return Check(ctx, CheckConfig{
		Source: c.cfg.Source, Destination: c.cfg.Destination, MaxLag: c.cfg.MaxLag, Members: c.cfg.Members,
		PeerSessions: c.cfg.PeerSessions, IgnoreSessions: c.cfg.IgnoreSessions, SkipDirect: !direct,
		Nudge: c.cfg.Nudge,
	}, views)
}

// closedContext has ended: Disconnect with it closes without draining.
var closedContext = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// ErrNotReady is returned by Start when the sync check fails without force.
var ErrNotReady = errors.New("cutover: mitosis sync not confirmed")

// transition applies ev, persists the new state, and logs and counts it.
// The caller holds c.mu.
func (c *Controller) transition(ev Event) (bool, error) {
	next, changed, err := Next(c.state, ev, c.now())
	if err != nil || !changed {
		return false, err
	}
	if err := c.cfg.Store.Save(next); err != nil {
		return false, fmt.Errorf("cutover: %s: %w", ev, err)
	}
	c.log.Info("cutover: phase change", "event", ev.String(), "from", c.state.Phase.String(), "to", next.Phase.String(), "split", next.Split)
	c.m.transitions.WithLabelValues(ev.String(), c.state.Phase.String(), next.Phase.String()).Inc()
	c.m.setPhase(next.Phase)
	c.state = next
	return true, nil
}

// Start runs the sync check and, when it passes (or force), starts moving
// every session to the destination in the background. It is idempotent:
// while a cutover runs or after it finished, Start changes nothing.
func (c *Controller) Start(ctx context.Context, force bool) (*Report, error) {
	if len(c.cfg.Destination) == 0 {
		return nil, errors.New("cutover: no destination members configured")
	}
	rep := c.Check(ctx)
	if !rep.Ready && !force {
		return rep, fmt.Errorf("%w: %s", ErrNotReady, rep.Reason())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	changed, err := c.transition(EventStart)
	if err != nil || !changed {
		return rep, err
	}
	targets := rep.Usable
	if len(targets) == 0 {
		targets = c.cfg.Destination // forced: try every member
	}
	c.proxy.SetTarget(c.cfg.Destination)
	c.launch(Destination, targets, rep)
	return rep, nil
}

// Rollback moves every session back to the source (refused after the split).
func (c *Controller) Rollback(ctx context.Context) error {
	c.mu.Lock()
	c.stopLocked()
	changed, err := c.transition(EventRollback)
	if err != nil || !changed {
		c.mu.Unlock()
		return err
	}
	c.proxy.SetTarget(c.cfg.Source)
	c.launch(Source, c.cfg.Source, nil)
	c.mu.Unlock()
	return nil
}

// Abort stops a running cutover or rollback; moved sessions stay moved.
func (c *Controller) Abort() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.transition(EventAbort); err != nil {
		return err
	}
	c.stopLocked()
	c.proxy.SetTarget(c.members(c.state.Phase.Target()))
	return nil
}

// RecordSplit records that the joint ensemble was split: rollback is
// refused from now on. A split barrier still up comes down.
func (c *Controller) RecordSplit() error {
	c.mu.Lock()
	_, err := c.transition(EventSplit)
	c.mu.Unlock()
	if err == nil {
		c.ReleaseBarrier("split recorded")
	}
	return err
}

// Wait blocks until the running move loop (if any) ends or ctx is done.
func (c *Controller) Wait(ctx context.Context) error {
	c.mu.Lock()
	running := c.running
	c.mu.Unlock()
	if running == nil {
		return nil
	}
	select {
	case <-running:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Close stops the background sync check and a running move loop, and
// lowers a split barrier (the phase stays as persisted).
func (c *Controller) Close() {
	c.stopWatch()
	<-c.watchDone
	c.ReleaseBarrier("zkproxy shutting down")
	c.mu.Lock()
	c.stopLocked()
	c.mu.Unlock()
}

// stopLocked cancels the move loop and waits for it. The loop takes c.mu to
// count results, so the lock is released while waiting.
func (c *Controller) stopLocked() {
	if c.cancel == nil {
		return
	}
	c.cancel()
	running := c.running
	c.mu.Unlock()
	<-running
	c.mu.Lock()
}

// launch starts the move loop toward ens. The caller holds c.mu.
func (c *Controller) launch(ens Ensemble, targets []string, rep *Report) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	c.cancel, c.running = cancel, done
	c.progress = Progress{Reasons: map[string]int{}}
	unmovable := map[int64]string{}
	if rep != nil {
		for _, u := range rep.Unmovable {
			unmovable[u.id] = u.code
		}
	}
	go func() {
		defer close(done)
		c.moveAll(ctx, ens, targets, unmovable)
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.running == done {
			c.cancel, c.running = nil, nil
		}
		if ctx.Err() == nil {
			if _, err := c.transition(EventMovesDone); err != nil {
				c.log.Error("cutover: finishing", "err", err)
			}
		}
	}()
}

// moveAll moves every session not yet on ens, MoveConcurrency at a time,
// until none is left; sessions that connect meanwhile already land on ens.
// Sessions count as pending from their batch's start; those an abort keeps
// from starting are taken off the count again.
func (c *Controller) moveAll(ctx context.Context, ens Ensemble, targets []string, unmovable map[int64]string) {
	attempted := map[int64]bool{}
	limit := newMoveLimiter(c.cfg.MoveConcurrency, c.cfg.MoveConcurrencyMax, c.cfg.MovePauseTarget)
	start := c.now()
	for ctx.Err() == nil {
		type candidate struct {
			s Session
			v SessionView
		}
		var todo []candidate
		for _, s := range c.proxy.Sessions() {
			v := s.View()
			if v.Ensemble != ens && !attempted[v.ID] {
				todo = append(todo, candidate{s, v})
				attempted[v.ID] = true
			}
		}
		if len(todo) == 0 {
			break
		}
		// By session id: any order would do, a stable one makes the
		// move log read in order.
		slices.SortFunc(todo, func(a, b candidate) int { return cmp.Compare(a.v.ID, b.v.ID) })
		c.mu.Lock()
		c.progress.Total += len(todo)
		c.progress.Pending += len(todo)
		c.mu.Unlock()

		var wg sync.WaitGroup
		launched := 0
		for _, t := range todo {
			if !limit.acquire(ctx) {
				break
			}
			launched++
			wg.Go(func() {
				took, ok := c.moveOne(ctx, t.s, ens, targets, unmovable)
				limit.release(took, ok)
				c.m.moveConcurrency.Set(float64(limitNow(limit)))
			})
		}
		if notStarted := len(todo) - launched; notStarted > 0 {
			c.mu.Lock()
			c.progress.Total -= notStarted
			c.progress.Pending -= notStarted
			c.mu.Unlock()
		}
		wg.Wait()
	}
	now, low, high := limit.current()
	c.mu.Lock()
	p := c.progress
	c.mu.Unlock()
	c.log.Info("cutover: moves finished", "to", string(ens), "moved", p.Moved, "fallback", p.Failed, "took", c.now().Sub(start),
		"concurrency_start", c.cfg.MoveConcurrency, "concurrency_low", low, "concurrency_high", high, "concurrency_end", now)
}

func limitNow(l *moveLimiter) int {
	now, _, _ := l.current()
	return now
}

// moveOne moves (or, when it cannot, disconnects) one session, and
// reports how long that took and whether it moved live: what the adaptive
// concurrency learns from. A session taken to the fallback on purpose
// (unmovable) counts as moved for it: the destination had no part in it.
func (c *Controller) moveOne(ctx context.Context, s Session, ens Ensemble, targets []string, unmovable map[int64]string) (time.Duration, bool) {
	v := s.View()
	log := c.log.With("session", fmt.Sprintf("0x%016x", uint64(v.ID)), "to", string(ens))
	result, reason := "moved", ""
	start := c.now()
	if r, ok := unmovable[v.ID]; ok && ens == Destination {
		result, reason = "fallback", r
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.MoveTimeout)
		s.Disconnect(dctx, "cutover: "+r)
		cancel()
	} else {
		// A move that has started runs to its end even when the cutover is
		// aborted: cancelling it after the old upstream closed could only
		// end in a disconnect. Abort stops new moves; MoveTimeout bounds
		// this one.
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.MoveTimeout)
		err := s.Move(mctx, targets)
		cancel()
		if err != nil {
			result, reason = "fallback", "error"
			var me MoveError
			if errors.As(err, &me) {
				reason = me.MoveReason()
			}
			// The client reconnects through zkproxy and lands on the
			// target; its session survives unless expired.
			// The move had its time to drain (or the session is gone
			// already): close at once.
			s.Disconnect(closedContext, "cutover: live move failed: "+err.Error())
			log.Warn("cutover: live move failed", "reason", reason, "err", err)
		}
	}
	took := c.now().Sub(start)
	c.m.moves.WithLabelValues(string(ens), result, reasonLabel(reason)).Inc()
	c.m.moveSeconds.Observe(took.Seconds())
	c.mu.Lock()
	defer c.mu.Unlock()
	_, onPurpose := unmovable[v.ID]
	onPurpose = onPurpose && ens == Destination
	switch result {
	case "moved":
		c.progress.Pending--
		c.progress.Moved++
		log.Info("cutover: session moved", "took", c.now().Sub(start))
	case "fallback":
		c.progress.Pending--
		c.progress.Failed++
		c.progress.Reasons[reason]++
	}
	if onPurpose {
		return 0, true
	}
	if mt, ok := s.(MoveTimer); ok && result == "moved" {
		if attach := mt.LastMoveAttach(); attach > 0 {
			return attach, true
		}
	}
	return took, result == "moved"
}

func reasonLabel(r string) string {
	if r == "" {
		return "none"
	}
	return r
}

func cloneMap(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
