//go:build linux

package proxy

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// parker holds the pumps of idle sessions without a goroutine each: their
// sockets are registered, edge-triggered, in an epoll instance of the
// proxy's own (a socket can be in several; the Go runtime's poller keeps
// its own registration), and one goroutine waits on it for all of them. A
// socket's registration is keyed by a fresh id per registration, never by
// its descriptor number, which a closed socket's successor may reuse; it
// lasts while the parker relays the socket's pings inline (inline.go) and
// is removed when the pump resumes.
//
// The loop does not block in epoll_wait: it waits for the epoll instance
// itself to become readable (it is, while it has events) in the Go
// runtime's poller, as a socket's reader does. A blocking epoll_wait kept
// a thread in a system call: each wake-up then had to win a P back (sysmon
// had handed it off), and the runtime's poller, which keeps each parked
// socket registered too, woke a second thread for the same bytes. Through
// the runtime's poller one wake-up serves both (docs/benchmarks.md, "Idle
// ping cost").
type parker struct {
	parkedSet
	epfd    int
	ep      *os.File        // epfd, registered in the runtime's poller
	epRaw   syscall.RawConn // ep's, for waiting on it
	gauge   prometheus.Gauge
	running bool // loop is running; it exits when nothing is parked
	// disarmFn is disarm, bound once: a resume allocates nothing.
	disarmFn func(fd uintptr)
}

func newParker(gauge prometheus.Gauge) (*parker, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	// os.NewFile registers a non-blocking descriptor in the runtime's
	// poller; an epoll instance can be polled like a socket.
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("parker epoll instance: set non-blocking: %w", err)
	}
	ep := os.NewFile(uintptr(fd), "zkproxy-parker-epoll")
	raw, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		return nil, fmt.Errorf("parker epoll instance: %w", err)
	}
	p := &parker{epfd: fd, ep: ep, epRaw: raw, gauge: gauge}
	p.entries = map[uint64]*frameReader{}
	p.disarmFn = p.disarm
	return p, nil
}

// park registers fr's socket. It runs inside RawConn.Control, which holds
// the descriptor open: a socket closed concurrently is either refused here
// or registered before its Close, and then unpark finds it.
func (p *parker) park(fr *frameReader, e parkEntry) bool {
	op := parkOps.Get().(*parkOp)
	op.p, op.fr, op.e, op.ok = p, fr, e, false
	err := fr.poll.Control(op.fn)
	ok := err == nil && op.ok
	*op = parkOp{fn: op.fn}
	parkOps.Put(op)
	return ok
}

// parkOp carries one park's arguments and result through RawConn.Control,
// whose callback would otherwise be a closure allocated per park (an idle
// session parks after every ping). fn is register bound once.
type parkOp struct {
	p  *parker
	fr *frameReader
	e  parkEntry
	ok bool
	fn func(fd uintptr)
}

var parkOps = sync.Pool{New: func() any {
	op := &parkOp{}
	op.fn = op.register
	return op
}}

// register is park's RawConn.Control callback. Once the socket is
// registered and the lock released, fr belongs to whoever resumes it: the
// result goes to op, which only this park uses.
func (op *parkOp) register(fd uintptr) {
	p, fr := op.p, op.fr
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if fr.wake.Swap(false) {
		// An unpark came while this park was on its way: the pump must
		// carry on and see why (its connection is closing).
		return
	}
	id := fr.parkID
	if !fr.armed {
		// A new registration, edge-triggered: data already queued is
		// reported at once (epoll polls the socket when it is added), so
		// nothing that arrived before it is missed. It stays armed while
		// the parker handles the socket's pings inline, so a pump parked
		// again from there keeps it and its id without a system call; it
		// is removed when the pump resumes (disarm).
		p.nextID++
		id = p.nextID
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | epollEdge,
			Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
		if errno := epollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev); errno != 0 {
			return
		}
		fr.armed = true
	}
	fr.parked = op.e
	p.entries[id] = fr
	p.noteDeadlineLocked(op.e.deadline)
	fr.parkID = id
	op.ok = true
	p.gauge.Inc()
	if !p.running {
		p.running = true
		go p.loop()
	}
}

// epollEdge is EPOLLET (1<<31), which package syscall spells as a negative
// constant.
const epollEdge = 1 << 31

// hangUp are the events after which a socket is not handled inline: the
// peer closed or the socket failed. With an edge-triggered registration a
// FIN that came with the last data raises no second event, so the pump,
// which reads to the end, must see it.
const hangUp = syscall.EPOLLRDHUP | syscall.EPOLLHUP | syscall.EPOLLERR

