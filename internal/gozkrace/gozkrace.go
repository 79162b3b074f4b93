// Package gozkrace orders a data race inside go-zookeeper from outside the
// library, through the connection it dials.
package gozkrace

import (
	"encoding/binary"
	"net"
	"sync"
	"time"
)

// go-zookeeper v1.0.4 (the newest) has a data race, which the race
// detector reports in our tests: after a reconnect, its loop
// goroutine reads Conn.lastZxid in sendSetWatches (conn.go:614) while the
// recvLoop it has just started writes it for each reply (conn.go:849),
// with nothing ordering the two. The test binaries run with -race, so a
// client that reconnects holding watches could fail whichever test it was
// in (CI caught TestCutoverToTLSDestination so). The fleet's own client
// (fleet/store.go) holds a watch and reconnects through the join, so it
// is gated too.
//
// Dialer orders them from outside the library: after each handshake the
// connection returns no reply data until the client has written its
// SetWatches request (op 101), which go-zookeeper queues only after that
// read (through a goroutine, its send channel and its sendLoop, each a
// happens-before edge), so every reply recvLoop decodes comes after the
// read. A client with no watches sends no SetWatches, and then never
// reaches the read either: its gate opens after setWatchesWait.
//
// dial is the dialer to wrap; nil dials TCP. The result is a
// go-zookeeper Dialer (zk.WithDialer).
func Dialer(dial func(network, address string, timeout time.Duration) (net.Conn, error)) func(network, address string, timeout time.Duration) (net.Conn, error) {
	if dial == nil {
		dial = net.DialTimeout
	}
	return func(network, address string, timeout time.Duration) (net.Conn, error) {
		c, err := dial(network, address, timeout)
		if err != nil {
			return nil, err
		}
		return &gatedConn{Conn: c, open: make(chan struct{})}, nil
	}
}

// setWatchesWait bounds how long replies wait for a SetWatches that a
// client without watches never sends.
const setWatchesWait = 200 * time.Millisecond

// opSetWatches is the SetWatches opcode go-zookeeper sends.
const opSetWatches = 101

// gatedConn is one go-zookeeper connection (go-zookeeper dials a new one
// per reconnect). Reads until the ConnectResponse is through pass; later
// reads wait for open.
type gatedConn struct {
	net.Conn
	mu sync.Mutex
	// read counts the bytes read so far while the handshake is in progress;
	// handshakeLen is the ConnectResponse frame's length (4 + body) once
	// known.
	read, handshakeLen int
	prefix             [4]byte // the length prefix's bytes of a short read
	handshakeDone      bool
	open               chan struct{}
	openOnce           sync.Once
}

func (c *gatedConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	done := c.handshakeDone
	if !done {
		// go-zookeeper reads the length, then exactly the body
		// (io.ReadFull of 4, then of the length): stay within the frame.
		limit := 4 - c.read
		if c.read >= 4 {
			limit = c.handshakeLen - c.read
		}
		if len(p) > limit {
			p = p[:limit]
		}
	}
	c.mu.Unlock()
	if done {
		<-c.open
		return c.Conn.Read(p)
	}
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	if c.read < 4 {
		copy(c.prefix[c.read:], p[:n]) // the length prefix, possibly over several reads
		if c.read+n >= 4 {
			c.handshakeLen = 4 + int(binary.BigEndian.Uint32(c.prefix[:]))
		}
	}
	c.read += n
	if c.handshakeLen > 0 && c.read >= c.handshakeLen {
		c.handshakeDone = true
		time.AfterFunc(setWatchesWait, c.release)
	}
	c.mu.Unlock()
	return n, err
}

func (c *gatedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	// go-zookeeper writes one request per Write: length, xid, opcode. The
	// ConnectRequest before the handshake has no opcode there.
	c.mu.Lock()
	requests := c.handshakeDone
	c.mu.Unlock()
	if requests && len(p) >= 12 && int32(binary.BigEndian.Uint32(p[8:12])) == opSetWatches {
		c.release()
	}
	return n, err
}

func (c *gatedConn) release() { c.openOnce.Do(func() { close(c.open) }) }

// Close also opens the gate, so a read waiting on it returns the
// connection's error.
func (c *gatedConn) Close() error {
	c.release()
	return c.Conn.Close()
}
