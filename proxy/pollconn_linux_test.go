//go:build linux

package proxy

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// pollConnPair is a pollConn (the accepted end, moved as the proxy moves a
// client's connection) and its peer, an ordinary *net.TCPConn.
func pollConnPair(t *testing.T) (*pollConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	moved, err := moveTCP(a.(*net.TCPConn))
	c, ok := moved.(*pollConn)
	if err != nil || !ok {
		a.Close()
		t.Fatalf("moveTCP kept the *net.TCPConn: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c, peer.(*net.TCPConn)
}

func testParker(t *testing.T) *parker {
	t.Helper()
	p, err := newParker(prometheus.NewGauge(prometheus.GaugeOpts{Name: "test_parked"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	return p
}

// TestPollConnCopiesBothWays pushes 16 MiB each way at once, far beyond the
// sockets' buffers, so both directions wait in the runtime's poller many
// times, detached now and then as a park would; every byte arrives in
// order.
func TestPollConnCopiesBothWays(t *testing.T) {
	c, peer := pollConnPair(t)
	const size = 16 << 20
	out := make([]byte, size)
	in := make([]byte, size)
	for i := range out {
		out[i] = byte(rand.Uint32())
		in[i] = byte(rand.Uint32())
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	copyTo := func(w io.Writer, b []byte) {
		defer wg.Done()
		// Uneven pieces, so reads and writes straddle them.
		for off := 0; off < len(b); {
			n := min(len(b)-off, 1+rand.IntN(200<<10))
			if _, err := w.Write(b[off : off+n]); err != nil {
				errs <- err
				return
			}
			off += n
		}
	}
	readAll := func(r io.Reader, want []byte) {
		defer wg.Done()
		got := make([]byte, len(want))
		if _, err := io.ReadFull(r, got); err != nil {
			errs <- err
			return
		}
		if !bytes.Equal(got, want) {
			errs <- errors.New("bytes differ")
		}
	}
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				c.detach()
			}
		}
	}()
	defer close(stop)
	wg.Add(4)
	go copyTo(c, out)
	go copyTo(peer, in)
	go readAll(peer, out)
	go readAll(c, in)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// The end of stream reads as io.EOF.
	peer.CloseWrite()
	if n, err := c.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("after the peer's FIN: %d, %v; want 0, EOF", n, err)
	}
}

// TestPollConnDeadlines: a read deadline ends a waiting Read with a timeout
// net.Error, a deadline moved into the past wakes a waiting Read at once
// (what idleSweep and the handoff do), and after the deadline is cleared
// reading works again. A write deadline ends a Write the peer does not
// read.
func TestPollConnDeadlines(t *testing.T) {
	c, peer := pollConnPair(t)

	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	_, err := c.Read(make([]byte, 1))
	if !isTimeout(err) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %v; want a timeout", err)
	}
	if waited := time.Since(start); waited < 40*time.Millisecond {
		t.Fatalf("the read returned after %v, before its deadline", waited)
	}

	c.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.SetReadDeadline(time.Unix(1, 0))
	select {
	case err := <-done:
		if !isTimeout(err) {
			t.Fatalf("read woken by a past deadline: %v; want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a deadline set in the past did not wake the waiting read")
	}

	c.SetReadDeadline(time.Time{})
	peer.Write([]byte("z"))
	b := make([]byte, 1)
	if _, err := c.Read(b); err != nil || b[0] != 'z' {
		t.Fatalf("read after clearing the deadline: %q, %v", b, err)
	}

	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	chunk := make([]byte, 1<<20)
	for {
		_, err := c.Write(chunk)
		if err == nil {
			continue
		}
		if !isTimeout(err) {
			t.Fatalf("write to a peer that does not read: %v; want a timeout", err)
		}
		break
	}
}

// TestPollConnCloseWakesWaiters: Close ends a waiting Read and a waiting
// Write with net.ErrClosed, closes the socket (the peer reads the end of
// stream) and its registration in the runtime's poller, and a second Close
// fails.
func TestPollConnCloseWakesWaiters(t *testing.T) {
	c, peer := pollConnPair(t)
	readErr := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		readErr <- err
	}()
	writeErr := make(chan error, 1)
	go func() {
		chunk := make([]byte, 1<<20)
		for {
			if _, err := c.Write(chunk); err != nil {
				writeErr <- err
				return
			}
		}
	}()
	time.Sleep(100 * time.Millisecond) // both wait: nothing to read, the peer does not read
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []chan error{readErr, writeErr} {
		select {
		case err := <-ch:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("waiting operation ended with %v; want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close left an operation waiting")
		}
	}
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, peer); err != nil {
		t.Fatalf("the peer did not read to the end of stream: %v", err)
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v; want net.ErrClosed", err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if c.file != nil {
		t.Fatal("the runtime's registration outlived Close")
	}
}

