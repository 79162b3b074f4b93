package proxy

import (
	"errors"
	"time"
)

// The proxy's own frames to a member must never carry a session past the
// client's deadline — one negotiated timeout after the client's last frame —
// so that a silent client expires on ZooKeeper's schedule, not later
// (docs/session-expiry.md has the rule and the ZooKeeper behaviour it rests
// on). This file holds the rule; the pumps, the pinger and re-attach apply it.

// errClientSilent ends a session whose client sent nothing for its whole
// negotiated timeout while the proxy was re-attaching it: the proxy does
// not open the session anywhere on its own once the client's deadline has
// passed. The session closes with closeClientTimeout, like the client
// pump's own silence, and both count in client_silent_expiries_total.
var errClientSilent = errors.New("client silent past its session deadline")

// noteClientFrame records that a client frame was read at at: the client's
// deadline moves to at + its timeout.
func (s *Session) noteClientFrame(at time.Time) { s.lastClientFrame.Store(at.UnixNano()) }

// clientDeadline is D: when ZooKeeper would expire the session had the
// client been connected directly, its last frame plus the timeout it was
// told (before the tick round-up, SessionTrackerImpl.touchSession →
// ExpiryQueue.update).
func (s *Session) clientDeadline() time.Time {
	return time.Unix(0, s.lastClientFrame.Load()).Add(s.clientTimeout)
}

// mayTouch reports whether the proxy may send a frame of its own at now to
// a member that negotiated memberTimeout: the member then expires the
// session at most at the client's deadline (rounded up to the member's
// tick, as directly).
func mayTouch(now, deadline time.Time, memberTimeout time.Duration) bool {
	return !now.Add(memberTimeout).After(deadline)
}

// pingInterval is the upstream idleness after which the proxy pings a
// member that negotiated memberTimeout, if the rule allows it: a third, as
// ClientCnxn paces its own (readTimeout/2 of 2/3), which also keeps the
// member talking well within upstream.readTimeout.
func pingInterval(memberTimeout time.Duration) time.Duration {
	return max(memberTimeout/3, 10*time.Millisecond)
}

// finalPingLead is how long before the last allowed moment the final ping
// is scheduled, so that a timer firing a little late still sends it. A ping
// later than that is skipped: the member then expires the silent session a
// little (at most a ping interval) early rather than late.
func finalPingLead(memberTimeout time.Duration) time.Duration {
	return min(memberTimeout/20, 100*time.Millisecond)
}

// nextOwnPing returns when the proxy's next own ping to a member that
// negotiated memberTimeout is due, given the upstream's last send and the
// client's deadline; ok is false when none is allowed until the client
// sends again. Pings go out every pingInterval of upstream idleness while
// `t + memberTimeout <= deadline`; when the next one would be too late, one
// last ping goes out just before the bound, so a member with a lower timeout
// than the client's keeps the session exactly as long as ZooKeeper would
// have for the client. With memberTimeout >= the client's timeout the bound
// is the client's last frame, which reached the member itself: no own ping.
func nextOwnPing(lastSend, deadline time.Time, memberTimeout time.Duration) (at time.Time, ok bool) {
	bound := deadline.Add(-memberTimeout)
	due := lastSend.Add(pingInterval(memberTimeout))
	if !due.After(bound) {
		return due, true
	}
	final := bound.Add(-finalPingLead(memberTimeout))
	if final.After(lastSend) {
		return final, true
	}
	return time.Time{}, false
}

// reattachTimeout is the timeout to request when the proxy opens the session
// on a member on its own initiative (a re-attach or a move) at now: the
// client's requested timeout, but no more than what is left before the
// client's deadline. The ConnectRequest touches the session with the timeout
// the member negotiates for the new connection
// (ZooKeeperServer.processConnectRequest → reopenSession → revalidateSession
// → SessionTrackerImpl.touchSession), so asking for the client's full
// timeout would restart the member's clock for a client that may already be
// silent. The member still clamps it into [minSessionTimeout,
// maxSessionTimeout]; the client is never told. ok is false once the
// deadline has passed.
func reattachTimeout(requested int32, deadline, now time.Time) (ms int32, ok bool) {
	left := deadline.Sub(now).Milliseconds()
	if left <= 0 {
		return 0, false
	}
	if requested > 0 && int64(requested) <= left {
		return requested, true
	}
	return int32(min(left, int64(1<<31-1))), true
}

