//go:build linux

package proxy

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// pollConn is a session's TCP connection (the client's, or the one to a
// member) that is in the Go runtime's poller only while a goroutine needs
// to wait on it. It is a net.Conn and a syscall.Conn like the *net.TCPConn
// it replaces, so everything above it is unchanged.
//
// Why: the runtime's poller gives every registered descriptor a pollDesc,
// which runtime/netpoll.go (pollcache.alloc) pads to 512 bytes, outside
// the heap, and never frees: a closed descriptor's goes to a cache for the
// next. With the netFD, the TCPConn and its two TCPAddrs, a *net.TCPConn
// costs a Go process about 1 KiB for as long as it is open
// (BenchmarkNetConnFloorMemory: 2.0 KiB for a session's two), half of what
// an idle session cost. An idle session's pumps are parked, waiting in the
// parker's epoll instance, not the runtime's; so a pollConn keeps only the
// socket (and 64 bytes) while it is idle, and registers it in the runtime's
// poller (as an *os.File, the same internal/poll.FD a net.Conn has) when
// an operation would block. A park lets that go again (detach), and its
// pollDesc serves the next busy connection.
//
// Busy connections therefore wait exactly as a *net.TCPConn does, woken
// by the runtime's poller directly. (Waiting in the parker's instance for
// every connection, the first version of this, put the parker's goroutine
// between every event and its pump: 1.2–1.35× HAProxy's relay CPU per
// request instead of 1.0–1.1×.)
//
// Reads and writes that do not block go straight to the socket, so a
// relayed request costs no more system calls than before; the first
// operation that blocks after a park costs an fcntl and an epoll_ctl, and
// the next park a dup, an epoll_ctl and a close. A connection holds one
// descriptor throughout (two for the moment of a detach).
type pollConn struct {
	mu      sync.Mutex
	fd      int32 // the socket, ours until Close
	closing bool
	users   int32 // operations in progress; the last after Close closes fd
	// file owns fd, registered in the runtime's poller, while attached;
	// raw is its RawConn.
	file *os.File
	raw  syscall.RawConn
	// The deadlines, kept here and set on file whenever it is attached
	// (Unix nanoseconds; 0: none).
	rd, wd int64
}

// newPollConn takes fd, a connected non-blocking TCP socket.
func newPollConn(fd int) *pollConn { return &pollConn{fd: int32(fd)} }

// begin starts an operation: fd stays open until its end; raw is the
// attached file's RawConn (nil: none), deadline the read or write one.
func (c *pollConn) begin(read bool) (fd int, raw syscall.RawConn, deadline int64, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return -1, nil, 0, net.ErrClosed
	}
	c.users++
	deadline = c.wd
	if read {
		deadline = c.rd
	}
	return int(c.fd), c.raw, deadline, nil
}

// end ends an operation; the last after Close closes the socket.
func (c *pollConn) end() {
	c.mu.Lock()
	c.users--
	if c.users == 0 && c.closing {
		c.closeLocked()
	}
	c.mu.Unlock()
}

// closeLocked closes the socket: through the attached file, which owns it
// then, or directly.
func (c *pollConn) closeLocked() {
	if c.file != nil {
		c.file.Close()
		c.file, c.raw = nil, nil
	} else {
		syscall.Close(int(c.fd))
	}
	c.fd = -1
}

// attach registers the socket in the runtime's poller, if it is not, and
// returns its RawConn. The caller is inside an operation.
func (c *pollConn) attach() (syscall.RawConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return nil, net.ErrClosed
	}
	if c.raw != nil {
		return c.raw, nil
	}
	// os.NewFile takes the descriptor over and registers it in the
	// runtime's poller, being non-blocking; the number stays the same, so
	// the file holds no second descriptor (the open-files limit that
	// max-client-conns is derived from counts two per session).
	f := os.NewFile(uintptr(c.fd), "tcp")
	raw, err := f.SyscallConn()
	if err != nil {
		// Cannot happen for a file os.NewFile made; never close it,
		// which would close the socket.
		return nil, err
	}
	if c.rd != 0 {
		f.SetReadDeadline(time.Unix(0, c.rd))
	}
	if c.wd != 0 {
		f.SetWriteDeadline(time.Unix(0, c.wd))
	}
	c.file, c.raw = f, raw
	return raw, nil
}

