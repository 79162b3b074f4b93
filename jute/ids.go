package jute

import "strconv"

// Xid is the client-chosen request id echoed in the reply header.
type Xid int32

// Special xids (ClientCnxn.NOTIFICATION_XID, PING_XID, AUTHPACKET_XID,
// SET_WATCHES_XID). The server never assigns xids itself; besides echoing the
// request's xid it only ever writes XidNotification (NIOServerCnxn.process,
// NettyServerCnxn.process) and XidPing (FinalRequestProcessor, ping case).
const (
	// XidNotification marks a server-to-client watch event (body WatcherEvent).
	XidNotification Xid = -1
	// XidPing marks a ping request and its reply (header only, op ping).
	XidPing Xid = -2
	// XidAuth marks an addAuthInfo request (op auth) and its reply, which the
	// server answers inline (ZooKeeperServer.processPacket) and may therefore
	// overtake replies to earlier requests.
	XidAuth Xid = -4
	// XidSetWatches is the xid ClientCnxn.primeConnection puts in SetWatches
	// headers. The Java client overwrites it with an ordinary xid when sending
	// (ClientCnxnSocketNIO.doIO keeps preset xids only for ping and auth); the
	// C client sends it as is. Detect SetWatches by opcode, not by xid.
	XidSetWatches Xid = -8
)

// String returns the xid in decimal, naming the special ones.
func (x Xid) String() string {
	switch x {
	case XidNotification:
		return "notification(-1)"
	case XidPing:
		return "ping(-2)"
	case XidAuth:
		return "auth(-4)"
	case XidSetWatches:
		return "setWatches(-8)"
	}
	return strconv.FormatInt(int64(x), 10)
}

// Zxid is a ZooKeeper transaction id: epoch in the high 32 bits, counter in
// the low 32 bits.
type Zxid int64

// String returns "0x" followed by the zxid in lower-case hex, as ZooKeeper
// logs it; negative values (notifications carry -1) print as "-0x1".
func (z Zxid) String() string {
	if z < 0 {
		return "-0x" + strconv.FormatUint(uint64(-z), 16)
	}
	return "0x" + strconv.FormatUint(uint64(z), 16)
}

// SessionID is a ZooKeeper session id. Treat it as a secret: the session
// password is derivable from it (ZooKeeperServer.generatePasswd).
type SessionID int64

// String returns the id as "0x" plus 16 hex digits.
func (s SessionID) String() string {
	const hexDigits = "0123456789abcdef"
	var b [18]byte
	b[0], b[1] = '0', 'x'
	u := uint64(s)
	for i := 17; i >= 2; i-- {
		b[i] = hexDigits[u&0xf]
		u >>= 4
	}
	return string(b[:])
}
