package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/zkproxy/zkproxy/jute"
)

// upstreamLost handles the end of the current upstream connection
// (ZK-PROTOCOL §9.2): re-attach invisibly when nothing was in flight,
// close the client when an outcome is unknown or the member meant to close.
func (s *Session) upstreamLost(up *upstream, cause error) {
	s.mu.Lock()
	if s.closedLocked() || s.up != up {
		// Closed, or detached on purpose by Move.
		s.mu.Unlock()
		return
	}
	s.setUpLocked(nil)
	inFlight := s.inFlightLocked()
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
			if _, _, err := s.onReply(f.Payload(), up.r.readAt); err != nil {
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
	if s.closedLocked() {
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
	held := s.releaseHeldLocked()
	// Added under mu while not closed: Server.Close closes every session
	// before it waits, so this Add happens before that Wait.
	s.srv.wg.Add(1)
	s.cond.Broadcast()
	s.mu.Unlock()
	up.lastRecv.Store(time.Now().UnixNano())
	go s.runUpstream(up, time.Now())
	s.startPinger(up)
	s.writeHeld(up, held)
}

// releaseHeldLocked ends the pause in forwarding unless a Hold is in force:
// it takes the held requests for writeHeld and records the pause.
func (s *Session) releaseHeldLocked() []heldRequest {
	if s.barrier {
		return nil
	}
	held := s.takeHeldLocked()
	s.endHoldLocked()
	return held
}

// writeHeld writes released requests upstream, in their original order
// (under sendMu, which the caller holds since releaseHeldLocked).
func (s *Session) writeHeld(up *upstream, held []heldRequest) {
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
