package proxy

import (
	"errors"
	"fmt"
	"time"

	"github.com/zkproxy/zkproxy/jute"
)

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
			if s.srv.parkOrRewatch(up.r, &up.rw, up.conn.SetReadDeadline, up) {
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
		s.close(reasonOf(fe.err, closeMemberProtocol), fe.Error())
		return
	}
	s.upstreamLost(up, err)
}

// resumePump and inlinePump make the upstream's pump a parkedPump; sess
// is set before the pump first reads, so before it can park.
func (up *upstream) resumePump()      { up.sess.resumeUpstream(up) }
func (up *upstream) inlinePump() bool { return up.sess.inlineUpstream(up) }

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
		return &fatalError{closeErrorf(closeMemberFrameTooLarge, "member %s sent a frame over the reply limit (the larger of 4 MiB and max-frame-size): %w", up.member, err)}
	}
	return err
}

// The upstream is its pump's frameHandler (see readUpstream).

func (up *upstream) onFrame(f frame) error {
	at := up.r.readAt
	up.lastRecv.Store(at.UnixNano())
	forward, replaced, err := up.sess.onReply(f.Payload(), at)
	if err != nil {
		return &fatalError{fmt.Errorf("member %s: %w", up.member, err)}
	}
	switch {
	case replaced != nil:
		up.pending = append(up.pending, replaced)
	case forward:
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
	now := time.Now()
	switch up.rw.expired(now, up.r.readAt, up.conn.SetReadDeadline) {
	case goPark:
		return errParked
	case keepWaiting:
		return nil
	}
	if from, ok := up.sess.silenceExcused(up, now); ok {
		up.rw.excuse(from, up.r.readAt, up.conn.SetReadDeadline)
		return nil
	}
	return err
}

// flush writes the frames collected since the last read to the client.
func (up *upstream) flush() error {
	if len(up.pending) == 0 {
		return nil
	}
	werr := up.sess.writeClientAt(up.r.readAt, nil, up.pending)
	clear(up.pending)
	up.pending = up.pending[:0]
	if werr != nil {
		return &fatalError{werr}
	}
	return nil
}

// readTimeout is how long the upstream may stay silent while it owes the
// proxy a reply: half its negotiated timeout (silenceExcused forgives a
// member that owes nothing). It must be shorter than the client's own read
// timeout — two thirds of the timeout (ClientCnxn's readTimeout), counted
// from the same last frame — so the proxy notices a frozen member and
// starts answering the client's pings before the client gives up on its
// connection.
func (up *upstream) readTimeout() time.Duration { return up.timeout / 2 }

// onReply updates the session state for one member frame and reports
// whether the client must see it and, when the client must see another
// frame in its place (a rewritten /zookeeper/config, a refused reconfig;
// see screenConfigRequest), that frame.
func (s *Session) onReply(payload []byte, now time.Time) (forward bool, replaced []byte, err error) {
	h, err := jute.PeekReplyHeader(payload)
	if err != nil {
		s.srv.m.decodeErrors.WithLabelValues("reply_header").Inc()
		return false, nil, fmt.Errorf("malformed reply header: %w", err)
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
			return true, nil, nil
		}
		s.watches.fired(ev.Type, ev.Path)
		s.srv.m.notifications.Inc()
		return true, nil, nil
	case h.Xid == jute.XidPing:
		fromProxy, ok := s.pings.pop()
		if !ok {
			return false, nil, errors.New("ping reply with no ping in flight")
		}
		if !fromProxy {
			s.st.countResponse(jute.OpPing, h.Err)
		}
		return !fromProxy, nil, nil
	case h.Xid == jute.XidAuth && len(s.pendingAuth) > 0:
		frame := s.pendingAuth[0]
		s.pendingAuth = s.pendingAuth[1:]
		if h.Err == jute.ErrOK {
			s.authLog = append(s.authLog, frame)
		} else {
			s.memberClose = fmt.Sprintf("auth failed (%s)", h.Err)
		}
		s.cond.Broadcast()
		return true, nil, nil
	}
	req, err := s.outstanding.match(h.Xid)
	if err != nil {
		s.srv.m.decodeErrors.WithLabelValues("reply_xid").Inc()
		return false, nil, err
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
	if req.config != nil {
		// A reply the proxy cannot rewrite must not reach the client as
		// it is (it names the members): the error closes the client's
		// connection, and the client reconnects.
		frame, err := s.configReplyFrame(req.config, payload)
		return err == nil, frame, err
	}
	return true, nil, nil
}