// TestPollConnCloseRacesOperations closes connections while goroutines read,
// write and use their descriptor: nothing reaches a descriptor after it is
// closed (the race detector and the descriptor check below would see it).
func TestPollConnCloseRacesOperations(t *testing.T) {
	for range 50 {
		c, peer := pollConnPair(t)
		var wg sync.WaitGroup
		wg.Add(3)
		go func() {
			defer wg.Done()
			for {
				if _, err := c.Read(make([]byte, 64)); err != nil {
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for {
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			raw, _ := c.SyscallConn()
			for {
				err := raw.Control(func(fd uintptr) {
					if _, err := syscall.Getsockname(int(fd)); err != nil {
						t.Errorf("descriptor %d used after close: %v", fd, err)
					}
				})
				if err != nil {
					return
				}
			}
		}()
		peer.Write([]byte("hello"))
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
		c.Close()
		wg.Wait()
		peer.Close()
	}
}

// TestPollConnAddrs: the addresses come from the kernel.
func TestPollConnAddrs(t *testing.T) {
	c, peer := pollConnPair(t)
	if got, want := c.LocalAddr().String(), peer.RemoteAddr().String(); got != want {
		t.Errorf("LocalAddr %s; the peer sees %s", got, want)
	}
	if got, want := c.RemoteAddr().String(), peer.LocalAddr().String(); got != want {
		t.Errorf("RemoteAddr %s; the peer is %s", got, want)
	}
}

// TestPollConnParkFindsQueuedFIN: a pump parks on a pollConn whose peer's
// data and FIN came while it was not waiting (as after a short read, see
// Serve): the parker's registration reports them and resumes the pump,
// instead of leaving it parked until its deadline.
func TestPollConnParkFindsQueuedFIN(t *testing.T) {
	p := testParker(t)
	c, peer := pollConnPair(t)
	peer.Write([]byte("last"))
	peer.CloseWrite()
	// Let the event pass while nobody waits: it only marks the direction.
	time.Sleep(50 * time.Millisecond)
	fr := newFrameReader(c, 0, nil)
	resumed := make(chan struct{})
	pump := &testPump{resume: func() { close(resumed) }}
	if !p.park(fr, parkEntry{deadline: time.Now().Add(time.Minute), pump: pump}) {
		t.Fatal("park refused")
	}
	select {
	case <-resumed:
	case <-time.After(5 * time.Second):
		t.Fatal("the parked pump was not resumed for data and a FIN that came before the park")
	}
}

type testPump struct{ resume func() }

func (tp *testPump) resumePump()      { tp.resume() }
func (tp *testPump) inlinePump() bool { return false }

// TestPollConnAttachesOnlyToWait: a connection is in the runtime's poller
// only from the first operation that would block until the park after it
// (detach, which leaves a connection in use alone), and reads work across
// both.
func TestPollConnAttachesOnlyToWait(t *testing.T) {
	c, peer := pollConnPair(t)
	attached := func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.file != nil
	}
	peer.Write([]byte("a"))
	time.Sleep(10 * time.Millisecond)
	b := make([]byte, 1)
	if _, err := c.Read(b); err != nil || b[0] != 'a' {
		t.Fatalf("read of queued data: %q, %v", b, err)
	}
	if attached() {
		t.Fatal("a read that did not block attached the connection")
	}
	got := make(chan error, 1)
	go func() {
		_, err := c.Read(b)
		got <- err
	}()
	waitFor(t, "the waiting read to attach", 5*time.Second, attached)
	c.detach() // in use: stays
	if !attached() {
		t.Fatal("detach let go of a connection a read waits on")
	}
	peer.Write([]byte("b"))
	if err := <-got; err != nil || b[0] != 'b' {
		t.Fatalf("read woken by the runtime's poller: %q, %v", b, err)
	}
	c.detach()
	if attached() {
		t.Fatal("detach kept an idle connection in the runtime's poller")
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		peer.Write([]byte("c"))
	}()
	if _, err := c.Read(b); err != nil || b[0] != 'c' {
		t.Fatalf("read after detach: %q, %v", b, err)
	}
}

// TestPollConnSizeClass keeps a pollConn, two of which every idle session
// holds, in the allocator's 64-byte size class (see
// TestIdleStructSizeClasses).
func TestPollConnSizeClass(t *testing.T) {
	if got := allocatedSize(unsafe.Sizeof(pollConn{})); got > 64 {
		t.Errorf("pollConn is %d bytes, over the 64-byte size class it fitted", got)
	}
}

// TestSessionConnectionsLeaveTheRuntimePoller: through a real ZooKeeper, a
// session's two connections are pollConns, and once the session is idle
// (its pumps parked) neither is in the runtime's poller; with
// RuntimePoller they stay *net.TCPConns.
func TestSessionConnectionsLeaveTheRuntimePoller(t *testing.T) {
	zktest.RequireIntegration(t)
	server := zktest.Standalone(t)
	for _, runtimePoller := range []bool{false, true} {
		px := startProxy(t, []string{server.ClientAddr()}, func(c *Config) { c.RuntimePoller = runtimePoller })
		c, _, _ := rawSession(t, px.Addr, 10000)
		var sess *Session
		waitFor(t, "the session", 5*time.Second, func() bool {
			ss := px.Sessions()
			if len(ss) == 1 {
				sess = ss[0]
			}
			return sess != nil
		})
		conns := func() []net.Conn {
			sess.mu.Lock()
			defer sess.mu.Unlock()
			if sess.up == nil {
				return nil
			}
			return []net.Conn{sess.client, sess.up.conn}
		}
		waitFor(t, "the upstream", 5*time.Second, func() bool { return conns() != nil })
		for i, conn := range conns() {
			_, own := conn.(*pollConn)
			_, tcp := conn.(*net.TCPConn)
			if runtimePoller && !tcp || !runtimePoller && !own {
				t.Fatalf("runtime-poller %v: connection %d is a %T", runtimePoller, i, conn)
			}
		}
		if !runtimePoller {
			// Idle: both pumps park (within 2 × park-idle-after), and each
			// connection lets the runtime's registration go.
			waitFor(t, "both connections out of the runtime's poller", 5*time.Second, func() bool {
				for _, conn := range conns() {
					pc := conn.(*pollConn)
					pc.mu.Lock()
					attached := pc.file != nil
					pc.mu.Unlock()
					if attached {
						return false
					}
				}
				return true
			})
		}
		c.Close()
	}
}
