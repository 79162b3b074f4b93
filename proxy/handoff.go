package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/zkproxy/zkproxy/jute"
)

// Handoff: a running zkproxy gives its live sessions, client connections
// included, to a new zkproxy process (docs/upgrade.md). Each session is
// drained as a move drains it (docs/protocol.md §9.2: new requests held in
// order, in-flight replies awaited, pings answered by the proxy), its
// upstream closed, its client pump stopped without closing the client
// socket; then its state and the client descriptor (SCM_RIGHTS) go over a
// Unix socket, and the new process re-attaches the session on a member of
// its target with the move's re-attach (same id, password, lastZxidSeen,
// auth replay, SetWatches) and releases the held requests.

var (
	// ErrListenerReleased is returned by Serve after HandOver released the
	// listeners to a new process. ResumeAccepting undoes it.
	ErrListenerReleased = errors.New("proxy: listeners released to a new process")
	// ErrHandoffRefused: the new process does not accept this process's
	// handoff version; nothing was handed over.
	ErrHandoffRefused = errors.New("proxy: handoff refused")

	errHandOff = errors.New("proxy: client pump stopped for a handoff")
)

// HandOverOptions bounds a HandOver. Zero values are replaced by the
// defaults named.
type HandOverOptions struct {
	// Batch is how many sessions are drained and handed over at once
	// (default 100): each is paused only while its batch goes over.
	Batch int
	// ReadyTimeout bounds the wait for the new process's hello (10s).
	ReadyTimeout time.Duration
	// DrainTimeout bounds one session's drain (in-flight replies awaited,
	// 5s); a session still busy after it stays with this process.
	DrainTimeout time.Duration
	// AckTimeout bounds the wait for the new process to take a batch, and
	// each message sent to it (10s).
	AckTimeout time.Duration
	// Abort is called when the new process stops answering mid-handoff,
	// before this process takes the unacknowledged sessions back: it must
	// make sure the new process is gone (kill and wait), so a client
	// connection is never served by both.
	Abort func()
}

func (o HandOverOptions) withDefaults() HandOverOptions {
	if o.Batch <= 0 {
		o.Batch = 100
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 10 * time.Second
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 5 * time.Second
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = 10 * time.Second
	}
	return o
}

// HandOverResult says what a HandOver did.
type HandOverResult struct {
	// NewVersion and NewPID are the new process's, from its hello.
	NewVersion string
	NewPID     int64
	// HandedOver counts sessions the new process took.
	HandedOver int
	// Disconnected counts sessions that could not be handed over (TLS,
	// SASL), drained and disconnected by reason.
	Disconnected map[string]int
	// Kept counts sessions that stayed with this process (busy, held,
	// failed), by reason.
	Kept map[string]int
}

// Remaining is the number of sessions this process still serves.
func (r *HandOverResult) Remaining() int {
	n := 0
	for _, k := range r.Kept {
		n += k
	}
	return n
}

