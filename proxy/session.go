package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zkproxy/zkproxy/jute"
)

// SessionState is where a session is in its life (docs/protocol.md §9.2).
type SessionState int32

const (
	// StateHandshake: the client connected; its ConnectRequest is being
	// read or forwarded.
	StateHandshake SessionState = iota
	// StateActive: frames flow both ways.
	StateActive
	// StateDraining: a move was requested; new client requests are held
	// while the replies to those in flight arrive.
	StateDraining
	// StateReattaching: the session has no upstream; the proxy is opening
	// it on a member and replaying auth and watches. Client requests are
	// held and client pings answered by the proxy.
	StateReattaching
	// StateClosed: the client connection is closed.
	StateClosed
)

func (st SessionState) String() string {
	switch st {
	case StateHandshake:
		return "handshake"
	case StateActive:
		return "active"
	case StateDraining:
		return "draining"
	case StateReattaching:
		return "reattaching"
	case StateClosed:
		return "closed"
	}
	return fmt.Sprintf("SessionState(%d)", int32(st))
}

// MoveError is the error of a failed Session.Move. Reason is a short,
// bounded label for metrics ("closed", "busy", "sasl", "drain_timeout",
// "expired", "refused", "replay_failed", "canceled"); Disconnected
// reports whether the client connection was closed (the session could not
// stay where it was).
type MoveError struct {
	Reason       string
	Disconnected bool
	Err          error
}

func (e *MoveError) Error() string { return "proxy: move: " + e.Err.Error() }

func (e *MoveError) Unwrap() error { return e.Err }

func (e *MoveError) MoveReason() string { return e.Reason }

// Errors wrapped by MoveError.
var (
	// ErrSessionClosed: the session's client connection is closed.
	ErrSessionClosed = errors.New("proxy: session closed")
	// ErrDrainTimeout: requests were still in flight when the move's
	// context ended; the session stays on its current member, unchanged.
	ErrDrainTimeout = errors.New("proxy: drain deadline passed with requests in flight")
)

// Session is one client connection and the ZooKeeper session it carries.
// Its methods are safe for concurrent use. Cutover drives sessions through
// ID, Info and Move; the admin API lists them through Info.
type Session struct {
	srv        *Server
	st         *statShard   // the session's share of the per-request counters
	logID      atomic.Int64 // session id for the log, once known (see logger)
	lastAttach atomic.Int64 // LastMoveAttach, in nanoseconds
	client     net.Conn
	clientAddr string
	clientR    *frameReader
	clientRW   readWatch    // the client pump's idle and silence deadlines
	clientWDL  lazyDeadline // client write deadline, under cwmu
	created    time.Time

	// Set by the handshake, then immutable.
	id            jute.SessionID
	passwd        []byte
	clientTimeout time.Duration // negotiated with the first member: what the client believes
	reqTimeout    int32         // the client's requested timeout, the most a re-attach asks for
	hasReadOnly   bool          // the client sent the trailing readOnly byte
	readOnly      bool

	cwmu sync.Mutex // serialises whole-frame writes to the client

	// sendMu serialises writes to the upstream together with the queue
	// pushes that describe them, so the outstanding and ping queues are in
	// wire order. Lock order: sendMu before mu.
	sendMu sync.Mutex

	mu          sync.Mutex
	cond        *sync.Cond // state and queue changes
	up          *upstream
	ensemble    []string
	lastZxid    jute.Zxid
	outstanding requestFIFO
	pings       pingFIFO
	pendingAuth [][]byte // auth frames (xid -4) awaiting their reply, in order
	authLog     [][]byte // auth frames whose reply succeeded, replayed in order
	watches     watchTracker
	held        []heldRequest
	heldBytes   int
	memberClose string     // the member will close the connection after its last reply, and why
	attaches    uint64     // completed upstream attachments (see SessionInfo.Attaches)
	closeDetail string     // why the session closed, in words, for the log
	holdSince   time.Time  // forwarding stopped (hold, move, re-attach); zero while forwarding
	ops         []opCancel // contexts of blocking operations in progress (see operationContext)
	opSeq       uint64
	// The small fields under mu, together so that they pack: with padding
	// between them the struct did not fit the 704-byte size class
	// (TestIdleStructSizeClasses).
	state     SessionState
	closedBy  closeReason // why the session closed (state Closed)
	usedSASL  bool
	closeSent bool  // the client sent closeSession
	stopping  bool  // server shutdown: forward nothing new
	barrier   bool  // Hold: forward nothing new until Release
	moving    bool  // Move is waiting for the drain and takes over if the upstream goes
	opened    bool  // counted in sessions_open
	ensKind   uint8 // ensembleKindNames index of ensemble
	// The zkproxy_sessions child this session is counted in, if any.
	gaugeCounted         bool
	gaugeEns, gaugeState uint8

	// handingOff stops the client pump at its next read (Server.HandOver);
	// it then closes pumpStopped (set, like partial, under mu before the
	// flag).
	handingOff  atomic.Bool
	pumpStopped chan struct{}

	// Frames received from and sent to the client (cons).
	recved, sent atomic.Uint64
	// lastClientFrame is when the client's last frame was read (UnixNano):
	// its deadline, beyond which the proxy's own frames must not carry the
	// session (clientDeadline, docs/session-expiry.md).
	lastClientFrame atomic.Int64
}

