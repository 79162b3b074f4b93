package proxy

import (
	"errors"
	"fmt"
)

// closeReason says why a session's client connection was closed. Each
// close site names its reason; the free text that goes with it (the
// session's closeDetail) is for the log only. String is the reason label
// of zkproxy_sessions_closed_total, so the set of labels is bounded.
type closeReason uint8

const (
	// closeHandshakeFailed: no session was established. Such a connection
	// is counted in zkproxy_connections_rejected_total, never here.
	closeHandshakeFailed closeReason = iota
	// closeClientClosed: the client closed (or reset) its connection.
	closeClientClosed
	// closeClientSession: the client sent closeSession.
	closeClientSession
	// closeClientTimeout: the client sent nothing for its session timeout.
	closeClientTimeout
	// closeClientNotReading: a write to the client timed out.
	closeClientNotReading
	// closeFrameTooLarge: a client frame over max-frame-size.
	closeFrameTooLarge
	// closeTruncatedFrame: the client connection ended inside a frame.
	closeTruncatedFrame
	// closeMalformed: a client request header that does not decode.
	closeMalformed
	// closeReservedXid: a client request using an xid the protocol reserves.
	closeReservedXid
	// closeUpstreamLostInFlight: the member connection was lost with
	// requests in flight, whose outcome only the client may judge.
	closeUpstreamLostInFlight
	// closeUpstreamLostSASL: the member connection was lost and the session
	// authenticated with SASL, which cannot be replayed on a new one.
	closeUpstreamLostSASL
	// closeMemberClosed: the member closed the connection after a reply
	// that said it would (auth failed, session expired).
	closeMemberClosed
	// closeMemberFrameTooLarge: a member frame over Config.MaxReplyFrameSize.
	closeMemberFrameTooLarge
	// closeMemberProtocol: a member frame the session cannot account for
	// (undecodable reply header, a reply to no request).
	closeMemberProtocol
	// closeReattachFailed: no member took the session after its upstream
	// was lost.
	closeReattachFailed
	// closeMoveFailed: the move's target did not take the session.
	closeMoveFailed
	// closeReplaced: a newer client connection resumed the same session.
	closeReplaced
	// closeShutdown: the proxy shut down or closed.
	closeShutdown
	// closeDisconnected: Session.Disconnect, cutover's visible fallback.
	closeDisconnected
	// closeHandedOver: the session went to a new zkproxy process
	// (Server.HandOver); the client connection itself stays open there.
	closeHandedOver
	numCloseReasons
)

var closeReasonLabels = [numCloseReasons]string{
	closeHandshakeFailed:      "handshake_failed",
	closeClientClosed:         "client_closed",
	closeClientSession:        "close_session",
	closeClientTimeout:        "client_timeout",
	closeClientNotReading:     "client_not_reading",
	closeFrameTooLarge:        "frame_too_large",
	closeTruncatedFrame:       "truncated_frame",
	closeMalformed:            "malformed",
	closeReservedXid:          "reserved_xid",
	closeUpstreamLostInFlight: "upstream_lost_in_flight",
	closeUpstreamLostSASL:     "upstream_lost_sasl",
	closeMemberClosed:         "member_closed",
	closeMemberFrameTooLarge:  "member_frame_too_large",
	closeMemberProtocol:       "member_protocol_error",
	closeReattachFailed:       "reattach_failed",
	closeMoveFailed:           "move_failed",
	closeReplaced:             "replaced",
	closeShutdown:             "proxy_shutdown",
	closeDisconnected:         "disconnected",
	closeHandedOver:           "handed_over",
}

// String returns the reason's metric label.
func (r closeReason) String() string {
	if r < numCloseReasons {
		return closeReasonLabels[r]
	}
	return fmt.Sprintf("closeReason(%d)", uint8(r))
}

// closeError is an error that ends the session for a known reason.
type closeError struct {
	reason closeReason
	err    error
}

func (e *closeError) Error() string { return e.err.Error() }
func (e *closeError) Unwrap() error { return e.err }

// closeErrorf returns a closeError for reason with a formatted message.
func closeErrorf(reason closeReason, format string, args ...any) error {
	return &closeError{reason: reason, err: fmt.Errorf(format, args...)}
}

// reasonOf returns the reason carried by err, or otherwise.
func reasonOf(err error, otherwise closeReason) closeReason {
	var ce *closeError
	if errors.As(err, &ce) {
		return ce.reason
	}
	return otherwise
}
