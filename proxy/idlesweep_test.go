package proxy

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/jute"
)

// deadlineConn records the read deadlines set on it.
type deadlineConn struct {
	net.Conn
	mu  sync.Mutex
	set []time.Time
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.set = append(c.set, t)
	return nil
}

func (c *deadlineConn) takeSet() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.set
	c.set = nil
	return s
}

// TestIdleSweepNudgesOnlyIdlePumps drives sweep with chosen times: a pump is
// nudged (its read deadline set to the sweep's time) once its last data or
// resume is parkAfter old, a busy one is left alone, an unwatched one is
// never touched, and the sweep stops once nothing is watched.
func TestIdleSweepNudgesOnlyIdlePumps(t *testing.T) {
	const parkAfter = 100 * time.Millisecond
	busyConn, idleConn := &deadlineConn{}, &deadlineConn{}
	busy, idle := newFrameReader(busyConn, 0, nil), newFrameReader(idleConn, 0, nil)
	rw := readWatch{timeout: 10 * time.Second, parkAfter: parkAfter}
	// running: true keeps watch from starting the ticker goroutine, so
	// only the sweeps below run.
	w := &idleSweep{running: true}
	t0 := time.Now()
	w.watch(busy, &rw, t0)
	w.watch(idle, &rw, t0)

	if !w.sweep(t0.Add(parkAfter/2), parkAfter) {
		t.Fatal("sweep reported nothing watched")
	}
	if s := append(busyConn.takeSet(), idleConn.takeSet()...); len(s) != 0 {
		t.Fatalf("pumps idle for half of parkAfter were nudged: %v", s)
	}

	busy.active.Store(t0.Add(80 * time.Millisecond).UnixNano()) // data arrived
	at := t0.Add(parkAfter)
	w.sweep(at, parkAfter)
	if s := busyConn.takeSet(); len(s) != 0 {
		t.Errorf("a pump with data %v ago was nudged", parkAfter-80*time.Millisecond)
	}
	if s := idleConn.takeSet(); len(s) != 1 || !s[0].Equal(at) {
		t.Errorf("the idle pump's deadlines: %v, want [%v]", s, at)
	}

	w.unwatch(idle)
	at = t0.Add(3 * parkAfter)
	w.sweep(at, parkAfter)
	if s := idleConn.takeSet(); len(s) != 0 {
		t.Errorf("an unwatched pump was nudged: %v", s)
	}
	if s := busyConn.takeSet(); len(s) != 1 {
		t.Errorf("the pump idle since t0+80ms was not nudged at t0+300ms: %v", s)
	}

	w.unwatch(busy)
	if w.sweep(at, parkAfter) || w.running {
		t.Error("the sweep goes on with nothing watched")
	}

	// A pump that may not park (no socket to poll, parking off) is not
	// watched.
	w.watch(idle, &readWatch{timeout: time.Second}, t0)
	if len(w.pumps) != 0 {
		t.Error("a pump with parkAfter 0 was watched")
	}
}

// TestIdleSweepParksIdleNotBusy runs the sweep's goroutine against real
// pumps of one frameReader each: a connection sending a frame every
// parkAfter/10 is never nudged, and once it goes quiet it is nudged within
// twice parkAfter. The busy phase would see a nudge every parkAfter if idle
// pumps were found by an idle deadline of their own.
func TestIdleSweepParksIdleNotBusy(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 3 s")
	}
	// A frame every parkAfter/10: a stall of 0.45 s would be needed for a
	// busy pump to look idle.
	const parkAfter = 500 * time.Millisecond
	w, r := tcpPair(t)
	fr := newFrameReader(r, 0, nil)
	fr.readAt = time.Now() // as after a handshake
	rw := readWatch{timeout: time.Minute, parkAfter: parkAfter}
	var sweep idleSweep
	h := &sweptHandler{conn: r, rw: &rw, fr: fr, timeouts: make(chan time.Time, 16)}
	sweep.watch(fr, &rw, time.Now())
	defer sweep.unwatch(fr)
	done := make(chan error, 1)
	go func() { done <- fr.Serve(h) }()

	frame := jute.AppendFrame(nil, []byte("ping"))
	end := time.Now().Add(4 * parkAfter)
	for time.Now().Before(end) {
		if _, err := w.Write(frame); err != nil {
			t.Fatal(err)
		}
		time.Sleep(parkAfter / 5)
	}
	quiet := time.Now()
	select {
	case at := <-h.timeouts:
		if at.Before(quiet) {
			t.Fatalf("a pump receiving a frame every %v was nudged %v before it went quiet", parkAfter/10, quiet.Sub(at))
		}
		// Generous for a loaded machine; the sweep's bound is 2 × parkAfter.
		if d := at.Sub(quiet); d > 2*parkAfter+time.Second {
			t.Errorf("nudged %v after going quiet, want within about %v", d, 2*parkAfter)
		}
	case err := <-done:
		t.Fatalf("Serve ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("a quiet pump was not nudged")
	}
	w.Close()
	<-done
}

// sweptHandler counts frames and reports each deadline that ends its wait,
// then waits on for the silence deadline as a pump would.
type sweptHandler struct {
	conn     net.Conn
	rw       *readWatch
	fr       *frameReader
	timeouts chan time.Time
}

func (h *sweptHandler) onFrame(frame) error { return nil }

func (h *sweptHandler) beforeRead() error {
	h.rw.arm(h.fr.readAt, h.conn.SetReadDeadline)
	return nil
}

func (h *sweptHandler) onTimeout(error) error {
	select {
	case h.timeouts <- time.Now():
	default:
	}
	h.rw.at = time.Time{}
	h.rw.arm(h.fr.readAt, h.conn.SetReadDeadline)
	return nil
}