// heldRequest is a client request received while the session could not
// forward it.
type heldRequest struct {
	frame []byte
	orig  []byte // the frame as the client sent it, when frame differs
	req   pendingRequest
	sw    *jute.SetWatches2
}

// SessionInfo is a snapshot of a session for listings and cutover checks.
type SessionInfo struct {
	ID         jute.SessionID
	ClientAddr string
	// Member is the upstream member, empty while re-attaching.
	Member   string
	Ensemble []string
	State    SessionState
	// Watches counts tracked registrations (all five kinds).
	Watches     int
	Outstanding int
	// Held counts client requests held (not yet forwarded).
	Held     int
	LastZxid jute.Zxid
	// Timeout is the timeout the client negotiated; UpstreamTimeout the
	// current member's.
	Timeout         time.Duration
	UpstreamTimeout time.Duration
	ReadOnly        bool
	// UsedSASL: the client authenticated with SASL on this connection,
	// which cannot be replayed (docs/protocol.md §6.3): a move loses it.
	UsedSASL bool
	// Holding reports a Hold in force.
	Holding bool
	// Attaches counts the upstream attachments that completed: the
	// handshake, then every re-attach and move. The split barrier uses it to
	// see that a held session re-attached after the split.
	Attaches uint64
	Auths    int
	Created  time.Time
}

func newSession(srv *Server, conn net.Conn) *Session {
	s := &Session{
		srv:        srv,
		client:     conn,
		clientAddr: conn.RemoteAddr().String(),
		created:    time.Now(),
		st:         srv.m.stats.assign(),
	}
	s.cond = sync.NewCond(&s.mu)
	s.watches.gauges = &srv.m.watches
	return s
}

// opCancel cancels one operation's context (see operationContext).
type opCancel struct {
	id     uint64
	cancel context.CancelFunc
}

// operationContext returns a context for one blocking operation of the
// session (dialing a member, re-attaching, relaying a four-letter word)
// that ends when the session closes, and the release the caller calls when
// the operation is over. Contexts per
// operation rather than one for the session's life: a context that has
// had children keeps their map and its done channel for ever, about
// 0.45 KiB of an idle session's ~3 KiB.
func (s *Session) operationContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	if s.closedLocked() {
		s.mu.Unlock()
		cancel()
		return ctx, func() {}
	}
	s.opSeq++
	id := s.opSeq
	s.ops = append(s.ops, opCancel{id: id, cancel: cancel})
	s.mu.Unlock()
	return ctx, func() {
		cancel()
		s.mu.Lock()
		defer s.mu.Unlock()
		for i, op := range s.ops {
			if op.id == id {
				s.ops = slices.Delete(s.ops, i, i+1)
				break
			}
		}
		if len(s.ops) == 0 {
			s.ops = nil // keep nothing while idle
		}
	}
}

// logger returns the session's logger: client address and session id
// (hex) as fields. It is built per log line, which happens only on open,
// close, re-attach and move, instead of kept: a logger with preformatted
// attributes costs hundreds of bytes per idle session.
func (s *Session) logger() *slog.Logger {
	l := s.srv.log.With("client", s.clientAddr)
	if id := s.logID.Load(); id != 0 {
		l = l.With("session", jute.SessionID(id).String())
	}
	return l
}

// ID returns the session id (0 before the handshake completed).
func (s *Session) ID() jute.SessionID { return s.id }

// State returns the session's current state.
func (s *Session) State() SessionState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Info returns a snapshot of the session.
func (s *Session) Info() SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	info := SessionInfo{
		ID:          s.id,
		ClientAddr:  s.clientAddr,
		Ensemble:    slices.Clone(s.ensemble),
		State:       s.state,
		Watches:     s.watches.count(),
		Outstanding: s.inFlightLocked(),
		Held:        len(s.held),
		Holding:     s.barrier,
		Attaches:    s.attaches,
		LastZxid:    s.lastZxid,
		Timeout:     s.clientTimeout,
		ReadOnly:    s.readOnly,
		UsedSASL:    s.usedSASL,
		Auths:       len(s.authLog),
		Created:     s.created,
	}
	if s.up != nil {
		info.Member = s.up.member
		info.UpstreamTimeout = s.up.timeout
	}
	return info
}

// closedErrorLocked is ErrSessionClosed with the reason the session closed.
func (s *Session) closedErrorLocked() error {
	if !s.closedLocked() {
		return fmt.Errorf("%w: closing", ErrSessionClosed) // stopping: drainAndClose runs
	}
	return fmt.Errorf("%w: %s", ErrSessionClosed, s.closeDetail)
}

