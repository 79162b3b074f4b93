package zktest

import (
	"context"
	"errors"
	"fmt"
	"github.com/zkproxy/zkproxy/internal/zksession"
	"strings"
	"sync"
	"time"

	"github.com/zkproxy/zkproxy/internal/fourlw"
)

// Ensemble is a group of servers that (currently) form one ZooKeeper
// ensemble. Members is in myid order.
type Ensemble struct {
	Members []*Server
}

// NewEnsemble starts an n-node ensemble with myids 1..n, each member on its
// own loopback address, and waits (DefaultServingTimeout) until every member
// serves.
func NewEnsemble(t TB, n int, opts ...Option) *Ensemble {
	t.Helper()
	RequireIntegration(t)
	e := newServers(t, 1, n, opts)
	e.SetPeers(e.Members)
	ctx, cancel := context.WithTimeout(context.Background(), DefaultServingTimeout)
	defer cancel()
	if err := e.Start(ctx); err != nil {
		t.Fatalf("zktest: %v", err)
	}
	return e
}

// newServers creates (does not start) n servers with myids firstID...
func newServers(t TB, firstID, n int, opts []Option) *Ensemble {
	t.Helper()
	e := &Ensemble{}
	for i := range n {
		e.Members = append(e.Members, newServer(t, firstID+i, opts))
	}
	return e
}

// ConnectString returns "ip:2181,ip:2181,..." for all members.
func (e *Ensemble) ConnectString() string {
	addrs := make([]string, len(e.Members))
	for i, s := range e.Members {
		addrs[i] = s.ClientAddr()
	}
	return strings.Join(addrs, ",")
}

// IPs returns the members' loopback addresses.
func (e *Ensemble) IPs() []string {
	ips := make([]string, len(e.Members))
	for i, s := range e.Members {
		ips[i] = s.IP
	}
	return ips
}