// detach takes the socket out of the runtime's poller, unless an
// operation is in progress (it may be waiting there; the next park tries
// again). The runtime cannot let a descriptor go without closing it, so
// the socket moves to a duplicate and the file closes the old number.
// The parker calls it when the connection's reader is about to park,
// before it registers the (new) number.
func (c *pollConn) detach() {
	c.mu.Lock()
	f := c.file
	if f == nil || c.users != 0 || c.closing {
		c.mu.Unlock()
		return
	}
	n, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(c.fd), syscall.F_DUPFD_CLOEXEC, 0)
	if errno != 0 {
		c.mu.Unlock()
		return // stays attached
	}
	c.fd = int32(n)
	c.file, c.raw = nil, nil
	c.mu.Unlock()
	f.Close()
}

// expired reports whether the deadline d (Unix nanoseconds) has passed.
func expired(d int64) bool { return d != 0 && time.Now().UnixNano() >= d }

// closed reports whether Close was called.
func (c *pollConn) closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// Close closes the socket once the operations using it have ended; those
// waiting in the runtime's poller are woken (with a deadline in the past)
// and fail with net.ErrClosed.
func (c *pollConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return opError("close", net.ErrClosed)
	}
	c.closing = true
	switch {
	case c.users == 0:
		c.closeLocked()
	case c.file != nil:
		c.file.SetDeadline(time.Unix(1, 0))
	}
	return nil
}

// opError wraps an operation's error as a *net.TCPConn's would be.
func opError(op string, err error) error {
	if err == nil {
		return nil
	}
	return &net.OpError{Op: op, Net: "tcp", Err: err}
}

// rawIO is RawConn.Read (read) or Write: f is tried on the socket first;
// if it would block, the socket is attached and the runtime's poller
// waits for it.
func (c *pollConn) rawIO(read bool, f func(fd uintptr) bool) error {
	fd, raw, deadline, err := c.begin(read)
	if err != nil {
		return err
	}
	defer c.end()
	if raw == nil {
		if expired(deadline) {
			return os.ErrDeadlineExceeded
		}
		if f(uintptr(fd)) {
			return nil
		}
		if raw, err = c.attach(); err != nil {
			return err
		}
	}
	if read {
		err = raw.Read(f)
	} else {
		err = raw.Write(f)
	}
	if err != nil && c.closed() {
		// The file's poller reports its own closing (internal/poll's
		// ErrFileClosing), which is not net.ErrClosed.
		return net.ErrClosed
	}
	return err
}

func (c *pollConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	// Off the pumps' path (they read through the RawConn): the closure
	// per call is fine here.
	var n int
	var rerr error
	err := c.rawIO(true, func(fd uintptr) bool {
		n, rerr = readNonBlocking(fd, b)
		return rerr != syscall.EAGAIN
	})
	switch {
	case err != nil:
		return 0, opError("read", err)
	case rerr != nil:
		return 0, opError("read", os.NewSyscallError("read", rerr))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of b, through the pumps' pooled raw writer.
func (c *pollConn) Write(b []byte) (int, error) {
	n, err := writeFrame(c, (*pollRaw)(c), b)
	return n, opError("write", err)
}

// LocalAddr and RemoteAddr ask the kernel on every call rather than keep
// two addresses per connection (the session keeps the client's as text).
func (c *pollConn) LocalAddr() net.Addr { return c.addr(syscall.Getsockname) }

func (c *pollConn) RemoteAddr() net.Addr { return c.addr(syscall.Getpeername) }

func (c *pollConn) addr(get func(int) (syscall.Sockaddr, error)) net.Addr {
	fd, _, _, err := c.begin(true)
	if err != nil {
		return &net.TCPAddr{}
	}
	defer c.end()
	sa, err := get(fd)
	if err != nil {
		return &net.TCPAddr{}
	}
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]).To16(), Port: sa.Port}
	case *syscall.SockaddrInet6:
		a := &net.TCPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port}
		if sa.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(sa.ZoneId)); err == nil {
				a.Zone = ifi.Name
			}
		}
		return a
	}
	return &net.TCPAddr{}
}

