// Package fleet keeps the cutover state of several zkproxy replicas in
// ZooKeeper itself, so that every replica in front of one Kafka cluster
// routes its sessions to the same ensemble (docs/fleet.md).
//
// The state znode (<path>/state) holds the operator's intent: the phase,
// whether the split is recorded, and an epoch that grows with every change.
// It changes only by a conditional setData carrying the version that was
// read, so of two operators acting at once on two replicas exactly one wins
// (ZooKeeper's setData fails with BadVersion when the znode's version is not
// the expected one; docs/protocol.md). Every replica re-reads it (a data
// watch wakes it early) and applies each new epoch to its own sessions
// through the cutover controller.
package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/zkproxy/zkproxy/cutover"
)

// FormatVersion is the version of the state znode's JSON this build writes
// and the only one it reads: a replica that meets another refuses to guess.
const FormatVersion = 1

// Action names what the last change of the state did; replicas apply an
// action once, when they first see its epoch.
type Action string

const (
	ActionInit         Action = "init"
	ActionStart        Action = "start"
	ActionAbort        Action = "abort"
	ActionRollback     Action = "rollback"
	ActionMovesDone    Action = "moves_done"
	ActionHold         Action = "hold"
	ActionRelease      Action = "release"
	ActionPrepareSplit Action = "prepare_split"
	ActionSplit        Action = "split"
)

// State is the content of the state znode.
type State struct {
	Format int           `json:"format"`
	Phase  cutover.Phase `json:"phase"`
	// Epoch grows by one with every change; the read rule compares it
	// across the two ensembles' copies (Read).
	Epoch       int64     `json:"epoch"`
	Split       bool      `json:"split"`
	Destination []string  `json:"destination"`
	Action      Action    `json:"action"`
	HoldMembers []string  `json:"hold_members,omitempty"`
	ChangedBy   string    `json:"changed_by"`
	ChangedAt   time.Time `json:"changed_at"`
	// StartedEpoch is the epoch of the first start of the cutover: from
	// it on no replica connects a session to a source member (fencing).
	StartedEpoch int64     `json:"started_epoch,omitempty"`
	StartedAt    time.Time `json:"started_at,omitzero"`
	FinishedAt   time.Time `json:"finished_at,omitzero"`
	SplitAt      time.Time `json:"split_at,omitzero"`
}

// FormatError is a state znode this build cannot read: garbage or an
// unknown format version. The replica reports not ready and writes nothing.
type FormatError struct {
	Path string
	Side cutover.Ensemble
	Err  error
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("fleet: state znode %s on the %s ensemble is unreadable (fix it, or delete it with every replica stopped; zkproxy refuses to guess or overwrite it): %v", e.Path, e.Side, e.Err)
}

func (e *FormatError) Unwrap() error { return e.Err }

// decodeState parses a state znode's data.
func decodeState(b []byte) (State, error) {
	var probe struct {
		Format *int `json:"format"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return State{}, fmt.Errorf("not JSON: %w", err)
	}
	if probe.Format == nil {
		return State{}, errors.New("no format version")
	}
	if *probe.Format != FormatVersion {
		return State{}, fmt.Errorf("format version %d, this zkproxy reads only %d", *probe.Format, FormatVersion)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return State{}, fmt.Errorf("bad content: %w", err)
	}
	if st.Epoch < 0 {
		return State{}, fmt.Errorf("negative epoch %d", st.Epoch)
	}
	return st, nil
}

func encodeState(st State) ([]byte, error) {
	st.Format = FormatVersion
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("fleet: encoding state: %w", err)
	}
	return b, nil
}

// Began reports whether the cutover began: new and re-attaching sessions
// must then go to the destination whatever a replica's data-dir says.
func (s State) Began() bool { return s.Split || s.Phase.Target() == cutover.Destination }

// Local is the controller state a replica adopts from the fleet state when
// it starts, before it accepts a client: a replica that starts has no
// sessions, so a cutover under way is complete for it (cutover.Restored).
func (s State) Local(now time.Time) cutover.State {
	st := cutover.State{Phase: s.Phase, Split: s.Split, StartedAt: s.StartedAt, FinishedAt: s.FinishedAt, SplitAt: s.SplitAt, UpdatedAt: now}
	if r, changed := cutover.Restored(st, now); changed {
		st = r
	}
	return st
}

// next is the fleet's transition: the cutover phase machine (cutover.Next)
// on the fleet's phase, with the epoch bumped and the author recorded.
func (s State) next(ev cutover.Event, by string, now time.Time) (State, bool, error) {
	cs := cutover.State{Phase: s.Phase, Split: s.Split, StartedAt: s.StartedAt, FinishedAt: s.FinishedAt, SplitAt: s.SplitAt}
	n, changed, err := cutover.Next(cs, ev, now)
	if err != nil || !changed {
		return s, changed, err
	}
	out := s
	out.Phase, out.Split, out.StartedAt, out.FinishedAt, out.SplitAt = n.Phase, n.Split, n.StartedAt, n.FinishedAt, n.SplitAt
	if ev == cutover.EventStart && out.StartedEpoch == 0 {
		out.StartedEpoch = s.Epoch + 1
	}
	return out.bump(actionOf(ev), by, now), true, nil
}

// bump is s with the epoch advanced and the change recorded.
func (s State) bump(a Action, by string, now time.Time) State {
	s.Epoch++
	s.Action, s.ChangedBy, s.ChangedAt = a, by, now
	s.HoldMembers = nil
	s.Destination = slices.Clone(s.Destination)
	return s
}

func actionOf(ev cutover.Event) Action {
	switch ev {
	case cutover.EventStart:
		return ActionStart
	case cutover.EventAbort:
		return ActionAbort
	case cutover.EventRollback:
		return ActionRollback
	case cutover.EventMovesDone:
		return ActionMovesDone
	case cutover.EventSplit:
		return ActionSplit
	}
	return Action(ev.String())
}
