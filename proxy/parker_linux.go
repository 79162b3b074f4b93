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
// sockets are registered, one-shot, in an epoll instance of the proxy's own
// (a socket can be in several; the Go runtime's poller keeps its own
// registration), and one goroutine waits on it for all of them. A socket's
// registration is keyed by a fresh id per park, never by its descriptor
// number, which a closed socket's successor may reuse.
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
	p.nextID++
	id := p.nextID
	// Level-triggered and one-shot: data already queued wakes it at
	// once, so nothing that arrived before the registration is missed,
	// and one event disarms it until the next park.
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | epollOneShot,
		Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
	errno := epollCtl(p.epfd, syscall.EPOLL_CTL_MOD, int(fd), &ev)
	if errno == syscall.ENOENT {
		errno = epollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	}
	if errno != 0 {
		return
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

// epollOneShot is EPOLLONESHOT (1<<30), which package syscall spells as a
// negative constant on some architectures.
const epollOneShot = 1 << 30

func (p *parker) unpark(fr *frameReader) {
	p.mu.Lock()
	e := p.takeLocked(fr.parkID)
	p.mu.Unlock()
	if e.resume != nil {
		p.gauge.Dec()
		go e.resume()
	}
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
	var ready, due []parkEntry
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
			if e := p.takeLocked(id); e.resume != nil {
				ready = append(ready, e)
			}
		}
		closed := p.closed
		if closed || !now.Before(nextSweep) {
			due = p.sweepDueLocked(now, closed, due)
			nextSweep = now.Add(parkSweep)
		}
		p.mu.Unlock()
		p.gauge.Sub(float64(len(ready) + len(due)))
		for _, e := range ready {
			// A pump handled inline has parked again (a new entry).
			if closed || e.inline == nil || !e.inline() {
				go e.resume()
			}
		}
		for _, e := range due {
			go e.resume()
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
// The runtime's poller watches the instance edge-triggered: it reports it
// readable again only when a new event arrives after the last look. So
// when the last look returned fewer events than asked for, which drained
// the instance (every registration is one-shot, so nothing reported comes
// back by itself), the next wait skips its first look and goes straight to
// the poller: an event that arrived in between has already marked it
// ready. That saves one system call per wake-up.
type epollWaiter struct {
	events  []syscall.EpollEvent
	fn      func(fd uintptr) bool
	n       int
	err     error
	drained bool // the last look returned fewer events than len(events)
}

func (w *epollWaiter) poll(fd uintptr) bool {
	if w.drained {
		w.drained = false
		return false
	}
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
		// A deadline: the next wait looks first (the flag is cleared).
		return 0, err
	}
	w.drained = w.err == nil && w.n < len(w.events)
	return w.n, w.err
}
