package proxy

import (
	"fmt"
	"time"

	"github.com/zkproxy/zkproxy/jute"
)

// closesConnection reports whether a member closes the connection right
// after sending a reply with this error: UnimplementedRequestProcessor
// (UNIMPLEMENTED), ZooKeeperServer.processPacket on a failed auth
// (AUTHFAILED), AuthenticationHelper enforcement (-124), and a request it
// could not deserialize. The proxy must then close the client too instead
// of hiding the close with a re-attach.
func closesConnection(err jute.ErrCode) bool {
	switch err {
	case jute.ErrUnimplemented, jute.ErrAuthFailed, jute.ErrSessionClosedRequireSASLAuth, jute.ErrMarshallingError, jute.ErrSessionExpired:
		return true
	}
	return false
}

// pendingRequest is one client request forwarded to the member and not yet
// answered. Only what tracking needs is decoded: the path and watch flag of
// watch-setting reads, the argument of addWatch/removeWatches.
type pendingRequest struct {
	xid   jute.Xid
	op    jute.Op
	path  string
	watch bool
	arg   int32     // addWatch mode, removeWatches watcher type
	start time.Time // read from the client
	sent  time.Time // written upstream, when held first (zero: at start)
	// auth is the AuthPacket frame of an auth request sent with an
	// ordinary xid (go-zookeeper does that; the Java client uses -4),
	// logged for replay when its reply succeeds.
	auth []byte
	// config is set when the reply carries /zookeeper/config or answers a
	// refused reconfig (see screenConfigRequest).
	config *configReply
}

// requestFIFO is the queue of forwarded ordinary requests in wire order. A
// member answers them in order on one connection (FinalRequestProcessor
// runs requests of a session in commit order), so a reply must match the
// head; the Java client drops the connection otherwise (ClientCnxn
// "Xid out of order"). Callers bound its length. Not safe for concurrent
// use.
type requestFIFO struct {
	buf  []pendingRequest
	head int
	n    int
}

func (q *requestFIFO) len() int { return q.n }

func (q *requestFIFO) push(r pendingRequest) {
	if q.n == len(q.buf) {
		grown := make([]pendingRequest, max(8, 2*len(q.buf)))
		for i := 0; i < q.n; i++ {
			grown[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = grown, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = r
	q.n++
}

// peek returns the oldest request.
func (q *requestFIFO) peek() (pendingRequest, bool) {
	if q.n == 0 {
		return pendingRequest{}, false
	}
	return q.buf[q.head], true
}

// match removes and returns the request a reply with xid answers. The
// reply must answer the head; the exceptions are SASL (op 102) and auth
// (op 100), which ZooKeeperServer.processPacket answers inline, so their
// replies can overtake requests pipelined before them.
func (q *requestFIFO) match(xid jute.Xid) (pendingRequest, error) {
	head, ok := q.peek()
	if !ok {
		return pendingRequest{}, fmt.Errorf("reply xid %d with no request outstanding", xid)
	}
	if head.xid == xid {
		q.buf[q.head] = pendingRequest{}
		q.head = (q.head + 1) % len(q.buf)
		q.n--
		if q.n == 0 {
			q.head = 0
		}
		return head, nil
	}
	for i := 1; i < q.n; i++ {
		idx := (q.head + i) % len(q.buf)
		if r := q.buf[idx]; r.xid == xid && (r.op == jute.OpSASL || r.op == jute.OpAuth) {
			for j := i; j < q.n-1; j++ {
				q.buf[(q.head+j)%len(q.buf)] = q.buf[(q.head+j+1)%len(q.buf)]
			}
			q.buf[(q.head+q.n-1)%len(q.buf)] = pendingRequest{}
			q.n--
			return r, nil
		}
	}
	return pendingRequest{}, fmt.Errorf("reply xid %d out of order: expected xid %d (%s)", xid, head.xid, head.op)
}

// clear drops every entry (the connection they were sent on is gone).
func (q *requestFIFO) clear() {
	clear(q.buf)
	q.head, q.n = 0, 0
}

// pingFIFO records who sent each ping in flight on the upstream connection.
// Client and proxy pings both use xid -2 and their replies come back in
// order, so the owner of a ping reply is the oldest entry.
type pingFIFO struct {
	fromProxy []bool // from head on; the backing array is kept while empty
	head      int
}

func (p *pingFIFO) push(fromProxy bool) { p.fromProxy = append(p.fromProxy, fromProxy) }

// pop returns whether the oldest ping in flight was the proxy's own.
func (p *pingFIFO) pop() (fromProxy, ok bool) {
	if p.head == len(p.fromProxy) {
		return false, false
	}
	fromProxy = p.fromProxy[p.head]
	p.head++
	if p.head == len(p.fromProxy) {
		// Empty: start over in the same array, so a session's pings,
		// one in flight at a time, allocate nothing.
		p.fromProxy, p.head = p.fromProxy[:0], 0
	}
	return fromProxy, true
}

// unpush takes back the newest ping, pushed by the caller under sendMu
// (every push is, so it is still the newest).
func (p *pingFIFO) unpush() {
	if p.head < len(p.fromProxy) {
		p.fromProxy = p.fromProxy[:len(p.fromProxy)-1]
	}
}

// peekFromProxy reports whether the oldest ping in flight is the proxy's
// own; false when none is.
func (p *pingFIFO) peekFromProxy() bool {
	return p.head < len(p.fromProxy) && p.fromProxy[p.head]
}

// len counts the pings in flight, the client's and the proxy's.
func (p *pingFIFO) len() int { return len(p.fromProxy) - p.head }

// clientPings counts client pings in flight.
func (p *pingFIFO) clientPings() int {
	n := 0
	for _, fromProxy := range p.fromProxy[p.head:] {
		if !fromProxy {
			n++
		}
	}
	return n
}

func (p *pingFIFO) clear() { p.fromProxy, p.head = nil, 0 }
