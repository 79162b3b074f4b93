package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zkproxy/zkproxy/jute"
)

// readChunkSize is the size of the pooled buffers a frameReader reads into.
// Almost every ZooKeeper frame (requests, stats, pings, notifications, a
// 1 KiB setData) fits, and one read usually returns every frame the peer
// has sent since the last one.
const readChunkSize = 8 << 10

// bigFrameStart is the first allocation for a frame that does not fit a
// chunk; it grows with the bytes that actually arrive (at most doubling),
// so a peer announcing a large frame and sending nothing costs little.
const bigFrameStart = 64 << 10

var readChunks = sync.Pool{New: func() any { b := make([]byte, readChunkSize); return &b }}

// frameReader reads length-prefixed ZooKeeper frames from a connection,
// parsing every complete frame a single read returned before reading again.
// It replaces jute.FrameReader on the session pumps, which costs two read
// syscalls per frame (length, then payload).
//
// It holds no buffer while it waits for data on a TCP connection: the wait
// happens in the runtime poller (syscall.RawConn.Read) and the pooled chunk
// is taken only once the socket is readable, and given back when a read
// would block with nothing buffered. So an idle session pins no read
// buffer in either direction. Other net.Conn implementations (TLS, tests'
// wrappers) are read with ordinary Reads; with nothing buffered they wait
// in a Read of a few bytes and take a chunk only when it returns
// (fillIdle).
//
// A Frame returned by Next is valid until the next call of Next that has
// to read from the connection: while Buffered reports true, Next returns
// the next frame from memory and earlier frames stay valid, which lets
// the caller write several of them with one writev. Not safe for
// concurrent use.
type frameReader struct {
	conn net.Conn
	raw  syscall.RawConn // nil: plain Reads; the pumps also write through it (writeFrame)
	// poll is the socket the parker waits on: raw, or the TCP connection
	// under a TLS one (see newReadWatch for why a TLS pump may park); nil
	// when the connection cannot park.
	poll  syscall.RawConn
	max   int
	buf   []byte // chunk (*chunk != nil) or a dedicated big-frame buffer; nil when idle
	chunk *[]byte
	r, w  int            // buf[r:w] is unread
	bytes *atomic.Uint64 // counts the bytes read; may be nil
	// readAt is when the last read returned data: the arrival time of the
	// frames it holds, shared by them so the pumps call time.Now once per
	// read instead of several times per frame.
	readAt time.Time
	// active is readAt as Unix nanoseconds, or when the pump last resumed
	// if that is later: what idleSweep reads, from its own goroutine.
	active atomic.Int64
	parkID uint64    // the parker's key while parked (see parker.park)
	parked parkEntry // while parked; under the parker's lock
	// shortReadEmpties lets Serve wait for the poller right after a read
	// that left room in the buffer, instead of reading again for EAGAIN
	// (see Serve): set by pumps whose wait idleSweep ends within about
	// 2 × shortReadTrust of the last data. (Kept beside the other flags:
	// eight bytes less put the struct in the 288-byte size class, not 320.)
	shortReadEmpties bool
	// armed: the socket is in the parker's epoll instance, under parkID
	// (parker_linux.go). Whoever has the pump (parked: the parker) owns it.
	armed bool
	// wake: unpark was called (the connection is closing) and may have
	// found nothing to resume because a park was still on its way in
	// (see parker.unpark); the next park is refused, once.
	wake atomic.Bool

	// peek takes the first bytes after an idle wait on a connection without
	// a RawConn (fillIdle); nil on TCP connections.
	peek *[16]byte

	// readFn is readOnce bound once, and n and err its results: a closure
	// passed to RawConn.Read would allocate on every read. serveFn is
	// serveOnce bound once, with its handler and result.
	readFn func(fd uintptr) bool
	// inlineFn is readInlineOnce bound once (inline.go).
	inlineFn func(fd uintptr)
	n        int
	err      error
	serveFn  func(fd uintptr) bool
	handler  frameHandler
	loopErr  error
}

func newFrameReader(conn net.Conn, maxFrameSize int, bytes *atomic.Uint64) *frameReader {
	if maxFrameSize <= 0 {
		maxFrameSize = jute.DefaultMaxFrameSize
	}
	fr := &frameReader{conn: conn, max: maxFrameSize, bytes: bytes}
	if fr.raw = rawConnOf(conn); fr.raw != nil {
		fr.readFn = fr.readOnce
		fr.inlineFn = fr.readInlineOnce
		fr.serveFn = fr.serveOnce
		fr.poll = fr.raw
	} else {
		fr.peek = new([16]byte)
		if tc, ok := conn.(interface{ NetConn() net.Conn }); ok { // *tls.Conn, and what embeds one
			fr.poll = rawConnOf(tc.NetConn())
		}
	}
	return fr
}

