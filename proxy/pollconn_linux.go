//go:build linux

package proxy

import (
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// pollConn is a session's TCP connection (the client's, or the one to a
// member) held outside the Go runtime's poller: its socket is registered,
// once and for its whole life, in the parker's epoll instance, whose loop
// wakes the goroutine waiting on it. It is a net.Conn and a syscall.Conn
// like the *net.TCPConn it replaces, so everything above it is unchanged.
//
// Why: the runtime's poller gives every descriptor a pollDesc, which
// runtime/netpoll.go (pollcache.alloc) pads to 512 bytes and allocates
// outside the heap, never to be returned; with the netFD, the TCPConn and
// the two cached TCPAddrs, a *net.TCPConn costs a Go process about 1 KiB
// (BenchmarkNetConnFloorMemory: 2.0 KiB for a session's two), which was
// half of what an idle session cost. A pollConn is one 96-byte object and
// an entry in the parker's map. It also lets a parked pump stay in the
// epoll instance it already is in, instead of being added to the parker's
// and removed again on every park (parker.park).
//
// Waiting works like the runtime's: the socket is registered edge-triggered
// for input and output, an event marks its direction ready or wakes the
// goroutine waiting on it (ioWaiter), and RawConn.Read and Write clear the
// mark before each try, so an event that comes between a try that would
// block and the wait is not lost. Deadlines are kept as a time per
// direction; a timer exists only while a goroutine waits with one (taken
// from a pool), so an idle session holds none.
//
// The descriptor is closed when the last operation using it ends (refs),
// so a Close racing a read never lets that read reach a reused descriptor
// number. There is no finalizer: sessions always close their connections.
type pollConn struct {
	p  *parker
	id uint64 // key of the registration in p (p.conns)
	fd int32
	// refs counts operations using fd; pcClosing is set by Close, and the
	// one who drops refs to pcClosing alone closes fd.
	refs atomic.Int32
	r, w ioWaiter
}

const pcClosing = 1 << 30

// ioWaiter is one direction of a pollConn: its readiness, the goroutine
// waiting for it, and its deadline.
type ioWaiter struct {
	// state is waitIdle, waitReady (an event came and nobody waited) or
	// waitBlocked (a goroutine sleeps in sleep).
	state atomic.Uint32
	// sleep is where the waiter sleeps: it adds one before it moves state
	// to waitBlocked and waits; the signaller that moves state from
	// waitBlocked, and only that one, calls Done. (A WaitGroup rather
	// than a Mutex used as a semaphore: a Mutex's Lock spins first.)
	sleep sync.WaitGroup
	// op serialises the operations of this direction (as internal/poll's
	// fdMutex does), so only one goroutine ever waits here.
	op       sync.Mutex
	deadline atomic.Int64 // Unix nanoseconds; 0: none
}

const (
	waitIdle uint32 = iota
	waitReady
	waitBlocked
)

// signal marks the direction ready, or wakes its waiter.
func (w *ioWaiter) signal() {
	for {
		switch w.state.Load() {
		case waitBlocked:
			if w.state.CompareAndSwap(waitBlocked, waitIdle) {
				w.sleep.Done()
				return
			}
		case waitIdle:
			if w.state.CompareAndSwap(waitIdle, waitReady) {
				return
			}
		default: // ready already
			return
		}
	}
}

// clear forgets an earlier event: the caller is about to try the socket.
func (w *ioWaiter) clear() { w.state.CompareAndSwap(waitReady, waitIdle) }

// check is the error an operation of this direction gets before it tries:
// the connection's closing, or its deadline passed.
func (c *pollConn) check(w *ioWaiter) error {
	if c.refs.Load()&pcClosing != 0 {
		return net.ErrClosed
	}
	if d := w.deadline.Load(); d != 0 && time.Now().UnixNano() >= d {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// wait sleeps until the direction is signalled (an event, Close, a
// deadline set or passed); the caller then checks and tries again, so a
// wake-up for nothing costs one more try.
func (c *pollConn) wait(w *ioWaiter) {
	if w.state.CompareAndSwap(waitReady, waitIdle) {
		return
	}
	w.sleep.Add(1)
	if !w.state.CompareAndSwap(waitIdle, waitBlocked) {
		w.sleep.Done()
		w.state.CompareAndSwap(waitReady, waitIdle) // it became ready
		return
	}
	var t *waitTimer
	if d := w.deadline.Load(); d != 0 {
		t = waitTimers.Get().(*waitTimer)
		t.w.Store(w)
		t.t.Reset(time.Until(time.Unix(0, d)))
	}
	// A Close or deadline that came before the state was waitBlocked found
	// it idle and marked it ready, so the CAS above failed; one after it
	// calls Done.
	w.sleep.Wait()
	if t != nil {
		t.t.Stop()
		t.w.Store(nil)
		waitTimers.Put(t)
	}
}

// waitTimer wakes a waiter at its deadline; pooled, so that only waiting
// goroutines hold timers. A timer that fires late, for a waiter that has
// moved on, wakes it for nothing at worst.
type waitTimer struct {
	t *time.Timer
	w atomic.Pointer[ioWaiter]
}

var waitTimers = sync.Pool{New: func() any {
	wt := &waitTimer{}
	wt.t = time.AfterFunc(time.Hour, func() {
		if w := wt.w.Load(); w != nil {
			w.signal()
		}
	})
	wt.t.Stop()
	return wt
}}

// newPollConn registers fd (non-blocking, owned from now on: closed on
// error) in p. It returns nil if p is closed or the registration fails.
func newPollConn(p *parker, fd int) *pollConn {
	c := &pollConn{p: p, fd: int32(fd)}
	if !p.register(c) {
		syscall.Close(fd)
		return nil
	}
	return c
}

// acquire takes a reference to fd for one operation.
func (c *pollConn) acquire() bool {
	for {
		n := c.refs.Load()
		if n&pcClosing != 0 {
			return false
		}
		if c.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release drops a reference; the last one after Close closes fd.
func (c *pollConn) release() {
	if c.refs.Add(-1) == pcClosing {
		syscall.Close(int(c.fd))
	}
}

// Close unregisters and closes the socket (once the operations using it
// have ended) and wakes every waiter, whose operations then fail with
// net.ErrClosed.
func (c *pollConn) Close() error {
	if !c.acquire() {
		return c.opError("close", net.ErrClosed)
	}
	// Unregister first, while fd is surely ours: a descriptor handed to
	// another process (the upgrade handoff) keeps the socket open, and
	// with it a registration epoll would not drop by itself.
	c.p.unregister(c)
	for {
		n := c.refs.Load()
		if n&pcClosing != 0 {
			c.release()
			return c.opError("close", net.ErrClosed)
		}
		if c.refs.CompareAndSwap(n, n|pcClosing) {
			break
		}
	}
	c.r.signal()
	c.w.signal()
	c.release()
	return nil
}

func (c *pollConn) opError(op string, err error) error {
	if err == nil {
		return nil
	}
	return &net.OpError{Op: op, Net: "tcp", Err: err}
}

// rawRead is RawConn.Read: f is tried until it reports done, waiting
// for input between tries.
func (c *pollConn) rawRead(f func(fd uintptr) bool) error { return c.rawIO(&c.r, f) }

func (c *pollConn) rawWrite(f func(fd uintptr) bool) error { return c.rawIO(&c.w, f) }

func (c *pollConn) rawIO(w *ioWaiter, f func(fd uintptr) bool) error {
	if !c.acquire() {
		return net.ErrClosed
	}
	defer c.release()
	w.op.Lock()
	defer w.op.Unlock()
	for {
		if err := c.check(w); err != nil {
			return err
		}
		w.clear()
		if f(uintptr(c.fd)) {
			return nil
		}
		c.wait(w)
	}
}

func (c *pollConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if !c.acquire() {
		return 0, c.opError("read", net.ErrClosed)
	}
	defer c.release()
	c.r.op.Lock()
	defer c.r.op.Unlock()
	for {
		if err := c.check(&c.r); err != nil {
			return 0, c.opError("read", err)
		}
		c.r.clear()
		n, errno := rawRead(uintptr(c.fd), b)
		switch {
		case errno == syscall.EAGAIN:
			c.wait(&c.r)
		case errno == syscall.EINTR:
		case errno != 0:
			return 0, c.opError("read", os.NewSyscallError("read", errno))
		case n == 0:
			return 0, io.EOF
		default:
			return n, nil
		}
	}
}

func (c *pollConn) Write(b []byte) (int, error) {
	if !c.acquire() {
		return 0, c.opError("write", net.ErrClosed)
	}
	defer c.release()
	c.w.op.Lock()
	defer c.w.op.Unlock()
	done := 0
	for done < len(b) {
		if err := c.check(&c.w); err != nil {
			return done, c.opError("write", err)
		}
		c.w.clear()
		n, errno := rawWrite(uintptr(c.fd), b[done:])
		switch {
		case errno == syscall.EAGAIN:
			c.wait(&c.w)
		case errno == syscall.EINTR:
		case errno != 0:
			return done, c.opError("write", os.NewSyscallError("write", errno))
		default:
			done += n
		}
	}
	return done, nil
}

// LocalAddr and RemoteAddr ask the kernel on every call rather than keep
// two addresses per connection (the session keeps the client's as text).
func (c *pollConn) LocalAddr() net.Addr { return c.addr(syscall.Getsockname) }

func (c *pollConn) RemoteAddr() net.Addr { return c.addr(syscall.Getpeername) }

func (c *pollConn) addr(get func(int) (syscall.Sockaddr, error)) net.Addr {
	if !c.acquire() {
		return &net.TCPAddr{}
	}
	defer c.release()
	sa, err := get(int(c.fd))
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
	c.setDeadline(&c.r, t)
	c.setDeadline(&c.w, t)
	return nil
}

func (c *pollConn) SetReadDeadline(t time.Time) error  { c.setDeadline(&c.r, t); return nil }
func (c *pollConn) SetWriteDeadline(t time.Time) error { c.setDeadline(&c.w, t); return nil }

// setDeadline stores the deadline and wakes a waiter, which re-checks it
// and waits with a timer for the new one.
func (c *pollConn) setDeadline(w *ioWaiter, t time.Time) {
	var d int64
	if !t.IsZero() {
		d = t.UnixNano()
		if d == 0 {
			d = 1
		}
	}
	if w.deadline.Swap(d) != d && w.state.Load() == waitBlocked {
		w.signal()
	}
}

// SyscallConn returns the connection's RawConn.
func (c *pollConn) SyscallConn() (syscall.RawConn, error) { return (*pollRaw)(c), nil }

// pollRaw is a pollConn's syscall.RawConn.
type pollRaw pollConn

func (r *pollRaw) Control(f func(fd uintptr)) error {
	c := (*pollConn)(r)
	if !c.acquire() {
		return net.ErrClosed
	}
	defer c.release()
	f(uintptr(c.fd))
	return nil
}

func (r *pollRaw) Read(f func(fd uintptr) bool) error  { return (*pollConn)(r).rawRead(f) }
func (r *pollRaw) Write(f func(fd uintptr) bool) error { return (*pollConn)(r).rawWrite(f) }

// pollConnOf returns the pollConn behind raw, or nil.
func pollConnOf(raw syscall.RawConn) *pollConn {
	if r, ok := raw.(*pollRaw); ok {
		return (*pollConn)(r)
	}
	return nil
}

// ownConn moves conn, a TCP connection, out of the runtime's poller into
// the parker's (see pollConn), and returns what to use in its place: conn
// itself when it is not a *net.TCPConn, when Config.RuntimePoller says so,
// or when it cannot be moved.
func (s *Server) ownConn(conn net.Conn) net.Conn {
	tc, ok := conn.(*net.TCPConn)
	if !ok || !s.cfg.ownPoller() {
		return conn
	}
	p := s.getParker()
	if p == nil {
		return conn
	}
	return moveTCP(p, tc)
}

// moveTCP registers a duplicate of tc's descriptor in p and closes tc (Go's
// net package cannot let a socket go without closing it), or returns tc
// if it cannot. The socket options the net package set (TCP_NODELAY,
// keep-alive) and the non-blocking mode belong to the socket and stay.
func moveTCP(p *parker, tc *net.TCPConn) net.Conn {
	raw, err := tc.SyscallConn()
	if err != nil {
		return tc
	}
	dup := -1
	raw.Control(func(fd uintptr) {
		n, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
		if errno == 0 {
			dup = int(n)
		}
	})
	if dup < 0 {
		return tc
	}
	pc := newPollConn(p, dup)
	if pc == nil {
		return tc
	}
	tc.Close()
	return pc
}