// silenceExcused decides whether a member quiet for its read timeout is
// frozen. A ZooKeeper server sends nothing unasked but watch events, so a
// member that owes nothing (no request, auth or ping in flight) is not
// silent: the proxy no longer keeps it talking with pings the rule forbids.
// A frame sent less than a sixth of the member's timeout ago gets that long
// for its answer (the margin the proxy's own pings used to give). It returns
// the time from which the member's silence counts again.
func (s *Session) silenceExcused(up *upstream, now time.Time) (from time.Time, excused bool) {
	s.mu.Lock()
	owed := s.inFlightLocked() + s.pings.len()
	s.mu.Unlock()
	if owed == 0 {
		return now, true
	}
	sent := time.Unix(0, up.lastSend.Load())
	if grace := up.timeout / 6; now.Sub(sent) < grace {
		return sent.Add(grace - up.readTimeout()), true
	}
	return time.Time{}, false
}

// startPinger starts the upstream's keep-alive timer (see keepAlive) when
// the proxy may ever need to ping up on its own: only when the member
// negotiated a lower timeout than the client's. Otherwise the rule never
// lets it (mayTouch needs now <= deadline - memberTimeout, which is then
// at or before the client's last frame, and that frame reached the member
// itself; a frame that did not is covered by relayPingLocked), and a timer
// per session looking every third of the timeout was, with thousands of
// idle sessions, more thread wake-ups than their pings (docs/benchmarks.md,
// "Idle ping cost").
func (s *Session) startPinger(up *upstream) {
	if up.timeout >= s.clientTimeout {
		return
	}
	var t *time.Timer
	// Armed only once t is set: the first look may be due at once.
	t = time.AfterFunc(time.Hour, func() {
		if !s.keepAlive(up) {
			return
		}
		select {
		case <-up.done:
		default:
			t.Reset(s.nextKeepAlive(up, time.Now()))
		}
	})
	up.pinger.Store(t)
	t.Reset(s.nextKeepAlive(up, time.Now()))
}

// nextKeepAlive is how long until the pinger of up should look again: the
// next own ping, or a ping interval when none is allowed until the client
// sends again (its frames move the deadline, and the timer is not told) —
// including when the bound passed while the timer was late.
func (s *Session) nextKeepAlive(up *upstream, now time.Time) time.Duration {
	return keepAliveDelay(time.Unix(0, up.lastSend.Load()), s.clientDeadline(), now, up.timeout)
}

// keepAliveDelay is nextKeepAlive's arithmetic.
func keepAliveDelay(lastSend, deadline, now time.Time, memberTimeout time.Duration) time.Duration {
	at, ok := nextOwnPing(lastSend, deadline, memberTimeout)
	if !ok || !mayTouch(now, deadline, memberTimeout) {
		return pingInterval(memberTimeout)
	}
	return max(at.Sub(now), 0)
}

// keepAlive sends the proxy's own ping on up if one is due and the rule
// allows it now, and reports whether up still carries the session (the
// timer stops otherwise). The client paces its pings by the timeout it was
// told, which a re-attached member may have negotiated lower
// (docs/protocol.md §5.4, §10.12).
func (s *Session) keepAlive(up *upstream) bool {
	now := time.Now()
	deadline := s.clientDeadline()
	at, ok := nextOwnPing(time.Unix(0, up.lastSend.Load()), deadline, up.timeout)
	if !ok || now.Before(at) || !mayTouch(now, deadline, up.timeout) {
		return true
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	attached := !s.closedLocked() && s.up == up
	if attached {
		s.pings.push(true)
	}
	s.mu.Unlock()
	if attached {
		s.writeUpstream(up, pingFrame)
		s.srv.m.proxyPings.Inc()
	}
	return attached
}

// relayPingLocked is called, under sendMu and mu, when a client frame does
// not go upstream at once (a ping the proxy answers itself, a held
// request) while the session is attached: the member gets one ping of the
// proxy's instead, at the moment it would have seen the client's frame, as
// the client's own touch by another route. Without it a held session's
// member would hear nothing while the client is alive, and the rule leaves
// the pinger nothing to send when the member's timeout equals the client's.
// A ping already in flight covers this frame too. It reports whether the
// caller must write pingFrame upstream (after releasing mu).
func (s *Session) relayPingLocked() bool {
	if s.up == nil || s.closedLocked() || s.pings.len() > 0 {
		return false
	}
	s.pings.push(true)
	return true
}
