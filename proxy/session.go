package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zkproxy/zkproxy/jute"
)

// SessionState is where a session is in its life (ZK-PROTOCOL §9.2).
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

func (e *MoveError) Error() string      { return "proxy: move: " + e.Err.Error() }
func (e *MoveError) Unwrap() error      { return e.Err }
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
	client     net.Conn
	clientAddr string
	clientR    *frameReader
	clientRW   readWatch // the client pump's idle and silence deadlines
	// clientResume restarts the client pump after parking; the pump's own.
	clientResume func()
	clientWDL    lazyDeadline // client write deadline, under cwmu
	created      time.Time

	// Set by the handshake, then immutable.
	id            jute.SessionID
	passwd        []byte
	reqTimeout    int32         // the client's requested timeout, resent on re-attach
	clientTimeout time.Duration // negotiated with the first member: what the client believes
	hasReadOnly   bool          // the client sent the trailing readOnly byte
	readOnly      bool

	cwmu sync.Mutex // serialises whole-frame writes to the client

	// sendMu serialises writes to the upstream together with the queue
	// pushes that describe them, so the outstanding and ping queues are in
	// wire order. Lock order: sendMu before mu.
	sendMu sync.Mutex

	mu          sync.Mutex
	cond        *sync.Cond // state, queue and closed changes
	state       SessionState
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
	usedSASL    bool
	closeSent   bool   // the client sent closeSession
	memberClose string // the member will close the connection after its last reply, and why
	stopping    bool   // server shutdown: forward nothing new
	barrier     bool   // Hold: forward nothing new until Release
	moving      bool   // Move is waiting for the drain and takes over if the upstream goes
	attaches    uint64 // completed upstream attachments (see SessionInfo.Attaches)
	closed      bool
	closeReason string
	opened      bool // counted in sessions_open
	ensKind     int  // ensembleKindNames index of ensemble
	// The zkproxy_sessions child this session is counted in, if any.
	gaugeCounted         bool
	gaugeEns, gaugeState int
	holdSince            time.Time  // forwarding stopped (hold, move, re-attach); zero while forwarding
	ops                  []opCancel // contexts of blocking operations in progress (see operationContext)
	opSeq                uint64

	// Frames received from and sent to the client (cons).
	recved, sent atomic.Uint64
}

// heldRequest is a client request received while the session could not
// forward it.
type heldRequest struct {
	frame []byte
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
	// which cannot be replayed (ZK-PROTOCOL §6.3): a move loses it.
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
	if s.closed {
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
		Outstanding: s.outstanding.len() + len(s.pendingAuth),
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

// Disconnect closes the client connection (not the ZooKeeper session): the
// client reconnects through the proxy with its session. Cutover uses it as
// the fallback when a session cannot move transparently. It first lets the
// requests in flight finish, until ctx ends, holding new ones: those fail
// with ConnectionLoss but were never sent, so the fallback leaves no
// request whose outcome the client cannot know (a write in flight on a
// connection that closes may or may not have been applied). A ctx that has
// ended closes at once.
func (s *Session) Disconnect(ctx context.Context, reason string) { s.drainAndClose(ctx, reason) }

// handshakeOrClose runs the handshake and reports whether a session was
// established; if not, the connection is closed.
func (s *Session) handshakeOrClose() bool {
	if err := s.handshake(); err != nil {
		s.close(err.Error())
		s.client.Close()
		return false
	}
	return true
}

// handshakeError ends a connection during the handshake, before a session
// is established; reason is the connections_rejected_total label ("" when
// not counted).
type handshakeError struct {
	reason string // metric label
	err    error
}

func (e *handshakeError) Error() string { return e.err.Error() }

func rejectf(reason, format string, args ...any) error {
	return &handshakeError{reason: reason, err: fmt.Errorf(format, args...)}
}

// handshake reads the first bytes: a four-letter word is answered, a
// ConnectRequest is forwarded to a member of the target ensemble and its
// ConnectResponse relayed.
func (s *Session) handshake() (err error) {
	defer func() {
		var he *handshakeError
		if errors.As(err, &he) && he.reason != "" {
			s.srv.m.connectionsRejected.WithLabelValues(he.reason).Inc()
			level := slog.LevelInfo
			if he.reason == "four_letter_word" {
				level = slog.LevelDebug
			}
			s.logger().Log(context.Background(), level, "client connection closed during handshake", "reason", he.reason, "err", he.err)
		}
	}()
	deadline := time.Now().Add(s.srv.cfg.HandshakeTimeout)
	s.client.SetDeadline(deadline)
	if tc, ok := s.client.(*tls.Conn); ok {
		// A TLS listener (cmd/zkproxy tls-cert): the TLS handshake is
		// part of the client's handshake time, and its failures (a
		// plaintext client, a missing or untrusted client certificate)
		// get their own reason.
		if err := tc.Handshake(); err != nil {
			return rejectf(handshakeReason(err, "tls_handshake"), "TLS handshake: %w", err)
		}
	}

	s.clientR = newFrameReader(s.client, s.srv.cfg.MaxFrameSize, &s.st.clientBytesIn)
	prefix, err := s.clientR.Peek4()
	if err != nil {
		return rejectf(handshakeReason(err, "handshake_eof"), "reading the first bytes: %w", err)
	}
	if cmd, ok := jute.FourLetterWord(prefix); ok {
		s.answerFourLetterWord(cmd, deadline)
		return &handshakeError{reason: "four_letter_word", err: fmt.Errorf("four-letter word %q answered", cmd)}
	}
	// The first 4 bytes are the ConnectRequest's length.
	f, err := s.clientR.Next()
	if err != nil {
		if errors.Is(err, jute.ErrFrameTooLarge) || errors.Is(err, jute.ErrNegativeFrameLength) {
			s.srv.m.framesOverLimit.WithLabelValues("client").Inc()
			return rejectf("bad_handshake", "not a ZooKeeper client (first frame length %#x): %w", prefix, err)
		}
		return rejectf(handshakeReason(err, "handshake_eof"), "reading ConnectRequest: %w", err)
	}
	s.recved.Add(1)
	s.st.packetsReceived.Add(1)
	connectFrame := append([]byte(nil), f.Raw()...)
	var req jute.ConnectRequest
	if err := jute.Unmarshal(f.Payload(), &req); err != nil {
		s.srv.m.decodeErrors.WithLabelValues("connect_request").Inc()
		return rejectf("bad_handshake", "decoding ConnectRequest: %w", err)
	}
	if req.SessionID != 0 {
		s.logID.Store(int64(req.SessionID))
		s.claimID(req.SessionID)
	}

	target := s.srv.Target()
	var up *upstream
	var resp *jute.ConnectResponse
	var respFrame []byte
	var failures []string
	for _, member := range s.srv.members.order(target) {
		if time.Now().After(deadline) {
			break
		}
		ctx, done := s.operationContext()
		u, r, raw, err := s.srv.connectMember(ctx, member, connectFrame, deadline, s.st)
		done()
		if errors.Is(err, errSessionExpired) {
			// Relay the expiry so the client learns it (ClientCnxn
			// onConnected treats timeOut <= 0 as Expired), then close as
			// the member did.
			s.writeClient(mirrorReadOnly(raw, r, req.HasReadOnly))
			return rejectf("session_expired", "member %s: session %s expired or password wrong", member, req.SessionID)
		}
		if err != nil {
			if errors.Is(err, errMemberRefused) {
				s.logger().Warn("member closed a new connection right after the ConnectRequest",
					"member", member, "session", req.SessionID, "last_zxid_seen", req.LastZxidSeen,
					"likely_causes", refusalCauses)
			}
			failures = append(failures, err.Error())
			continue
		}
		up, resp, respFrame = u, r, raw
		break
	}
	if up == nil {
		return rejectf("no_member", "no member of %v accepted the session: %v", target, failures)
	}

	s.mu.Lock()
	s.passwd = resp.Passwd
	s.reqTimeout = req.TimeOut
	s.clientTimeout = time.Duration(resp.TimeOut) * time.Millisecond
	s.clientRW = newReadWatch(s.clientR, s.clientTimeout, s.srv.cfg.ParkIdleAfter)
	s.hasReadOnly, s.readOnly = req.HasReadOnly, req.ReadOnly
	s.lastZxid = req.LastZxidSeen
	s.ensemble = target
	s.ensKind = s.srv.ensembleKind(target)
	s.mu.Unlock()
	if req.SessionID == 0 {
		// Set before claimID publishes the session to other goroutines.
		s.logID.Store(int64(resp.SessionID))
		s.claimID(resp.SessionID)
	}

	if err := s.writeClient(mirrorReadOnly(respFrame, resp, req.HasReadOnly)); err != nil {
		up.conn.Close()
		return rejectf("client_gone", "relaying ConnectResponse: %w", err)
	}
	s.cwmu.Lock()
	s.client.SetDeadline(time.Time{})
	s.clientWDL = lazyDeadline{}
	s.cwmu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		up.conn.Close()
		return rejectf("", "closed during handshake: %s", s.closeReason)
	}
	s.opened = true
	s.mu.Unlock()
	s.srv.m.sessionsOpen.Inc()
	s.logger().Info("session open", "member", up.member, "timeout", s.clientTimeout,
		"resumed", req.SessionID != 0, "read_only", resp.ReadOnly)
	s.resume(up, nil)
	return nil
}

// claimID records the session id and closes an older proxy connection of
// the same session (Server.claim).
func (s *Session) claimID(id jute.SessionID) {
	s.id = id
	if old := s.srv.claim(s); old != nil {
		old.close("replaced by a new client connection of the same session")
	}
}

// mirrorReadOnly returns the ConnectResponse frame to send to a client
// that did (or did not) send the trailing readOnly byte: the member's raw
// frame when it already matches, else a re-encoding with the client's
// choice, which is what a server would have sent it (ZK-PROTOCOL §2.2).
func mirrorReadOnly(raw []byte, resp *jute.ConnectResponse, clientHasReadOnly bool) []byte {
	if resp == nil || resp.HasReadOnly == clientHasReadOnly {
		return raw
	}
	r := *resp
	r.HasReadOnly = clientHasReadOnly
	return jute.AppendFrame(nil, jute.Marshal(&r))
}

func handshakeReason(err error, otherwise string) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "handshake_timeout"
	}
	return otherwise
}

