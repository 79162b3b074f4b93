package zktest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Mitosis drives the Yelp "ZooKeeper mitosis" procedure
// (docs/mitosis.md) on real servers: a 3-node source
// ensemble (myids 1-3) is joined by two empty destination nodes (4, 5) into a
// 5-node joint ensemble, which is later split by firewall into the source
// {1,2,3} and the destination {4,5,6}; node 6 stays dormant until the split.
//
// The split is exposed step by step (Firewall, RestartDestination,
// RestartSource, RemoveFirewall) so tests can act between steps; Split runs
// them all. Each step records when it happened (Timeline).
type Mitosis struct {
	// Source is {1,2,3}, Destination is {4,5,6}.
	Source, Destination *Ensemble

	t  TB
	mu sync.Mutex
	fw *Firewall
	tl Timeline
}

// Timeline records when the steps of a mitosis happened (zero = not yet).
type Timeline struct {
	Joined time.Time // joint ensemble of 5 serving, rolling restart done
	// FirewallUp is when the REJECT rules were installed: from here on the
	// destination members cannot reach a quorum in the joint ensemble.
	FirewallUp time.Time
	// DestinationStopped: the destination members of the joint ensemble exited.
	DestinationStopped time.Time
	// DestinationLeader: first destination member serving after its restart
	// (a follower serves only after syncing with an elected leader).
	DestinationLeader time.Time
	// DestinationServing: every destination member (incl. the formerly
	// dormant one) serving.
	DestinationServing time.Time
	SourceRestarted    time.Time // source rolling restart onto {1,2,3} done
	FirewallDown       time.Time
}

// DestinationUnavailable is how long the destination could not serve any
// client during the split: from the firewall going up until the first
// destination member served again. This is the window zkproxy must hide.
func (tl Timeline) DestinationUnavailable() time.Duration {
	if tl.FirewallUp.IsZero() || tl.DestinationLeader.IsZero() {
		return 0
	}
	return tl.DestinationLeader.Sub(tl.FirewallUp)
}

// NewMitosis starts the 3-node source ensemble (myids 1-3) and reserves
// addresses and data directories for the destination (myids 4-6), which is
// not started. opts apply to all six servers.
func NewMitosis(t TB, opts ...Option) *Mitosis {
	t.Helper()
	RequireIntegration(t)
	m := &Mitosis{t: t, Source: newServers(t, 1, 3, opts), Destination: newServers(t, 4, 3, opts)}
	m.Source.SetPeers(m.Source.Members)
	m.Destination.SetPeers(m.Destination.Members)
	ctx, cancel := context.WithTimeout(context.Background(), DefaultServingTimeout)
	defer cancel()
	if err := m.Source.Start(ctx); err != nil {
		t.Fatalf("zktest: mitosis: start source: %v", err)
	}
	return m
}

// Joint returns the 5-node joint ensemble {1,2,3,4,5}.
func (m *Mitosis) Joint() *Ensemble {
	return &Ensemble{Members: append(slices.Clone(m.Source.Members), m.Destination.Members[:2]...)}
}

// Dormant returns node 6, the destination node that stays out of the joint
// ensemble and first starts (empty) at the split.
func (m *Mitosis) Dormant() *Server { return m.Destination.Members[2] }

// Timeline returns the recorded step times.
func (m *Mitosis) Timeline() Timeline {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tl
}

func (m *Mitosis) mark(f func(*Timeline)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(&m.tl)
}

// Join performs stage one: it starts destination nodes 4 and 5 (empty) with
// the 5-node joint configuration, waits until they have synced from the
// source's leader, then rolling-restarts the source members onto the joint
// configuration, one at a time and the leader last, waiting for each to serve
// again, so the source never loses quorum. It returns the joint leader, which
// with equal zxids is usually a destination node (FastLeaderElection breaks
// ties by the highest myid): callers must not assume either way.
func (m *Mitosis) Join(ctx context.Context) (*Server, error) {
	return m.JoinAround(ctx, nil)
}

// JoinAround is Join with around wrapped around each source member's
// restart (see AroundRestart).
func (m *Mitosis) JoinAround(ctx context.Context, around AroundRestart) (*Server, error) {
	joint := m.Joint()
	for _, s := range joint.Members[3:] {
		if err := s.RestartWith(joint.Members); err != nil {
			return nil, fmt.Errorf("mitosis join: %w", err)
		}
	}
	// The source leader (3-node view) lets 4 and 5 follow it: FastLeaderElection
	// answers non-voters with its current vote, and the leader syncs any
	// learner (LearnerHandler), counting only its configured voters for quorum.
	for _, s := range joint.Members[3:] {
		if err := s.WaitServing(ctx); err != nil {
			return nil, fmt.Errorf("mitosis join: %w", err)
		}
	}
	leader, err := m.Source.RollingRestartAround(ctx, joint.Members, around)
	if err != nil {
		return nil, fmt.Errorf("mitosis join: %w", err)
	}
	if err := joint.WaitServing(ctx); err != nil {
		return nil, fmt.Errorf("mitosis join: %w", err)
	}
	m.mark(func(tl *Timeline) { tl.Joined = time.Now() })
	return leader, nil
}