// close ends the client connection and the upstream, once; reason is
// counted, detail logged.
func (s *Session) close(reason closeReason, detail string) {
	s.mu.Lock()
	if s.closedLocked() {
		s.mu.Unlock()
		return
	}
	s.closedBy, s.closeDetail = reason, detail
	s.state = StateClosed
	s.stateGaugeLocked()
	up := s.up
	if up != nil {
		up.sessions.Dec()
	}
	s.watches.release()
	s.holdSince = time.Time{}
	held := len(s.held)
	s.srv.m.heldBytes.Sub(float64(s.heldBytes))
	s.held, s.heldBytes = nil, 0
	opened := s.opened
	ops := s.ops
	s.ops = nil
	s.cond.Broadcast()
	s.mu.Unlock()

	for _, op := range ops {
		op.cancel()
	}
	s.client.Close()
	s.srv.unpark(s.clientR)
	if up != nil {
		up.conn.Close()
		s.srv.unpark(up.r)
	}
	s.srv.m.heldRequestsNow.Sub(float64(held))
	if opened {
		s.srv.m.sessionsOpen.Dec()
		s.srv.m.connectionsClosed.WithLabelValues(reason.String()).Inc()
		if reason == closeClientTimeout {
			// No CloseSession went upstream: the member expires the
			// session one timeout after the last touch, which the rule
			// kept within the client's deadline.
			s.srv.m.clientDeadlineExpiries.Inc()
		}
		member := ""
		if up != nil {
			member = up.member
		}
		level := slog.LevelInfo
		if reason == closeHandedOver {
			level = slog.LevelDebug // one line per session of an upgrade; the handoff logs the totals
		}
		s.logger().Log(context.Background(), level, "session closed", "reason", detail, "label", reason.String(), "member", member,
			"age", time.Since(s.created).Round(time.Millisecond), "dropped_held", held)
	}
}

// closedLocked reports whether the session has ended (close ran).
func (s *Session) closedLocked() bool { return s.state == StateClosed }

// inFlightLocked counts the requests written upstream whose reply has not
// arrived: the ones whose outcome a lost upstream would leave unknown.
func (s *Session) inFlightLocked() int { return s.outstanding.len() + len(s.pendingAuth) }

// queuedLocked counts the client requests the session carries: in flight
// plus held. MaxOutstandingPerSession bounds it.
func (s *Session) queuedLocked() int { return s.inFlightLocked() + len(s.held) }

// canForwardLocked reports whether a client request may go upstream now:
// attached and active, not shutting down, no Hold in force. Otherwise it
// is held, and client pings are answered by the proxy.
func (s *Session) canForwardLocked() bool {
	return s.state == StateActive && !s.stopping && !s.barrier && s.up != nil
}

// closedMoveErrorLocked is the error of a Move or Hold that finds the
// session closed or closing.
func (s *Session) closedMoveErrorLocked() *MoveError {
	return &MoveError{Reason: "closed", Disconnected: true, Err: s.closedErrorLocked()}
}

// wakeWhenDone wakes the session's cond waiters when ctx ends, so that a
// wait loop checking ctx.Err() notices; the caller defers the returned stop.
func (s *Session) wakeWhenDone(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
}

// awaitDrainLocked waits until no request is in flight on the upstream,
// the session closes or loses its upstream, or ctx ends (the caller
// arranged wakeWhenDone(ctx)). It returns the number still in flight on
// the upstream: 0 when drained or detached.
func (s *Session) awaitDrainLocked(ctx context.Context) int {
	for !s.closedLocked() && s.up != nil && s.inFlightLocked() > 0 && ctx.Err() == nil {
		s.cond.Wait()
	}
	if s.up == nil {
		return 0
	}
	return s.inFlightLocked()
}

// setUpLocked makes up the session's upstream (nil: none), keeping
// zkproxy_sessions_by_member in step. close accounts for the last one.
func (s *Session) setUpLocked(up *upstream) {
	if s.up != nil {
		s.up.sessions.Dec()
	}
	s.up = up
	if up != nil {
		up.sessions.Inc()
	}
}

// stateGaugeLocked moves the session to the zkproxy_sessions child of its
// current ensemble and state; it runs on state changes, never per request.
// A session is counted from its first attachment until it closes.
func (s *Session) stateGaugeLocked() {
	if !s.opened {
		return
	}
	ens, st := s.ensKind, int(s.state)
	if s.gaugeCounted {
		if s.gaugeEns == ens && int(s.gaugeState) == st {
			return
		}
		s.srv.m.sessionsByState[s.gaugeEns][s.gaugeState].Dec()
		s.gaugeCounted = false
	}
	if s.state == StateClosed || st < 0 || st >= numSessionStates {
		return
	}
	s.srv.m.sessionsByState[ens][st].Inc()
	s.gaugeCounted, s.gaugeEns, s.gaugeState = true, ens, uint8(st)
}

// beginHoldLocked notes when the session stopped forwarding requests.
func (s *Session) beginHoldLocked() {
	if s.holdSince.IsZero() {
		s.holdSince = time.Now()
	}
}

// endHoldLocked records the pause that ends as forwarding resumes.
func (s *Session) endHoldLocked() {
	if !s.holdSince.IsZero() {
		s.srv.m.holdSeconds.Observe(time.Since(s.holdSince).Seconds())
		s.holdSince = time.Time{}
	}
}