// pumpClient runs the client pump on the calling goroutine until the
// connection ends — then closes the session — or parks while idle.
func (s *Session) pumpClient(now time.Time) {
	for {
		s.srv.idle.watch(s.clientR, &s.clientRW, now)
		err := s.readClient()
		// Unwatched before parking: the parker may resume the pump on
		// another goroutine at once, which watches it again.
		s.srv.idle.unwatch(s.clientR)
		if errors.Is(err, errParked) {
			if s.clientResume == nil {
				s.clientResume = s.resumeClient // one allocation per session, not per park
			}
			if s.srv.parkOrRewatch(s.clientR, &s.clientRW, s.client.SetReadDeadline, s.clientResume) {
				return
			}
			now = time.Now()
			continue
		}
		s.close(s.clientEndReason(err))
		s.srv.forget(s)
		s.srv.wg.Done()
		return
	}
}

// clientEndReason is the close reason when the client pump ends with err.
// A client that sent closeSession and then dropped its connection closed
// its session: the C client's zookeeper_close may close its socket before
// the answer arrives, which its kernel then answers with a reset.
func (s *Session) clientEndReason(err error) string {
	s.mu.Lock()
	closing := s.closeSent
	s.mu.Unlock()
	if closing {
		return "client closed its session, then its connection: " + err.Error()
	}
	return err.Error()
}

func (s *Session) resumeClient() {
	now := time.Now()
	s.clientRW.resume(now, s.clientR.readAt, s.client.SetReadDeadline)
	s.pumpClient(now)
}

// readClient forwards client frames until the client connection fails or
// the pump parks (errParked).
func (s *Session) readClient() error {
	err := s.clientR.Serve((*clientPump)(s))
	if _, ok := err.(*clientFrameError); ok || errors.Is(err, errParked) {
		return err
	}
	return s.clientReadError(err)
}

// clientPump is the session as the client pump's frameHandler.
type clientPump Session

func (p *clientPump) onFrame(f frame) error { return (*Session)(p).onClientFrame(f) }

// beforeRead runs whenever the client pump is about to read or wait.
func (p *clientPump) beforeRead() error {
	p.clientRW.arm(p.clientR.readAt, p.client.SetReadDeadline)
	return nil
}

// onTimeout handles the client pump's deadline.
func (p *clientPump) onTimeout(err error) error {
	return p.clientRW.onTimeout(err, p.clientR.readAt, p.client.SetReadDeadline)
}

