package proxy

import (
	"errors"
	"sync"
	"time"
)

// errParked ends a pump that gave its goroutine up because its connection
// was idle: the session lives on, and the parker resumes the pump on a new
// goroutine when the connection has data, is closed, or a deadline passes.
var errParked = errors.New("proxy: pump parked while its connection is idle")

// parkSweep is how often parked pumps' deadlines are checked: a parked
// pump's silence deadline (a session timeout, or half the member's) is
// noticed at most this late.
const parkSweep = 250 * time.Millisecond

// parkEntry is one parked pump; it lives in the pump's frameReader, so
// parking allocates nothing (an idle session parks after every ping).
type parkEntry struct {
	deadline time.Time  // resume at this time even without data
	pump     parkedPump // what the parker calls
}

// parkedPump is the owner of a parked pump, which the parker calls: the
// session as its client pump (*clientPump), or the upstream. An interface
// over pointers the session holds anyway, rather than two bound funcs per
// pump: those were four heap closures (80 B) kept by every idle session.
type parkedPump interface {
	// resumePump runs the pump again; the parker calls it on a new
	// goroutine.
	resumePump()
	// inlinePump handles what made the socket readable on the parker's own
	// goroutine, without blocking, and parks the pump again (inline.go);
	// false: resume it.
	inlinePump() bool
}

// readWatch decides what a pump does when its connection has been quiet
// for a while. A pump that has waited parkAfter for data parks (see
// parker): an idle session then has no goroutine and no stack, only its
// state, which is what lets a proxy hold thousands of idle Kafka sessions
// in a few KiB each. A peer quiet for timeout is considered gone: ZooKeeper
// expires a client silent for its session timeout, and a member silent for
// half its timeout is frozen (see upstream.readTimeout).
//
// The connection's deadline is only the silence deadline, and it is set
// lazily: once when the pump starts waiting with none set, and again only
// when it fires (once per timeout on a busy connection), rather than
// updated per frame (pollSetDeadline showed in profiles). Idleness is
// noticed by idleSweep, which sets the deadline to now when the pump has
// been idle for parkAfter: see there for why the pump does not keep an idle
// deadline itself. Owned by one pump goroutine at a time.
type readWatch struct {
	timeout   time.Duration
	parkAfter time.Duration // zero: never park
	at        time.Time     // the deadline set on the connection; zero: none
	// resumed is when the pump last came back from parking: it counts as
	// activity for parking (a woken pump reads before it parks again), not
	// for the silence timeout.
	resumed time.Time
	// excusedUntil: the peer's silence counts only from here (see excuse).
	excusedUntil time.Time
}

// newReadWatch returns the watch of fr's pump and sets whether fr may trust
// short reads. A reader with no socket to poll (tests' wrappers) cannot
// park, so it is not swept either (see idleSweep).
//
// A TLS pump parks on the socket under its tls.Conn. That is safe although
// tls.Conn buffers: a pump parks only after a Read timed out (idleSweep's
// nudge), and crypto/tls's Conn.Read reaches the socket, and so can time
// out, only when it holds no decrypted bytes and no whole record
// (readRecordOrCCS → readFromUntil); a partial record's rest is still in
// the socket, where the poller sees it. A timeout is not sticky in
// tls.Conn (it keeps only non-temporary errors), so the resumed pump reads
// on.
func newReadWatch(fr *frameReader, timeout, parkAfter time.Duration) readWatch {
	if fr.poll == nil {
		parkAfter = 0
	}
	w := readWatch{timeout: timeout, parkAfter: parkAfter}
	fr.shortReadEmpties = w.wakesSoon()
	return w
}

// shortReadTrust is the longest parkAfter with which a pump trusts short
// reads (frameReader.shortReadEmpties): the wait after its last data ends
// within about twice that, so a FIN that came with that data is read then.
const shortReadTrust = time.Second

// wakesSoon reports whether every wait ends within about 2×shortReadTrust
// of the connection's last data: idleSweep ends it within 2 × parkAfter.
func (w *readWatch) wakesSoon() bool { return w.parkAfter > 0 && w.parkAfter <= shortReadTrust }

// next is the deadline for a connection whose last data arrived at last.
func (w *readWatch) next(last time.Time) time.Time { return w.silentAt(last) }

// excuse makes the peer's silence count only from from on (re-arming the
// deadline): an upstream member owes the proxy nothing while nothing is in
// flight, and under docs/session-expiry.md the proxy may not always ping it
// to keep it talking.
func (w *readWatch) excuse(from, last time.Time, set func(time.Time) error) {
	w.excusedUntil = from
	w.at = w.next(last)
	set(w.at)
}

// arm sets the connection's deadline if none is set.
func (w *readWatch) arm(last time.Time, set func(time.Time) error) {
	if w.at.IsZero() {
		w.at = w.next(last)
		set(w.at)
	}
}

// verdict of readWatch.expired.
type verdict int

const (
	keepWaiting verdict = iota // deadline moved on
	goPark                     // idle for parkAfter
	peerSilent                 // quiet for the whole timeout
)

// expired handles the connection's deadline firing at now: the silence
// deadline, or idleSweep's nudge.
func (w *readWatch) expired(now, last time.Time, set func(time.Time) error) verdict {
	if !now.Before(w.silentAt(last)) {
		return peerSilent
	}
	if w.parkAfter > 0 && !now.Before(later(last, w.resumed).Add(w.parkAfter)) {
		w.at = time.Time{}
		return goPark
	}
	w.at = w.next(last)
	set(w.at)
	return keepWaiting
}