// HandOver gives this server's sessions to the zkproxy process at the other
// end of conn, which runs Adopt. It waits for the new process's hello and
// refuses (ErrHandoffRefused, nothing changed) unless the new process
// accepts this binary's handoff version. Then it stops accepting (Serve
// returns ErrListenerReleased; the new process accepts on the same
// listening sockets, passed to it by the caller) and hands the sessions
// over in batches. If the new process stops answering, HandOver calls
// opts.Abort, takes back every session not acknowledged (they never noticed)
// and returns the error; the caller then calls ResumeAccepting and serves
// on. Sessions that cannot be handed over (a TLS client connection, whose
// crypto state stays here; a SASL session, which cannot be replayed) are
// drained and disconnected: their clients reconnect to the new process with
// their sessions. HandOver does not close conn.
func (s *Server) HandOver(ctx context.Context, conn *net.UnixConn, opts HandOverOptions) (HandOverResult, error) {
	opts = opts.withDefaults()
	res := HandOverResult{Disconnected: map[string]int{}, Kept: map[string]int{}}
	hc := newHandoffConn(conn)
	// A new process that stops taking sessions fails the handoff within
	// AckTimeout, whether it stopped acknowledging or reading: the
	// sessions not acknowledged are taken back (handOverBatch).
	hc.sendTimeout = opts.AckTimeout
	typ, body, err := hc.recv(time.Now().Add(opts.ReadyTimeout))
	if err != nil {
		return res, fmt.Errorf("proxy: handoff: waiting for the new process's hello: %w", err)
	}
	if typ != msgHello {
		return res, fmt.Errorf("proxy: handoff: %w: message %q before hello", errHandoffDecode, typ)
	}
	hello, err := decodeHello(body)
	if err != nil {
		return res, fmt.Errorf("proxy: handoff: %w", err)
	}
	res.NewVersion, res.NewPID = hello.Version, hello.PID
	if !slices.Contains(hello.Accepts, HandoffVersion()) {
		return res, fmt.Errorf("%w: the new process (version %s, pid %d) accepts handoff versions %v, this one speaks %d",
			ErrHandoffRefused, hello.Version, hello.PID, hello.Accepts, HandoffVersion())
	}
	begin := handoffBegin{Version: HandoffVersion()}
	if err := hc.send(msgBegin, begin.encode(), -1); err != nil {
		return res, fmt.Errorf("proxy: handoff: %w", err)
	}
	s.releaseListeners()
	s.log.Info("handing sessions over", "new_version", hello.Version, "new_pid", hello.PID, "batch", opts.Batch)

	tried := map[*Session]bool{}
	var waitingSince time.Time
	for {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("proxy: handoff: %w", err)
		}
		batch, handshaking := s.handoffCandidates(tried, opts.Batch)
		if len(batch) == 0 {
			if handshaking == 0 {
				break
			}
			// A connection in its handshake becomes a session (or goes)
			// within handshake-timeout; one that does neither stays here.
			if waitingSince.IsZero() {
				waitingSince = time.Now()
			}
			if time.Since(waitingSince) > 2*s.cfg.HandshakeTimeout {
				s.log.Warn("connections still in their handshake stay with this process", "connections", handshaking)
				break
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		waitingSince = time.Time{}
		for _, sess := range batch {
			tried[sess] = true
		}
		if err := s.handOverBatch(ctx, hc, batch, opts, &res); err != nil {
			return res, err
		}
	}
	if err := hc.send(msgDone, nil, -1); err != nil {
		return res, fmt.Errorf("proxy: handoff: %w", err)
	}
	s.log.Info("handoff complete", "handed_over", res.HandedOver, "disconnected", res.Disconnected, "kept", res.Kept)
	return res, nil
}

// releaseListeners closes this server's listeners for a handoff: the new
// process holds the same listening sockets, so no connect is refused.
func (s *Server) releaseListeners() {
	s.released.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	for ln := range s.listeners {
		ln.Close()
	}
}

// ResumeAccepting ends the release of a failed HandOver: Serve may be
// called again (with listeners made from the sockets kept for the new
// process).
func (s *Server) ResumeAccepting() { s.released.Store(false) }

// handoffCandidates returns up to n established sessions not tried yet,
// and how many connections are still in their handshake.
func (s *Server) handoffCandidates(tried map[*Session]bool, n int) ([]*Session, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Session
	handshaking := 0
	for sess := range s.conns {
		if tried[sess] {
			continue
		}
		if sess.id == 0 || s.byID[int64(sess.id)] != sess {
			handshaking++
			continue
		}
		if len(out) < n {
			out = append(out, sess)
		}
	}
	return out, handshaking
}

// detached is a session whose upstream is closed and client pump stopped,
// ready to go.
type detached struct {
	sess   *Session
	rec    handoffSession
	budget time.Time // the member expires the session then
}

// handOverBatch drains and detaches the sessions of batch at once, sends
// each as soon as it is detached (its pause is its own drain, the transfer
// and the re-attach, not the whole batch's), then waits for the new process
// to take them.
func (s *Server) handOverBatch(ctx context.Context, hc *handoffConn, batch []*Session, opts HandOverOptions, res *HandOverResult) error {
	start := time.Now()
	var (
		mu      sync.Mutex
		ready   []detached // detached: sent, or to take back
		sent    int
		failure error
		wg      sync.WaitGroup
	)
	for _, sess := range batch {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dctx, cancel := context.WithTimeout(ctx, opts.DrainTimeout)
			defer cancel()
			d, reason, err := sess.detachForHandoff(dctx)
			mu.Lock()
			defer mu.Unlock()
			switch reason {
			case "":
				ready = append(ready, d)
				if failure == nil {
					// Past this point a failure hands back every session
					// not acknowledged.
					if failure = sendSession(hc, d); failure == nil {
						sent++
					}
				}
			case "tls", "sasl":
				res.Disconnected[reason]++
				s.m.handedOver.WithLabelValues(reason).Inc()
			case "closed":
			default:
				res.Kept[reason]++
				s.m.handedOver.WithLabelValues("kept").Inc()
				sess.logger().Info("session stays with this process", "reason", reason, "err", err)
			}
		}()
	}
	wg.Wait()
	detached := time.Since(start)

	acked := map[int64]handoffAck{}
	deadline := time.Now().Add(opts.AckTimeout)
	for len(acked) < sent && failure == nil {
		typ, body, err := hc.recv(deadline)
		if err != nil {
			failure = fmt.Errorf("waiting for the new process to take %d sessions: %w", sent-len(acked), err)
			break
		}
		if typ != msgAck {
			failure = fmt.Errorf("%w: message %q instead of an ack", errHandoffDecode, typ)
			break
		}
		a, err := decodeAck(body)
		if err != nil {
			failure = err
			break
		}
		acked[a.SessionID] = a
	}
	s.log.Debug("handoff batch", "sessions", len(batch), "sent", sent, "detached_and_sent", detached.Round(time.Millisecond),
		"acknowledged", time.Since(start).Round(time.Millisecond))
	if failure != nil && opts.Abort != nil {
		// A session the new process took must not be taken back while
		// it may still serve it.
		opts.Abort()
	}
	for _, d := range ready {
		a, ok := acked[d.rec.ID]
		if ok && a.OK {
			d.sess.handedOver()
			res.HandedOver++
			s.m.handedOver.WithLabelValues("ok").Inc()
			continue
		}
		reason := "failed"
		if ok {
			d.sess.logger().Warn("the new process refused the session; it stays here", "reason", a.Reason)
			reason = "refused"
		}
		res.Kept[reason]++
		s.m.handedOver.WithLabelValues("kept").Inc()
		d.sess.takeBack(d.budget)
	}
	if failure != nil {
		return fmt.Errorf("proxy: handoff: %w", failure)
	}
	return nil
}