// unpark resumes fr's pump if it is parked. Its caller has just closed
// fr's connection, but a park can have passed RawConn.Control's check for
// a closed descriptor before that Close and not yet reached the lock:
// then nothing is found here, and the park, let in after, would register
// a descriptor about to be closed, which raises no event (a closed
// descriptor leaves the epoll instance silently), leaving the pump parked
// until its deadline. wake, set first, makes that park refuse instead.
func (p *parker) unpark(fr *frameReader) {
	fr.wake.Store(true)
	p.mu.Lock()
	t := p.takeLocked(fr.parkID)
	if t.fr != nil {
		fr.wake.Store(false)
	}
	p.mu.Unlock()
	if t.fr != nil {
		p.gauge.Dec()
		p.resume(t)
	}
}

// resume removes t's socket from the epoll instance and resumes its pump
// on a new goroutine, which reads it through the runtime's poller. Until
// the pump parks again only this goroutine has t.fr.
func (p *parker) resume(t takenPump) {
	if t.fr.armed {
		// Fails only on a closed socket, which the kernel has removed
		// from the instance itself.
		t.fr.poll.Control(p.disarmFn)
		t.fr.armed = false
	}
	go t.e.pump.resumePump()
}

// disarm is resume's RawConn.Control callback (bound once in disarmFn).
func (p *parker) disarm(fd uintptr) {
	var ev syscall.EpollEvent // ignored; kernels before 2.6.9 wanted one
	epollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(fd), &ev)
}

// stop closes the epoll instance once the loop is gone; nothing parks
// after it.
func (p *parker) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if !p.running {
		p.ep.Close()
	}
}

// loop waits for parked sockets and deadlines while anything is parked
// (so a proxy with no idle session has no goroutine here). After stop it
// resumes whatever is still parked (their connections are closed by then)
// and closes the epoll instance.
func (p *parker) loop() {
	events := make([]syscall.EpollEvent, 256)
	// Reused: the loop runs for as long as anything is parked. ready are
	// the pumps whose sockets became readable (tried inline first), due
	// those whose deadline passed or that the stop resumes.
	var ready, due []takenPump
	nextSweep := time.Now().Add(parkSweep)
	w := epollWaiter{events: events}
	w.fn = w.poll
	var deadline time.Time // ep's read deadline as last set
	for {
		if !deadline.Equal(nextSweep) {
			deadline = nextSweep
			p.ep.SetReadDeadline(deadline)
		}
		n, err := w.wait(p.epRaw)
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			n = 0
			time.Sleep(parkSweep) // cannot happen with a valid epfd; do not spin
		}
		clear(ready)
		clear(due)
		ready, due = ready[:0], due[:0]
		now := time.Now()
		p.mu.Lock()
		for i := range max(n, 0) {
			id := uint64(uint32(events[i].Fd)) | uint64(uint32(events[i].Pad))<<32
			// An id no longer parked is an event that raced a resume.
			if t := p.takeLocked(id); t.fr != nil {
				t.events = events[i].Events
				ready = append(ready, t)
			}
		}
		closed := p.closed
		if closed || !now.Before(nextSweep) {
			due = p.sweepDueLocked(now, closed, due)
			nextSweep = now.Add(parkSweep)
		}
		p.mu.Unlock()
		p.gauge.Sub(float64(len(ready) + len(due)))
		for _, t := range ready {
			// A pump handled inline has parked again (under the same id).
			if closed || t.events&hangUp != 0 || !t.e.pump.inlinePump() {
				p.resume(t)
			}
		}
		for _, t := range due {
			p.resume(t)
		}
		p.mu.Lock()
		exit := p.closed || len(p.entries) == 0
		if exit {
			p.running = false
			if p.closed {
				p.ep.Close()
			}
		}
		p.mu.Unlock()
		if exit {
			return
		}
	}
}

// epollWaiter waits for events of an epoll instance through the runtime's
// poller: poll, its RawConn.Read callback (bound once in fn), asks without
// waiting and reports false, to wait for readiness, when there is none.
//
// Every wait looks first. It may not go straight to the poller even when
// the last look drained the instance: RawConn.Read starts by clearing the
// descriptor's readiness (internal/poll prepareRead → runtime
// poll_runtime_pollReset), and the runtime's poller watches the instance
// edge-triggered, so an event that arrived since the last look (while the
// loop relayed pings inline) would be forgotten until the sweep deadline.
type epollWaiter struct {
	events []syscall.EpollEvent
	fn     func(fd uintptr) bool
	n      int
	err    error
}

func (w *epollWaiter) poll(fd uintptr) bool {
	n, errno := epollWaitNow(fd, w.events)
	w.n, w.err = n, nil
	switch {
	case errno == syscall.EINTR:
		return false
	case errno != 0:
		w.n, w.err = 0, errno
		return true
	}
	return n != 0
}

// wait returns the events' count, or the deadline's error (with none).
func (w *epollWaiter) wait(raw syscall.RawConn) (int, error) {
	w.n, w.err = 0, nil
	if err := raw.Read(w.fn); err != nil {
		return 0, err
	}
	return w.n, w.err
}
