package jute

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestFrameReader(t *testing.T) {
	var stream []byte
	payloads := [][]byte{{}, []byte("a"), bytes.Repeat([]byte{7}, 5000), []byte("tail")}
	for _, p := range payloads {
		stream = AppendFrame(stream, p)
	}
	// OneByteReader exercises every partial-read path.
	for _, r := range []io.Reader{bytes.NewReader(stream), iotest.OneByteReader(bytes.NewReader(stream))} {
		fr := NewFrameReader(r, 0)
		for i, p := range payloads {
			f, err := fr.Next()
			if err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
			if !bytes.Equal(f.Payload(), p) || f.Len() != len(p) {
				t.Fatalf("frame %d: payload %d bytes, want %d", i, f.Len(), len(p))
			}
			if !bytes.Equal(f.Raw(), AppendFrame(nil, p)) {
				t.Fatalf("frame %d: raw bytes differ", i)
			}
		}
		if _, err := fr.Next(); err != io.EOF {
			t.Fatalf("after last frame: %v, want io.EOF", err)
		}
	}
}

func TestFrameReaderErrors(t *testing.T) {
	tests := []struct {
		name   string
		stream []byte
		max    int
		want   error
	}{
		{"eof in length", []byte{0, 0}, 0, io.ErrUnexpectedEOF},
		{"eof in payload", []byte{0, 0, 0, 9, 1, 2, 3}, 0, io.ErrUnexpectedEOF},
		{"negative", []byte{0xff, 0xff, 0xff, 0xf0}, 0, ErrNegativeFrameLength},
		{"too large", []byte{0, 0x10, 0, 0}, 0xfffff, ErrFrameTooLarge},
		{"default limit", []byte{0x7f, 0xff, 0xff, 0xff}, 0, ErrFrameTooLarge},
		{"custom limit", []byte{0, 0, 0, 11}, 10, ErrFrameTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewFrameReader(bytes.NewReader(tc.stream), tc.max).Next()
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestFrameReaderShrinks(t *testing.T) {
	var stream []byte
	stream = AppendFrame(stream, make([]byte, 500000))
	stream = AppendFrame(stream, []byte("x"))
	fr := NewFrameReader(bytes.NewReader(stream), 0)
	for range 2 {
		if _, err := fr.Next(); err != nil {
			t.Fatal(err)
		}
	}
	if c := cap(fr.buf); c > frameBufferKeep {
		t.Fatalf("buffer kept %d bytes after a small frame", c)
	}
}

func TestFourLetterWord(t *testing.T) {
	for _, w := range strings.Fields("conf cons crst dirs dump envi gtmk hash isro mntr ruok srst srvr stat stmk wchc wchp wchs") {
		got, ok := FourLetterWord([4]byte([]byte(w)))
		if !ok || got != w {
			t.Errorf("%s: got %q %v", w, got, ok)
		}
	}
	if got, ok := FourLetterWord([4]byte{0xff, 0xf4, 0xff, 0xfd}); !ok || got != "telnet close" {
		t.Errorf("telnet close: %q %v", got, ok)
	}
	for _, p := range [][4]byte{{0, 0, 0, 45}, {0, 0, 0, 44}, {'r', 'u', 'o', 'x'}, {'R', 'U', 'O', 'K'}} {
		if got, ok := FourLetterWord(p); ok {
			t.Errorf("%x classified as %q", p, got)
		}
	}
}

func TestPeekHeaders(t *testing.T) {
	req := AppendRequestFrame(nil, RequestHeader{Xid: 0x01020304, Op: OpSetWatches2}, nil)
	h, err := PeekRequestHeader(req[4:])
	if err != nil || h != (RequestHeader{Xid: 0x01020304, Op: OpSetWatches2}) {
		t.Fatalf("request header %+v %v", h, err)
	}
	rep := AppendReplyFrame(nil, ReplyHeader{Xid: -2, Zxid: 0x500000001, Err: ErrSessionExpired}, nil)
	rh, err := PeekReplyHeader(rep[4:])
	if err != nil || rh != (ReplyHeader{Xid: -2, Zxid: 0x500000001, Err: ErrSessionExpired}) {
		t.Fatalf("reply header %+v %v", rh, err)
	}
	for n := range 8 {
		if _, err := PeekRequestHeader(req[4 : 4+n]); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("%d-byte request header: %v", n, err)
		}
	}
	for n := range 16 {
		if _, err := PeekReplyHeader(rep[4 : 4+n]); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("%d-byte reply header: %v", n, err)
		}
	}
}

func TestPeekAllocs(t *testing.T) {
	req := AppendRequestFrame(nil, RequestHeader{Xid: 1, Op: OpGetData}, &GetDataRequest{Path: "/x"})
	rep := AppendReplyFrame(nil, ReplyHeader{Xid: 1, Zxid: 1}, nil)
	if n := testing.AllocsPerRun(100, func() {
		_, _ = PeekRequestHeader(req[4:])
		_, _ = PeekReplyHeader(rep[4:])
	}); n != 0 {
		t.Fatalf("peek allocates %v times", n)
	}
}