// clientFrameError ends the client pump for a reason found in a frame (or
// the session's end), as opposed to a failure of the connection.
type clientFrameError struct{ err error }

func (e *clientFrameError) Error() string { return e.err.Error() }
func (e *clientFrameError) Unwrap() error { return e.err }

// onClientFrame forwards one client frame. Not reading further while the
// session is at a limit (waitForRoom) is how the proxy pushes back.
func (s *Session) onClientFrame(f frame) error {
	if err := s.waitForRoom(); err != nil {
		return &clientFrameError{err}
	}
	s.recved.Add(1)
	s.st.packetsReceived.Add(1)
	raw := f.Raw()
	h, err := jute.PeekRequestHeader(f.Payload())
	if err != nil {
		s.srv.m.decodeErrors.WithLabelValues("request_header").Inc()
		return &clientFrameError{fmt.Errorf("malformed request header: %w", err)}
	}
	s.st.countRequest(h.Op)
	if h.Op == jute.OpPing {
		if err := s.clientPing(raw); err != nil {
			return &clientFrameError{err}
		}
		return nil
	}
	// Replies to xids -1, -2 and -4 are demultiplexed by xid; a client
	// request reusing them for another op would be unanswerable.
	if h.Xid == jute.XidNotification || h.Xid == jute.XidPing || (h.Xid == jute.XidAuth && h.Op != jute.OpAuth) {
		s.srv.m.decodeErrors.WithLabelValues("reserved_xid").Inc()
		return &clientFrameError{fmt.Errorf("request %s uses reserved xid %d", h.Op, h.Xid)}
	}
	req := pendingRequest{xid: h.Xid, op: h.Op, start: s.clientR.readAt}
	sw, err := parseRequest(f.Payload(), &req)
	if err != nil {
		// Forward it anyway: the member judges the request. The
		// tracker just does not learn a watch from it.
		s.srv.m.decodeErrors.WithLabelValues("request").Inc()
		s.logger().Debug("undecodable request forwarded as is", "err", err)
	}
	if err := s.forward(raw, req, sw); err != nil {
		return &clientFrameError{err}
	}
	return nil
}

func (s *Session) clientReadError(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF):
		return errors.New("client closed the connection")
	case errors.Is(err, jute.ErrFrameTooLarge), errors.Is(err, jute.ErrNegativeFrameLength):
		// NIOServerCnxn.readLength closes the connection on such a length
		// ("Len error"); the client sees a connection loss, as with a
		// real server.
		s.srv.m.framesOverLimit.WithLabelValues("client").Inc()
		return fmt.Errorf("client frame over max-frame-size: %w", err)
	case errors.As(err, &ne) && ne.Timeout():
		// ZooKeeper expires a session whose client sent nothing for the
		// session timeout; the proxy's own pings would otherwise keep a
		// half-open client's session alive for ever.
		return fmt.Errorf("client silent for the session timeout %s (half-open connection?)", s.clientTimeout)
	case errors.Is(err, io.ErrUnexpectedEOF):
		s.srv.m.decodeErrors.WithLabelValues("truncated_frame").Inc()
		return fmt.Errorf("client connection ended inside a frame: %w", err)
	}
	return fmt.Errorf("reading from client: %w", err)
}

// waitForRoom blocks while the session is at its outstanding or
// buffered-bytes limit: not reading is how the proxy pushes back.
func (s *Session) waitForRoom() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	counted := false
	for !s.closed {
		var limit string
		switch {
		case s.outstanding.len()+len(s.pendingAuth)+len(s.held) >= s.srv.cfg.MaxOutstandingPerSession:
			limit = "max_outstanding"
		case s.heldBytes >= s.srv.cfg.MaxBufferedBytesPerSession:
			limit = "max_buffered_bytes"
		default:
			return nil
		}
		if !counted {
			s.srv.m.limitReached.WithLabelValues(limit).Inc()
			counted = true
		}
		s.cond.Wait()
	}
	return errors.New(s.closeReason)
}

// clientPing forwards a client ping while the session is active, and
// answers it locally otherwise (ZK-PROTOCOL §9.2: the clients do not match
// ping replies against their request queues, so a local answer is safe).
func (s *Session) clientPing(raw []byte) error {
	s.sendMu.Lock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.sendMu.Unlock()
		return errors.New(s.closeReason)
	}
	if s.state == StateActive && !s.stopping && !s.barrier && s.up != nil {
		up := s.up
		s.pings.push(false)
		s.mu.Unlock()
		s.writeUpstream(up, raw)
		s.sendMu.Unlock()
		return nil
	}
	zxid := s.lastZxid
	s.mu.Unlock()
	s.sendMu.Unlock()
	return s.answerPing(zxid)
}

// answerPing sends the reply a member sends to a ping:
// ReplyHeader{-2, lastZxid, 0} (FinalRequestProcessor, ping case).
func (s *Session) answerPing(zxid jute.Zxid) error {
	return s.writeClient(appendReplyFrame(nil, jute.ReplyHeader{Xid: jute.XidPing, Zxid: zxid}))
}

// forward sends a client request upstream, or holds it while the session
// has no usable upstream.
func (s *Session) forward(raw []byte, req pendingRequest, sw *jute.SetWatches2) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New(s.closeReason)
	}
	if s.state != StateActive || s.stopping || s.barrier || s.up == nil {
		s.held = append(s.held, heldRequest{frame: slices.Clone(raw), req: req, sw: sw})
		s.heldBytes += len(raw)
		s.mu.Unlock()
		s.srv.m.heldRequests.Inc()
		s.srv.m.heldRequestsNow.Inc()
		s.srv.m.heldBytes.Add(float64(len(raw)))
		return nil
	}
	up := s.up
	s.enqueueLocked(raw, req, sw)
	s.mu.Unlock()
	s.writeUpstreamAt(up, raw, req.start)
	return nil
}

// enqueueLocked records a request about to be written upstream.
func (s *Session) enqueueLocked(raw []byte, req pendingRequest, sw *jute.SetWatches2) {
	switch req.op {
	case jute.OpAuth:
		frame := authReplayFrame(raw)
		if req.xid == jute.XidAuth {
			s.pendingAuth = append(s.pendingAuth, frame)
			return
		}
		req.auth = frame
	case jute.OpSASL:
		s.usedSASL = true
	case jute.OpCloseSession:
		s.closeSent = true
	}
	if sw != nil {
		s.watches.load(sw.DataWatches, sw.ExistWatches, sw.ChildWatches, sw.PersistentWatches, sw.PersistentRecursiveWatches)
	}
	s.outstanding.push(req)
}

