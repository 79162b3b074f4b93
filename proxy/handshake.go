package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/zkproxy/zkproxy/jute"
)

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
	req, connectFrame, err := s.readConnectRequest(deadline)
	if err != nil {
		return err
	}
	if req.SessionID != 0 {
		s.logID.Store(int64(req.SessionID))
		s.claimID(req.SessionID)
	}
	target := s.srv.Target()
	up, resp, respFrame, err := s.openOnMember(&req, connectFrame, target, deadline)
	if err != nil {
		return err
	}
	return s.establish(&req, up, resp, respFrame, target)
}

// readConnectRequest runs the TLS handshake (on a TLS listener), answers a
// four-letter word, or reads and decodes the client's ConnectRequest,
// returning it and its frame.
func (s *Session) readConnectRequest(deadline time.Time) (jute.ConnectRequest, []byte, error) {
	var req jute.ConnectRequest
	s.client.SetDeadline(deadline)
	if tc, ok := s.client.(*tls.Conn); ok {
		// A TLS listener (cmd/zkproxy tls-cert): the TLS handshake is
		// part of the client's handshake time, and its failures (a
		// plaintext client, a missing or untrusted client certificate)
		// get their own reason.
		if err := tc.Handshake(); err != nil {
			return req, nil, rejectf(handshakeReason(err, "tls_handshake"), "TLS handshake: %w", err)
		}
	}

	s.clientR = newFrameReader(s.client, s.srv.cfg.MaxFrameSize, &s.st.clientBytesIn)
	prefix, err := s.clientR.Peek4()
	if err != nil {
		return req, nil, rejectf(handshakeReason(err, "handshake_eof"), "reading the first bytes: %w", err)
	}
	if cmd, ok := jute.FourLetterWord(prefix); ok {
		s.answerFourLetterWord(cmd, deadline)
		return req, nil, &handshakeError{reason: "four_letter_word", err: fmt.Errorf("four-letter word %q answered", cmd)}
	}
	// The first 4 bytes are the ConnectRequest's length.
	f, err := s.clientR.Next()
	if err != nil {
		if errors.Is(err, jute.ErrFrameTooLarge) || errors.Is(err, jute.ErrNegativeFrameLength) {
			s.srv.m.framesOverLimit.WithLabelValues("client").Inc()
			return req, nil, rejectf("bad_handshake", "not a ZooKeeper client (first frame length %#x): %w", prefix, err)
		}
		return req, nil, rejectf(handshakeReason(err, "handshake_eof"), "reading ConnectRequest: %w", err)
	}
	s.recved.Add(1)
	s.st.packetsReceived.Add(1)
	connectFrame := append([]byte(nil), f.Raw()...)
	if err := jute.Unmarshal(f.Payload(), &req); err != nil {
		s.srv.m.decodeErrors.WithLabelValues("connect_request").Inc()
		return req, nil, rejectf("bad_handshake", "decoding ConnectRequest: %w", err)
	}
	return req, connectFrame, nil
}

// openOnMember forwards the ConnectRequest to the members of target, the
// healthy first, until one accepts the session; an expired session is
// relayed to the client and ends the handshake.
func (s *Session) openOnMember(req *jute.ConnectRequest, connectFrame []byte, target []string, deadline time.Time) (*upstream, *jute.ConnectResponse, []byte, error) {
	var failures []string
	for _, member := range s.srv.members.order(target) {
		if time.Now().After(deadline) {
			break
		}
		ctx, done := s.operationContext()
		up, resp, raw, err := s.srv.connectMember(ctx, member, connectFrame, deadline, s.st)
		done()
		if errors.Is(err, errSessionExpired) {
			// Relay the expiry so the client learns it (ClientCnxn
			// onConnected treats timeOut <= 0 as Expired), then close as
			// the member did.
			s.writeClient(mirrorReadOnly(raw, resp, req.HasReadOnly))
			return nil, nil, nil, rejectf("session_expired", "member %s: session %s expired or password wrong", member, req.SessionID)
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
		return up, resp, raw, nil
	}
	return nil, nil, nil, rejectf("no_member", "no member of %v accepted the session: %v", target, failures)
}

// establish records what the member negotiated, relays its
// ConnectResponse and starts the session on up.
func (s *Session) establish(req *jute.ConnectRequest, up *upstream, resp *jute.ConnectResponse, respFrame []byte, target []string) error {
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
	if s.closedLocked() {
		reason := s.closeReason
		s.mu.Unlock()
		up.conn.Close()
		return rejectf("", "closed during handshake: %s", reason)
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
