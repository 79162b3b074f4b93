package fleet

import (
	"context"
	"errors"
	"fmt"
	"github.com/zkproxy/zkproxy/internal/gozkrace"
	"log/slog"
	"net"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkproxy/zkproxy/cutover"
)

// ErrConflict: another replica changed the fleet state between this
// replica's read and its conditional write (ZooKeeper answered BadVersion
// or NodeExists), or since the epoch the operator saw.
var ErrConflict = errors.New("another replica changed the fleet state first")

// ErrNoAnswer: neither ensemble answered the read.
var ErrNoAnswer = errors.New("fleet: no answer from either ensemble")

// ErrDestinationOnly: once the cutover began, the state is written on the
// destination only (the joint ensemble through its destination members
// before the split); a read won by the source's copy then means the
// destination did not answer (or lost its copy), and nothing is written.
var ErrDestinationOnly = errors.New("fleet: the cutover began, so the fleet state is written on the destination only, and its copy did not answer")

// StoreConfig says where the fleet state lives.
type StoreConfig struct {
	// Path is the fleet's znode, e.g. /zkproxy/<fleet>.
	Path string
	// Source and Destination are the ensembles' members (host:port);
	// Destination may be empty (no migration planned yet).
	Source, Destination []string
	// Auth is "user:password": the znodes are created with a digest ACL
	// (world read, that user all) and this replica authenticates as it.
	// Empty: world-writable znodes.
	Auth string
	// SessionTimeout of the fleet's own ZooKeeper sessions: a replica that
	// dies leaves its member znode for this long. Zero means 4s.
	SessionTimeout time.Duration
	// OpTimeout bounds one read or write on one ensemble; zero means 2s.
	OpTimeout time.Duration
	// Dial opens the fleet's connections to members; nil dials TCP.
	Dial func(network, address string, timeout time.Duration) (net.Conn, error)
	Log  *slog.Logger
}

// Store reads and writes the fleet state on both ensembles.
type Store struct {
	cfg   StoreConfig
	sides []*side // destination first (the read rule's order), then source
	acl   []zk.ACL
}

// side is one ensemble's connection. The source's is opened only while
// the fleet state may live there (see Read) and closed once the cutover
// began: from then on no connection of this replica reaches a source
// member, the fleet's own included.
type side struct {
	name cutover.Ensemble

	mu       sync.Mutex
	conn     *zk.Conn      // nil while closed
	authed   chan struct{} // closed once AddAuth succeeded (or no auth is configured)
	openedAt time.Time
}

// current returns the side's connection, nil while closed.
func (sd *side) current() (*zk.Conn, chan struct{}, time.Time) {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	return sd.conn, sd.authed, sd.openedAt
}

// Copy is one ensemble's copy of the state znode.
type Copy struct {
	Side    cutover.Ensemble
	State   State
	Version int32
	Exists  bool
}

// Reading is the result of Read: the copy that wins the read rule and where
// writes go.
type Reading struct {
	Copy
	// Answered lists the ensembles that answered.
	Answered []cutover.Ensemble
	// Unanswered says why the others did not.
	Unanswered []string
}

type zkLogger struct{ log *slog.Logger }

func (l zkLogger) Printf(format string, args ...any) {
	l.log.Debug("fleet: zk client: " + fmt.Sprintf(format, args...))
}