// sendSession sends d's record with its client descriptor. The descriptor
// is the connection's own, passed inside RawConn.Control so it cannot be
// closed meanwhile; the kernel gives the new process its own reference.
func sendSession(hc *handoffConn, d detached) error {
	sc, ok := d.sess.client.(syscall.Conn)
	if !ok {
		return fmt.Errorf("session %s: client connection has no descriptor", d.sess.id)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("session %s: %w", d.sess.id, err)
	}
	body := d.rec.encode()
	var sendErr error
	if err := raw.Control(func(fd uintptr) { sendErr = hc.send(msgSession, body, int(fd)) }); err != nil {
		return fmt.Errorf("session %s: %w", d.sess.id, err)
	}
	return sendErr
}

// detachForHandoff drains the session as Move does, closes its upstream
// and stops its client pump, and returns its state. A non-empty reason
// says why not: "closed" (gone), "tls"/"sasl" (drained and disconnected
// instead), or why it stays with this process.
func (s *Session) detachForHandoff(ctx context.Context) (detached, string, error) {
	if _, ok := s.client.(syscall.Conn); !ok {
		// A TLS connection's keys and sequence numbers live in this
		// process's tls.Conn: the descriptor alone is useless elsewhere.
		s.drainAndClose(ctx, closeDisconnected, "TLS client connection cannot be handed to the new process")
		return detached{}, "tls", nil
	}
	defer s.wakeWhenDone(ctx)()
	s.mu.Lock()
	for !s.closedLocked() && s.state != StateActive && ctx.Err() == nil {
		s.cond.Wait()
	}
	switch {
	case s.closedLocked() || s.stopping:
		s.mu.Unlock()
		return detached{}, "closed", nil
	case ctx.Err() != nil:
		state := s.state
		s.mu.Unlock()
		return detached{}, "busy", fmt.Errorf("session is %s", state)
	case s.usedSASL:
		s.mu.Unlock()
		// SASL tokens are bound to the connection (docs/protocol.md §6.3).
		s.drainAndClose(ctx, closeDisconnected, "SASL session cannot be handed to the new process")
		return detached{}, "sasl", nil
	case s.barrier:
		s.mu.Unlock()
		return detached{}, "held", errors.New("a Hold is in force (cutover barrier)")
	}
	n := s.drainForMoveLocked(ctx)
	if s.closedLocked() || s.stopping {
		s.mu.Unlock()
		return detached{}, "closed", nil
	}
	if n > 0 {
		up := s.up
		s.mu.Unlock()
		s.resumeDrained(up)
		return detached{}, "drain_timeout", fmt.Errorf("%w: %d in flight", ErrDrainTimeout, n)
	}
	old, budget := s.detachUpLocked()
	stopped := make(chan struct{})
	s.pumpStopped = stopped
	s.handingOff.Store(true)
	s.cond.Broadcast()
	s.mu.Unlock()
	if old != nil {
		// Gone before the session is revalidated elsewhere, as in a move
		// (docs/protocol.md §5.2).
		old.conn.Close()
		s.srv.unpark(old.r)
		<-old.done
	}
	s.answerOrphanPings()
	if !s.stopClientPump(stopped) {
		return detached{}, "closed", nil
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closedLocked() {
		return detached{}, "closed", nil
	}
	rec := handoffSession{
		ID: int64(s.id), Passwd: slices.Clone(s.passwd), ReqTimeout: s.reqTimeout,
		ClientTimeout: s.clientTimeout.Milliseconds(), HasReadOnly: s.hasReadOnly, ReadOnly: s.readOnly,
		LastZxid: int64(s.lastZxid), LastClientFrame: s.lastClientFrame.Load(), ExpireBy: budget.UnixNano(),
		Created: s.created.UnixNano(), Attaches: s.attaches,
		AuthLog: slices.Clone(s.authLog),
		Watches: [5][]string{s.watches.data.sorted(), s.watches.exist.sorted(), s.watches.child.sorted(),
			s.watches.persistent.sorted(), s.watches.recursive.sorted()},
		Recved: s.recved.Load(), Sent: s.sent.Load(), Ensemble: slices.Clone(s.ensemble),
	}
	for _, h := range s.held {
		f := h.orig
		if f == nil {
			f = h.frame
		}
		rec.Held = append(rec.Held, f)
	}
	fr := s.clientR
	rec.Partial = slices.Clone(fr.buf[fr.r:fr.w])
	return detached{sess: s, rec: rec, budget: budget}, "", nil
}

// stopClientPump waits for the client pump to stop reading (handingOff is
// set). It moves the read deadline to the past and unparks the pump until
// it notices, and reports false if the session closed instead.
func (s *Session) stopClientPump(stopped chan struct{}) bool {
	for {
		s.client.SetReadDeadline(time.Unix(1, 0))
		s.srv.unpark(s.clientR)
		select {
		case <-stopped:
			return true
		case <-time.After(20 * time.Millisecond):
		}
		s.mu.Lock()
		closed := s.closedLocked()
		s.mu.Unlock()
		if closed {
			return false
		}
	}
}

// pumpStoppedForHandoff ends the client pump for a handoff: it keeps the
// pump's place in the server's wait group (handedOver or takeBack gives it
// up) and leaves unread bytes in the reader.
func (s *Session) pumpStoppedForHandoff() {
	s.mu.Lock()
	stopped := s.pumpStopped
	s.pumpStopped = nil
	s.mu.Unlock()
	if stopped != nil {
		close(stopped)
	}
}

// handedOver forgets a session the new process took. Closing the client
// connection here closes this process's descriptor only: the new process
// holds its own reference to the socket, which stays open.
func (s *Session) handedOver() {
	s.close(closeHandedOver, "handed over to the new process")
	s.srv.forget(s)
	s.srv.wg.Done() // the stopped client pump's
}

// takeBack resumes a detached session in this process after a failed
// handoff: the client pump reads on, and the session re-attaches within its
// ensemble before budget, as after a lost upstream. The client saw a pause.
func (s *Session) takeBack(budget time.Time) {
	s.handingOff.Store(false)
	go s.resumeClient()
	go func() {
		s.mu.Lock()
		ensemble := s.ensemble
		s.mu.Unlock()
		ctx, done := s.operationContext()
		up, err := s.reattach(ctx, ensemble, budget)
		done()
		if err != nil {
			s.srv.m.reattaches.WithLabelValues(reattachFailure(err)).Inc()
			s.close(closeReattachFailed, fmt.Sprintf("re-attach after a failed handoff failed: %v", err))
			return
		}
		s.srv.m.reattaches.WithLabelValues("ok").Inc()
		s.resume(up, nil)
		s.logger().Info("session taken back after a failed handoff", "member", up.member)
	}()
}

// AdoptOptions configures Adopt.
type AdoptOptions struct {
	// Version is this binary's version, told to the old process.
	Version string
	// Listener names what this process listens on, for the old one's log.
	Listener string
	// PauseAfter, when > 0, stops taking sessions after that many: a test
	// hook for a new process that dies halfway.
	PauseAfter int
	// Reattaches bounds the re-attaches in progress at once (default 128).
	Reattaches int

	accepts []uint16 // tests: the versions this side claims to accept
}

// AdoptResult says what an Adopt did.
type AdoptResult struct {
	Adopted int
	Refused int
}

// Adopt is the new process's side of HandOver: it says hello over conn,
// then takes each session the old process sends: it rebuilds the session
// around the client descriptor, acknowledges it, and re-attaches it on a
// member of the current target (the move's re-attach) in the background,
// releasing the requests the client sent meanwhile in order. It returns
// when the old process is done (or gone). Adopt does not close conn.
func (s *Server) Adopt(ctx context.Context, conn *net.UnixConn, opts AdoptOptions) (AdoptResult, error) {
	var res AdoptResult
	if opts.Reattaches <= 0 {
		opts.Reattaches = 128
	}
	hc := newHandoffConn(conn)
	defer hc.closeFDs()
	// Not conn.SetReadDeadline: each recv sets its own deadline, and
	// would undo one set just before it (a cancel lost that way left
	// Adopt waiting for ever in TestHandOverUnknownVersionRefused).
	stop := context.AfterFunc(ctx, hc.stop)
	defer stop()
	accepts := opts.accepts
	if accepts == nil {
		accepts = []uint16{HandoffVersion()}
	}
	hello := handoffHello{Version: opts.Version, Accepts: accepts, PID: int64(os.Getpid()), Listener: opts.Listener}
	if err := hc.send(msgHello, hello.encode(), -1); err != nil {
		return res, fmt.Errorf("proxy: adopt: %w", err)
	}
	sem := make(chan struct{}, opts.Reattaches)
	for {
		typ, body, err := hc.recv(time.Time{})
		if err != nil {
			return res, fmt.Errorf("proxy: adopt: %w", err)
		}
		switch typ {
		case msgBegin:
			b, err := decodeBegin(body)
			if err != nil {
				return res, fmt.Errorf("proxy: adopt: %w", err)
			}
			if b.Version != HandoffVersion() {
				return res, fmt.Errorf("%w: the old process speaks handoff version %d, this one %d", ErrHandoffRefused, b.Version, HandoffVersion())
			}
		case msgDone:
			s.log.Info("sessions taken over", "adopted", res.Adopted, "refused", res.Refused)
			return res, nil
		case msgSession:
			if opts.PauseAfter > 0 && res.Adopted >= opts.PauseAfter {
				s.log.Warn("test hook: pausing the adoption", "after", res.Adopted)
				<-ctx.Done()
				return res, ctx.Err()
			}
			fd, ok := hc.takeFD()
			ack := handoffAck{OK: true}
			rec, err := decodeSession(body)
			ack.SessionID = rec.ID
			var sess *Session
			switch {
			case !ok:
				err = errors.New("session record without a descriptor")
			case err == nil:
				sess, err = s.adopt(&rec, fd)
			default:
				syscall.Close(fd)
			}
			if err != nil {
				ack.OK, ack.Reason = false, err.Error()
				res.Refused++
				s.log.Warn("session not taken over", "session", jute.SessionID(rec.ID).String(), "err", err)
			} else if sess != nil {
				res.Adopted++
			}
			if err := hc.send(msgAck, ack.encode(), -1); err != nil {
				if sess != nil {
					// The old process may take it back: this side must
					// not serve it.
					sess.abandon()
				}
				return res, fmt.Errorf("proxy: adopt: %w", err)
			}
			if sess != nil {
				// The re-attach waits for its turn on its own goroutine:
				// the next session's ack must not wait for it.
				go func() {
					sem <- struct{}{}
					defer func() { <-sem }()
					sess.reattachAdopted(time.Unix(0, rec.ExpireBy))
				}()
			}
		default:
			return res, fmt.Errorf("proxy: adopt: %w: unexpected message %q", errHandoffDecode, typ)
		}
	}
}

// adopt rebuilds a session from rec around the client descriptor fd (taken
// over: closed on error). The session starts re-attaching with its
// requests held; its client pump runs (pings are answered by the proxy).
// It returns no session and no error when a newer connection of the same
// session is here already: the handed-over one is dropped.
func (s *Server) adopt(rec *handoffSession, fd int) (*Session, error) {
	f := os.NewFile(uintptr(fd), "zkclient")
	conn, err := net.FileConn(f) // a dup of fd
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("client descriptor: %w", err)
	}
	if _, ok := conn.(*net.TCPConn); !ok {
		conn.Close()
		return nil, fmt.Errorf("client descriptor is a %T, not a TCP connection", conn)
	}
	conn = s.ownConn(conn)
	held, partial, err := splitFrames(rec.Held, rec.Partial, s.cfg.MaxFrameSize)
	if err != nil {
		conn.Close()
		return nil, err
	}
	sess := newSession(s, conn)
	sess.id = jute.SessionID(rec.ID)
	sess.logID.Store(rec.ID)
	sess.passwd = rec.Passwd
	sess.reqTimeout = rec.ReqTimeout
	sess.clientTimeout = time.Duration(rec.ClientTimeout) * time.Millisecond
	sess.hasReadOnly, sess.readOnly = rec.HasReadOnly, rec.ReadOnly
	sess.created = time.Unix(0, rec.Created)
	sess.lastZxid = jute.Zxid(rec.LastZxid)
	sess.authLog = rec.AuthLog
	sess.attaches = rec.Attaches
	sess.recved.Store(rec.Recved)
	sess.sent.Store(rec.Sent)
	sess.watches.load(rec.Watches[0], rec.Watches[1], rec.Watches[2], rec.Watches[3], rec.Watches[4])
	sess.clientR = newFrameReader(conn, s.cfg.MaxFrameSize, &sess.st.clientBytesIn)
	last := time.Unix(0, rec.LastClientFrame)
	sess.clientR.preload(partial, last)
	sess.noteClientFrame(last)
	sess.clientRW = newReadWatch(sess.clientR, sess.clientTimeout, s.cfg.ParkIdleAfter)
	// The ensemble the session is on: the current target, except in a
	// cutover's aborted phase, where sessions not moved stay on the source.
	ensemble := rec.Ensemble
	if len(ensemble) == 0 {
		ensemble = s.Target()
	}
	sess.ensemble = ensemble
	sess.ensKind = s.ensembleKind(ensemble)
	sess.state = StateReattaching
	sess.beginHoldLocked()

	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		conn.Close()
		return nil, errors.New("this process is shutting down")
	}
	if newer := s.byID[rec.ID]; newer != nil {
		// The client already reconnected here with its session: the old
		// connection is one it gave up on, and the member closed it
		// (ZooKeeperServer.processConnectRequest). Taken, and closed.
		s.mu.Unlock()
		conn.Close()
		s.log.Info("handed-over connection dropped: the session already reconnected here", "session", jute.SessionID(rec.ID).String())
		return nil, nil
	}
	s.conns[sess] = struct{}{}
	s.m.connections.Add(1)
	s.m.clientConnections.Inc()
	s.wg.Add(1) // the client pump's
	s.mu.Unlock()
	if old := s.claim(sess); old != nil {
		old.close(closeReplaced, "replaced by the same session handed over from the old process")
	}
	sess.mu.Lock()
	sess.opened = true
	sess.stateGaugeLocked()
	sess.mu.Unlock()
	s.m.sessionsOpen.Inc()

	// The requests the old process held go first, held again in order;
	// the pump (which waitForRoom lets take them all) then reads on.
	sess.handingOff.Store(true)
	for _, f := range held {
		if err := sess.onClientFrame(frame(f)); err != nil {
			sess.handingOff.Store(false)
			sess.close(reasonOf(err, closeMalformed), err.Error())
			s.forget(sess)
			s.wg.Done()
			return nil, fmt.Errorf("replaying a held request: %w", err)
		}
	}
	sess.handingOff.Store(false)
	go sess.pumpClient(time.Now())
	return sess, nil
}

