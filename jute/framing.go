package jute

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// DefaultMaxFrameSize is the default payload limit of a FrameReader: the
// server's default jute.maxbuffer (0xfffff, BinaryInputArchive.maxBuffer and
// NIOServerCnxn.readLength) plus 1 KiB of room for the reply header and the
// Stat that accompany a maximal znode's data in a getData reply.
const DefaultMaxFrameSize = 0xfffff + 1024

// frameBufferKeep is the buffer capacity a FrameReader keeps between frames.
// After a larger frame the buffer is dropped at the next small frame, so an
// idle session does not pin a megabyte.
const frameBufferKeep = 64 << 10

// Frame is one length-prefixed frame. It is only valid until the next call of
// the FrameReader's Next that produced it.
type Frame struct {
	raw []byte
}

// Raw returns the frame as received: the 4-byte length prefix followed by the
// payload. Forward these bytes untouched.
func (f Frame) Raw() []byte { return f.raw }

// Payload returns the bytes after the length prefix.
func (f Frame) Payload() []byte {
	if len(f.raw) < 4 {
		return nil
	}
	return f.raw[4:]
}

// Len returns the payload length.
func (f Frame) Len() int { return len(f.Payload()) }

// FrameReader reads length-prefixed frames from a stream into one reusable
// buffer. It is not safe for concurrent use.
type FrameReader struct {
	r   io.Reader
	max int
	buf []byte
}

// NewFrameReader returns a reader of frames whose payload is at most
// maxFrameSize bytes; maxFrameSize <= 0 means DefaultMaxFrameSize.
func NewFrameReader(r io.Reader, maxFrameSize int) *FrameReader {
	if maxFrameSize <= 0 {
		maxFrameSize = DefaultMaxFrameSize
	}
	return &FrameReader{r: r, max: maxFrameSize}
}

// MaxFrameSize returns the payload limit.
func (fr *FrameReader) MaxFrameSize() int { return fr.max }

// Next reads the next frame. The returned Frame aliases the reader's buffer
// and is valid until the next call. A stream that ends cleanly between frames
// returns io.EOF; one that ends inside a frame returns an error wrapping
// io.ErrUnexpectedEOF. A negative length fails with ErrNegativeFrameLength and
// one above the limit with ErrFrameTooLarge, before anything is allocated for
// it; the stream is then unusable, as it is for the server, which closes the
// connection (NIOServerCnxn.readLength).
func (fr *FrameReader) Next() (Frame, error) {
	if cap(fr.buf) < 4 {
		fr.buf = make([]byte, 4, 512)
	}
	fr.buf = fr.buf[:4]
	if _, err := io.ReadFull(fr.r, fr.buf); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Frame{}, fmt.Errorf("jute: reading frame length: %w", err)
		}
		return Frame{}, err
	}
	n := int32(binary.BigEndian.Uint32(fr.buf))
	if n < 0 {
		return Frame{}, fmt.Errorf("%w: %d", ErrNegativeFrameLength, n)
	}
	if int64(n) > int64(fr.max) {
		return Frame{}, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, fr.max)
	}
	total := 4 + int(n)
	if total <= frameBufferKeep && cap(fr.buf) > frameBufferKeep {
		small := make([]byte, 4, frameBufferKeep)
		copy(small, fr.buf)
		fr.buf = small
	}
	// Fill the buffer before growing it, and grow by doubling, so a frame
	// costs at most twice the bytes that actually arrived, whatever length
	// its prefix announces: a peer announcing a large frame and sending
	// nothing costs the initial buffer only.
	for len(fr.buf) < total {
		if len(fr.buf) == cap(fr.buf) {
			bigger := make([]byte, len(fr.buf), min(2*cap(fr.buf), total))
			copy(bigger, fr.buf)
			fr.buf = bigger
		}
		start, next := len(fr.buf), min(cap(fr.buf), total)
		fr.buf = fr.buf[:next]
		if _, err := io.ReadFull(fr.r, fr.buf[start:next]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return Frame{}, fmt.Errorf("jute: reading %d-byte frame: %w", n, err)
		}
	}
	return Frame{raw: fr.buf[:total]}, nil
}

// AppendFrame appends the 4-byte big-endian length of payload and then
// payload to dst.
func AppendFrame(dst []byte, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// beginFrame appends a length placeholder and returns its offset; endFrame
// fills it in once the payload has been appended.
func beginFrame(dst []byte) ([]byte, int) {
	return append(dst, 0, 0, 0, 0), len(dst)
}

func endFrame(dst []byte, at int) []byte {
	binary.BigEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
	return dst
}

// fourLetterWords are the commands the server recognises in place of the
// first frame length of a connection (FourLetterCommands.cmd2String),
// including "telnet close" (0xfff4fffd), which the server answers by closing.
var fourLetterWords = map[uint32]string{}

func init() {
	for _, w := range []string{
		"conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "hash", "isro",
		"mntr", "ruok", "srst", "srvr", "stat", "stmk", "wchc", "wchp", "wchs",
	} {
		fourLetterWords[binary.BigEndian.Uint32([]byte(w))] = w
	}
	fourLetterWords[0xfff4fffd] = "telnet close"
}

// FourLetterWord classifies the first 4 bytes of a new connection. The server
// reads them as the first frame's length and, if that int equals a known
// command, answers the command instead of reading a ConnectRequest
// (NIOServerCnxn.checkFourLetterWord). A real ConnectRequest's length is
// about 45, so the two never collide.
func FourLetterWord(prefix [4]byte) (cmd string, ok bool) {
	cmd, ok = fourLetterWords[binary.BigEndian.Uint32(prefix[:])]
	return cmd, ok
}
