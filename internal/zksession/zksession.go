// Package zksession opens a ZooKeeper session on a member and closes it
// again: the smallest pair of transactions a client can commit without
// touching the data tree. The sync check uses it to end an idle epoch
// (docs/protocol.md §7.2): right after an election, followers that synced
// before the new epoch's first transaction keep reporting, and comparing
// against, the previous epoch's last zxid, so a client that has seen the
// new epoch's first zxid is refused by them until something commits.
//
// createSession and closeSession are both quorum transactions for global
// sessions (PrepRequestProcessor.pRequest2Txn, OpCode.createSession and
// closeSession), so every member applies them and moves its last processed
// zxid into the new epoch.
package zksession

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/zkproxy/zkproxy/jute"
)

// DialFunc reaches a member; nil dials TCP.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// DefaultTimeout bounds one OpenClose when ctx has no earlier deadline.
const DefaultTimeout = 10 * time.Second

// sessionTimeout is what the session asks for. The server clamps it to
// [2, 20] ticks; it matters only if the closeSession is lost, when the
// session expires on its own after that long.
const sessionTimeout = 4000

// ErrRefused: the member closed the connection after the ConnectRequest
// without a ConnectResponse (not serving, or at its maxClientCnxns).
var ErrRefused = errors.New("zksession: member closed the connection without a ConnectResponse")

// OpenClose creates a session on the member at addr and closes it, and
// returns the session's id. Both transactions have committed when it
// returns nil: the server answers closeSession after
// FinalRequestProcessor applies it.
func OpenClose(ctx context.Context, dial DialFunc, addr string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return 0, fmt.Errorf("zksession: dial %s: %w", addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	// A brand-new session: id 0, lastZxidSeen 0 (no member is behind it),
	// 16 zero password bytes, as ClientCnxn sends for a new handle.
	req := jute.ConnectRequest{TimeOut: sessionTimeout, Passwd: make([]byte, 16), HasReadOnly: true}
	if _, err := conn.Write(jute.AppendRecordFrame(nil, &req)); err != nil {
		return 0, fmt.Errorf("zksession: %s: send ConnectRequest: %w", addr, err)
	}
	fr := jute.NewFrameReader(conn, jute.DefaultMaxFrameSize)
	f, err := fr.Next()
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, fmt.Errorf("zksession: %s: %w", addr, ErrRefused)
		}
		return 0, fmt.Errorf("zksession: %s: read ConnectResponse: %w", addr, err)
	}
	var resp jute.ConnectResponse
	if err := jute.Unmarshal(f.Payload(), &resp); err != nil {
		return 0, fmt.Errorf("zksession: %s: decode ConnectResponse: %w", addr, err)
	}
	id := int64(resp.SessionID)
	if resp.TimeOut <= 0 {
		return id, fmt.Errorf("zksession: %s refused the new session (timeout %d)", addr, resp.TimeOut)
	}
	if resp.ReadOnly {
		// A read-only server's session is local to it: nothing committed.
		return id, fmt.Errorf("zksession: %s is read-only: no transaction committed", addr)
	}

	const xid = 1
	if _, err := conn.Write(jute.AppendRequestFrame(nil, jute.RequestHeader{Xid: xid, Op: jute.OpCloseSession}, nil)); err != nil {
		return id, fmt.Errorf("zksession: %s: send closeSession: %w", addr, err)
	}
	for {
		f, err := fr.Next()
		if err != nil {
			return id, fmt.Errorf("zksession: %s: read closeSession reply: %w", addr, err)
		}
		h, err := jute.PeekReplyHeader(f.Payload())
		if err != nil {
			return id, fmt.Errorf("zksession: %s: %w", addr, err)
		}
		if h.Xid != xid {
			continue // a ping or notification cannot come yet, but skip it if it does
		}
		if h.Err != jute.ErrOK {
			return id, fmt.Errorf("zksession: %s: closeSession: %v", addr, h.Err)
		}
		return id, nil
	}
}