// Member returns the member with the given myid, or nil.
func (e *Ensemble) Member(id int) *Server {
	for _, s := range e.Members {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// SetPeers sets every member's membership (see Server.SetPeers) without
// restarting anything.
func (e *Ensemble) SetPeers(peers []*Server) {
	for _, s := range e.Members {
		s.SetPeers(peers)
	}
}

// Start starts every member at once and waits until all serve.
func (e *Ensemble) Start(ctx context.Context) error {
	for _, s := range e.Members {
		if err := s.Start(); err != nil {
			return err
		}
	}
	return e.WaitServing(ctx)
}

// Stop stops every member at once (SIGTERM).
func (e *Ensemble) Stop() error {
	return e.each(func(s *Server) error { return s.Stop() })
}

// Kill kills every member at once (SIGKILL).
func (e *Ensemble) Kill() error {
	return e.each(func(s *Server) error { return s.Kill() })
}

func (e *Ensemble) each(f func(*Server) error) error {
	var wg sync.WaitGroup
	errs := make([]error, len(e.Members))
	for i, s := range e.Members {
		wg.Go(func() { errs[i] = f(s) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// WaitServing waits until every member serves.
func (e *Ensemble) WaitServing(ctx context.Context) error {
	return e.each(func(s *Server) error { return s.WaitServing(ctx) })
}

// Status is one member's srvr answer (or the error getting it).
type Status struct {
	Server *Server
	Srvr   fourlw.Srvr
	Err    error
}

// Status asks every member for srvr, concurrently.
func (e *Ensemble) Status() []Status {
	st := make([]Status, len(e.Members))
	var wg sync.WaitGroup
	for i, s := range e.Members {
		wg.Go(func() {
			st[i].Server = s
			st[i].Srvr, st[i].Err = s.Srvr()
		})
	}
	wg.Wait()
	return st
}

// Leader returns the member whose srvr reports Mode: leader. It is an error
// if none or more than one member leads (for example during an election).
func (e *Ensemble) Leader() (*Server, error) {
	var leaders []*Server
	for _, st := range e.Status() {
		if st.Err == nil && st.Srvr.Mode == "leader" {
			leaders = append(leaders, st.Server)
		}
	}
	switch len(leaders) {
	case 1:
		return leaders[0], nil
	case 0:
		return nil, fmt.Errorf("no leader among %v", e.Members)
	default:
		return nil, fmt.Errorf("several leaders among %v: %v", e.Members, leaders)
	}
}

// WaitLeader waits until exactly one member leads and returns it.
func (e *Ensemble) WaitLeader(ctx context.Context) (*Server, error) {
	for {
		l, err := e.Leader()
		if err == nil {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for leader: %w (last: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// WaitInSync waits until every member serves, exactly one leads, and all
// report the same Zxid in srvr: the "mitosis sync" check of docs/protocol.md §7.2.
// Call it with writes quiesced; under a steady write load the zxids may never
// be observed equal.
func (e *Ensemble) WaitInSync(ctx context.Context) error {
	var lastNudge time.Time
	for {
		leader, err := e.inSync()
		if err == nil {
			return nil
		}
		// Srvr's Zxid is the last *processed* zxid. A new leader reports its new
		// epoch's first zxid (counter 0) before any transaction commits in
		// it, while its followers keep reporting the last transaction they
		// applied, or even the zxid they were synced at; with no writes the
		// numbers never meet. One session created and closed on the leader
		// commits two transactions that every member applies, so zxids agree
		// without touching the data tree.
		if leader != nil && time.Since(lastNudge) > time.Second {
			if st, err := leader.Srvr(); err == nil && uint32(st.Zxid) == 0 {
				lastNudge = time.Now()
				if err := nudge(ctx, leader); err != nil {
					return fmt.Errorf("wait for %v in sync: %w", e.Members, err)
				}
				continue
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %v in sync: %w (last: %v)", e.Members, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// nudge commits two transactions (createSession, closeSession) through s.
func nudge(ctx context.Context, s *Server) error {
	if _, err := zksession.OpenClose(ctx, nil, s.ClientAddr()); err != nil {
		return fmt.Errorf("nudge %v: %w", s, err)
	}
	return nil
}

// inSync returns nil when in sync, otherwise why not and the leader if there
// is exactly one.
func (e *Ensemble) inSync() (*Server, error) {
	var leaders []*Server
	var problem error
	var zxid int64
	for i, st := range e.Status() {
		switch {
		case st.Err != nil:
			problem = fmt.Errorf("%v: %w", st.Server, st.Err)
			continue
		case !st.Srvr.Serving():
			problem = fmt.Errorf("%v: mode %s", st.Server, st.Srvr.Mode)
			continue
		case st.Srvr.Mode == "leader":
			leaders = append(leaders, st.Server)
		}
		if i == 0 {
			zxid = st.Srvr.Zxid
		} else if st.Srvr.Zxid != zxid && problem == nil {
			problem = fmt.Errorf("%v at zxid 0x%x, %v at 0x%x", e.Members[0], zxid, st.Server, st.Srvr.Zxid)
		}
	}
	var leader *Server
	if len(leaders) == 1 {
		leader = leaders[0]
	} else if problem == nil {
		problem = fmt.Errorf("%d leaders", len(leaders))
	}
	return leader, problem
}

// RollingRestart restarts the members one at a time onto the membership
// peers, followers first and the current leader last, so that at most one
// member is down at any time and the ensemble keeps its quorum. After each
// restart it waits until that member serves again (a follower serves only
// once synced with the leader) and a leader exists among all of peers that are
// running, before touching the next member. It returns the leader at the end.
func (e *Ensemble) RollingRestart(ctx context.Context, peers []*Server) (*Server, error) {
	return e.RollingRestartAround(ctx, peers, nil)
}

// AroundRestart wraps one member's restart in a rolling restart: it gets the
// member, whether it leads (its restart forces an election), and restart,
// which restarts it and waits until it serves and a leader exists. It must
// call restart once. zkproxy's tests use it to hold the member's sessions.
type AroundRestart func(s *Server, leader bool, restart func() error) error

// RollingRestartAround is RollingRestart with around called for each member.
func (e *Ensemble) RollingRestartAround(ctx context.Context, peers []*Server, around AroundRestart) (*Server, error) {
	order := make([]*Server, 0, len(e.Members))
	var leader *Server
	for _, st := range e.Status() {
		if st.Err == nil && st.Srvr.Mode == "leader" {
			leader = st.Server
			continue
		}
		order = append(order, st.Server)
	}
	if leader != nil {
		order = append(order, leader)
	}
	running := &Ensemble{}
	for _, p := range peers {
		if p.Running() {
			running.Members = append(running.Members, p)
		}
	}
	for _, s := range order {
		restart := func() error {
			if err := s.RestartWith(peers); err != nil {
				return fmt.Errorf("rolling restart: %w", err)
			}
			if err := s.WaitServing(ctx); err != nil {
				return fmt.Errorf("rolling restart: %w", err)
			}
			if _, err := running.WaitLeader(ctx); err != nil {
				return fmt.Errorf("rolling restart after %v: %w", s, err)
			}
			return nil
		}
		var err error
		if around != nil {
			err = around(s, s == leader, restart)
		} else {
			err = restart()
		}
		if err != nil {
			return nil, err
		}
	}
	return running.WaitLeader(ctx)
}
