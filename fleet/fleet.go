package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkproxy/zkproxy/cutover"
)

// Controller is what the fleet needs of the local cutover controller
// (*cutover.Controller).
type Controller interface {
	Status() cutover.Status
	Check(ctx context.Context) *cutover.Report
	Start(ctx context.Context, force bool) (*cutover.Report, error)
	Abort() error
	Rollback(ctx context.Context) error
	RecordSplit() error
	PrepareSplit(ctx context.Context, force bool) (*cutover.SplitPlan, error)
	Hold(ctx context.Context, members []string) (cutover.BarrierStatus, error)
	ReleaseBarrier(reason string) bool
}

// Config configures a Fleet.
type Config struct {
	// Name of the fleet (for logs and status).
	Name  string
	Store StoreConfig
	// ReplicaID names this replica's member znode; unique in the fleet.
	ReplicaID string
	AdminURL  string
	Version   string
	// StaleAfter: a replica whose last successful read of the state is
	// older reports not ready; zero means 10s.
	StaleAfter time.Duration
	// Interval between re-reads of the state (a watch wakes the loop
	// early); zero means 500ms.
	Interval time.Duration
	// Sessions counts this replica's sessions by ensemble; nil counts none.
	Sessions func() SessionCounts
	// SplitWait bounds how long split --prepare waits for every live
	// replica to hold; zero means 10s.
	SplitWait time.Duration
	// Metrics, when set, receive the fleet's gauges and counters.
	Metrics *Metrics
}

// Fleet is one replica's part of the fleet: it keeps the local controller
// on the fleet state and turns the operator's actions into state changes.
type Fleet struct {
	cfg   Config
	store *Store
	log   *slog.Logger
	now   func() time.Time

	// act serializes operator actions and the loop's applying of the
	// state, so this replica's controller sees one change at a time.
	act   sync.Mutex
	local Controller

	mu        sync.Mutex
	reading   Reading
	haveRead  bool
	handedOff bool // HandOff: the successor owns this replica's znodes
	// incarnation: this process's start (Member.Incarnation).
	incarnation int64
	lastRead    time.Time // last successful read
	readErr     error
	applied     int64
	published   Member
	pubSide     cutover.Ensemble
	pubAt       time.Time
	pending     sync.WaitGroup // barrier actions running in the background
	rosterAt    time.Time      // last roster read for the metrics (loop only)

	stop context.CancelFunc
	done chan struct{}
}