// writeUpstream writes one complete frame. A failed write closes the
// connection; readUpstream then sees the failure and handles it (the frame
// is already recorded as in flight, so the client is told).
func (s *Session) writeUpstream(up *upstream, frame []byte) {
	s.writeUpstreamAt(up, frame, time.Now())
}

// writeUpstreamAt is writeUpstream with the current time already known.
func (s *Session) writeUpstreamAt(up *upstream, frame []byte, now time.Time) {
	up.writeDL.extendAt(now, up.timeout, up.conn.SetWriteDeadline)
	n, err := writeFrame(up.conn, up.r.raw, frame)
	s.st.upstreamBytesOut.Add(uint64(n))
	if err != nil {
		up.conn.Close()
		s.srv.unpark(up.r)
		return
	}
	up.lastSend.Store(now.UnixNano())
}

// writeClient writes one complete frame to the client. A client that does
// not read for its session timeout is closed, as a server would expire it.
func (s *Session) writeClient(frame []byte) error {
	return s.writeClientAt(frame, time.Now())
}

// writeClientAt is writeClient with the current time already known.
func (s *Session) writeClientAt(frame []byte, now time.Time) error {
	s.cwmu.Lock()
	defer s.cwmu.Unlock()
	timeout := s.clientTimeout
	if timeout <= 0 {
		timeout = s.srv.cfg.HandshakeTimeout
	}
	s.clientWDL.extendAt(now, timeout, s.client.SetWriteDeadline)
	n, err := writeFrame(s.client, s.clientR.raw, frame)
	s.st.clientBytesOut.Add(uint64(n))
	if err == nil {
		s.sent.Add(1)
		s.st.packetsSent.Add(1)
	}
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("client stopped reading for the session timeout %s", timeout)
		}
		return fmt.Errorf("writing to client: %w", err)
	}
	return nil
}

// fatalError ends the session instead of re-attaching it.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// runUpstream pumps one upstream connection, then handles its loss; or
// parks the pump while the connection is idle.
func (s *Session) runUpstream(up *upstream, now time.Time) {
	for {
		s.srv.idle.watch(up.r, &up.rw, now)
		err := s.readUpstream(up)
		s.srv.idle.unwatch(up.r) // before parking, as in pumpClient
		if errors.Is(err, errParked) {
			if up.resume == nil {
				up.resume = func() { s.resumeUpstream(up) }
			}
			if s.srv.parkOrRewatch(up.r, &up.rw, up.conn.SetReadDeadline, up.resume) {
				return
			}
			now = time.Now()
			continue
		}
		s.endUpstream(up, err)
		return
	}
}

// endUpstream handles the end of an upstream pump.
func (s *Session) endUpstream(up *upstream, err error) {
	defer s.srv.wg.Done()
	up.conn.Close()
	if t := up.pinger.Load(); t != nil {
		t.Stop()
	}
	close(up.done)
	var fe *fatalError
	if errors.As(err, &fe) {
		s.close(fe.Error())
		return
	}
	s.upstreamLost(up, err)
}

func (s *Session) resumeUpstream(up *upstream) {
	now := time.Now()
	up.rw.resume(now, up.r.readAt, up.conn.SetReadDeadline)
	s.runUpstream(up, now)
}

// readUpstream forwards member frames to the client, updating the session
// state, until the connection fails. The frames one read returned are
// written to the client together (one writev) once they are all applied:
// a member answers a pipelining client's requests back to back.
func (s *Session) readUpstream(up *upstream) (err error) {
	up.sess = s
	defer func() {
		// Frames applied to the session state reach the client before
		// anything the loss of this upstream makes the proxy send.
		if ferr := up.flush(); ferr != nil {
			var fe *fatalError
			if !errors.As(err, &fe) {
				err = ferr
			}
		}
	}()
	err = up.r.Serve(up)
	if errors.Is(err, jute.ErrFrameTooLarge) {
		s.srv.m.framesOverLimit.WithLabelValues("upstream").Inc()
		return &fatalError{fmt.Errorf("member %s sent a frame over max-reply-frame-size: %w", up.member, err)}
	}
	return err
}

// The upstream is its pump's frameHandler (see readUpstream).

func (up *upstream) onFrame(f frame) error {
	at := up.r.readAt
	up.lastRecv.Store(at.UnixNano())
	forward, err := up.sess.onReply(f.Payload(), at)
	if err != nil {
		return &fatalError{fmt.Errorf("member %s: %w", up.member, err)}
	}
	if forward {
		up.pending = append(up.pending, f.Raw())
	}
	return nil
}

func (up *upstream) beforeRead() error {
	if err := up.flush(); err != nil {
		return err
	}
	up.rw.arm(up.r.readAt, up.conn.SetReadDeadline)
	return nil
}

func (up *upstream) onTimeout(err error) error {
	return up.rw.onTimeout(err, up.r.readAt, up.conn.SetReadDeadline)
}

// flush writes the frames collected since the last read to the client.
func (up *upstream) flush() error {
	if len(up.pending) == 0 {
		return nil
	}
	werr := up.sess.writeClientFrames(up.pending, up.r.readAt)
	clear(up.pending)
	up.pending = up.pending[:0]
	if werr != nil {
		return &fatalError{werr}
	}
	return nil
}

// writeClientFrames writes frames to the client with one writev.
func (s *Session) writeClientFrames(frames [][]byte, now time.Time) error {
	if len(frames) == 1 {
		return s.writeClientAt(frames[0], now)
	}
	s.cwmu.Lock()
	defer s.cwmu.Unlock()
	s.clientWDL.extendAt(now, s.clientTimeout, s.client.SetWriteDeadline)
	n, err := writeFrames(s.client, s.clientR.raw, frames)
	s.st.clientBytesOut.Add(uint64(n))
	if err == nil {
		s.sent.Add(uint64(len(frames)))
		s.st.packetsSent.Add(uint64(len(frames)))
	}
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("client stopped reading for the session timeout %s", s.clientTimeout)
		}
		return fmt.Errorf("writing to client: %w", err)
	}
	return nil
}