// reattachAdopted opens an adopted session on a member of its ensemble
// before the member's expiry (budget) and releases its held requests.
func (s *Session) reattachAdopted(budget time.Time) {
	start := time.Now()
	ctx, done := s.operationContext()
	s.mu.Lock()
	target := s.ensemble
	s.mu.Unlock()
	up, err := s.reattach(ctx, target, budget)
	done()
	if err != nil {
		s.srv.m.adopted.WithLabelValues("reattach_failed").Inc()
		if errors.Is(err, errClientSilent) {
			s.close(closeClientTimeout, fmt.Sprintf("client silent for the session timeout %s while taking it over", s.clientTimeout))
			return
		}
		s.close(closeReattachFailed, fmt.Sprintf("re-attach of a session taken over failed: %v", err))
		return
	}
	s.resume(up, target)
	s.srv.m.adopted.WithLabelValues("ok").Inc()
	s.logger().Debug("session taken over", "member", up.member, "took", time.Since(start).Round(time.Millisecond))
}

// abandon drops an adopted session whose ack could not be sent, without
// touching the client: the old process still holds the connection.
func (s *Session) abandon() {
	s.handingOff.Store(true)
	s.mu.Lock()
	stopped := make(chan struct{})
	s.pumpStopped = stopped
	s.mu.Unlock()
	if s.stopClientPump(stopped) {
		s.handedOver()
	}
}

