package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-accepted
	if b == nil {
		t.Fatal("accept failed")
	}
	ta, tb := a.(*net.TCPConn), b.(*net.TCPConn)
	t.Cleanup(func() { ta.Close(); tb.Close() })
	return ta, tb
}

// TestWriteFramesPartialWrites writes more than the socket buffers hold in
// frames of many sizes, among empty ones, to a reader that starts late:
// every byte arrives once, in order, through EAGAIN waits and short writev
// calls.
func TestWriteFramesPartialWrites(t *testing.T) {
	w, r := tcpPair(t)
	var frames [][]byte
	var want []byte
	for i := range 40 {
		f := bytes.Repeat([]byte{byte(i)}, (i%7)*150000+1)
		if i%10 == 3 {
			f = nil
		}
		frames = append(frames, f)
		want = append(want, f...)
	}
	got := make(chan []byte, 1)
	go func() {
		var buf bytes.Buffer
		chunk := make([]byte, 16<<10)
		time.Sleep(200 * time.Millisecond) // the writer fills the buffers and waits
		for buf.Len() < len(want) {
			n, err := r.Read(chunk)
			buf.Write(chunk[:n])
			if err != nil {
				break
			}
		}
		got <- buf.Bytes()
	}()
	n, err := writeFrames(w, rawConnOf(w), frames)
	if err != nil || n != len(want) {
		t.Fatalf("writeFrames: %d bytes, %v; want %d", n, err, len(want))
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("reader got %d bytes, differing from the %d written", len(b), len(want))
	}
	n, err = writeFrame(w, rawConnOf(w), []byte("one more"))
	if err != nil || n != 8 {
		t.Fatalf("writeFrame: %d, %v", n, err)
	}
}

// TestWriteFramesDeadlineAndErrors: a reader that never reads makes the
// write deadline fire as a timeout net.Error, as conn.Write would; writing to
// a connection the peer reset fails with the system error.
func TestWriteFramesDeadlineAndErrors(t *testing.T) {
	w, r := tcpPair(t)
	w.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	big := make([]byte, 8<<20)
	_, err := writeFrames(w, rawConnOf(w), [][]byte{big, big})
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("want a timeout, got %v", err)
	}

	w2, r2 := tcpPair(t)
	r2.SetLinger(0)
	r2.Close() // RST
	time.Sleep(50 * time.Millisecond)
	for range 3 { // the first write may still be accepted before the RST is seen
		if _, err = writeFrame(w2, rawConnOf(w2), []byte("x")); err != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("want ECONNRESET or EPIPE, got %v", err)
	}
	var se *os.SyscallError
	if !errors.As(err, &se) {
		t.Fatalf("want an os.SyscallError naming the call, got %T %v", err, err)
	}
	_ = r
}

// TestWriteFramesWithoutRawConn covers connections that are not sockets
// (tests' wrappers): the ordinary Write path.
func TestWriteFramesWithoutRawConn(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		writeFrames(a, nil, [][]byte{[]byte("ab"), nil, []byte("cd")})
		writeFrame(a, nil, []byte("e"))
	}()
	got := make([]byte, 5)
	if _, err := io.ReadFull(b, got); err != nil || string(got) != "abcde" {
		t.Fatalf("got %q, %v", got, err)
	}
}

// TestWritesAndPingsAllocateNothing: the pooled write state and the ping
// FIFO's reused array keep a busy or idle session from making garbage.
func TestWritesAndPingsAllocateNothing(t *testing.T) {
	w, r := tcpPair(t)
	go io.Copy(io.Discard, r)
	raw := rawConnOf(w)
	frame := make([]byte, 64)
	frames := [][]byte{frame, frame, frame}
	if n := testing.AllocsPerRun(200, func() {
		writeFrame(w, raw, frame)
		writeFrames(w, raw, frames)
	}); n != 0 && !raceEnabled { // the race detector makes sync.Pool drop items
		t.Errorf("writes: %v allocations per run", n)
	}
	var p pingFIFO
	p.push(false)
	p.pop()
	if n := testing.AllocsPerRun(200, func() {
		p.push(true)
		p.push(false)
		p.pop()
		p.pop()
	}); n != 0 {
		t.Errorf("pings: %v allocations per run", n)
	}
	p.push(true)
	p.push(false)
	if got := p.clientPings(); got != 1 {
		t.Errorf("clientPings %d, want 1", got)
	}
	if fromProxy, ok := p.pop(); !ok || !fromProxy {
		t.Errorf("pop: %v %v, want the proxy's ping first", fromProxy, ok)
	}
}
