package proxy

import (
	"errors"
	"io"
	"net"
	"slices"
	"time"

	"github.com/zkproxy/zkproxy/jute"
)

// pumpClient runs the client pump on the calling goroutine until the
// connection ends — then closes the session — or parks while idle.
func (s *Session) pumpClient(now time.Time) {
	for {
		s.srv.idle.watch(s.clientR, &s.clientRW, now)
		err := s.readClient()
		// Unwatched before parking: the parker may resume the pump on
		// another goroutine at once, which watches it again.
		s.srv.idle.unwatch(s.clientR)
		if errors.Is(err, errHandOff) || errors.Is(err, errParked) && s.handingOff.Load() {
			s.pumpStoppedForHandoff()
			return
		}
		if errors.Is(err, errParked) {
			if s.srv.parkOrRewatch(s.clientR, &s.clientRW, s.client.SetReadDeadline, (*clientPump)(s)) {
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
func (s *Session) clientEndReason(err error) (closeReason, string) {
	s.mu.Lock()
	closing := s.closeSent
	s.mu.Unlock()
	if closing {
		return closeClientSession, "client closed its session, then its connection: " + err.Error()
	}
	return reasonOf(err, closeClientClosed), err.Error()
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
	if _, ok := err.(*clientFrameError); ok || errors.Is(err, errParked) || errors.Is(err, errHandOff) {
		return err
	}
	return s.clientReadError(err)
}

// clientPump is the session as the client pump's frameHandler.
type clientPump Session

func (p *clientPump) onFrame(f frame) error { return (*Session)(p).onClientFrame(f) }

// resumePump and inlinePump make the client pump a parkedPump.
func (p *clientPump) resumePump()      { (*Session)(p).resumeClient() }
func (p *clientPump) inlinePump() bool { return (*Session)(p).inlineClient() }

// beforeRead runs whenever the client pump is about to read or wait.
// A handoff is checked after the deadline is set: the handoff sets its
// flag before it moves the deadline to the past, so either the pump sees
// the flag or its wait ends at once (stopClientPump).
func (p *clientPump) beforeRead() error {
	p.clientRW.arm(p.clientR.readAt, p.client.SetReadDeadline)
	if p.handingOff.Load() {
		return errHandOff
	}
	return nil
}

// onTimeout handles the client pump's deadline.
func (p *clientPump) onTimeout(err error) error {
	err = p.clientRW.onTimeout(err, p.clientR.readAt, p.client.SetReadDeadline)
	if p.handingOff.Load() {
		return errHandOff
	}
	return err
}

// clientFrameError ends the client pump for a reason found in a frame (or
// the session's end), as opposed to a failure of the connection.
type clientFrameError struct{ err error }

func (e *clientFrameError) Error() string { return e.err.Error() }

func (e *clientFrameError) Unwrap() error { return e.err }

// onClientFrame forwards one client frame. Not reading further while the
// session is at a limit (waitForRoom) is how the proxy pushes back.
func (s *Session) onClientFrame(f frame) error {
	s.noteClientFrame(s.clientR.readAt)
	if err := s.waitForRoom(); err != nil {
		return &clientFrameError{err}
	}
	s.recved.Add(1)
	s.st.packetsReceived.Add(1)
	raw := f.Raw()
	h, err := jute.PeekRequestHeader(f.Payload())
	if err != nil {
		s.srv.m.decodeErrors.WithLabelValues("request_header").Inc()
		return &clientFrameError{closeErrorf(closeMalformed, "malformed request header: %w", err)}
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
		return &clientFrameError{closeErrorf(closeReservedXid, "request %s uses reserved xid %d", h.Op, h.Xid)}
	}
	req := pendingRequest{xid: h.Xid, op: h.Op, start: s.clientR.readAt}
	sw, err := parseRequest(f.Payload(), &req)
	if err != nil {
		// Forward it anyway: the member judges the request. The
		// tracker just does not learn a watch from it.
		s.srv.m.decodeErrors.WithLabelValues("request").Inc()
		s.logger().Debug("undecodable request forwarded as is", "err", err)
	}
	screened := s.screenConfigRequest(raw, f.Payload(), &req)
	if err := s.forward(screened, raw, req, sw); err != nil {
		return &clientFrameError{err}
	}
	return nil
}

func (s *Session) clientReadError(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF):
		return closeErrorf(closeClientClosed, "client closed the connection")
	case errors.Is(err, jute.ErrFrameTooLarge), errors.Is(err, jute.ErrNegativeFrameLength):
		// NIOServerCnxn.readLength closes the connection on such a length
		// ("Len error"); the client sees a connection loss, as with a
		// real server.
		s.srv.m.framesOverLimit.WithLabelValues("client").Inc()
		return closeErrorf(closeFrameTooLarge, "client frame over max-frame-size: %w", err)
	case errors.As(err, &ne) && ne.Timeout():
		// ZooKeeper expires a session whose client sent nothing for the
		// session timeout; the proxy's own pings would otherwise keep a
		// half-open client's session alive for ever.
		return closeErrorf(closeClientTimeout, "client silent for the session timeout %s (half-open connection?)", s.clientTimeout)
	case errors.Is(err, io.ErrUnexpectedEOF):
		s.srv.m.decodeErrors.WithLabelValues("truncated_frame").Inc()
		return closeErrorf(closeTruncatedFrame, "client connection ended inside a frame: %w", err)
	}
	return closeErrorf(closeClientClosed, "reading from client: %w", err)
}

// waitForRoom blocks while the session is at its outstanding or
// buffered-bytes limit: not reading is how the proxy pushes back.
func (s *Session) waitForRoom() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	counted := false
	// A handoff takes what the pump already read, within one buffer: the
	// pump stops reading at its next beforeRead.
	for !s.closedLocked() && !s.handingOff.Load() {
		var limit string
		switch {
		case s.queuedLocked() >= s.srv.cfg.MaxOutstandingPerSession:
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
	if s.handingOff.Load() && !s.closedLocked() {
		return nil
	}
	return s.closedErrorLocked()
}

// clientPing forwards a client ping while the session is active, and
// answers it locally otherwise (docs/protocol.md §9.2: the clients do not match
// ping replies against their request queues, so a local answer is safe).
func (s *Session) clientPing(raw []byte) error {
	s.sendMu.Lock()
	s.mu.Lock()
	if s.closedLocked() {
		s.mu.Unlock()
		s.sendMu.Unlock()
		return s.closedErrorLocked()
	}
	if s.canForwardLocked() {
		up := s.up
		s.pings.push(false)
		s.mu.Unlock()
		s.writeUpstream(up, raw)
		s.sendMu.Unlock()
		return nil
	}
	zxid := s.lastZxid
	up := s.up
	relay := s.relayPingLocked()
	s.mu.Unlock()
	if relay {
		s.writeUpstream(up, pingFrame)
		s.srv.m.proxyPings.Inc()
	}
	s.sendMu.Unlock()
	return s.answerPing(zxid)
}

// answerPing sends the reply a member sends to a ping:
// ReplyHeader{-2, lastZxid, 0} (FinalRequestProcessor, ping case).
func (s *Session) answerPing(zxid jute.Zxid) error {
	return s.writeClient(appendReplyFrame(nil, jute.ReplyHeader{Xid: jute.XidPing, Zxid: zxid}))
}

// forward sends a client request upstream, or holds it while the session
// has no usable upstream. orig is the frame as the client sent it, raw what
// goes upstream (see screenConfigRequest).
func (s *Session) forward(raw, orig []byte, req pendingRequest, sw *jute.SetWatches2) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	if s.closedLocked() {
		s.mu.Unlock()
		return s.closedErrorLocked()
	}
	if !s.canForwardLocked() {
		h := heldRequest{frame: slices.Clone(raw), req: req, sw: sw}
		if &orig[0] != &raw[0] {
			// A handoff passes the client's own frame on (handoffHeld).
			h.orig = slices.Clone(orig)
		}
		s.held = append(s.held, h)
		s.heldBytes += len(raw)
		up := s.up
		relay := s.relayPingLocked()
		s.mu.Unlock()
		if relay {
			s.writeUpstream(up, pingFrame)
			s.srv.m.proxyPings.Inc()
		}
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

// writeClient writes one complete frame to the client (see writeClientAt).
func (s *Session) writeClient(frame []byte) error {
	return s.writeClientAt(time.Now(), frame, nil)
}

// writeClientAt writes frame to the client or, when batch is not nil, the
// frames of batch with one writev; now is the current time. A client that
// does not read for its session timeout is closed, as a server would
// expire it; before a timeout is negotiated the handshake timeout bounds
// the write. One frame is passed apart from a batch so that writing it
// allocates nothing.
func (s *Session) writeClientAt(now time.Time, frame []byte, batch [][]byte) error {
	s.cwmu.Lock()
	defer s.cwmu.Unlock()
	return s.writeClientLocked(now, frame, batch)
}

// writeClientLocked is writeClientAt for a caller holding cwmu.
func (s *Session) writeClientLocked(now time.Time, frame []byte, batch [][]byte) error {
	timeout := s.clientTimeout
	if timeout <= 0 {
		timeout = s.srv.cfg.HandshakeTimeout
	}
	s.clientWDL.extendAt(now, timeout, s.client.SetWriteDeadline)
	var n, frames int
	var err error
	if batch == nil {
		n, err = writeFrame(s.client, s.clientR.raw, frame)
		frames = 1
	} else {
		n, err = writeFrames(s.client, s.clientR.raw, batch)
		frames = len(batch)
	}
	s.st.clientBytesOut.Add(uint64(n))
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return closeErrorf(closeClientNotReading, "client stopped reading for the session timeout %s", timeout)
		}
		return closeErrorf(closeClientClosed, "writing to client: %w", err)
	}
	s.sent.Add(uint64(frames))
	s.st.packetsSent.Add(uint64(frames))
	return nil
}