// frameLen checks the length prefix at buf[r:] and returns the whole
// frame's size (prefix included).
func (fr *frameReader) frameLen() (int, error) {
	n := int32(binary.BigEndian.Uint32(fr.buf[fr.r:]))
	if n < 0 {
		return 0, fmt.Errorf("%w: %d", jute.ErrNegativeFrameLength, n)
	}
	if int64(n) > int64(fr.max) {
		return 0, fmt.Errorf("%w: %d bytes, limit %d", jute.ErrFrameTooLarge, n, fr.max)
	}
	return 4 + int(n), nil
}

// Buffered reports whether a complete frame is already in memory, so that
// Next will not read (and frames returned so far stay valid).
func (fr *frameReader) Buffered() bool {
	if fr.w-fr.r < 4 {
		return false
	}
	total, err := fr.frameLen()
	return err != nil || fr.w-fr.r >= total
}

// Peek4 returns the first 4 unread bytes without consuming them (the
// handshake looks for a four-letter word there).
func (fr *frameReader) Peek4() ([4]byte, error) {
	var out [4]byte
	for fr.w-fr.r < 4 {
		if err := fr.fill(4); err != nil {
			if errors.Is(err, io.EOF) && fr.w > fr.r {
				err = io.ErrUnexpectedEOF
			}
			return out, err
		}
	}
	copy(out[:], fr.buf[fr.r:])
	return out, nil
}

// frame is one length-prefixed frame: the 4-byte length, then the payload.
type frame []byte

// Raw returns the frame as received, to be forwarded untouched.
func (f frame) Raw() []byte { return f }

// Payload returns the bytes after the length prefix.
func (f frame) Payload() []byte { return f[4:] }

// Next returns the next frame. Errors are those of jute.FrameReader.Next:
// io.EOF between frames, io.ErrUnexpectedEOF inside one,
// jute.ErrNegativeFrameLength and jute.ErrFrameTooLarge before anything is
// allocated for the frame (the stream is then unusable, as for the server,
// NIOServerCnxn.readLength), and the connection's errors (timeouts are
// net.Errors).
func (fr *frameReader) Next() (frame, error) {
	for fr.w-fr.r < 4 {
		if err := fr.fill(4); err != nil {
			if errors.Is(err, io.EOF) && fr.w > fr.r {
				return nil, fmt.Errorf("jute: reading frame length: %w", io.ErrUnexpectedEOF)
			}
			return nil, err
		}
	}
	total, err := fr.frameLen()
	if err != nil {
		return nil, err
	}
	for fr.w-fr.r < total {
		if err := fr.fill(total); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("jute: reading %d-byte frame: %w", total-4, err)
		}
	}
	f := frame(fr.buf[fr.r : fr.r+total : fr.r+total])
	fr.r += total
	return f, nil
}

// fill reads at least one more byte for a frame of total bytes (4 while
// its length is unknown), making room first.
func (fr *frameReader) fill(total int) error {
	fr.makeRoom(total)
	if fr.raw == nil {
		if fr.r == fr.w {
			return fr.fillIdle()
		}
		if fr.buf == nil {
			fr.takeChunk()
		}
		n, err := fr.conn.Read(fr.buf[fr.w:])
		return fr.plainRead(n, err)
	}
	fr.n, fr.err = 0, nil
	if err := fr.raw.Read(fr.readFn); err != nil {
		return err
	}
	n, rerr := fr.n, fr.err
	fr.err = nil
	switch {
	case rerr != nil:
		return os.NewSyscallError("read", rerr)
	case n <= 0:
		return io.EOF
	}
	fr.got(n)
	return nil
}

// fillIdle is fill on a connection without a RawConn (TLS) when nothing is
// buffered: it waits holding no chunk, reading the first bytes into peek,
// so an idle TLS session pins no read buffer either. tls.Conn decrypts a
// whole record at once, so the rest of it is then read from memory.
func (fr *frameReader) fillIdle() error {
	fr.releaseIfEmpty()
	n, err := fr.conn.Read(fr.peek[:])
	if n > 0 {
		fr.takeChunk()
		copy(fr.buf, fr.peek[:n])
	}
	return fr.plainRead(n, err)
}

// plainRead accounts for n bytes an ordinary Read put at buf[w:] (a Read
// that returns no bytes and no error is reported as no progress).
func (fr *frameReader) plainRead(n int, err error) error {
	if n <= 0 {
		if err == nil {
			err = io.ErrNoProgress
		}
		return err
	}
	fr.got(n)
	return nil
}

// got accounts for n bytes a read put at buf[w:]: they arrived now.
func (fr *frameReader) got(n int) {
	fr.w += n
	fr.count(n)
	fr.readAt = time.Now()
	fr.active.Store(fr.readAt.UnixNano())
}

