package proxy

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// handoffConn reads and writes handoff messages on a Unix stream socket.
// Descriptors arrive as SCM_RIGHTS with the first bytes of the message
// they were sent with; Linux hands over at most one message's descriptors
// per recvmsg (unix_stream_read_generic stops after an skb with files), and
// in order, so a FIFO matches them to the session records that need them.
// Not safe for concurrent use by more than one reader and one writer.
type handoffConn struct {
	c   *net.UnixConn
	buf []byte // read, not yet consumed
	fds []int  // received, not yet claimed
	// sendTimeout, when set, bounds each send: a peer that stops reading
	// (hung, not dead: a dead one's socket fails the write) would
	// otherwise block the sender for ever once the socket's buffer is full.
	sendTimeout time.Duration
	// stopped: stop was called; recv, which sets its own read deadline,
	// looks after setting it, so a stop just before cannot be undone.
	stopped atomic.Bool
}

// stop ends the current and every later recv with a timeout (Adopt's
// context ending).
func (h *handoffConn) stop() {
	h.stopped.Store(true)
	h.c.SetReadDeadline(time.Unix(1, 0))
}

func newHandoffConn(c *net.UnixConn) *handoffConn { return &handoffConn{c: c} }

// send writes one message; fd, when >= 0, travels with it.
func (h *handoffConn) send(typ byte, body []byte, fd int) error {
	frame := appendHandoffFrame(nil, typ, body)
	var oob []byte
	if fd >= 0 {
		oob = syscall.UnixRights(fd)
	}
	if h.sendTimeout > 0 {
		h.c.SetWriteDeadline(time.Now().Add(h.sendTimeout))
	}
	n, oobn, err := h.c.WriteMsgUnix(frame, oob, nil)
	if err != nil {
		return fmt.Errorf("sending handoff message %q: %w", typ, err)
	}
	if oobn != len(oob) {
		return fmt.Errorf("sending handoff message %q: descriptor not sent", typ)
	}
	if n < len(frame) {
		// The descriptor went with the first bytes; the rest is plain data.
		if _, err := h.c.Write(frame[n:]); err != nil {
			return fmt.Errorf("sending handoff message %q: %w", typ, err)
		}
	}
	return nil
}

// recv reads the next message. deadline zero waits for ever.
func (h *handoffConn) recv(deadline time.Time) (byte, []byte, error) {
	h.c.SetReadDeadline(deadline)
	if h.stopped.Load() {
		return 0, nil, &net.OpError{Op: "read", Net: "unix", Err: os.ErrDeadlineExceeded}
	}
	for {
		if len(h.buf) >= 4 {
			n := binary.BigEndian.Uint32(h.buf)
			if n == 0 || n > maxHandoffMessage {
				return 0, nil, fmt.Errorf("%w: message length %d", errHandoffDecode, n)
			}
			if uint64(len(h.buf)) >= 4+uint64(n) {
				typ := h.buf[4]
				body := append([]byte(nil), h.buf[5:4+n]...)
				h.buf = h.buf[4+n:]
				return typ, body, nil
			}
		}
		if err := h.fill(); err != nil {
			return 0, nil, err
		}
	}
}

// fill reads more bytes and any descriptors that came with them.
func (h *handoffConn) fill() error {
	var b [64 << 10]byte
	oob := make([]byte, syscall.CmsgSpace(16*4))
	n, oobn, flags, _, err := h.c.ReadMsgUnix(b[:], oob)
	n, oobn = max(n, 0), max(oobn, 0)
	if oobn > 0 {
		msgs, perr := syscall.ParseSocketControlMessage(oob[:oobn])
		if perr == nil {
			for _, m := range msgs {
				fds, err := syscall.ParseUnixRights(&m)
				if err == nil {
					h.fds = append(h.fds, fds...)
				}
			}
		}
	}
	if flags&syscall.MSG_CTRUNC != 0 {
		return fmt.Errorf("reading handoff messages: descriptors truncated")
	}
	h.buf = append(h.buf, b[:n]...)
	if err != nil {
		return fmt.Errorf("reading handoff messages: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("reading handoff messages: %w", net.ErrClosed)
	}
	return nil
}

// takeFD returns the oldest descriptor received and not yet claimed.
func (h *handoffConn) takeFD() (int, bool) {
	if len(h.fds) == 0 {
		return -1, false
	}
	fd := h.fds[0]
	h.fds = h.fds[1:]
	return fd, true
}

// closeFDs closes the descriptors nobody claimed.
func (h *handoffConn) closeFDs() {
	for _, fd := range h.fds {
		syscall.Close(fd)
	}
	h.fds = nil
}