// readTimeout is how long the upstream may stay silent: half its
// negotiated timeout. The proxy's pings (after a third of the timeout
// without sending) keep a healthy member talking well within it. It must
// be shorter than the client's own read timeout — two thirds of the
// timeout (ClientCnxn's readTimeout), counted from the same last frame —
// so the proxy notices a frozen member and starts answering the client's
// pings before the client gives up on its connection.
func (up *upstream) readTimeout() time.Duration { return up.timeout / 2 }

// onReply updates the session state for one member frame and reports
// whether the client must see it.
func (s *Session) onReply(payload []byte, now time.Time) (forward bool, err error) {
	h, err := jute.PeekReplyHeader(payload)
	if err != nil {
		s.srv.m.decodeErrors.WithLabelValues("reply_header").Inc()
		return false, fmt.Errorf("malformed reply header: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case h.Xid == jute.XidNotification:
		var ev jute.WatcherEvent
		if err := jute.Unmarshal(payload[jute.ReplyHeaderSize:], &ev); err != nil {
			// Keep the watches (over-registration is harmless) and let
			// the client judge the frame.
			s.srv.m.decodeErrors.WithLabelValues("notification").Inc()
			return true, nil
		}
		s.watches.fired(ev.Type, ev.Path)
		s.srv.m.notifications.Inc()
		return true, nil
	case h.Xid == jute.XidPing:
		fromProxy, ok := s.pings.pop()
		if !ok {
			return false, errors.New("ping reply with no ping in flight")
		}
		if !fromProxy {
			s.st.countResponse(jute.OpPing, h.Err)
		}
		return !fromProxy, nil
	case h.Xid == jute.XidAuth && len(s.pendingAuth) > 0:
		frame := s.pendingAuth[0]
		s.pendingAuth = s.pendingAuth[1:]
		if h.Err == jute.ErrOK {
			s.authLog = append(s.authLog, frame)
		} else {
			s.memberClose = fmt.Sprintf("auth failed (%s)", h.Err)
		}
		s.cond.Broadcast()
		return true, nil
	}
	req, err := s.outstanding.match(h.Xid)
	if err != nil {
		s.srv.m.decodeErrors.WithLabelValues("reply_xid").Inc()
		return false, err
	}
	s.cond.Broadcast()
	s.st.observeReply(req.op, h.Err, now, &req)
	if h.Zxid > s.lastZxid {
		s.lastZxid = h.Zxid
	}
	s.watches.replied(req.op, req.path, req.watch, req.arg, h.Err)
	if req.auth != nil && h.Err == jute.ErrOK {
		s.authLog = append(s.authLog, req.auth)
	}
	if closesConnection(h.Err) {
		s.memberClose = fmt.Sprintf("%s answered %s", req.op, h.Err)
	}
	return true, nil
}

// upstreamLost handles the end of the current upstream connection
// (ZK-PROTOCOL §9.2): re-attach invisibly when nothing was in flight,
// close the client when an outcome is unknown or the member meant to close.
func (s *Session) upstreamLost(up *upstream, cause error) {
	s.mu.Lock()
	if s.closed || s.up != up {
		// Closed, or detached on purpose by Move.
		s.mu.Unlock()
		return
	}
	s.setUpLocked(nil)
	inFlight := s.outstanding.len() + len(s.pendingAuth)
	switch {
	case s.closeSent:
		s.mu.Unlock()
		s.close("client closed its session")
		return
	case s.memberClose != "":
		reason := s.memberClose
		s.mu.Unlock()
		s.close(fmt.Sprintf("member %s closed the connection after it %s", up.member, reason))
		return
	case s.usedSASL:
		s.mu.Unlock()
		// SASL tokens are bound to the connection and cannot be replayed
		// (ZK-PROTOCOL §6.3, §10.1): a re-attached session would lose its
		// identity, so the client must reconnect and authenticate again.
		s.srv.m.reattaches.WithLabelValues("sasl").Inc()
		s.close(fmt.Sprintf("upstream %s lost and the session used SASL, which cannot be replayed", up.member))
		return
	case inFlight > 0:
		s.mu.Unlock()
		// A member that loses the session drops what was in flight with no
		// reply (ZK-PROTOCOL §2.5, §10.2), so the outcome of those
		// requests is unknown and must not be retried by the proxy: the
		// client gets ConnectionLoss and reconnects through the proxy
		// with its session, as when a real server dies.
		s.srv.members.markFailed(up.member)
		s.srv.m.reattaches.WithLabelValues("closed_in_flight").Inc()
		s.close(fmt.Sprintf("upstream %s lost with %d requests in flight (%v)", up.member, inFlight, cause))
		return
	case s.state == StateDraining && s.moving:
		// Move is waiting for the drain; with nothing in flight it can go
		// straight to its target.
		orphans := s.pings.clientPings()
		s.pings.clear()
		zxid := s.lastZxid
		s.cond.Broadcast()
		s.mu.Unlock()
		s.answerPings(orphans, zxid)
		return
	}
	s.srv.members.markFailed(up.member)
	s.state = StateReattaching
	s.beginHoldLocked()
	s.stateGaugeLocked()
	orphans := s.pings.clientPings()
	s.pings.clear()
	zxid := s.lastZxid
	ensemble := s.ensemble
	lastRecv := time.Unix(0, up.lastRecv.Load())
	s.cond.Broadcast()
	s.mu.Unlock()
	s.answerPings(orphans, zxid)

	// The member's session tracker expires the session one timeout after
	// its last touch (SessionTrackerImpl, ExpiryQueue); that is the whole
	// budget for re-attaching.
	budget := lastRecv.Add(up.timeout)
	s.logger().Info("upstream lost; re-attaching", "member", up.member, "cause", cause, "budget", time.Until(budget).Round(time.Millisecond))
	start := time.Now()
	ctx, done := s.operationContext()
	next, err := s.reattach(ctx, ensemble, budget)
	done()
	if err != nil {
		s.srv.m.reattaches.WithLabelValues(reattachFailure(err)).Inc()
		s.close(fmt.Sprintf("re-attach after losing %s failed: %v", up.member, err))
		return
	}
	s.srv.m.reattaches.WithLabelValues("ok").Inc()
	s.logger().Info("session re-attached", "from", up.member, "to", next.member, "reason", "upstream lost",
		"took", time.Since(start).Round(time.Millisecond), "watches", s.Info().Watches)
	s.resume(next, nil)
}

// reattachFailure classifies a reattach error into a bounded label.
func reattachFailure(err error) string {
	var fe *fatalError
	switch {
	case errors.Is(err, errSessionExpired):
		return "expired"
	case errors.As(err, &fe):
		return "replay_failed"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	}
	return "refused"
}

// answerPings answers client pings whose upstream went away.
func (s *Session) answerPings(n int, zxid jute.Zxid) {
	for range n {
		if s.answerPing(zxid) != nil {
			return
		}
	}
}

// reattach opens the session on a member of members before deadline:
// ConnectRequest with the same id, password, lastZxidSeen, requested
// timeout and readOnly byte, then auth and watch replay (ZK-PROTOCOL §9.2
// CONNECTING → REPLAY_AUTH → REPLAY_WATCHES).
func (s *Session) reattach(ctx context.Context, members []string, deadline time.Time) (*upstream, error) {
	s.mu.Lock()
	req := jute.ConnectRequest{
		LastZxidSeen: s.lastZxid,
		TimeOut:      s.reqTimeout,
		SessionID:    s.id,
		Passwd:       s.passwd,
		ReadOnly:     s.readOnly,
		HasReadOnly:  s.hasReadOnly,
	}
	s.mu.Unlock()
	frame := jute.AppendFrame(nil, jute.Marshal(&req))
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	var lastErr error
	warned := map[string]bool{}
	backoff := 50 * time.Millisecond
	for {
		for _, member := range s.srv.members.order(members) {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("%w (last attempt: %v)", err, lastErr)
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("no member of %v took the session before its timeout (last attempt: %v)", members, lastErr)
			}
			attemptDeadline := time.Now().Add(s.srv.cfg.HandshakeTimeout)
			if deadline.Before(attemptDeadline) {
				attemptDeadline = deadline
			}
			up, resp, _, err := s.srv.connectMember(ctx, member, frame, attemptDeadline, s.st)
			if errors.Is(err, errSessionExpired) {
				return nil, fmt.Errorf("member %s: %w", member, err)
			}
			if err != nil {
				if errors.Is(err, errMemberRefused) {
					// Once per member and re-attach at warn: during an
					// election every member refuses for a while.
					level := slog.LevelDebug
					if !warned[member] {
						warned[member] = true
						level = slog.LevelWarn
					}
					s.logger().Log(context.Background(), level, "member closed the re-attach right after the ConnectRequest",
						"member", member, "last_zxid_seen", req.LastZxidSeen, "likely_causes", refusalCauses)
				}
				lastErr = err
				continue
			}
			if resp.SessionID != s.id {
				up.conn.Close()
				return nil, fmt.Errorf("member %s answered with session %s", member, resp.SessionID)
			}
			if err := s.replay(up, attemptDeadline); err != nil {
				up.conn.Close()
				s.srv.members.markFailed(member)
				var fe *fatalError
				if errors.As(err, &fe) {
					return nil, err
				}
				lastErr = err
				continue
			}
			return up, nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// replay re-creates the connection-scoped state on a new upstream: the
// auth packets first (3.9 drops events on nodes the connection may not
// read, ServerCnxn.process), then the watches. Replies to the proxy's own
// frames are swallowed; catch-up notifications are forwarded.
func (s *Session) replay(up *upstream, deadline time.Time) error {
	s.mu.Lock()
	auths := slices.Clone(s.authLog)
	batches := s.watches.batches(setWatchesMaxPathChars)
	rel := s.lastZxid
	s.mu.Unlock()

	up.conn.SetDeadline(deadline)
	defer up.conn.SetDeadline(time.Time{})
	for _, frame := range auths {
		s.st.upstreamBytesOut.Add(uint64(len(frame)))
		if _, err := up.conn.Write(frame); err != nil {
			return fmt.Errorf("replaying auth on %s: %w", up.member, err)
		}
		h, err := s.awaitOwnReply(up, jute.XidAuth)
		if err != nil {
			return fmt.Errorf("replaying auth on %s: %w", up.member, err)
		}
		if h.Err != jute.ErrOK {
			// The member closes the connection after AUTHFAILED
			// (ZooKeeperServer.processPacket): the client's identity cannot
			// be restored, so the move must be visible.
			return &fatalError{fmt.Errorf("replayed auth failed on %s: %s", up.member, h.Err)}
		}
	}
	for _, b := range batches {
		op, rec := b.record(rel)
		frame := appendRequestFrame(nil, jute.RequestHeader{Xid: jute.XidSetWatches, Op: op}, rec)
		s.st.upstreamBytesOut.Add(uint64(len(frame)))
		if _, err := up.conn.Write(frame); err != nil {
			return fmt.Errorf("replaying watches on %s: %w", up.member, err)
		}
		h, err := s.awaitOwnReply(up, jute.XidSetWatches)
		if err != nil {
			return fmt.Errorf("replaying watches on %s: %w", up.member, err)
		}
		if h.Err != jute.ErrOK {
			return fmt.Errorf("%s rejected by %s: %s", op, up.member, h.Err)
		}
		s.srv.m.watchesReplayed.Add(float64(len(b.data) + len(b.exist) + len(b.child) + len(b.persistent) + len(b.recursive)))
	}
	up.lastSend.Store(time.Now().UnixNano())
	return nil
}

// awaitOwnReply reads the new upstream until the reply with xid arrives,
// forwarding notifications (SetWatches catch-up events come before its
// reply, DataTree.setWatches) and applying them to the tracker.
func (s *Session) awaitOwnReply(up *upstream, xid jute.Xid) (jute.ReplyHeader, error) {
	for {
		f, err := up.r.Next()
		if err != nil {
			return jute.ReplyHeader{}, err
		}
		up.lastRecv.Store(up.r.readAt.UnixNano())
		h, err := jute.PeekReplyHeader(f.Payload())
		if err != nil {
			s.srv.m.decodeErrors.WithLabelValues("reply_header").Inc()
			return h, err
		}
		switch h.Xid {
		case xid:
			return h, nil
		case jute.XidNotification:
			if _, err := s.onReply(f.Payload(), up.r.readAt); err != nil {
				return h, err
			}
			if err := s.writeClient(f.Raw()); err != nil {
				return h, &fatalError{err}
			}
		default:
			return h, fmt.Errorf("unexpected reply xid %d while waiting for xid %d", h.Xid, xid)
		}
	}
}

// resume makes up the session's upstream and releases the held requests
// in their original order (ZK-PROTOCOL §9.2 RESUME). ensemble, when not
// nil, becomes the ensemble failovers stay in.
func (s *Session) resume(up *upstream, ensemble []string) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		up.conn.Close()
		return
	}
	s.setUpLocked(up)
	s.state = StateActive
	s.attaches++
	if ensemble != nil {
		s.ensemble = slices.Clone(ensemble)
		s.ensKind = s.srv.ensembleKind(ensemble)
	}
	s.stateGaugeLocked()
	var held []heldRequest
	if !s.barrier {
		held = s.takeHeldLocked()
		s.endHoldLocked()
	}
	// Added under mu while not closed: Server.Close closes every session
	// before it waits, so this Add happens before that Wait.
	s.srv.wg.Add(1)
	s.cond.Broadcast()
	s.mu.Unlock()
	up.lastRecv.Store(time.Now().UnixNano())
	go s.runUpstream(up, time.Now())
	s.startPinger(up)
	for _, h := range held {
		s.writeUpstream(up, h.frame)
	}
}

// resumeDrained ends a drain that timed out: the session goes back to
// active on up, the held requests are released. Nothing happens if up is no
// longer the session's upstream.
func (s *Session) resumeDrained(up *upstream) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	if s.closed || s.up != up || s.state != StateDraining {
		s.mu.Unlock()
		return
	}
	s.state = StateActive
	s.stateGaugeLocked()
	var held []heldRequest
	if !s.barrier {
		held = s.takeHeldLocked()
		s.endHoldLocked()
	}
	s.cond.Broadcast()
	s.mu.Unlock()
	for _, h := range held {
		s.writeUpstream(up, h.frame)
	}
}

