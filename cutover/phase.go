// Package cutover decides when the destination ensemble is in sync with the
// source (mitosis) and moves every proxied session to it. The phase machine
// in this file does no I/O: Next computes transitions, the Controller
// performs their side effects through small interfaces.
package cutover

import (
	"encoding/json"
	"fmt"
	"time"
)

// Phase is where zkproxy is in a migration.
type Phase int

const (
	// PhaseSource: every session and every new connection uses the source.
	PhaseSource Phase = iota
	// PhaseCuttingOver: sessions are being moved; new connections go to the
	// destination.
	PhaseCuttingOver
	// PhaseDestination: every session has been moved (or fell back to a
	// reconnect); new connections go to the destination.
	PhaseDestination
	// PhaseAborted: an operator stopped a cutover. Moved sessions stay moved,
	// the rest stay on the source; new connections go to the destination, so
	// no tenant gains sessions on the side it is leaving. Start resumes,
	// Rollback returns.
	PhaseAborted
	// PhaseRollingBack: moved sessions are being moved back to the source;
	// new connections go to the source.
	PhaseRollingBack
)

var phaseNames = [...]string{"source", "cutting_over", "destination", "aborted", "rolling_back"}

func (p Phase) String() string {
	if p >= 0 && int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return fmt.Sprintf("phase(%d)", int(p))
}

// ParsePhase is the inverse of String.
func ParsePhase(s string) (Phase, error) {
	for i, n := range phaseNames {
		if n == s {
			return Phase(i), nil
		}
	}
	return 0, fmt.Errorf("cutover: unknown phase %q", s)
}

func (p Phase) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

func (p *Phase) UnmarshalText(b []byte) error {
	v, err := ParsePhase(string(b))
	*p = v
	return err
}

// Ensemble names one side of the migration.
type Ensemble string

const (
	Source      Ensemble = "source"
	Destination Ensemble = "destination"
)

// Target is the ensemble new client connections are routed to in phase p.
func (p Phase) Target() Ensemble {
	switch p {
	case PhaseSource, PhaseRollingBack:
		return Source
	default:
		return Destination
	}
}

// State is the persisted migration state.
type State struct {
	Phase Phase `json:"phase"`
	// Split records that the operator split the joint ensemble: the source
	// is gone for good and rollback is refused.
	Split      bool      `json:"split"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	SplitAt    time.Time `json:"split_at,omitzero"`
	UpdatedAt  time.Time `json:"updated_at,omitzero"`
}

// Event is what happened: an operator action or the end of a move.
type Event int

const (
	EventStart     Event = iota // operator: start (or resume) the cutover
	EventMovesDone              // every session reached the target ensemble
	EventAbort                  // operator: stop moving sessions
	EventRollback               // operator: move sessions back to the source
	EventSplit                  // operator: the joint ensemble has been split
)

var eventNames = [...]string{"start", "moves_done", "abort", "rollback", "split"}

func (e Event) String() string {
	if e >= 0 && int(e) < len(eventNames) {
		return eventNames[e]
	}
	return fmt.Sprintf("event(%d)", int(e))
}

// TransitionError explains why an event is not allowed in a state.
type TransitionError struct {
	From   State
	Event  Event
	Reason string
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("cutover: %s not allowed in phase %s: %s", e.Event, e.From.Phase, e.Reason)
}

// Next is the one transition function. It returns the new state, whether
// anything changed (Start during a running cutover is idempotent), or why the
// event is refused.
func Next(s State, ev Event, now time.Time) (State, bool, error) {
	refuse := func(reason string) (State, bool, error) {
		return s, false, &TransitionError{From: s, Event: ev, Reason: reason}
	}
	n := s
	switch ev {
	case EventStart:
		switch s.Phase {
		case PhaseSource, PhaseAborted:
			n.Phase = PhaseCuttingOver
			if s.Phase == PhaseSource {
				n.StartedAt, n.FinishedAt = now, time.Time{}
			}
		case PhaseCuttingOver, PhaseDestination:
			return s, false, nil // idempotent
		case PhaseRollingBack:
			return refuse("a rollback is running; abort it first")
		}
	case EventMovesDone:
		switch s.Phase {
		case PhaseCuttingOver:
			n.Phase, n.FinishedAt = PhaseDestination, now
		case PhaseRollingBack:
			n.Phase, n.FinishedAt = PhaseSource, now
		default:
			return refuse("no move is running")
		}
	case EventAbort:
		switch s.Phase {
		case PhaseCuttingOver, PhaseRollingBack:
			n.Phase = PhaseAborted
		default:
			return refuse("no move is running")
		}
	case EventRollback:
		if s.Split {
			return refuse("the joint ensemble was split at " + s.SplitAt.Format(time.RFC3339) + "; the source is gone for good")
		}
		switch s.Phase {
		case PhaseCuttingOver, PhaseAborted, PhaseDestination:
			n.Phase = PhaseRollingBack
		case PhaseRollingBack:
			return s, false, nil
		case PhaseSource:
			return refuse("every session is already on the source")
		}
	case EventSplit:
		if s.Split {
			return s, false, nil
		}
		if s.Phase != PhaseDestination {
			return refuse("every session must be on the destination before the split (finish the cutover first)")
		}
		n.Split, n.SplitAt = true, now
	default:
		return refuse("unknown event")
	}
	n.UpdatedAt = now
	return n, true, nil
}

// Restored is the state a restarted zkproxy resumes in. A restart drops every
// client connection, and clients reconnect to wherever new connections are
// routed, so a move that was running is complete once they are back:
// cutting_over and aborted (both route to the destination) become
// destination, rolling_back becomes source.
func Restored(s State, now time.Time) (State, bool) {
	switch s.Phase {
	case PhaseCuttingOver, PhaseAborted:
		s.Phase, s.FinishedAt, s.UpdatedAt = PhaseDestination, now, now
		return s, true
	case PhaseRollingBack:
		s.Phase, s.FinishedAt, s.UpdatedAt = PhaseSource, now, now
		return s, true
	}
	return s, false
}

// String renders the state for logs.
func (s State) String() string {
	b, _ := json.Marshal(s)
	return string(b)
}