// splitFrames checks the held frames and moves any complete frame at the
// start of partial to them (the old pump stops with at most a partial
// frame unread, but a record is trusted no further than its checks).
func splitFrames(held [][]byte, partial []byte, maxFrame int) ([][]byte, []byte, error) {
	for len(partial) >= 4 {
		n := int64(int32(binary.BigEndian.Uint32(partial)))
		if n < 0 || n > int64(maxFrame) {
			return nil, nil, fmt.Errorf("%w: partial frame length %d", errHandoffDecode, n)
		}
		if int64(len(partial)) < 4+n {
			break
		}
		held = append(held, partial[:4+n])
		partial = partial[4+n:]
	}
	return held, partial, nil
}

// ListenersReleased reports whether a HandOver released the listeners and
// no ResumeAccepting followed.
func (s *Server) ListenersReleased() bool { return s.released.Load() }

// answerOrphanPings answers the client pings that were in flight on an
// upstream that is gone. The caller waited for that upstream's pump to end:
// until then a ping reply may still arrive and pop the queue (the proxy
// relays pings of its own while a session is held), so the queue is read
// only afterwards. Pings arriving meanwhile are answered by the proxy, as
// the session has no upstream.
func (s *Session) answerOrphanPings() {
	s.mu.Lock()
	orphans := s.pings.clientPings()
	s.pings.clear()
	zxid := s.lastZxid
	s.mu.Unlock()
	s.answerPings(orphans, zxid)
}
