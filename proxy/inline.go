package proxy

import (
	"sync"
	"syscall"
	"time"

	"github.com/zkproxy/zkproxy/jute"
)

// Inline relay of an idle session's pings.
//
// An idle session's only traffic is the client's ping every third of its
// timeout and the member's reply. Resuming a parked pump for each costs a
// goroutine start, stack growth, thread wake-ups and, afterwards, the wait
// for idleSweep to park it again: measured at about 5× HAProxy's CPU per
// relayed ping (docs/benchmarks.md, "Idle ping cost"), almost all of it
// scheduling. So when the parker sees a parked pump's socket readable, it
// first tries to handle what arrived itself, on its own goroutine, without
// blocking: a read that does not wait, frames that are exactly a client
// ping (to relay to the member) or a member's ping reply (to relay to the
// client), locks taken only with TryLock, writes that do not wait. Anything
// else — another frame, part of a frame, the end of the stream, a lock in
// use, a full socket, a TLS connection, a session that is not simply
// active — leaves the bytes read so far in the pump's buffer and resumes
// the pump as before, which handles them first. Each frame is handled
// completely or not at all, so the fallback never sees half an effect.

// readInline reads what fr's socket holds, without waiting, and hands each
// complete frame to handle while handle accepts it. It reports true when
// every byte read was consumed (or nothing was there): the pump may park
// again. False leaves the rest buffered for the resumed pump.
func (fr *frameReader) readInline(handle func(frame) bool) bool {
	if fr.raw == nil {
		return false
	}
	fr.n, fr.err = 0, nil
	// Control, not Read: the parked connection's read deadline is in the
	// past (idleSweep's nudge), which Read would report at once, and this
	// read never waits in the poller anyway. The pump is parked, so
	// nothing else reads the socket.
	if err := fr.raw.Control(fr.inlineFn); err != nil {
		fr.releaseIfEmpty()
		return false
	}
	n, err := fr.n, fr.err
	fr.err = nil
	switch {
	case err == syscall.EAGAIN:
		// Woken with nothing to read: park again.
		fr.releaseIfEmpty()
		return fr.r == fr.w
	case err != nil, n <= 0:
		// An error or the end of the stream: the resumed pump reads it
		// again and handles it.
		fr.releaseIfEmpty()
		return false
	}
	// A read that filled the space offered may have left bytes in the
	// socket, and the parker's registration is edge-triggered: no event
	// would come for them. The pump reads on (after the whole frames).
	full := n == len(fr.buf)-fr.w
	fr.got(n)
	for fr.Buffered() {
		total, err := fr.frameLen()
		if err != nil {
			return false
		}
		if !handle(frame(fr.buf[fr.r : fr.r+total : fr.r+total])) {
			return false
		}
		fr.r += total
	}
	if fr.r != fr.w || full {
		return false // part of a frame, or maybe more: the pump reads the rest
	}
	fr.releaseIfEmpty()
	return true
}

// readInlineOnce is readInline's RawConn.Control callback (bound once in
// inlineFn): one read that never waits.
func (fr *frameReader) readInlineOnce(fd uintptr) {
	total := 4
	if fr.w-fr.r >= 4 {
		if t, err := fr.frameLen(); err == nil {
			total = t
		}
	}
	fr.makeRoom(total)
	if fr.buf == nil {
		fr.takeChunk()
	}
	fr.n, fr.err = readNonBlocking(fd, fr.buf[fr.w:])
}

// inlineClient is the parked client pump's inline handler (parkEntry).
func (s *Session) inlineClient() bool {
	if s.handingOff.Load() || !s.clientR.readInline(s.clientPingInline) {
		return false
	}
	return s.srv.parkPump(s.clientR, s.clientRW.silentAt(s.clientR.readAt), (*clientPump)(s))
}

// inlineUpstream is the parked upstream pump's inline handler.
func (s *Session) inlineUpstream(up *upstream) bool {
	// The handler does not escape readInline, so this closure lives on the
	// stack: nothing is allocated per ping, and nothing kept per session.
	if !up.r.readInline(func(f frame) bool { return s.pingReplyInline(up, f) }) {
		return false
	}
	return s.srv.parkPump(up.r, up.rw.silentAt(up.r.readAt), up)
}