// takeHeldLocked moves the held requests into the in-flight queues, in
// order, and returns them for writing (under sendMu).
func (s *Session) takeHeldLocked() []heldRequest {
	held := s.held
	s.srv.m.heldBytes.Sub(float64(s.heldBytes))
	s.held, s.heldBytes = nil, 0
	now := time.Now()
	for _, h := range held {
		h.req.sent = now
		s.enqueueLocked(h.frame, h.req, h.sw)
	}
	s.srv.m.heldRequestsNow.Sub(float64(len(held)))
	return held
}

// Hold drains the session and then holds its client requests, in order and
// within the session's limits, until Release; client pings are answered by
// the proxy meanwhile. It is the per-session half of cutover's split
// barrier: while held, the session may lose its upstream and re-attach
// (inside its ensemble) without the client seeing anything, because
// nothing is in flight. Hold returns once nothing is in flight. If ctx ends
// first it releases the session again and returns ErrDrainTimeout in a
// MoveError. The caller must bound the hold well under the session timeout:
// a held client's requests get no answer.
func (s *Session) Hold(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return &MoveError{Reason: "closed", Disconnected: true, Err: fmt.Errorf("%w: %s", ErrSessionClosed, s.closeReason)}
	}
	s.barrier = true
	s.beginHoldLocked()
	for !s.closed && s.up != nil && s.outstanding.len()+len(s.pendingAuth) > 0 && ctx.Err() == nil {
		s.cond.Wait()
	}
	if s.closed {
		s.mu.Unlock()
		return &MoveError{Reason: "closed", Disconnected: true, Err: fmt.Errorf("%w: %s", ErrSessionClosed, s.closeReason)}
	}
	if n := s.outstanding.len() + len(s.pendingAuth); s.up != nil && n > 0 {
		s.mu.Unlock()
		s.Release()
		return &MoveError{Reason: "drain_timeout", Err: fmt.Errorf("%w: %d still in flight", ErrDrainTimeout, n)}
	}
	s.mu.Unlock()
	return nil
}