// OpenStore connects to both ensembles (in the background: ZooKeeper
// clients connect and reconnect by themselves).
func OpenStore(cfg StoreConfig) (*Store, error) {
	if cfg.Path == "" || !strings.HasPrefix(cfg.Path, "/") || strings.HasSuffix(cfg.Path, "/") {
		return nil, fmt.Errorf("fleet: path %q must be an absolute znode path", cfg.Path)
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 4 * time.Second
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = 2 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Store{cfg: cfg, acl: zk.WorldACL(zk.PermAll)}
	var user, password string
	if cfg.Auth != "" {
		var ok bool
		user, password, ok = strings.Cut(cfg.Auth, ":")
		if !ok || user == "" || password == "" {
			return nil, errors.New("fleet: auth must be user:password")
		}
		s.acl = append(zk.WorldACL(zk.PermRead), zk.DigestACL(zk.PermAll, user, password)...)
	}
	for _, e := range []struct {
		name    cutover.Ensemble
		members []string
	}{{cutover.Destination, cfg.Destination}, {cutover.Source, cfg.Source}} {
		if len(e.members) == 0 {
			continue
		}
		sd := &side{name: e.name}
		s.sides = append(s.sides, sd)
		if e.name == cutover.Source && len(cfg.Destination) > 0 {
			continue // opened by Read when the destination cannot settle the state
		}
		if err := s.open(sd); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// open connects sd if it is closed (in the background: ZooKeeper clients
// connect and reconnect by themselves).
func (s *Store) open(sd *side) error {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	if sd.conn != nil {
		return nil
	}
	members := s.cfg.Source
	if sd.name == cutover.Destination {
		members = s.cfg.Destination
	}
	dial := s.cfg.Dial
	if dial == nil {
		dial = func(network, address string, timeout time.Duration) (net.Conn, error) {
			return net.DialTimeout(network, address, timeout)
		}
	}
	conn, _, err := zk.Connect(members, s.cfg.SessionTimeout, zk.WithLogger(zkLogger{s.cfg.Log}), zk.WithLogInfo(false), zk.WithDialer(gozkrace.Dialer(dial)))
	if err != nil {
		return fmt.Errorf("fleet: connecting to the %s ensemble: %w", sd.name, err)
	}
	authed := make(chan struct{})
	if s.cfg.Auth == "" {
		close(authed)
	} else {
		// AddAuth waits until the client is connected; the client
		// re-sends the credentials on every reconnect afterwards.
		go func() {
			if err := conn.AddAuth("digest", []byte(s.cfg.Auth)); err == nil {
				close(authed)
			} else {
				s.cfg.Log.Warn("fleet: authenticating", "ensemble", string(sd.name), "err", err)
			}
		}()
	}
	sd.conn, sd.authed, sd.openedAt = conn, authed, time.Now()
	s.cfg.Log.Debug("fleet: connecting", "ensemble", string(sd.name))
	return nil
}

// shut closes sd's connection (its session ends, and the ephemeral member
// znode on that side with it).
func (s *Store) shut(sd *side) {
	sd.mu.Lock()
	conn := sd.conn
	sd.conn = nil
	sd.mu.Unlock()
	if conn != nil {
		conn.Close()
		s.cfg.Log.Info("fleet: closed the connection to the source ensemble: the cutover began, the destination's copy of the state is the truth")
	}
}

// Close ends the fleet's ZooKeeper sessions: this replica's member znode
// (ephemeral) goes with them.
func (s *Store) Close() {
	for _, sd := range s.sides {
		sd.mu.Lock()
		if sd.conn != nil {
			sd.conn.Close()
			sd.conn = nil
		}
		sd.mu.Unlock()
	}
}

// StatePath is the state znode.
func (s *Store) StatePath() string { return s.cfg.Path + "/state" }

func (s *Store) side(name cutover.Ensemble) *side {
	for _, sd := range s.sides {
		if sd.name == name {
			return sd
		}
	}
	return nil
}

// do runs op on sd within OpTimeout. A client without a session queues
// requests until it reconnects; a cut-off ensemble must not block the
// caller, so such a side is "no answer" at once.
func (s *Store) do(ctx context.Context, sd *side, write bool, op func(*zk.Conn) error) error {
	conn, authed, openedAt := sd.current()
	if conn == nil {
		return fmt.Errorf("fleet: %s ensemble: not connected (the cutover began)", sd.name)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
	defer cancel()
	// A side opened a moment ago is given OpTimeout to get its session;
	// otherwise a client without one would queue the request until it
	// reconnects, and a cut-off ensemble must not block the caller.
	for conn.State() != zk.StateHasSession {
		if time.Since(openedAt) > s.cfg.OpTimeout {
			return fmt.Errorf("fleet: %s ensemble: not connected (%s)", sd.name, conn.State())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("fleet: %s ensemble: not connected (%s)", sd.name, conn.State())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if write {
		select {
		case <-authed:
		case <-ctx.Done():
			return fmt.Errorf("fleet: %s ensemble: not authenticated yet", sd.name)
		}
	}
	done := make(chan error, 1)
	go func() { done <- op(conn) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("fleet: %s ensemble: %w", sd.name, context.Cause(ctx))
	}
}

// Read applies the read rule (docs/fleet.md): ask the destination first,
// then the source; the copy with the higher epoch wins, the destination's on
// a tie. Before the split both are one joint ensemble (one znode, equal
// epochs); after it the destination's copy is the live one and the
// source's was frozen at phase destination. An unreadable copy on either
// side is an error (FormatError): zkproxy refuses to guess.
func (s *Store) Read(ctx context.Context) (Reading, error) {
	var r Reading
	var best *Copy
	for _, sd := range s.sides {
		if sd.name == cutover.Source && s.side(cutover.Destination) != nil {
			// The source is asked only when the destination cannot settle
			// the state: it did not answer, or its copy (missing or not
			// begun) may be older than the source's (before the join
			// they are two ensembles). Once the destination's copy says
			// the cutover began it is the truth (joint ensemble before
			// the split, the live copy after it), so the source's
			// connection is closed and not opened again while it says so.
			if best != nil && best.Exists && best.State.Began() {
				s.shut(sd)
				continue
			}
			if err := s.open(sd); err != nil {
				r.Unanswered = append(r.Unanswered, fmt.Sprintf("%s: %v", sd.name, err))
				continue
			}
		}
		var data []byte
		var stat *zk.Stat
		err := s.do(ctx, sd, false, func(c *zk.Conn) (err error) {
			data, stat, err = c.Get(s.StatePath())
			return err
		})
		c := Copy{Side: sd.name}
		switch {
		case errors.Is(err, zk.ErrNoNode):
		case err != nil:
			r.Unanswered = append(r.Unanswered, fmt.Sprintf("%s: %v", sd.name, err))
			continue
		default:
			st, err := decodeState(data)
			if err != nil {
				return r, &FormatError{Path: s.StatePath(), Side: sd.name, Err: err}
			}
			c.State, c.Version, c.Exists = st, stat.Version, true
		}
		r.Answered = append(r.Answered, sd.name)
		if best == nil || (c.Exists && (!best.Exists || c.State.Epoch > best.State.Epoch)) {
			best = &c
		}
	}
	if best == nil {
		return r, fmt.Errorf("%w: %s", ErrNoAnswer, strings.Join(r.Unanswered, "; "))
	}
	r.Copy = *best
	return r, nil
}

// Write replaces the state read in r with next, conditionally on the
// version read, on the ensemble whose copy won (the joint ensemble before
// the split, the destination after it). A state that exists on neither side
// is created on createOn. ErrConflict when another writer came first.
func (s *Store) Write(ctx context.Context, r Reading, next State, createOn cutover.Ensemble) (Reading, error) {
	b, err := encodeState(next)
	if err != nil {
		return r, err
	}
	next.Format = FormatVersion
	if r.Exists && r.Side == cutover.Source && (r.State.Began() || next.Began()) && s.side(cutover.Destination) != nil {
		// Written on the source, this change would outrank the
		// destination's copy by epoch and pull every later write to the
		// old ensemble.
		return r, fmt.Errorf("%w (%s)", ErrDestinationOnly, strings.Join(r.Unanswered, "; "))
	}
	if r.Exists {
		sd := s.side(r.Side)
		var stat *zk.Stat
		err := s.do(ctx, sd, true, func(c *zk.Conn) (err error) {
			stat, err = c.Set(s.StatePath(), b, r.Version)
			return err
		})
		if errors.Is(err, zk.ErrBadVersion) {
			return r, fmt.Errorf("%w: the state znode %s on the %s ensemble is past version %d (epoch %d)", ErrConflict, s.StatePath(), r.Side, r.Version, r.State.Epoch)
		}
		if err != nil {
			return r, fmt.Errorf("fleet: writing %s on the %s ensemble: %w", s.StatePath(), r.Side, err)
		}
		out := r
		out.State, out.Version = next, stat.Version
		return out, nil
	}
	sd := s.side(createOn)
	if sd == nil {
		return r, fmt.Errorf("fleet: no %s ensemble configured to create %s on", createOn, s.StatePath())
	}
	if err := s.ensureParents(ctx, sd, s.StatePath()); err != nil {
		return r, err
	}
	err = s.do(ctx, sd, true, func(c *zk.Conn) error {
		_, err := c.Create(s.StatePath(), b, 0, s.acl)
		return err
	})
	if errors.Is(err, zk.ErrNodeExists) {
		return r, fmt.Errorf("%w: %s was created meanwhile", ErrConflict, s.StatePath())
	}
	if err != nil {
		return r, fmt.Errorf("fleet: creating %s on the %s ensemble: %w", s.StatePath(), createOn, err)
	}
	return Reading{Copy: Copy{Side: createOn, State: next, Version: 0, Exists: true}, Answered: r.Answered}, nil
}

// ensureParents creates p's missing ancestors (persistent, with the
// fleet's ACL).
func (s *Store) ensureParents(ctx context.Context, sd *side, p string) error {
	var parents []string
	for d := path.Dir(p); d != "/"; d = path.Dir(d) {
		parents = append([]string{d}, parents...)
	}
	for _, d := range parents {
		err := s.do(ctx, sd, true, func(c *zk.Conn) error {
			_, err := c.Create(d, nil, 0, s.acl)
			return err
		})
		if err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("fleet: creating %s on the %s ensemble: %w", d, sd.name, err)
		}
	}
	return nil
}

// watch returns a channel that fires when the state znode changes on the
// side that won the last read (nil when it cannot be armed).
func (s *Store) watch(ctx context.Context, name cutover.Ensemble) <-chan zk.Event {
	sd := s.side(name)
	if sd == nil {
		return nil
	}
	var ch <-chan zk.Event
	err := s.do(ctx, sd, false, func(c *zk.Conn) (err error) {
		_, _, ch, err = c.ExistsW(s.StatePath())
		return err
	})
	if err != nil {
		return nil
	}
	return ch
}

// put sets p's data on side name, creating it (persistent) when missing.
func (s *Store) put(ctx context.Context, name cutover.Ensemble, p string, data []byte) error {
	sd := s.side(name)
	if sd == nil {
		return fmt.Errorf("fleet: no %s ensemble configured", name)
	}
	err := s.do(ctx, sd, true, func(c *zk.Conn) error {
		_, err := c.Set(p, data, -1)
		return err
	})
	if !errors.Is(err, zk.ErrNoNode) {
		return err
	}
	if err := s.ensureParents(ctx, sd, p); err != nil {
		return err
	}
	return s.do(ctx, sd, true, func(c *zk.Conn) error {
		_, err := c.Create(p, data, 0, s.acl)
		if errors.Is(err, zk.ErrNodeExists) {
			_, err = c.Set(p, data, -1)
		}
		return err
	})
}

// putMember writes this replica's ephemeral member znode p on side name.
// During an in-place upgrade two processes of one replica run at once and
// both publish: the later one (newer reports whether the znode's current
// data is from a later process than this one) owns the znode. An older
// process's znode is deleted and created again as this session's (it would
// go with that process's session); a later one's is left alone and
// superseded is true.
func (s *Store) putMember(ctx context.Context, name cutover.Ensemble, p string, data []byte, newer func(existing []byte) bool) (superseded bool, err error) {
	sd := s.side(name)
	if sd == nil {
		return false, fmt.Errorf("fleet: no %s ensemble configured", name)
	}
	if err := s.ensureParents(ctx, sd, p); err != nil {
		return false, err
	}
	// A few rounds: the other process may change the znode between this
	// one's read and its conditional write.
	for range 3 {
		err = s.do(ctx, sd, true, func(c *zk.Conn) error {
			existing, stat, err := c.Get(p)
			switch {
			case errors.Is(err, zk.ErrNoNode):
				_, err = c.Create(p, data, zk.FlagEphemeral, s.acl)
				return err
			case err != nil:
				return err
			case stat.EphemeralOwner == c.SessionID():
				_, err = c.Set(p, data, stat.Version)
				return err
			case newer(existing):
				superseded = true
				return nil
			default:
				if err := c.Delete(p, stat.Version); err != nil && !errors.Is(err, zk.ErrNoNode) {
					return err
				}
				return zk.ErrNodeExists // go round: create it as ours
			}
		})
		if superseded {
			return true, nil
		}
		if !errors.Is(err, zk.ErrNodeExists) && !errors.Is(err, zk.ErrBadVersion) {
			break
		}
	}
	if err != nil {
		return false, fmt.Errorf("fleet: writing %s on the %s ensemble: %w", p, name, err)
	}
	return false, nil
}

// remove deletes p on every side that answers (a clean leave).
func (s *Store) remove(ctx context.Context, p string) {
	for _, sd := range s.sides {
		_ = s.do(ctx, sd, true, func(c *zk.Conn) error { return c.Delete(p, -1) })
	}
}

// children lists p's children with their data on side name.
func (s *Store) children(ctx context.Context, name cutover.Ensemble, p string) (map[string][]byte, error) {
	sd := s.side(name)
	if sd == nil {
		return nil, fmt.Errorf("fleet: no %s ensemble configured", name)
	}
	var kids []string
	err := s.do(ctx, sd, false, func(c *zk.Conn) (err error) {
		kids, _, err = c.Children(p)
		return err
	})
	if errors.Is(err, zk.ErrNoNode) {
		return map[string][]byte{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, k := range kids {
		var data []byte
		err := s.do(ctx, sd, false, func(c *zk.Conn) (err error) {
			data, _, err = c.Get(p + "/" + k)
			return err
		})
		if errors.Is(err, zk.ErrNoNode) {
			continue // left meanwhile
		}
		if err != nil {
			return nil, err
		}
		out[k] = data
	}
	return out, nil
}

// SessionIDs are the fleet's own ZooKeeper sessions (one per ensemble it
// has a session with).
func (s *Store) SessionIDs() []int64 {
	var ids []int64
	for _, sd := range s.sides {
		conn, _, _ := sd.current()
		if conn == nil {
			continue
		}
		if id := conn.SessionID(); id != 0 && conn.State() == zk.StateHasSession {
			ids = append(ids, id)
		}
	}
	return ids
}
