package zktest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/zkproxy/zkproxy/jute"
)

// RawConn is a minimal raw-protocol client connection, for tests that need
// exact control of the handshake (a chosen lastZxidSeen, session id or
// password) that real clients do not offer.
type RawConn struct {
	Conn net.Conn
	fr   *jute.FrameReader
	xid  jute.Xid
}

// ErrClosedWithoutResponse means the server closed the connection after the
// ConnectRequest without sending a ConnectResponse: it refused the client
// (ZooKeeperServer.processConnectRequest: lastZxidSeen ahead of the server,
// read-only mismatch, or not serving).
var ErrClosedWithoutResponse = errors.New("zktest: server closed the connection without a ConnectResponse")

// NewSessionRequest is the ConnectRequest of a brand-new Java client handle
// asking for timeoutMS: session id 0, 16 zero password bytes, readOnly byte
// false.
func NewSessionRequest(timeoutMS int32) jute.ConnectRequest {
	return jute.ConnectRequest{TimeOut: timeoutMS, Passwd: make([]byte, 16), HasReadOnly: true}
}

// DialRaw connects to addr, sends req and reads the ConnectResponse. If the
// server closes the connection instead of answering, the error wraps
// ErrClosedWithoutResponse. The caller owns the returned connection.
func DialRaw(ctx context.Context, addr string, req jute.ConnectRequest) (*RawConn, jute.ConnectResponse, error) {
	var resp jute.ConnectResponse
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, resp, fmt.Errorf("raw connect to %s: %w", addr, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c := &RawConn{Conn: conn, fr: jute.NewFrameReader(conn, jute.DefaultMaxFrameSize)}
	if _, err := conn.Write(jute.AppendRecordFrame(nil, &req)); err != nil {
		conn.Close()
		return nil, resp, fmt.Errorf("raw connect to %s: send ConnectRequest: %w", addr, err)
	}
	f, err := c.fr.Next()
	if err != nil {
		conn.Close()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || isConnReset(err) {
			if ctx.Err() != nil {
				return nil, resp, fmt.Errorf("raw connect to %s: %w", addr, ctx.Err())
			}
			return nil, resp, fmt.Errorf("raw connect to %s: %w (%v)", addr, ErrClosedWithoutResponse, err)
		}
		return nil, resp, fmt.Errorf("raw connect to %s: read ConnectResponse: %w", addr, err)
	}
	if err := jute.Unmarshal(f.Payload(), &resp); err != nil {
		conn.Close()
		return nil, resp, fmt.Errorf("raw connect to %s: decode ConnectResponse: %w", addr, err)
	}
	return c, resp, nil
}

func isConnReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "read"
}

// Call sends one request and returns the reply header and decoded body,
// skipping notifications and pings that arrive in between.
func (c *RawConn) Call(ctx context.Context, op jute.Op, body jute.Record) (jute.ReplyHeader, jute.Record, error) {
	stop := context.AfterFunc(ctx, func() { c.Conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c.xid++
	xid := c.xid
	if _, err := c.Conn.Write(jute.AppendRequestFrame(nil, jute.RequestHeader{Xid: xid, Op: op}, body)); err != nil {
		return jute.ReplyHeader{}, nil, fmt.Errorf("raw %v: send: %w", op, err)
	}
	for {
		f, err := c.fr.Next()
		if err != nil {
			return jute.ReplyHeader{}, nil, fmt.Errorf("raw %v: read reply: %w", op, err)
		}
		h, rec, err := jute.DecodeReply(op, f.Payload())
		if err != nil {
			return h, nil, fmt.Errorf("raw %v: %w", op, err)
		}
		if h.Xid == xid {
			return h, rec, nil
		}
	}
}

// CloseSession sends closeSession and waits for its reply, then closes the
// connection.
func (c *RawConn) CloseSession(ctx context.Context) error {
	defer c.Conn.Close()
	h, _, err := c.Call(ctx, jute.OpCloseSession, nil)
	if err != nil {
		return err
	}
	if h.Err != jute.ErrOK {
		return fmt.Errorf("raw closeSession: %v", h.Err)
	}
	return nil
}

// Close closes the connection without closing the session.
func (c *RawConn) Close() error { return c.Conn.Close() }