// frameHandler is what a pump does with its connection's frames (see
// Serve). The pumps pass themselves as a pointer, which an interface holds
// without allocating: a pump resumed after every ping must not leave
// garbage behind each time.
type frameHandler interface {
	// onFrame handles one frame; an error ends Serve.
	onFrame(frame) error
	// beforeRead runs whenever no complete frame is buffered, before
	// reading or waiting for more: frames passed to onFrame stay valid
	// until then (the upstream pump flushes the frames it collected here;
	// both pumps arm their read deadlines).
	beforeRead() error
	// onTimeout answers the connection's read deadline firing: nil to keep
	// waiting, an error (errParked to park) to end Serve with it.
	onTimeout(error) error
}

// Serve hands every frame to h until h or the connection fails, and
// returns that error (connection errors as Next reports them).
//
// On a TCP connection the loop runs inside one RawConn.Read: one call into
// the poller per wake-up rather than per frame.
//
// Every wake-up reads at least once. After that, with shortReadEmpties,
// a read that returned less than the buffer could take ends the wake-up:
// tcp_recvmsg copies everything queued up to the buffer's size, so the
// socket was empty, and any segment arriving later raises a new edge in the
// runtime's edge-triggered poller (what Netty's epoll transport relies on).
// That saves the EAGAIN read, about one syscall per frame (reads per
// relayed request 4 → 2, as many as HAProxy makes); A/B runs put it at
// 0–0.9 µs of the relay's ~13 µs CPU per request, within their noise. The
// one thing a short read hides is a FIN that arrived with the last data:
// tcp_recvmsg returns the data and reports the end of stream only on the
// next read, and no further edge comes. So only pumps whose wait is ended
// within about 2 × shortReadTrust of their last data (by idleSweep) trust
// short reads: the next wake-up reads and finds the end of stream (a parked pump's new registration
// finds it at once: epoll polls a socket when it is added). A peer that closes right after its last
// frame is noticed that much later; one that sends anything afterwards, or
// resets, raises an edge as usual. Without the flag (parking off), Serve
// reads until EAGAIN.
func (fr *frameReader) Serve(h frameHandler) error {
	if fr.raw == nil {
		return fr.servePlain(h)
	}
	for {
		err := fr.serveRaw(h)
		if !isTimeout(err) {
			return err
		}
		if err := h.onTimeout(err); err != nil {
			return err
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// serveRaw is Serve's loop on a TCP connection, until a deadline or error.
func (fr *frameReader) serveRaw(h frameHandler) error {
	fr.handler, fr.loopErr = h, nil
	rerr := fr.raw.Read(fr.serveFn)
	loopErr := fr.loopErr
	fr.handler, fr.loopErr = nil, nil
	if loopErr != nil {
		return loopErr
	}
	return rerr
}

// serveOnce is the RawConn.Read callback of serveRaw (bound once per
// reader, in serveFn): it handles buffered frames and reads until the
// socket would block (false: wait in the poller) or the loop ends (true,
// with fr.loopErr).
func (fr *frameReader) serveOnce(fd uintptr) bool {
	h := fr.handler
	emptied := false // the last read left room: the socket had nothing more
	for {
		for fr.Buffered() {
			f, err := fr.Next() // from memory: Buffered
			if err == nil {
				err = h.onFrame(f)
			}
			if err != nil {
				fr.loopErr = err
				return true
			}
		}
		if err := h.beforeRead(); err != nil {
			fr.loopErr = err
			return true
		}
		if emptied && fr.shortReadEmpties {
			fr.releaseIfEmpty()
			return false
		}
		total := 4
		if fr.w-fr.r >= 4 {
			total, _ = fr.frameLen() // valid: Buffered would have reported the error
		}
		fr.makeRoom(total)
		if fr.buf == nil {
			fr.takeChunk()
		}
		n, err := readNonBlocking(fd, fr.buf[fr.w:])
		switch {
		case err == syscall.EAGAIN:
			fr.releaseIfEmpty()
			return false
		case err != nil:
			fr.loopErr = os.NewSyscallError("read", err)
			return true
		case n == 0:
			fr.loopErr = io.EOF
			if fr.w > fr.r {
				fr.loopErr = fmt.Errorf("jute: reading frame: %w", io.ErrUnexpectedEOF)
			}
			return true
		}
		emptied = fr.w+n < len(fr.buf)
		fr.got(n)
	}
}

// servePlain is Serve over ordinary Reads (connections without a
// RawConn: TLS, tests' wrappers).
func (fr *frameReader) servePlain(h frameHandler) error {
	for {
		if !fr.Buffered() {
			if err := h.beforeRead(); err != nil {
				return err
			}
		}
		f, err := fr.Next()
		if isTimeout(err) {
			if err := h.onTimeout(err); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if err := h.onFrame(f); err != nil {
			return err
		}
	}
}

func (fr *frameReader) count(n int) {
	if fr.bytes != nil {
		fr.bytes.Add(uint64(n))
	}
}

// readOnce is the RawConn.Read callback: one non-blocking read into the
// buffer, taking a chunk only now that the socket may have data.
func (fr *frameReader) readOnce(fd uintptr) bool {
	if fr.buf == nil {
		fr.takeChunk()
	}
	fr.n, fr.err = readNonBlocking(fd, fr.buf[fr.w:])
	if fr.err == syscall.EAGAIN {
		// Wait in the poller without holding a chunk if nothing is
		// buffered.
		fr.releaseIfEmpty()
		return false
	}
	return true
}

// readNonBlocking is one read of the non-blocking socket fd (see
// rawio_linux.go), retried on EINTR; err is a syscall.Errno or nil.
func readNonBlocking(fd uintptr, p []byte) (int, error) {
	for {
		n, errno := rawRead(fd, p)
		switch errno {
		case 0:
			return n, nil
		case syscall.EINTR:
			continue
		}
		return 0, errno
	}
}

// makeRoom ensures buf can take more of a frame of total bytes. A frame
// that fits a chunk is read into one (lazily: fill takes it once data is
// there); a bigger one gets a dedicated buffer no larger than the frame,
// so it never holds the start of the next frame and is dropped once the
// frame has been consumed.
func (fr *frameReader) makeRoom(total int) {
	if fr.r == fr.w {
		fr.r, fr.w = 0, 0
		if fr.chunk == nil {
			fr.buf = nil
		}
	}
	if total <= readChunkSize {
		switch {
		case fr.buf == nil:
		case fr.chunk == nil:
			// Unread bytes in a big-frame buffer cannot happen (big
			// frames are read exactly); move them to a chunk anyway.
			c := readChunks.Get().(*[]byte)
			n := copy(*c, fr.buf[fr.r:fr.w])
			fr.chunk, fr.buf, fr.r, fr.w = c, *c, 0, n
		case fr.r+total > len(fr.buf):
			copy(fr.buf, fr.buf[fr.r:fr.w])
			fr.w -= fr.r
			fr.r = 0
		}
		return
	}
	if fr.chunk == nil && fr.buf != nil && fr.r == 0 && fr.w < len(fr.buf) {
		return // room left in the big-frame buffer
	}
	have := fr.w - fr.r
	size := min(total, max(bigFrameStart, 2*len(fr.buf)))
	big := make([]byte, max(size, have))
	copy(big, fr.buf[fr.r:fr.w])
	if fr.chunk != nil {
		readChunks.Put(fr.chunk)
		fr.chunk = nil
	}
	fr.buf, fr.r, fr.w = big, 0, have
}

func (fr *frameReader) takeChunk() {
	fr.chunk = readChunks.Get().(*[]byte)
	fr.buf = *fr.chunk
}

// releaseIfEmpty gives the chunk back to the pool when nothing is unread.
func (fr *frameReader) releaseIfEmpty() {
	if fr.r != fr.w || fr.chunk == nil {
		return
	}
	readChunks.Put(fr.chunk)
	fr.chunk, fr.buf, fr.r, fr.w = nil, nil, 0, 0
}

// lazyDeadline moves a connection's write deadline only when it has
// come within the timeout of now, instead of before every frame: setting a
// deadline costs a timer update in the runtime poller (pollSetDeadline),
// which showed up per frame in profiles. The deadline is always at least
// timeout away after extendAt, and at most timeout + timeout/8, so a silent
// peer is still detected within 9/8 of the timeout. The zero value has no
// deadline set. Not safe for concurrent use; each has one user.
type lazyDeadline struct {
	at time.Time
}

// extendAt moves the deadline if it is within timeout of now.
func (d *lazyDeadline) extendAt(now time.Time, timeout time.Duration, set func(time.Time) error) {
	if !d.at.IsZero() && d.at.Sub(now) >= timeout {
		return
	}
	d.at = now.Add(timeout + timeout/8)
	set(d.at)
}

// preload makes b the first unread bytes, as if read at at: the start of a
// frame a handed-over session's client had begun to send (Server.Adopt).
func (fr *frameReader) preload(b []byte, at time.Time) {
	fr.readAt = at
	fr.active.Store(at.UnixNano())
	if len(b) == 0 {
		return
	}
	if len(b) <= readChunkSize {
		fr.takeChunk()
	} else {
		fr.buf = make([]byte, len(b)) // a big frame's start: makeRoom grows it
	}
	fr.r, fr.w = 0, copy(fr.buf, b)
}
