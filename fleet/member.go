package fleet

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"time"

	"github.com/zkproxy/zkproxy/cutover"
)

// Member is the content of a replica's ephemeral member znode
// (<path>/replicas/<id>): what every other replica needs to know of it.
// It lists counts only, never a session id (an id is a credential,
// docs/admin-api.md).
type Member struct {
	ID string `json:"id"`
	// Incarnation is when this process of the replica started (Unix ns):
	// during an in-place upgrade two processes of one replica run at once,
	// and the later one owns the member znode (Store.putMember).
	Incarnation int64  `json:"incarnation,omitempty"`
	AdminURL    string `json:"admin_url,omitempty"`
	Version     string `json:"version,omitempty"`
	// Phase and Split are the replica's local controller's.
	Phase cutover.Phase `json:"phase"`
	Split bool          `json:"split"`
	// AppliedEpoch is the last fleet epoch the replica applied.
	AppliedEpoch int64 `json:"applied_epoch"`
	// Sessions counts the replica's sessions by the ensemble they are on.
	Sessions SessionCounts `json:"sessions"`
	// Moved, Failed and Pending are the progress of its current or last
	// move.
	Moved   int `json:"moved"`
	Failed  int `json:"failed"`
	Pending int `json:"pending"`
	// BarrierUp and Held: its split barrier or hold.
	BarrierUp bool `json:"barrier_up"`
	Held      int  `json:"held"`
	// FleetSessions are the replica's own ZooKeeper sessions (hex), so
	// that the sync check of every replica counts them neither as proxied
	// nor as clients left out (cutover.CheckConfig.IgnoreSessions). They
	// grant nothing a world reader lacks: digest authentication belongs
	// to a connection, not to a session.
	FleetSessions []string `json:"fleet_sessions,omitempty"`
	// Ready and NotReady: its readiness (fleet state fresh and readable).
	Ready     bool      `json:"ready"`
	NotReady  string    `json:"not_ready,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// SessionCounts counts sessions by ensemble.
type SessionCounts struct {
	Source      int `json:"source"`
	Destination int `json:"destination"`
}

// sameExceptTime compares two members' content, ignoring UpdatedAt, so an
// unchanged replica does not rewrite its znode every round.
func sameExceptTime(a, b Member) bool {
	a.UpdatedAt, b.UpdatedAt = time.Time{}, time.Time{}
	if !slices.Equal(a.FleetSessions, b.FleetSessions) {
		return false
	}
	a.FleetSessions, b.FleetSessions = nil, nil
	return reflect.DeepEqual(a, b)
}

// Roster is what the member znodes say about the fleet.
type Roster struct {
	// Live replicas, by id: their ephemeral znode exists.
	Live []Member `json:"replicas"`
	// Vanished replicas registered but without a live member znode: they
	// died (or were cut off) without saying they left.
	Vanished []string `json:"vanished,omitempty"`
	// Problems reading member znodes.
	Problems []string `json:"problems,omitempty"`
}

func (s *Store) roster(ctx context.Context, side cutover.Ensemble, path string) (Roster, error) {
	var r Roster
	live, err := s.children(ctx, side, path+"/replicas")
	if err != nil {
		return r, err
	}
	registered, err := s.children(ctx, side, path+"/registered")
	if err != nil {
		return r, err
	}
	for id, b := range live {
		var m Member
		if err := json.Unmarshal(b, &m); err != nil {
			r.Problems = append(r.Problems, "member znode "+path+"/replicas/"+id+": "+err.Error())
			continue
		}
		m.ID = id
		r.Live = append(r.Live, m)
	}
	for id := range registered {
		if _, ok := live[id]; !ok {
			r.Vanished = append(r.Vanished, id)
		}
	}
	slices.SortFunc(r.Live, func(a, b Member) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	slices.Sort(r.Vanished)
	return r, nil
}
