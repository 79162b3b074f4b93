package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/zkproxy/zkproxy/cutover"
)

// ErrReplicasNotReady refuses split --prepare while a replica still has a
// session on a source member, has not finished its move, or vanished
// without saying it left (force goes on anyway).
var ErrReplicasNotReady = errors.New("fleet: not every replica is ready for the split")

// change reads the state afresh, computes the next one with build and
// writes it conditionally. ifEpoch > 0 is the epoch the operator saw: a
// different current epoch is a conflict. With no change (an idempotent
// action) nothing is written. The caller holds f.act.
func (f *Fleet) change(ctx context.Context, ifEpoch int64, build func(State) (State, bool, error)) (State, bool, error) {
	r, err := f.readForAction(ctx)
	if err != nil {
		return State{}, false, fmt.Errorf("fleet: reading the state: %w", err)
	}
	if !r.Exists {
		return State{}, false, fmt.Errorf("fleet: no state znode %s yet", f.store.StatePath())
	}
	if ifEpoch > 0 && r.State.Epoch != ifEpoch {
		f.countConflict()
		return r.State, false, fmt.Errorf("%w: epoch is %d, not %d (%s by %s at %s)", ErrConflict, r.State.Epoch, ifEpoch,
			r.State.Action, r.State.ChangedBy, r.State.ChangedAt.Format(time.RFC3339Nano))
	}
	next, changed, err := build(r.State)
	if err != nil || !changed {
		return r.State, false, err
	}
	w, err := f.store.Write(ctx, r, next, r.Side)
	if errors.Is(err, ErrConflict) {
		f.countConflict()
	}
	if err != nil {
		return r.State, false, err
	}
	f.mu.Lock()
	f.reading, f.lastRead = w, f.now()
	f.mu.Unlock()
	f.log.Info("fleet: state changed", "epoch", next.Epoch, "action", string(next.Action), "phase", next.Phase.String(), "split", next.Split)
	return next, true, nil
}