// Release ends a Hold: the held requests go upstream in order if the
// session is attached, or when its re-attach completes.
func (s *Session) Release() {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	s.barrier = false
	var held []heldRequest
	up := s.up
	if !s.closed && s.state == StateActive && up != nil && !s.stopping {
		held = s.takeHeldLocked()
		s.endHoldLocked()
	}
	s.cond.Broadcast()
	s.mu.Unlock()
	for _, h := range held {
		s.writeUpstream(up, h.frame)
	}
}

// startPinger keeps the member's session alive on the member's own
// negotiated timeout: the client paces its pings by the timeout it was
// told, which a re-attached member may have negotiated lower
// (ZK-PROTOCOL §5.4, §10.12). A ping goes out after a third of the timeout
// without any frame sent, like ClientCnxn's readTimeout/2.
func (s *Session) startPinger(up *upstream) {
	interval := max(up.timeout/3, 10*time.Millisecond)
	var t *time.Timer
	t = time.AfterFunc(interval, func() {
		idle := time.Since(time.Unix(0, up.lastSend.Load()))
		if idle >= interval {
			s.sendMu.Lock()
			s.mu.Lock()
			ok := !s.closed && s.up == up
			if ok {
				s.pings.push(true)
			}
			s.mu.Unlock()
			if ok {
				s.writeUpstream(up, pingFrame)
				s.srv.m.proxyPings.Inc()
			}
			s.sendMu.Unlock()
			if !ok {
				return
			}
			idle = 0
		}
		select {
		case <-up.done:
		default:
			t.Reset(interval - idle)
		}
	})
	up.pinger.Store(t)
}

// Move re-establishes the session on a member of target without closing
// the client connection (ZK-PROTOCOL §9.2 DRAINING → CONNECTING →
// REPLAY_AUTH → REPLAY_WATCHES → RESUME). It waits for a failover in
// progress to finish, holds new client requests (bounded by the session's
// limits), waits for the replies to those in flight, closes the old
// upstream, opens the session on target with the same id, password and
// lastZxidSeen, replays auth and watches, then releases the held requests
// in order. Client pings are answered throughout.
//
// ctx bounds the whole move; it should end well within the session
// timeout. If it ends while requests are still in flight, Move returns
// ErrDrainTimeout and the session stays where it was, untouched. Once the
// old upstream is closed there is no way back: if the target does not take
// the session (refused, expired, auth replay failed, ctx ended), Move
// closes the client connection — the client reconnects through the proxy
// with its session — and returns the error. On success, failovers stay in
// target from then on.
func (s *Session) Move(ctx context.Context, target []string) error {
	return s.move(ctx, target, target)
}