// clientPingInline relays one client ping to the member as clientPing
// does for an active session, or reports false without any effect.
func (s *Session) clientPingInline(f frame) bool {
	if len(f) != 12 {
		return false
	}
	h, err := jute.PeekRequestHeader(f.Payload())
	if err != nil || h.Op != jute.OpPing || h.Xid != jute.XidPing {
		return false
	}
	if !s.sendMu.TryLock() {
		return false
	}
	if !s.mu.TryLock() {
		s.sendMu.Unlock()
		return false
	}
	up := s.up
	if s.closedLocked() || !s.canForwardLocked() || s.handingOff.Load() || up.r.raw == nil ||
		s.queuedLocked() >= s.srv.cfg.MaxOutstandingPerSession || s.heldBytes >= s.srv.cfg.MaxBufferedBytesPerSession {
		s.mu.Unlock()
		s.sendMu.Unlock()
		return false
	}
	s.pings.push(false)
	s.mu.Unlock()
	now := s.clientR.readAt
	n, errno := writeOnce(up.r.raw, f.Raw())
	if n <= 0 && errno == syscall.EAGAIN {
		// The member's socket is full: take the ping back (every push
		// happens under sendMu, so it is still the last) and let the pump
		// handle it.
		s.mu.Lock()
		s.pings.unpush()
		s.mu.Unlock()
		s.sendMu.Unlock()
		return false
	}
	s.noteClientFrame(now)
	s.srv.m.inlineClientPings.Inc()
	s.recved.Add(1)
	s.st.packetsReceived.Add(1)
	s.st.countRequest(jute.OpPing)
	if errno != 0 && errno != syscall.EAGAIN {
		// As writeUpstreamAt: the upstream's loss is its pump's to handle.
		s.sendMu.Unlock()
		up.conn.Close()
		s.srv.unpark(up.r)
		return true
	}
	if n > 0 {
		s.st.upstreamBytesOut.Add(uint64(n))
	}
	if n < len(f) {
		// Part of 12 bytes fitted: finish on a goroutine of its own,
		// which may wait, keeping sendMu so nothing overtakes it.
		rest := append([]byte(nil), f[max(n, 0):]...)
		go func() {
			defer s.sendMu.Unlock()
			s.writeUpstreamAt(up, rest, now)
		}()
		return true
	}
	up.lastSend.Store(now.UnixNano())
	s.sendMu.Unlock()
	return true
}

// pingReplyInline relays one member ping reply to the client as the
// upstream pump does (onReply's ping case, then flush), or reports false
// without any effect.
func (s *Session) pingReplyInline(up *upstream, f frame) bool {
	if len(f) != 4+jute.ReplyHeaderSize {
		return false
	}
	h, err := jute.PeekReplyHeader(f.Payload())
	if err != nil || h.Xid != jute.XidPing || s.clientR.raw == nil {
		return false
	}
	if !s.cwmu.TryLock() {
		return false
	}
	if !s.mu.TryLock() {
		s.cwmu.Unlock()
		return false
	}
	if s.closedLocked() || s.up != up || s.pings.len() == 0 {
		s.mu.Unlock()
		s.cwmu.Unlock()
		return false
	}
	at := up.r.readAt
	if s.pings.peekFromProxy() {
		// The proxy's own ping: nothing goes to the client.
		s.pings.pop()
		s.mu.Unlock()
		s.cwmu.Unlock()
		up.lastRecv.Store(at.UnixNano())
		return true
	}
	n, errno := writeOnce(s.clientR.raw, f.Raw())
	if n <= 0 && errno == syscall.EAGAIN {
		s.mu.Unlock()
		s.cwmu.Unlock()
		return false
	}
	s.pings.pop()
	s.st.countResponse(jute.OpPing, h.Err)
	s.mu.Unlock()
	s.srv.m.inlineMemberPings.Inc()
	up.lastRecv.Store(at.UnixNano())
	if errno != 0 && errno != syscall.EAGAIN {
		// The client is gone: closing its connection ends the client
		// pump, which closes the session.
		s.cwmu.Unlock()
		s.client.Close()
		s.srv.unpark(s.clientR)
		return true
	}
	if n >= len(f) {
		s.st.clientBytesOut.Add(uint64(n))
		s.sent.Add(1)
		s.st.packetsSent.Add(1)
		s.cwmu.Unlock()
		return true
	}
	// Part of 20 bytes went: the rest on a goroutine that may wait, keeping
	// cwmu so nothing overtakes it; it counts the frame.
	s.st.clientBytesOut.Add(uint64(max(n, 0)))
	rest := append([]byte(nil), f[max(n, 0):]...)
	go func() {
		defer s.cwmu.Unlock()
		if err := s.writeClientLocked(time.Now(), rest, nil); err != nil {
			s.client.Close()
			s.srv.unpark(s.clientR)
		}
	}()
	return true
}

// writeOnce writes p with one system call that does not wait: n bytes
// went, and errno is EAGAIN when the socket's buffer was full. Through
// Control, which holds the descriptor but not the write lock: the caller
// holds the lock every writer of that connection takes (sendMu for a
// member, cwmu for a client).
func writeOnce(raw syscall.RawConn, p []byte) (int, syscall.Errno) {
	op := onceOps.Get().(*onceOp)
	op.p = p
	if err := raw.Control(op.fn); err != nil {
		op.p = nil
		onceOps.Put(op)
		return 0, syscall.EBADF
	}
	n, errno := op.n, op.errno
	*op = onceOp{fn: op.fn}
	onceOps.Put(op)
	return n, errno
}

// onceOp is writeOnce's state through RawConn.Write, pooled like writeOp.
type onceOp struct {
	p     []byte
	n     int
	errno syscall.Errno
	fn    func(fd uintptr)
}

var onceOps = sync.Pool{New: func() any {
	op := &onceOp{}
	op.fn = op.write
	return op
}}

// write is the RawConn.Control callback: one attempt, never a wait.
func (op *onceOp) write(fd uintptr) {
	for {
		op.n, op.errno = rawWrite(fd, op.p)
		if op.errno != syscall.EINTR {
			return
		}
	}
}
