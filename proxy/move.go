package proxy

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Disconnect closes the client connection (not the ZooKeeper session): the
// client reconnects through the proxy with its session. Cutover uses it as
// the fallback when a session cannot move transparently. It first lets the
// requests in flight finish, until ctx ends, holding new ones: those fail
// with ConnectionLoss but were never sent, so the fallback leaves no
// request whose outcome the client cannot know (a write in flight on a
// connection that closes may or may not have been applied). A ctx that has
// ended closes at once.
func (s *Session) Disconnect(ctx context.Context, reason string) {
	s.drainAndClose(ctx, closeDisconnected, reason)
}

// Hold drains the session and then holds its client requests, in order and
// within the session's limits, until Release; client pings are answered by
// the proxy meanwhile. It is the per-session half of cutover's split
// barrier: while held, the session may lose its upstream and re-attach
// (inside its ensemble) without the client seeing anything, because
// nothing is in flight. Meanwhile each client ping the proxy answers is
// relayed to the member as one of the proxy's own, which keeps the session
// on ZooKeeper's schedule (docs/session-expiry.md). Hold returns once
// nothing is in flight. If ctx ends
// first it releases the session again and returns ErrDrainTimeout in a
// MoveError. The caller must bound the hold well under the session timeout:
// a held client's requests get no answer.
func (s *Session) Hold(ctx context.Context) error {
	defer s.wakeWhenDone(ctx)()
	s.mu.Lock()
	if s.closedLocked() {
		err := s.closedMoveErrorLocked()
		s.mu.Unlock()
		return err
	}
	s.barrier = true
	s.beginHoldLocked()
	n := s.awaitDrainLocked(ctx)
	if s.closedLocked() {
		err := s.closedMoveErrorLocked()
		s.mu.Unlock()
		return err
	}
	if n > 0 {
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
	if s.canForwardLocked() {
		held = s.releaseHeldLocked()
	}
	s.cond.Broadcast()
	s.mu.Unlock()
	s.writeHeld(up, held)
}

// Move re-establishes the session on a member of target without closing
// the client connection (docs/protocol.md §9.2 DRAINING → CONNECTING →
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

// LastMoveAttach is how long the last successful move took from the old
// upstream's close to the session's release on the new member: the part
// of the move the destination's load shows in (the drain before it
// depends on the requests in flight on the source).
func (s *Session) LastMoveAttach() time.Duration { return time.Duration(s.lastAttach.Load()) }

// move is Move onto a member of candidates, after which failovers stay in
// ensemble (candidates is a subset of it).
func (s *Session) move(ctx context.Context, candidates, target []string) error {
	if len(candidates) == 0 {
		return &MoveError{Reason: "bad_target", Err: errors.New("empty target")}
	}
	defer s.wakeWhenDone(ctx)()

	s.mu.Lock()
	for !s.closedLocked() && s.state != StateActive && ctx.Err() == nil {
		s.cond.Wait()
	}
	if s.closedLocked() {
		err := s.closedMoveErrorLocked()
		s.mu.Unlock()
		return err
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
	n := s.drainForMoveLocked(ctx)
	s.srv.m.moveDrainSeconds.Observe(time.Since(start).Seconds())
	if s.closedLocked() || s.stopping {
		// Closing (Disconnect, Shutdown) counts as closed: drainAndClose
		// may have taken the drained upstream away already.
		err := s.closedMoveErrorLocked()
		s.mu.Unlock()
		s.srv.m.moves.WithLabelValues("closed").Inc()
		return err
	}
	if n > 0 {
		up := s.up
		s.mu.Unlock()
		// Back to active on the same upstream, unless it was lost in the
		// meantime: then the ordinary failover (moving is false) owns the
		// session.
		s.resumeDrained(up)
		s.srv.m.moves.WithLabelValues("drain_timeout").Inc()
		return &MoveError{Reason: "drain_timeout", Err: fmt.Errorf("%w: %d still in flight on %s", ErrDrainTimeout, n, up.member)}
	}
	old, budget := s.detachUpLocked()
	s.mu.Unlock()
	oldMember := "(none)"
	if old != nil {
		// The old connection must be gone before the session is
		// revalidated elsewhere (docs/protocol.md §5.2): it drops the stale
		// watches there and no write can be in flight on two members.
		oldMember = old.member
		old.conn.Close()
		s.srv.unpark(old.r)
		<-old.done
	}
	s.answerOrphanPings()
	drained := time.Since(start)

	up, err := s.reattach(ctx, candidates, budget)
	if err != nil {
		reason := reattachFailure(err)
		s.srv.m.moves.WithLabelValues(reason).Inc()
		if errors.Is(err, errClientSilent) {
			s.close(closeClientTimeout, fmt.Sprintf("client silent for the session timeout %s while moving from %s to %v", s.clientTimeout, oldMember, target))
		} else {
			s.close(closeMoveFailed, fmt.Sprintf("move from %s to %v failed: %v", oldMember, target, err))
		}
		return &MoveError{Reason: reason, Disconnected: true, Err: fmt.Errorf("session %s to %v: %w", s.id, target, err)}
	}
	s.resume(up, target)
	s.lastAttach.Store(int64(time.Since(start) - drained))
	s.srv.m.moves.WithLabelValues("ok").Inc()
	s.logger().Info("session re-attached", "from", oldMember, "to", up.member, "reason", "move",
		"drain", drained.Round(time.Millisecond), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// drainForMoveLocked starts holding new requests and waits (bounded by
// ctx) for those in flight, as the first step of a move or a handoff; it
// returns how many are still in flight. moving tells a lost upstream's
// failover that the session is the mover's.
func (s *Session) drainForMoveLocked(ctx context.Context) int {
	s.state = StateDraining
	s.beginHoldLocked()
	s.stateGaugeLocked()
	s.moving = true
	n := s.awaitDrainLocked(ctx)
	s.moving = false
	return n
}

// resumeDrained ends a drain that timed out: the session goes back to
// active on up, the held requests are released. Nothing happens if up is no
// longer the session's upstream.
func (s *Session) resumeDrained(up *upstream) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	if s.up != up || s.state != StateDraining {
		s.mu.Unlock()
		return
	}
	s.state = StateActive
	s.stateGaugeLocked()
	held := s.releaseHeldLocked()
	s.cond.Broadcast()
	s.mu.Unlock()
	s.writeHeld(up, held)
}

// drainAndClose is the graceful end used by Server.Shutdown and Disconnect:
// forward nothing new, wait for in-flight replies (bounded by ctx), close
// the client connection. The ZooKeeper session itself is left alive so the
// client can resume it, through this proxy or another.
func (s *Session) drainAndClose(ctx context.Context, reason closeReason, detail string) {
	defer s.wakeWhenDone(ctx)()
	s.mu.Lock()
	s.stopping = true
	// A session without an upstream (handshake, re-attach) has nothing in
	// flight there.
	drained := s.awaitDrainLocked(ctx) == 0
	up := s.up
	if drained && up != nil && !s.closedLocked() {
		s.setUpLocked(nil) // the end of its pump below is no failover
	} else {
		up = nil
	}
	s.mu.Unlock()
	if up != nil {
		// The last replies are off the queues but may still wait in the
		// upstream pump's batch for one write to the client (readUpstream);
		// the pump writes them as it ends. Closing the client first would
		// drop replies to requests the member applied.
		up.conn.Close()
		s.srv.unpark(up.r)
		select {
		case <-up.done:
		case <-ctx.Done():
		}
	}
	s.close(reason, detail)
}

// detachUpLocked takes the drained session off its member for a re-attach
// (a move or a handoff): it returns the old upstream and the re-attach's
// budget, the member's own expiry of the session (last reply + timeout),
// or the client's timeout when it had no member. The caller holds s.mu.
func (s *Session) detachUpLocked() (*upstream, time.Time) {
	old := s.up
	s.setUpLocked(nil)
	s.state = StateReattaching
	s.stateGaugeLocked()
	budget := time.Now().Add(s.clientTimeout)
	if old != nil {
		budget = time.Unix(0, old.lastRecv.Load()).Add(old.timeout)
	}
	return old, budget
}