func (c *pollConn) SetDeadline(t time.Time) error {
	c.setDeadline(true, t)
	c.setDeadline(false, t)
	return nil
}

func (c *pollConn) SetReadDeadline(t time.Time) error  { c.setDeadline(true, t); return nil }
func (c *pollConn) SetWriteDeadline(t time.Time) error { c.setDeadline(false, t); return nil }

// setDeadline keeps the deadline and sets it on the attached file, where
// it wakes a waiting operation as a *net.TCPConn's does.
func (c *pollConn) setDeadline(read bool, t time.Time) {
	var d int64
	if !t.IsZero() {
		d = max(t.UnixNano(), 1)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if read {
		c.rd = d
	} else {
		c.wd = d
	}
	if c.file != nil {
		if read {
			c.file.SetReadDeadline(t)
		} else {
			c.file.SetWriteDeadline(t)
		}
	}
}

// SyscallConn returns the connection's RawConn.
func (c *pollConn) SyscallConn() (syscall.RawConn, error) { return (*pollRaw)(c), nil }

// pollRaw is a pollConn's syscall.RawConn.
type pollRaw pollConn

func (r *pollRaw) Control(f func(fd uintptr)) error {
	c := (*pollConn)(r)
	fd, _, _, err := c.begin(true)
	if err != nil {
		return err
	}
	defer c.end()
	f(uintptr(fd))
	return nil
}

func (r *pollRaw) Read(f func(fd uintptr) bool) error  { return (*pollConn)(r).rawIO(true, f) }
func (r *pollRaw) Write(f func(fd uintptr) bool) error { return (*pollConn)(r).rawIO(false, f) }

// pollConnOf returns the pollConn behind raw, or nil.
func pollConnOf(raw syscall.RawConn) *pollConn {
	if r, ok := raw.(*pollRaw); ok {
		return (*pollConn)(r)
	}
	return nil
}

// detachParked takes fr's connection out of the runtime's poller as its
// pump is about to park (see pollConn).
func detachParked(fr *frameReader) {
	if c := pollConnOf(fr.poll); c != nil {
		c.detach()
	}
}

// ownConn replaces conn, a TCP connection, with a pollConn on the same
// socket, and returns what to use in its place: conn itself when it is
// not a *net.TCPConn, when Config.RuntimePoller says so, or when it
// cannot be moved.
func (s *Server) ownConn(conn net.Conn) net.Conn {
	tc, ok := conn.(*net.TCPConn)
	if !ok || s.cfg.RuntimePoller {
		return conn
	}
	moved, err := moveTCP(tc)
	if err != nil {
		s.warnRepeated("own_poller", "connection kept in the Go runtime's poller", "err", err)
	}
	return moved
}

// moveTCP puts a duplicate of tc's descriptor in a pollConn and closes tc
// (Go's net package cannot let a socket go without closing it), or returns
// tc and why not. The socket options the net package set (TCP_NODELAY,
// keep-alive) and the non-blocking mode belong to the socket and stay.
func moveTCP(tc *net.TCPConn) (net.Conn, error) {
	raw, err := tc.SyscallConn()
	if err != nil {
		return tc, err
	}
	dup := -1
	var errno syscall.Errno
	raw.Control(func(fd uintptr) {
		var n uintptr
		n, _, errno = syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
		if errno == 0 {
			dup = int(n)
		}
	})
	if dup < 0 {
		return tc, os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", errno)
	}
	tc.Close()
	return newPollConn(dup), nil
}
