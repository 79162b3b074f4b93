package e2e

import (
	"context"
	"io"
	"net"
	"sync"
	"time"
)

// faultyDial opens zkproxy's upstream connections (proxy.Config.Dial) and
// slows those to chosen members: dialDelay before a connection is handed
// over (each move and re-attach pays it, so a cutover takes long enough to
// act in the middle of it), ioDelay on every byte in both directions (a slow
// destination). Delays apply to connections opened after they are set.
// Loopback only: tc netem on lo would slow every other test on the machine.
type faultyDial struct {
	mu        sync.Mutex
	dialDelay map[string]time.Duration
	ioDelay   map[string]time.Duration
}

func newFaultyDial() *faultyDial {
	return &faultyDial{dialDelay: map[string]time.Duration{}, ioDelay: map[string]time.Duration{}}
}

func (f *faultyDial) set(members []string, dialDelay, ioDelay time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range members {
		f.dialDelay[m], f.ioDelay[m] = dialDelay, ioDelay
	}
}

func (f *faultyDial) dial(ctx context.Context, localAddr, member string) (net.Conn, error) {
	f.mu.Lock()
	dd, io := f.dialDelay[member], f.ioDelay[member]
	f.mu.Unlock()
	d := net.Dialer{}
	if localAddr != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localAddr)}
	}
	conn, err := d.DialContext(ctx, "tcp", member)
	if err != nil {
		return nil, err
	}
	if dd > 0 {
		select {
		case <-time.After(dd):
		case <-ctx.Done():
			conn.Close()
			return nil, context.Cause(ctx)
		}
	}
	if io > 0 {
		return delayLink(conn, io), nil
	}
	return conn, nil
}

// delayLink returns the proxy's end of a link to conn on which every chunk
// of bytes, in either direction, arrives delay after it was sent, without
// blocking the sender (as on a long wire, not a slow writer). At most 256
// chunks are in flight per direction; beyond that the sender waits, like a
// full socket buffer.
func delayLink(conn net.Conn, delay time.Duration) net.Conn {
	near, far := net.Pipe()
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			near.Close()
			far.Close()
			conn.Close()
		})
	}
	go delayedCopy(conn, far, delay, closeBoth)
	go delayedCopy(far, conn, delay, closeBoth)
	return &linkConn{Conn: near, remote: conn.RemoteAddr(), local: conn.LocalAddr()}
}

type chunk struct {
	data []byte
	due  time.Time
}

// delayedCopy copies src to dst, each chunk delay late.
func delayedCopy(dst io.Writer, src io.Reader, delay time.Duration, closeBoth func()) {
	q := make(chan chunk, 256)
	go func() {
		defer closeBoth()
		for c := range q {
			time.Sleep(time.Until(c.due))
			if _, err := dst.Write(c.data); err != nil {
				closeBoth() // ends the reader, which closes q
				for range q {
				}
				return
			}
		}
	}()
	defer close(q)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			q <- chunk{data: append([]byte(nil), buf[:n]...), due: time.Now().Add(delay)}
		}
		if err != nil {
			return
		}
	}
}

// linkConn reports the real addresses (the proxy logs them).
type linkConn struct {
	net.Conn
	remote, local net.Addr
}

func (c *linkConn) RemoteAddr() net.Addr { return c.remote }
func (c *linkConn) LocalAddr() net.Addr  { return c.local }
