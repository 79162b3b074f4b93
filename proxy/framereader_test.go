package proxy

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/jute"
)

// deadlineHandler is a frameHandler that counts frames and keeps a short
// read deadline while it waits: set before the first wait, and again each
// time it fires, as the pumps' readWatch does.
type deadlineHandler struct {
	conn     net.Conn
	every    time.Duration
	armed    bool
	frames   [][]byte
	timeouts int
}

func (h *deadlineHandler) onFrame(f frame) error {
	h.frames = append(h.frames, append([]byte(nil), f.Payload()...))
	return nil
}

func (h *deadlineHandler) beforeRead() error {
	if !h.armed {
		h.armed = true
		return h.conn.SetReadDeadline(time.Now().Add(h.every))
	}
	return nil
}

func (h *deadlineHandler) onTimeout(error) error {
	h.timeouts++
	if h.timeouts > 100 {
		return errors.New("still waiting after 100 deadlines")
	}
	return h.conn.SetReadDeadline(time.Now().Add(h.every))
}

// TestServeFindsFINAfterShortRead sends two frames and the end of stream
// before the reader looks, so one read returns both frames with room to
// spare and the FIN stays queued behind them with no further edge to come.
// Reading until EAGAIN finds it at once; trusting the short read
// (shortReadEmpties) skips that read and finds the FIN when the deadline
// ends the wait, which is what makes skipping it safe.
func TestServeFindsFINAfterShortRead(t *testing.T) {
	for _, trust := range []bool{false, true} {
		w, r := tcpPair(t)
		var out []byte
		out = jute.AppendFrame(out, []byte("first"))
		out = jute.AppendFrame(out, []byte("second"))
		if _, err := w.Write(out); err != nil {
			t.Fatal(err)
		}
		w.CloseWrite() // loopback: both are queued at r once this returns
		consumeEdge(t, r)

		fr := newFrameReader(r, 0, nil)
		fr.shortReadEmpties = trust
		h := &deadlineHandler{conn: r, every: 50 * time.Millisecond}
		err := fr.Serve(h)
		if !errors.Is(err, io.EOF) {
			t.Fatalf("shortReadEmpties=%v: Serve returned %v, want EOF", trust, err)
		}
		if len(h.frames) != 2 || string(h.frames[0]) != "first" || string(h.frames[1]) != "second" {
			t.Fatalf("shortReadEmpties=%v: frames %q", trust, h.frames)
		}
		switch {
		case !trust && h.timeouts != 0:
			t.Errorf("reading until EAGAIN waited for %d deadlines before the queued FIN", h.timeouts)
		case trust && h.timeouts == 0:
			t.Errorf("a short read was not trusted: the queued FIN was read without waiting")
		}
	}
}

// consumeEdge makes sure the runtime poller has taken the edge for what is
// queued at c now, reading nothing: it waits for readability, and a
// timeout means the poller took the edge before the wait began (the wait
// clears an earlier readiness), which the poller does within its 10 ms
// sysmon poll at the latest.
func consumeEdge(t *testing.T, c *net.TCPConn) {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	defer c.SetReadDeadline(time.Time{})
	err = raw.Read(func(uintptr) bool { calls++; return calls > 1 })
	if err != nil && !isTimeout(err) {
		t.Fatalf("waiting for readability: %v", err)
	}
}
