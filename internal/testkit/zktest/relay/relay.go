// Package relay is a capturing TCP relay for tests: it accepts connections on
// a loopback address, forwards each to an upstream ZooKeeper server, and
// records every length-prefixed frame in both directions, in the order it
// forwarded them. jute's golden-frame capture uses it.
//
// The relay splits the byte stream on the 4-byte big-endian length prefixes
// itself and does not use the jute package, so the frames it records do not
// depend on the codec they are used to check. Bytes that are not a plausible
// frame (a four-letter word, a length above MaxFrameSize) are forwarded raw
// and recorded as one Raw chunk.
package relay

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// MaxFrameSize bounds the frames the relay parses; longer announced lengths
// make the rest of that direction a raw copy. ZooKeeper's replies can exceed
// jute.maxbuffer (a large getChildren), so the bound is generous.
const MaxFrameSize = 16 << 20

// Direction says who sent a frame.
type Direction int

const (
	// ClientToServer frames were read from the accepted connection.
	ClientToServer Direction = iota
	// ServerToClient frames were read from the upstream connection.
	ServerToClient
)

func (d Direction) String() string {
	if d == ClientToServer {
		return "c2s"
	}
	return "s2c"
}

// Frame is one recorded frame.
type Frame struct {
	// Conn numbers the relayed connections from 0 in accept order.
	Conn int
	Dir  Direction
	// Index counts the frames of this connection and direction from 0; the
	// first client frame of a connection is its ConnectRequest.
	Index int
	// Bytes is the frame as forwarded: length prefix and payload, or the raw
	// chunk when Raw is set.
	Bytes []byte
	// Raw marks bytes forwarded without framing.
	Raw bool
	// At is when the relay had read the frame, just before forwarding it.
	At time.Time
}

// Relay is a running relay. Close it when done; methods are safe for
// concurrent use.
type Relay struct {
	ln       net.Listener
	upstream string

	mu     sync.Mutex
	frames []Frame
	conns  []net.Conn
	nconn  int
	closed bool
	wg     sync.WaitGroup
}

// Start listens on listenAddr (e.g. "127.a.b.c:0") and relays every accepted
// connection to upstream.
func Start(listenAddr, upstream string) (*Relay, error) {
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return nil, fmt.Errorf("relay: listen %s: %w", listenAddr, err)
	}
	r := &Relay{ln: ln, upstream: upstream}
	r.wg.Add(1)
	go r.acceptLoop()
	return r, nil
}

// Addr returns the address clients should connect to.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// Frames returns a copy of the frames recorded so far, in forwarding order.
func (r *Relay) Frames() []Frame {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Frame(nil), r.frames...)
}

// Close stops accepting, closes every relayed connection and waits for the
// relay's goroutines to finish. Calling it twice is harmless.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	conns := r.conns
	r.conns = nil
	r.mu.Unlock()
	err := r.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	r.wg.Wait()
	return err
}

// DropConnections closes every connection relayed so far, in both
// directions, and keeps accepting new ones: clients see a connection loss and
// reconnect through the relay (the Java client then re-registers its watches
// with SetWatches/SetWatches2, ClientCnxn.SendThread.primeConnection).
func (r *Relay) DropConnections() {
	r.mu.Lock()
	conns := r.conns
	r.conns = nil
	r.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

func (r *Relay) acceptLoop() {
	defer r.wg.Done()
	for {
		client, err := r.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", r.upstream)
		if err != nil {
			client.Close()
			continue
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			client.Close()
			server.Close()
			return
		}
		id := r.nconn
		r.nconn++
		r.conns = append(r.conns, client, server)
		r.wg.Add(2)
		r.mu.Unlock()
		go r.copyFrames(id, ClientToServer, client, server)
		go r.copyFrames(id, ServerToClient, server, client)
	}
}

// copyFrames forwards src to dst frame by frame, recording each frame before
// writing it. The first error closes both connections.
func (r *Relay) copyFrames(conn int, dir Direction, src, dst net.Conn) {
	defer r.wg.Done()
	defer src.Close()
	defer dst.Close()
	index := 0
	var lenBuf [4]byte
	for {
		if _, err := io.ReadFull(src, lenBuf[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(lenBuf[:])
		if n > MaxFrameSize {
			r.copyRaw(conn, dir, index, lenBuf[:], src, dst)
			return
		}
		frame := make([]byte, 4+int(n))
		copy(frame, lenBuf[:])
		got, err := io.ReadFull(src, frame[4:])
		if err != nil {
			// The stream ended inside a frame: forward and record what
			// arrived, marked raw.
			r.record(Frame{Conn: conn, Dir: dir, Index: index, Bytes: frame[:4+got], Raw: true}, dst)
			return
		}
		if err := r.record(Frame{Conn: conn, Dir: dir, Index: index, Bytes: frame}, dst); err != nil {
			return
		}
		index++
	}
}

// record appends f to the log, then writes its bytes to dst. A frame is
// logged before it is forwarded, so anything caused by it (a reply to a
// request) is logged after it; the write happens outside the lock so one
// blocked direction cannot stall the other.
func (r *Relay) record(f Frame, dst net.Conn) error {
	f.At = time.Now()
	r.mu.Lock()
	r.frames = append(r.frames, f)
	r.mu.Unlock()
	_, err := dst.Write(f.Bytes)
	return err
}

// copyRaw forwards the rest of src unframed, recording each chunk read as
// one Raw frame.
func (r *Relay) copyRaw(conn int, dir Direction, index int, head []byte, src, dst net.Conn) {
	if r.record(Frame{Conn: conn, Dir: dir, Index: index, Bytes: append([]byte(nil), head...), Raw: true}, dst) != nil {
		return
	}
	buf := make([]byte, 32<<10)
	for {
		index++
		n, err := src.Read(buf)
		if n > 0 {
			if r.record(Frame{Conn: conn, Dir: dir, Index: index, Bytes: append([]byte(nil), buf[:n]...), Raw: true}, dst) != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