// move is Move onto a member of candidates, after which failovers stay in
// ensemble (candidates is a subset of it).
func (s *Session) move(ctx context.Context, candidates, target []string) error {
	if len(candidates) == 0 {
		return &MoveError{Reason: "bad_target", Err: errors.New("empty target")}
	}
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer stop()

	s.mu.Lock()
	for !s.closed && s.state != StateActive && ctx.Err() == nil {
		s.cond.Wait()
	}
	if s.closed {
		s.mu.Unlock()
		return &MoveError{Reason: "closed", Disconnected: true, Err: fmt.Errorf("%w: %s", ErrSessionClosed, s.closeReason)}
	}
	if err := ctx.Err(); err != nil {
		state := s.state
		s.mu.Unlock()
		return &MoveError{Reason: "busy", Err: fmt.Errorf("session is %s: %w", state, err)}
	}
	if s.usedSASL {
		s.mu.Unlock()
		s.srv.m.moves.WithLabelValues("sasl").Inc()
		return &MoveError{Reason: "sasl", Err: errors.New("the session authenticated with SASL, which cannot be replayed on a new connection")}
	}
	start := time.Now()
	s.state = StateDraining
	s.beginHoldLocked()
	s.stateGaugeLocked()
	s.moving = true
	for !s.closed && s.up != nil && s.outstanding.len()+len(s.pendingAuth) > 0 && ctx.Err() == nil {
		s.cond.Wait()
	}
	s.moving = false
	s.srv.m.moveDrainSeconds.Observe(time.Since(start).Seconds())
	if s.closed {
		s.mu.Unlock()
		s.srv.m.moves.WithLabelValues("closed").Inc()
		return &MoveError{Reason: "closed", Disconnected: true, Err: fmt.Errorf("%w: %s", ErrSessionClosed, s.closeReason)}
	}
	if s.up != nil && s.outstanding.len()+len(s.pendingAuth) > 0 {
		n := s.outstanding.len() + len(s.pendingAuth)
		up := s.up
		s.mu.Unlock()
		// Back to active on the same upstream, unless it was lost in the
		// meantime: then the ordinary failover (moving is false) owns the
		// session.
		s.resumeDrained(up)
		s.srv.m.moves.WithLabelValues("drain_timeout").Inc()
		return &MoveError{Reason: "drain_timeout", Err: fmt.Errorf("%w: %d still in flight on %s", ErrDrainTimeout, n, up.member)}
	}
	old := s.up
	s.setUpLocked(nil)
	s.state = StateReattaching
	s.stateGaugeLocked()
	orphans := s.pings.clientPings()
	s.pings.clear()
	zxid := s.lastZxid
	budget := time.Now().Add(s.clientTimeout)
	if old != nil {
		budget = time.Unix(0, old.lastRecv.Load()).Add(old.timeout)
	}
	s.mu.Unlock()
	oldMember := "(none)"
	if old != nil {
		// The old connection must be gone before the session is
		// revalidated elsewhere (ZK-PROTOCOL §5.2): it drops the stale
		// watches there and no write can be in flight on two members.
		oldMember = old.member
		old.conn.Close()
		s.srv.unpark(old.r)
		<-old.done
	}
	s.answerPings(orphans, zxid)
	drained := time.Since(start)

	up, err := s.reattach(ctx, candidates, budget)
	if err != nil {
		reason := reattachFailure(err)
		s.srv.m.moves.WithLabelValues(reason).Inc()
		s.close(fmt.Sprintf("move from %s to %v failed: %v", oldMember, target, err))
		return &MoveError{Reason: reason, Disconnected: true, Err: fmt.Errorf("session %s to %v: %w", s.id, target, err)}
	}
	s.resume(up, target)
	s.srv.m.moves.WithLabelValues("ok").Inc()
	s.logger().Info("session re-attached", "from", oldMember, "to", up.member, "reason", "move",
		"drain", drained.Round(time.Millisecond), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// drainAndClose is the graceful end used by Server.Shutdown and Disconnect:
// forward nothing new, wait for in-flight replies (bounded by ctx), close
// the client connection. The ZooKeeper session itself is left alive so the
// client can resume it, through this proxy or another.
func (s *Session) drainAndClose(ctx context.Context, reason string) {
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	s.mu.Lock()
	s.stopping = true
	for !s.closed && s.state != StateHandshake && s.up != nil &&
		s.outstanding.len()+len(s.pendingAuth) > 0 && ctx.Err() == nil {
		s.cond.Wait()
	}
	s.mu.Unlock()
	s.close(reason)
}

// close ends the client connection and the upstream, once; reason is
// logged and counted.
func (s *Session) close(reason string) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.closeReason = reason
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
		s.srv.m.connectionsClosed.WithLabelValues(closeLabel(reason)).Inc()
		member := ""
		if up != nil {
			member = up.member
		}
		s.logger().Info("session closed", "reason", reason, "member", member,
			"age", time.Since(s.created).Round(time.Millisecond), "dropped_held", held)
	}
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
		if s.gaugeEns == ens && s.gaugeState == st {
			return
		}
		s.srv.m.sessionsByState[s.gaugeEns][s.gaugeState].Dec()
		s.gaugeCounted = false
	}
	if s.state == StateClosed || st < 0 || st >= numSessionStates {
		return
	}
	s.srv.m.sessionsByState[ens][st].Inc()
	s.gaugeCounted, s.gaugeEns, s.gaugeState = true, ens, st
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

// closeLabel maps a close reason to a bounded metric label.
func closeLabel(reason string) string {
	for _, p := range []struct{ prefix, label string }{
		{"client closed the connection", "client_closed"},
		{"client closed its session", "close_session"},
		{"client silent", "client_timeout"},
		{"client stopped reading", "client_not_reading"},
		{"client frame over", "frame_too_large"},
		{"client connection ended inside", "truncated_frame"},
		{"malformed", "malformed"},
		{"request ", "reserved_xid"},
		{"upstream ", "upstream_lost_in_flight"},
		{"member ", "member_closed"},
		{"re-attach", "reattach_failed"},
		{"move ", "move_failed"},
		{"replaced", "replaced"},
		{"proxy ", "proxy_shutdown"},
	} {
		if len(reason) >= len(p.prefix) && reason[:len(p.prefix)] == p.prefix {
			return p.label
		}
	}
	return "other"
}