// onTimeout is a pump's answer to its deadline firing with err: nil to
// keep waiting, errParked to park, err itself when the peer is silent.
func (w *readWatch) onTimeout(err error, last time.Time, set func(time.Time) error) error {
	switch w.expired(time.Now(), last, set) {
	case goPark:
		return errParked
	case peerSilent:
		return err
	}
	return nil
}

// resume restarts the watch of a pump back from parking (or that could not
// park) at now: the connection's deadline, left in the past by the park, is
// set again before the pump reads.
func (w *readWatch) resume(now, last time.Time, set func(time.Time) error) {
	w.resumed = now
	w.at = time.Time{}
	w.arm(last, set)
}

// silentAt is when the peer counts as gone: the parked pump's deadline.
func (w *readWatch) silentAt(last time.Time) time.Time {
	return later(last, w.excusedUntil).Add(w.timeout)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// parkPump parks fr's pump: pump.resumePump runs on a new goroutine when
// fr's connection is readable or closed, when deadline passes, or when
// unpark is called; when it is readable, pump.inlinePump gets the first
// try, on the parker's goroutine (inline.go). It reports false when the pump could not be parked (the
// connection is closing, the server is closing, or parking is not
// supported), and the pump must carry on itself.
func (s *Server) parkPump(fr *frameReader, deadline time.Time, pump parkedPump) bool {
	if fr.poll == nil {
		return false
	}
	p := s.getParker()
	if p == nil {
		return false
	}
	// Out of the runtime's poller first (see pollConn.detach): the park
	// registers the socket's descriptor number, which detach changes.
	detachParked(fr)
	return p.park(fr, parkEntry{deadline: deadline, pump: pump})
}

// getParker returns the server's parker, made on first use; nil where
// there is none (not Linux, or its epoll instance could not be made).
func (s *Server) getParker() *parker {
	s.parkerOnce.Do(func() {
		p, err := newParker(s.m.parkedPumps)
		if err != nil {
			s.log.Warn("idle sessions cannot be parked; each keeps its goroutines", "err", err)
			return
		}
		s.parker.Store(p)
	})
	return s.parker.Load()
}

// parkOrRewatch parks a pump whose Serve returned errParked, until its
// peer's silence deadline, and reports true; or, when it cannot park,
// re-arms its watch so the pump carries on waiting itself, parkAfter
// longer, and reports false.
func (s *Server) parkOrRewatch(fr *frameReader, rw *readWatch, setDeadline func(time.Time) error, pump parkedPump) bool {
	if s.parkPump(fr, rw.silentAt(fr.readAt), pump) {
		return true
	}
	rw.resume(time.Now(), fr.readAt, setDeadline)
	return false
}

// unpark resumes fr's pump if it is parked. Whoever closes a connection
// that may have a parked pump calls it right after the Close, so the pump
// runs its exit path (the pump cannot park on a closed connection).
func (s *Server) unpark(fr *frameReader) {
	// A session that fails its handshake is closed before its client
	// reader exists: nothing of it can be parked.
	if fr == nil {
		return
	}
	if p := s.parker.Load(); p != nil {
		p.unpark(fr)
	}
}

// stopParker ends the parker's goroutine once no session is left.
func (s *Server) stopParker() {
	if p := s.parker.Load(); p != nil {
		p.stop()
	}
}

// parkedSet is the bookkeeping shared by the parker implementations.
type parkedSet struct {
	mu      sync.Mutex
	entries map[uint64]*frameReader // by parkID
	nextID  uint64
	closed  bool
	// earliest is no later than every parked deadline (zero: none is
	// set): the sweep looks through the entries only once it has passed.
	// Parks lower it; resumes leave it, still a lower bound. Each look
	// reads every parked frameReader, a cache miss each, and with
	// thousands parked that was a tenth of an idle proxy's CPU when it ran
	// every parkSweep; deadlines are silence timeouts, seconds away.
	earliest time.Time
}

// noteDeadlineLocked keeps earliest a lower bound after a park until d.
func (ps *parkedSet) noteDeadlineLocked(d time.Time) {
	if !d.IsZero() && (ps.earliest.IsZero() || d.Before(ps.earliest)) {
		ps.earliest = d
	}
}

// sweepDueLocked appends the entries of every pump whose deadline is at or
// before now (all of them when all is set) to due and removes them, when
// earliest says any may be, and makes earliest exact again.
func (ps *parkedSet) sweepDueLocked(now time.Time, all bool, due []takenPump) []takenPump {
	if !all && (ps.earliest.IsZero() || now.Before(ps.earliest)) {
		return due
	}
	ps.earliest = time.Time{}
	for id, fr := range ps.entries {
		d := fr.parked.deadline
		if all || (!d.IsZero() && !now.Before(d)) {
			due = append(due, ps.takeLocked(id))
			continue
		}
		ps.noteDeadlineLocked(d)
	}
	return due
}

// takenPump is a pump taken out of the parked set, to resume or handle.
type takenPump struct {
	fr     *frameReader
	e      parkEntry
	events uint32 // the epoll events that woke it, if any
}

// takeLocked removes the pump parked under id and returns it; fr is nil
// if none is.
func (ps *parkedSet) takeLocked(id uint64) takenPump {
	fr := ps.entries[id]
	if fr == nil {
		return takenPump{}
	}
	delete(ps.entries, id)
	e := fr.parked
	fr.parked = parkEntry{}
	return takenPump{fr: fr, e: e}
}