// LeadFromSource makes a source member lead the joint ensemble, so that the
// split does not cost the source an election (an election drops every client
// connection on the source's followers, docs/protocol.md §5.6). If a
// destination node leads, it stops nodes 4 and 5, waits for the source
// members (3 of 5, still a quorum) to elect one of themselves, and starts 4
// and 5 again. It returns the joint leader.
func (m *Mitosis) LeadFromSource(ctx context.Context) (*Server, error) {
	joint := m.Joint()
	leader, err := joint.WaitLeader(ctx)
	if err != nil {
		return nil, fmt.Errorf("mitosis: lead from source: %w", err)
	}
	if leader.ID <= 3 {
		return leader, nil
	}
	dst := &Ensemble{Members: joint.Members[3:]}
	if err := dst.Stop(); err != nil {
		return nil, fmt.Errorf("mitosis: lead from source: %w", err)
	}
	if _, err := m.Source.WaitLeader(ctx); err != nil {
		return nil, fmt.Errorf("mitosis: lead from source: %w", err)
	}
	for _, s := range dst.Members {
		if err := s.Start(); err != nil {
			return nil, fmt.Errorf("mitosis: lead from source: %w", err)
		}
	}
	if err := joint.WaitServing(ctx); err != nil {
		return nil, fmt.Errorf("mitosis: lead from source: %w", err)
	}
	return joint.WaitLeader(ctx)
}

// Firewall is split step 1: it waits until the joint ensemble is in sync
// (same zxid everywhere: quiesce writes first), then installs REJECT rules
// between the destination and source addresses in both directions.
func (m *Mitosis) Firewall(ctx context.Context) error {
	if err := m.Joint().WaitInSync(ctx); err != nil {
		return fmt.Errorf("mitosis firewall: %w", err)
	}
	fw, err := Partition(m.t, m.Source.IPs(), m.Destination.IPs())
	if err != nil {
		return fmt.Errorf("mitosis firewall: %w", err)
	}
	m.mu.Lock()
	m.fw = fw
	m.tl.FirewallUp = time.Now()
	m.mu.Unlock()
	return nil
}

// RestartDestination is split step 2: it stops destination nodes 4 and 5 and
// starts all three destination nodes (6 for the first time, empty) with the
// destination's own 3-node configuration, then waits until all serve. It
// returns the destination leader.
func (m *Mitosis) RestartDestination(ctx context.Context) (*Server, error) {
	dst := m.Destination
	if err := dst.Stop(); err != nil {
		return nil, fmt.Errorf("mitosis restart destination: %w", err)
	}
	m.mark(func(tl *Timeline) { tl.DestinationStopped = time.Now() })
	dst.SetPeers(dst.Members)
	for _, s := range dst.Members {
		if err := s.Start(); err != nil {
			return nil, fmt.Errorf("mitosis restart destination: %w", err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(dst.Members))
	for i, s := range dst.Members {
		wg.Go(func() {
			if errs[i] = s.WaitServing(ctx); errs[i] == nil {
				m.mark(func(tl *Timeline) {
					if tl.DestinationLeader.IsZero() {
						tl.DestinationLeader = time.Now()
					}
				})
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("mitosis restart destination: %w", err)
		}
	}
	m.mark(func(tl *Timeline) { tl.DestinationServing = time.Now() })
	return dst.WaitLeader(ctx)
}

// RestartSource is split step 3: it rolling-restarts the source members onto
// their original 3-node configuration (the leader last) and returns the
// source leader.
func (m *Mitosis) RestartSource(ctx context.Context) (*Server, error) {
	leader, err := m.Source.RollingRestart(ctx, m.Source.Members)
	if err != nil {
		return nil, fmt.Errorf("mitosis restart source: %w", err)
	}
	m.mark(func(tl *Timeline) { tl.SourceRestarted = time.Now() })
	return leader, nil
}

// RemoveFirewall is split step 4: it removes the REJECT rules. The clusters
// no longer list each other, so they stay apart.
func (m *Mitosis) RemoveFirewall() error {
	m.mu.Lock()
	fw := m.fw
	m.mu.Unlock()
	if fw == nil {
		return nil
	}
	if err := fw.Remove(); err != nil {
		return fmt.Errorf("mitosis: %w", err)
	}
	m.mark(func(tl *Timeline) { tl.FirewallDown = time.Now() })
	return nil
}

// FirewallActive reports whether the split's rules are installed.
func (m *Mitosis) FirewallActive() bool {
	m.mu.Lock()
	fw := m.fw
	m.mu.Unlock()
	return fw != nil && fw.Active()
}

// Split runs the four split steps in order and returns the destination and
// source leaders.
func (m *Mitosis) Split(ctx context.Context) (dstLeader, srcLeader *Server, err error) {
	if err := m.Firewall(ctx); err != nil {
		return nil, nil, err
	}
	if dstLeader, err = m.RestartDestination(ctx); err != nil {
		return nil, nil, err
	}
	if srcLeader, err = m.RestartSource(ctx); err != nil {
		return nil, nil, err
	}
	if err := m.RemoveFirewall(); err != nil {
		return nil, nil, err
	}
	return dstLeader, srcLeader, nil
}