// Open connects to the ensembles; call Bootstrap, then Run.
func Open(cfg Config, log *slog.Logger) (*Fleet, error) {
	if cfg.ReplicaID == "" || strings.Contains(cfg.ReplicaID, "/") {
		return nil, fmt.Errorf("fleet: replica id %q must be non-empty without '/'", cfg.ReplicaID)
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = 10 * time.Second
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 500 * time.Millisecond
	}
	if cfg.SplitWait <= 0 {
		cfg.SplitWait = 10 * time.Second
	}
	if cfg.Sessions == nil {
		cfg.Sessions = func() SessionCounts { return SessionCounts{} }
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Store.Log = log
	st, err := OpenStore(cfg.Store)
	if err != nil {
		return nil, err
	}
	return &Fleet{cfg: cfg, store: st, log: log.With("fleet", cfg.Name), now: time.Now, incarnation: time.Now().UnixNano()}, nil
}

// Store is the fleet's state store.
func (f *Fleet) Store() *Store { return f.store }

// Bootstrap reads the fleet state before the replica accepts a client and
// makes the local store (the data-dir) agree with it: whatever the data-dir
// says, a replica starting after the cutover began routes to the
// destination. A fleet without a state yet gets one, from the local state.
// With no answer from either ensemble before ctx ends, a replica that has a
// local state goes on with it (not ready until a read succeeds); one
// without returns ErrNoAnswer and must accept nobody.
func (f *Fleet) Bootstrap(ctx context.Context, local cutover.Store) error {
	hasLocal, err := local.Exists()
	if err != nil {
		return err
	}
	localState, err := local.Load()
	if err != nil {
		return err
	}
	for {
		r, err := f.store.Read(ctx)
		if err == nil && !r.Exists {
			r, err = f.create(ctx, r, localState)
			if errors.Is(err, ErrConflict) {
				continue // another replica created it: read it
			}
		}
		if err == nil {
			adopted := r.State.Local(f.now())
			prev, _ := local.Load()
			if prev.Phase != adopted.Phase || prev.Split != adopted.Split {
				f.log.Warn("fleet: the data-dir's phase differs from the fleet state; the fleet state wins",
					"data_dir_phase", prev.Phase.String(), "fleet_phase", r.State.Phase.String(), "adopted", adopted.Phase.String(), "split", adopted.Split)
			}
			if err := local.Save(adopted); err != nil {
				return err
			}
			f.mu.Lock()
			f.reading, f.haveRead, f.lastRead, f.readErr, f.applied = r, true, f.now(), nil, r.State.Epoch
			f.mu.Unlock()
			return nil
		}
		f.mu.Lock()
		f.readErr = err
		f.mu.Unlock()
		var fe *FormatError
		if errors.As(err, &fe) {
			return err
		}
		select {
		case <-ctx.Done():
			if hasLocal && errors.Is(err, ErrNoAnswer) {
				f.log.Warn("fleet: no answer from either ensemble; serving on the data-dir's state, not ready until the fleet state is read", "err", err)
				return nil
			}
			return fmt.Errorf("fleet: reading the state before accepting clients: %w", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// create makes the first state of a fleet from this replica's local state
// (its data-dir): a fleet turned on for zkproxies already under way keeps
// their phase.
func (f *Fleet) create(ctx context.Context, r Reading, localState cutover.State) (Reading, error) {
	createOn := cutover.Source
	if localState.Split {
		createOn = cutover.Destination
	}
	st := State{
		Phase: localState.Phase, Split: localState.Split, Destination: f.cfg.Store.Destination,
		StartedAt: localState.StartedAt, FinishedAt: localState.FinishedAt, SplitAt: localState.SplitAt,
	}
	if rs, _ := cutover.Restored(localState, f.now()); rs.Phase != localState.Phase {
		st.Phase, st.FinishedAt = rs.Phase, rs.FinishedAt
	}
	if st.Began() {
		st.StartedEpoch = 1
	}
	st = st.bump(ActionInit, f.cfg.ReplicaID, f.now())
	w, err := f.store.Write(ctx, r, st, createOn)
	if err == nil {
		f.log.Info("fleet: state created from the local state", "znode", f.store.StatePath(), "ensemble", string(createOn), "phase", st.Phase.String())
	}
	return w, err
}

// Run keeps the local controller on the fleet state until Close.
func (f *Fleet) Run(local Controller) {
	f.act.Lock()
	f.local = local
	f.act.Unlock()
	ctx, stop := context.WithCancel(context.Background())
	f.stop, f.done = stop, make(chan struct{})
	go f.loop(ctx)
}

func (f *Fleet) loop(ctx context.Context) {
	defer close(f.done)
	t := time.NewTicker(f.cfg.Interval)
	defer t.Stop()
	var watch <-chan zk.Event
	var watchSide cutover.Ensemble
	for {
		r, ok := f.tick(ctx)
		if ok && (watch == nil || watchSide != r.Side) {
			watch, watchSide = f.store.watch(ctx, r.Side), r.Side
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-watch:
			watch = nil
		}
	}
}

// tick reads the state once, applies it, finishes a move the whole fleet
// completed, and publishes this replica's member znode.
func (f *Fleet) tick(ctx context.Context) (Reading, bool) {
	r, err := f.store.Read(ctx)
	f.mu.Lock()
	seen := f.haveRead
	f.mu.Unlock()
	switch {
	case err == nil && !r.Exists && !seen:
		// Bootstrap went on with the data-dir's state while no ensemble
		// answered, and the fleet has no state yet: this replica makes it.
		st := f.local.Status()
		r, err = f.create(ctx, r, cutover.State{Phase: st.Phase, Split: st.Split, StartedAt: st.StartedAt, FinishedAt: st.FinishedAt, SplitAt: st.SplitAt})
	case err == nil && !r.Exists:
		// It was read before: gone now means deleted. Keep the last
		// state, and let readiness lapse after StaleAfter.
		err = fmt.Errorf("fleet: the state znode %s is missing on every ensemble that answered (deleted?); keeping the last state", f.store.StatePath())
	}
	m := f.cfg.Metrics
	m.observeRead(r, err)
	defer func() {
		rerr := f.Ready(ctx)
		m.setBool(m.readyGauge(), rerr == nil)
		f.mu.Lock()
		applied, last := f.applied, f.lastRead
		f.mu.Unlock()
		if m != nil {
			m.appliedEpoch.Set(float64(applied))
			if !last.IsZero() {
				m.lastRead.Set(float64(last.UnixNano()) / 1e9)
			}
		}
	}()
	f.mu.Lock()
	if err != nil {
		if f.readErr == nil || f.readErr.Error() != err.Error() {
			f.log.Warn("fleet: reading the state failed; keeping the last one", "err", err)
		}
		f.readErr = err
	} else {
		if f.readErr != nil {
			f.log.Info("fleet: state read again", "ensemble", string(r.Side), "epoch", r.State.Epoch)
		}
		f.reading, f.haveRead, f.lastRead, f.readErr = r, true, f.now(), nil
	}
	f.mu.Unlock()
	if err != nil || !r.Exists {
		return r, false
	}
	f.act.Lock()
	f.apply(ctx, r.State)
	f.act.Unlock()
	f.finishMoves(ctx, r)
	f.publish(ctx, r.Side)
	if f.cfg.Metrics != nil && f.now().Sub(f.rosterAt) >= 5*time.Second {
		// Only for the replicas gauge: every 5s is plenty.
		if ro, err := f.store.roster(ctx, r.Side, f.cfg.Store.Path); err == nil {
			f.cfg.Metrics.observeRoster(ro)
			f.rosterAt = f.now()
		}
	}
	return r, true
}

// apply performs st's action once (when its epoch is new here) and brings
// the local phase to the fleet's. The caller holds f.act.
func (f *Fleet) apply(ctx context.Context, st State) {
	local := f.local.Status()
	f.mu.Lock()
	fresh := st.Epoch > f.applied
	if fresh {
		f.applied = st.Epoch
	}
	f.mu.Unlock()
	if fresh {
		f.log.Info("fleet: applying", "epoch", st.Epoch, "action", string(st.Action), "phase", st.Phase.String(), "split", st.Split, "by", st.ChangedBy)
		switch st.Action {
		case ActionAbort:
			if local.Phase == cutover.PhaseCuttingOver || local.Phase == cutover.PhaseRollingBack {
				f.logErr("abort", f.local.Abort())
			}
		case ActionRelease:
			f.local.ReleaseBarrier("released by the operator (fleet epoch " + fmt.Sprint(st.Epoch) + ")")
		case ActionHold, ActionPrepareSplit:
			if !local.Barrier.Up {
				// Holding waits for the requests in flight (bounded by
				// the move timeout): off the loop, so reads go on. The
				// split barrier is a hold of every session here: the
				// operator's replica ran the pre-split checks, and
				// running them again would only spend the barrier's
				// maximum hold time. Each held session is released when
				// it re-attached after the destination's restart, or by
				// the split's record, like the barrier's.
				f.pending.Add(1)
				go func() {
					defer f.pending.Done()
					_, err := f.local.Hold(ctx, st.HoldMembers)
					f.logErr(string(st.Action), err)
				}()
			}
		}
	}
	f.converge(ctx, st, f.local.Status())
}

// converge moves the local phase toward the fleet's: a start, a rollback or
// a split recorded elsewhere reaches this replica here, and so does one it
// missed while it was cut off.
func (f *Fleet) converge(ctx context.Context, st State, local cutover.Status) {
	switch {
	case st.Split && !local.Split:
		switch {
		case local.Phase == cutover.PhaseDestination:
			f.logErr("split", f.local.RecordSplit())
		case local.Target == cutover.Source:
			f.startLocal(ctx, local)
		}
	case st.Phase.Target() == cutover.Destination && local.Target == cutover.Source:
		f.startLocal(ctx, local)
	case st.Phase.Target() == cutover.Source && local.Target == cutover.Destination && !local.Split:
		f.logErr("rollback", f.local.Rollback(ctx))
	}
}

// startLocal starts the local cutover, forced: the sync check was the
// operator's replica's to pass, and once the fleet began the cutover no
// replica may route to the source.
func (f *Fleet) startLocal(ctx context.Context, local cutover.Status) {
	if local.Phase == cutover.PhaseRollingBack {
		f.logErr("abort", f.local.Abort())
	}
	_, err := f.local.Start(ctx, true)
	f.logErr("start", err)
}

func (f *Fleet) logErr(what string, err error) {
	if err != nil {
		f.log.Warn("fleet: applying "+what+" locally", "err", err)
	}
}

// finishMoves records moves_done once every live replica applied the
// current epoch and finished its move: the fleet's phase then becomes
// destination (or source after a rollback). Any replica may write it; the
// conditional write lets one win.
func (f *Fleet) finishMoves(ctx context.Context, r Reading) {
	var done cutover.Phase
	switch r.State.Phase {
	case cutover.PhaseCuttingOver:
		done = cutover.PhaseDestination
	case cutover.PhaseRollingBack:
		done = cutover.PhaseSource
	default:
		return
	}
	if f.local.Status().Phase != done {
		return
	}
	ro, err := f.store.roster(ctx, r.Side, f.cfg.Store.Path)
	if err != nil || len(ro.Live) == 0 {
		return
	}
	for _, m := range ro.Live {
		if m.AppliedEpoch < r.State.Epoch || m.Phase != done {
			return
		}
	}
	next, changed, err := r.State.next(cutover.EventMovesDone, f.cfg.ReplicaID, f.now())
	if err != nil || !changed {
		return
	}
	if _, err := f.store.Write(ctx, r, next, r.Side); err == nil {
		f.log.Info("fleet: every live replica finished its move", "phase", next.Phase.String(), "epoch", next.Epoch)
	}
}

// member is this replica's member znode content now.
func (f *Fleet) member() Member {
	st := f.local.Status()
	f.mu.Lock()
	applied := f.applied
	f.mu.Unlock()
	m := Member{
		ID: f.cfg.ReplicaID, Incarnation: f.incarnation, AdminURL: f.cfg.AdminURL, Version: f.cfg.Version,
		Phase: st.Phase, Split: st.Split, AppliedEpoch: applied, Sessions: f.cfg.Sessions(),
		Moved: st.Sessions.Moved, Failed: st.Sessions.Failed, Pending: st.Sessions.Pending,
		BarrierUp: st.Barrier.Up, Held: st.Barrier.Held, UpdatedAt: f.now(),
	}
	for _, id := range f.store.SessionIDs() {
		m.FleetSessions = append(m.FleetSessions, fmt.Sprintf("0x%016x", uint64(id)))
	}
	if err := f.Ready(context.Background()); err != nil {
		m.NotReady = err.Error()
	} else {
		m.Ready = true
	}
	return m
}

// publish writes this replica's member znode on side when it changed (or
// every 10s), at most once per round: rate-limited by the loop's interval.
func (f *Fleet) publish(ctx context.Context, side cutover.Ensemble) {
	m := f.member()
	f.mu.Lock()
	unchanged := f.pubSide == side && sameExceptTime(m, f.published) && f.now().Sub(f.pubAt) < 10*time.Second
	f.mu.Unlock()
	if unchanged {
		return
	}
	b, _ := json.Marshal(m)
	base := f.cfg.Store.Path
	superseded, err := f.store.putMember(ctx, side, base+"/replicas/"+f.cfg.ReplicaID, b, func(existing []byte) bool {
		var other Member
		return json.Unmarshal(existing, &other) == nil && other.Incarnation > f.incarnation
	})
	if superseded {
		// A later process of this replica (an in-place upgrade) owns the
		// member znode; try again next round, in case it goes away (the
		// upgrade aborted and the new process was killed).
		f.log.Debug("fleet: a later process of this replica owns the member znode")
		return
	}
	if err == nil {
		err = f.store.put(ctx, side, base+"/registered/"+f.cfg.ReplicaID, []byte(f.cfg.AdminURL))
	}
	if err != nil {
		f.log.Warn("fleet: publishing the member znode", "err", err)
		return
	}
	f.mu.Lock()
	f.published, f.pubSide, f.pubAt = m, side, f.now()
	f.mu.Unlock()
}

// Ready is the fleet's part of /readyz: the state was read and understood
// within StaleAfter.
func (f *Fleet) Ready(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var fe *FormatError
	switch {
	case errors.As(f.readErr, &fe):
		return fe
	case !f.haveRead && f.readErr != nil:
		return fmt.Errorf("fleet: the state was never read, accepting no client: %w", f.readErr)
	case !f.haveRead:
		return errors.New("fleet: the state was never read")
	case f.now().Sub(f.lastRead) > f.cfg.StaleAfter:
		return fmt.Errorf("fleet: state last read %s ago (fleet-stale-after %s): %v", f.now().Sub(f.lastRead).Round(time.Millisecond), f.cfg.StaleAfter, f.readErr)
	}
	return nil
}

// Close stops applying the state and leaves the fleet cleanly: the member
// and registered znodes are deleted, so split --prepare does not wait for
// this replica.
func (f *Fleet) Close() {
	f.mu.Lock()
	handedOff := f.handedOff
	f.mu.Unlock()
	if handedOff {
		return
	}
	f.halt()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	f.store.remove(ctx, f.cfg.Store.Path+"/replicas/"+f.cfg.ReplicaID)
	f.store.remove(ctx, f.cfg.Store.Path+"/registered/"+f.cfg.ReplicaID)
	f.store.Close()
}

// Abandon stops without saying goodbye (tests: a replica killed): the
// member znode lives until its session expires, the registered one stays.
func (f *Fleet) Abandon() {
	f.halt()
	f.store.Close()
}

// HandOff stops applying the state and ends the fleet's sessions without
// deleting this replica's znodes: its successor in an in-place upgrade (same
// replica id) has taken the member znode over and keeps the registration.
// Close does nothing afterwards.
func (f *Fleet) HandOff() {
	f.halt()
	f.store.Close()
	f.mu.Lock()
	f.handedOff = true
	f.mu.Unlock()
}

func (f *Fleet) halt() {
	if f.stop != nil {
		f.stop()
		<-f.done
	}
	f.pending.Wait()
}

// IgnoredSessions are the ZooKeeper sessions of every live replica's fleet
// machinery, this one's included (cutover.Config.IgnoreSessions): the
// sync check must not count them as clients left out of the proxy.
func (f *Fleet) IgnoredSessions(ctx context.Context) []int64 {
	ids := f.store.SessionIDs()
	ro, err := f.store.roster(ctx, f.side(), f.cfg.Store.Path)
	if err != nil {
		return ids
	}
	for _, m := range ro.Live {
		for _, h := range m.FleetSessions {
			if id, err := strconv.ParseUint(strings.TrimPrefix(h, "0x"), 16, 64); err == nil {
				ids = append(ids, int64(id))
			}
		}
	}
	return ids
}