// readForAction reads the state for an operator's action. Neither ensemble
// answering is often a moment of the split (the destination restarting,
// the source re-electing behind the firewall): it asks again for up to
// actionReadWait before giving up.
func (f *Fleet) readForAction(ctx context.Context) (Reading, error) {
	deadline := f.now().Add(actionReadWait)
	for {
		r, err := f.store.Read(ctx)
		// The destination's copy missing from a read after the cutover
		// began is the same moment: it will answer again.
		destinationSilent := err == nil && r.Side == cutover.Source && r.State.Began() && len(f.cfg.Store.Destination) > 0
		if !errors.Is(err, ErrNoAnswer) && !destinationSilent || f.now().After(deadline) {
			return r, err
		}
		select {
		case <-ctx.Done():
			return r, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// actionReadWait bounds readForAction's retries: an election's length on a
// loaded machine.
const actionReadWait = 15 * time.Second

func (f *Fleet) transition(ctx context.Context, ifEpoch int64, ev cutover.Event) (State, error) {
	f.act.Lock()
	defer f.act.Unlock()
	st, changed, err := f.change(ctx, ifEpoch, func(s State) (State, bool, error) {
		return s.next(ev, f.cfg.ReplicaID, f.now())
	})
	if err == nil && changed {
		f.apply(ctx, st)
	}
	return st, err
}

// Start starts the cutover on every replica: this replica runs the sync
// check (unless force), records the start in the state znode, and applies
// it; the others apply it when they read it.
func (f *Fleet) Start(ctx context.Context, force bool, ifEpoch int64) (*cutover.Report, error) {
	rep := f.local.Check(ctx)
	if !rep.Ready && !force {
		return rep, fmt.Errorf("%w: %s", cutover.ErrNotReady, rep.Reason())
	}
	_, err := f.transition(ctx, ifEpoch, cutover.EventStart)
	return rep, err
}

// Abort stops the running move on every replica.
func (f *Fleet) Abort(ctx context.Context, ifEpoch int64) error {
	_, err := f.transition(ctx, ifEpoch, cutover.EventAbort)
	return err
}

// Rollback moves every replica's sessions back to the source.
func (f *Fleet) Rollback(ctx context.Context, ifEpoch int64) error {
	_, err := f.transition(ctx, ifEpoch, cutover.EventRollback)
	return err
}

// RecordSplit records the split for the whole fleet: from now on the
// destination's copy of the state is the one written.
func (f *Fleet) RecordSplit(ctx context.Context, ifEpoch int64) error {
	_, err := f.transition(ctx, ifEpoch, cutover.EventSplit)
	return err
}

// Hold holds the sessions on members (all: empty) on every replica.
func (f *Fleet) Hold(ctx context.Context, members []string) (cutover.BarrierStatus, error) {
	f.act.Lock()
	bs, err := f.local.Hold(ctx, members)
	if err != nil {
		f.act.Unlock()
		return bs, err
	}
	st, _, err := f.change(ctx, 0, func(s State) (State, bool, error) {
		n := s.bump(ActionHold, f.cfg.ReplicaID, f.now())
		n.HoldMembers = members
		return n, true, nil
	})
	if err != nil {
		f.local.ReleaseBarrier("the fleet state could not be changed")
		f.act.Unlock()
		return bs, err
	}
	f.markApplied(st.Epoch)
	f.act.Unlock()
	f.publish(ctx, f.side())
	// The operator restarts the member once this returns: every replica
	// must hold by then, or its sessions there would see the restart.
	if _, all, err := f.waitAllHold(ctx, st.Epoch); !all {
		_ = f.ReleaseBarrier(context.WithoutCancel(ctx))
		return bs, err
	}
	return bs, nil
}

// side is the ensemble whose copy won the last read.
func (f *Fleet) side() cutover.Ensemble {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reading.Side
}

// waitAllHold waits (up to SplitWait) until every live replica applied
// epoch and reports its barrier up. On failure it says which do not.
func (f *Fleet) waitAllHold(ctx context.Context, epoch int64) ([]Member, bool, error) {
	deadline := f.now().Add(f.cfg.SplitWait)
	for {
		ro, err := f.store.roster(ctx, f.side(), f.cfg.Store.Path)
		var missing []string
		if err != nil {
			missing = append(missing, "member znodes unreadable: "+err.Error())
		}
		for _, m := range ro.Live {
			if !m.BarrierUp || m.AppliedEpoch < epoch {
				missing = append(missing, m.ID)
			}
		}
		if err == nil && len(ro.Live) > 0 && len(missing) == 0 {
			return ro.Live, true, nil
		}
		if f.now().After(deadline) || ctx.Err() != nil {
			return ro.Live, false, fmt.Errorf("%w: not every live replica holds within %s (%s); released everywhere",
				ErrReplicasNotReady, f.cfg.SplitWait, strings.Join(missing, ", "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ReleaseBarrier lowers the split barrier or a hold on every replica.
func (f *Fleet) ReleaseBarrier(ctx context.Context) error {
	f.act.Lock()
	defer f.act.Unlock()
	st, _, err := f.change(ctx, 0, func(s State) (State, bool, error) {
		return s.bump(ActionRelease, f.cfg.ReplicaID, f.now()), true, nil
	})
	if err != nil {
		return err
	}
	f.apply(ctx, st)
	return nil
}

func (f *Fleet) markApplied(epoch int64) {
	f.mu.Lock()
	f.applied = max(f.applied, epoch)
	f.mu.Unlock()
}

// SplitPlan is split --prepare's answer for the fleet.
type SplitPlan struct {
	*cutover.SplitPlan
	// AllHold: every live replica holds its sessions; only then is the
	// barrier up for the fleet.
	AllHold  bool     `json:"all_hold"`
	Replicas []Member `json:"replicas"`
}

// PrepareSplit raises the split barrier on every replica. It refuses while
// the fleet's cutover is not finished, while a live replica still has a
// session on a source member, and (unless force) while a registered
// replica vanished without leaving. This replica raises its barrier first
// (running the pre-split checks), then records it in the state; it answers
// once every live replica holds.
func (f *Fleet) PrepareSplit(ctx context.Context, force bool) (*SplitPlan, error) {
	f.act.Lock()
	r, err := f.readForAction(ctx)
	if err != nil {
		f.act.Unlock()
		return nil, fmt.Errorf("fleet: reading the state: %w", err)
	}
	if r.State.Phase != cutover.PhaseDestination || r.State.Split {
		f.act.Unlock()
		return nil, &cutover.TransitionError{From: cutover.State{Phase: r.State.Phase, Split: r.State.Split}, Event: cutover.EventSplit,
			Reason: "the fleet's cutover must be finished on every replica, and no split recorded yet"}
	}
	ro, err := f.store.roster(ctx, r.Side, f.cfg.Store.Path)
	if err != nil {
		f.act.Unlock()
		return nil, fmt.Errorf("fleet: reading the member znodes: %w", err)
	}
	var onSource, vanished []string
	for _, m := range ro.Live {
		if m.Sessions.Source > 0 || m.Phase != cutover.PhaseDestination {
			onSource = append(onSource, fmt.Sprintf("%s (%d sessions on source members, phase %s)", m.ID, m.Sessions.Source, m.Phase))
		}
	}
	if len(onSource) > 0 {
		f.act.Unlock()
		return nil, fmt.Errorf("%w: replicas still on the source: %s", ErrReplicasNotReady, strings.Join(onSource, ", "))
	}
	vanished = ro.Vanished
	if len(vanished) > 0 && !force {
		f.act.Unlock()
		return nil, fmt.Errorf("%w: registered replicas vanished without leaving (down or cut off; their brokers may still be on the source): %s; bring them back or go on with force",
			ErrReplicasNotReady, strings.Join(vanished, ", "))
	}
	plan, err := f.local.PrepareSplit(ctx, force)
	if err != nil {
		f.act.Unlock()
		return &SplitPlan{SplitPlan: plan}, err
	}
	st, _, err := f.change(ctx, 0, func(s State) (State, bool, error) {
		return s.bump(ActionPrepareSplit, f.cfg.ReplicaID, f.now()), true, nil
	})
	if err != nil {
		f.local.ReleaseBarrier("the fleet state could not be changed")
		f.act.Unlock()
		return &SplitPlan{SplitPlan: plan}, err
	}
	f.markApplied(st.Epoch)
	f.act.Unlock()
	f.publish(ctx, r.Side)

	out := &SplitPlan{SplitPlan: plan}
	live, all, err := f.waitAllHold(ctx, st.Epoch)
	out.Replicas, out.AllHold = live, all
	if !all {
		_ = f.ReleaseBarrier(context.WithoutCancel(ctx))
		return out, err
	}
	plan.Message = fmt.Sprintf("barrier up on all %d replicas: apply the firewall now", len(live))
	return out, nil
}

// View is the fleet part of GET /cutover.
type View struct {
	Name       string `json:"name"`
	Replica    string `json:"replica"`
	StateZnode string `json:"state_znode"`
	// State is the state as last read, from Ensemble.
	State    State            `json:"state"`
	Ensemble cutover.Ensemble `json:"ensemble"`
	Roster
	Totals    Totals    `json:"totals"`
	LastRead  time.Time `json:"last_read,omitzero"`
	ReadError string    `json:"read_error,omitempty"`
}

// Totals add up the live replicas.
type Totals struct {
	Replicas int           `json:"replicas"`
	Sessions SessionCounts `json:"sessions"`
	Moved    int           `json:"moved"`
	Failed   int           `json:"failed"`
	Pending  int           `json:"pending"`
	Held     int           `json:"held"`
	// BarrierUp: every live replica holds.
	BarrierUp bool `json:"barrier_up"`
}

// Status is the whole fleet as this replica sees it.
func (f *Fleet) Status(ctx context.Context) View {
	f.mu.Lock()
	v := View{Name: f.cfg.Name, Replica: f.cfg.ReplicaID, StateZnode: f.store.StatePath(), State: f.reading.State, Ensemble: f.reading.Side, LastRead: f.lastRead}
	if f.readErr != nil {
		v.ReadError = f.readErr.Error()
	}
	side := f.reading.Side
	f.mu.Unlock()
	ro, err := f.store.roster(ctx, side, f.cfg.Store.Path)
	if err != nil {
		v.Problems = append(v.Problems, "reading the member znodes: "+err.Error())
	}
	v.Live, v.Vanished = ro.Live, ro.Vanished
	v.Problems = append(v.Problems, ro.Problems...)
	v.Totals.BarrierUp = len(ro.Live) > 0
	for _, m := range ro.Live {
		v.Totals.Replicas++
		v.Totals.Sessions.Source += m.Sessions.Source
		v.Totals.Sessions.Destination += m.Sessions.Destination
		v.Totals.Moved += m.Moved
		v.Totals.Failed += m.Failed
		v.Totals.Pending += m.Pending
		v.Totals.Held += m.Held
		v.Totals.BarrierUp = v.Totals.BarrierUp && m.BarrierUp
	}
	return v
}

func (f *Fleet) countConflict() {
	if f.cfg.Metrics != nil {
		f.cfg.Metrics.conflicts.Inc()
	}
}
