package jute

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// The fuzz targets check two properties on arbitrary bytes: decoding never
// panics (the fuzzer reports panics itself), and whenever decoding succeeds,
// encoding the result reproduces the input exactly. Seeds live in
// testdata/fuzz/<target>/ (regenerate with go test -run TestWriteFuzzSeeds
// -update-seeds ./jute) and are also added from the round-trip table.

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the fuzz seed corpus in testdata/fuzz")

// requestSeeds returns request payloads for every op in the round-trip table.
func requestSeeds() [][]byte {
	var out [][]byte
	for _, op := range clientOps {
		proto, _ := NewRequestRecord(op)
		if proto == nil {
			out = append(out, AppendRequestFrame(nil, RequestHeader{Xid: 1, Op: op}, nil)[4:])
			continue
		}
		for _, tc := range roundTripCases {
			if reflect.TypeOf(tc.rec) == reflect.TypeOf(proto) {
				out = append(out, AppendRequestFrame(nil, RequestHeader{Xid: 7, Op: op}, tc.rec)[4:])
			}
		}
	}
	return out
}

type replySeed struct {
	op      Op
	payload []byte
}

// replySeeds returns reply payloads for every op in the round-trip table.
func replySeeds() []replySeed {
	var out []replySeed
	for _, op := range clientOps {
		out = append(out, replySeed{op, AppendReplyFrame(nil, ReplyHeader{Xid: 3, Zxid: 0x100000001, Err: ErrNoNode}, nil)[4:]})
		proto, _ := NewResponseRecord(op)
		if proto == nil {
			out = append(out, replySeed{op, AppendReplyFrame(nil, ReplyHeader{Xid: 3, Zxid: 0x100000001}, nil)[4:]})
			continue
		}
		for _, tc := range roundTripCases {
			if reflect.TypeOf(tc.rec) == reflect.TypeOf(proto) {
				out = append(out, replySeed{op, AppendReplyFrame(nil, ReplyHeader{Xid: 3, Zxid: 0x100000001}, tc.rec)[4:]})
			}
		}
	}
	note := AppendReplyFrame(nil, ReplyHeader{Xid: XidNotification, Zxid: -1}, &WatcherEvent{Type: EventNodeDeleted, State: StateSyncConnected, Path: "/x"})
	out = append(out, replySeed{OpNotification, note[4:]})
	return out
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range requestSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		h, body, err := DecodeRequest(payload)
		if err != nil {
			checkDecodeError(t, err, len(payload))
			return
		}
		if got := AppendRequestFrame(nil, h, body)[4:]; !bytes.Equal(got, payload) {
			t.Fatalf("%v request re-encoded as\n%x, want\n%x", h.Op, got, payload)
		}
	})
}

func FuzzDecodeReply(f *testing.F) {
	for _, s := range replySeeds() {
		f.Add(int32(s.op), s.payload)
	}
	f.Fuzz(func(t *testing.T, op int32, payload []byte) {
		h, body, err := DecodeReply(Op(op), payload)
		if err != nil {
			checkDecodeError(t, err, len(payload))
			return
		}
		if got := AppendReplyFrame(nil, h, body)[4:]; !bytes.Equal(got, payload) {
			t.Fatalf("%v reply re-encoded as\n%x, want\n%x", Op(op), got, payload)
		}
	})
}

// FuzzFrameConnect feeds a byte stream to a FrameReader and decodes each
// frame as both connect records, the frames that have no header.
func FuzzFrameConnect(f *testing.F) {
	for _, tc := range roundTripCases {
		switch tc.rec.(type) {
		case *ConnectRequest, *ConnectResponse:
			f.Add(AppendRecordFrame(nil, tc.rec))
		}
	}
	f.Add([]byte("ruok"))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(checkFrameConnect)
}

// frameConnectLimit is FuzzFrameConnect's frame size limit.
const frameConnectLimit = 1 << 12

// checkFrameConnect is FuzzFrameConnect's property: every frame read off
// stream is the stream's bytes, and decodes as each connect record either
// with a typed error or re-encoding to the same bytes.
func checkFrameConnect(t *testing.T, stream []byte) {
	fr := NewFrameReader(bytes.NewReader(stream), frameConnectLimit)
	consumed := 0
	for {
		fm, err := fr.Next()
		if err != nil {
			break
		}
		if fm.Len() > frameConnectLimit || !bytes.Equal(fm.Raw(), stream[consumed:consumed+len(fm.Raw())]) {
			t.Fatalf("frame at %d does not match the stream", consumed)
		}
		consumed += len(fm.Raw())
		for _, r := range []Record{new(ConnectRequest), new(ConnectResponse)} {
			if err := Unmarshal(fm.Payload(), r); err != nil {
				checkDecodeError(t, err, fm.Len())
				continue
			}
			if got := Marshal(r); !bytes.Equal(got, fm.Payload()) {
				t.Fatalf("%T re-encoded as %x, want %x", r, got, fm.Payload())
			}
		}
	}
	if len(stream) >= 4 {
		FourLetterWord([4]byte(stream))
	}
}

// checkDecodeError checks that a decoding error is typed and points inside
// the payload.
func checkDecodeError(t *testing.T, err error, n int) {
	t.Helper()
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("error %v is not a *DecodeError", err)
	}
	if de.Offset < 0 || de.Offset > n {
		t.Fatalf("error offset %d outside the %d-byte payload: %v", de.Offset, n, err)
	}
}

// TestWriteFuzzSeeds rewrites testdata/fuzz from the round-trip table and
// the golden frames; it runs only with -update-seeds.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*updateSeeds {
		t.Skip("run with -update-seeds to rewrite testdata/fuzz")
	}
	reqs := requestSeeds()
	reps := replySeeds()
	var streams [][]byte
	for _, g := range loadGoldenFrames(t) {
		switch {
		case g.Kind == goldenConnect:
			streams = append(streams, g.Frame)
		case g.Dir == dirRequest:
			reqs = append(reqs, g.Frame[4:])
		default:
			reps = append(reps, replySeed{g.Op, g.Frame[4:]})
		}
	}
	write := func(target string, i int, args ...any) {
		var b bytes.Buffer
		b.WriteString("go test fuzz v1\n")
		for _, a := range args {
			switch v := a.(type) {
			case []byte:
				fmt.Fprintf(&b, "[]byte(%q)\n", v)
			case int32:
				fmt.Fprintf(&b, "int32(%d)\n", v)
			}
		}
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%03d", i)), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, target := range []string{"FuzzDecodeRequest", "FuzzDecodeReply", "FuzzFrameConnect"} {
		if err := os.RemoveAll(filepath.Join("testdata", "fuzz", target)); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range dedupe(reqs) {
		write("FuzzDecodeRequest", i, s)
	}
	seen := map[string]bool{}
	n := 0
	for _, s := range reps {
		key := string(binary.BigEndian.AppendUint32(nil, uint32(s.op))) + string(s.payload)
		if seen[key] {
			continue
		}
		seen[key] = true
		write("FuzzDecodeReply", n, int32(s.op), s.payload)
		n++
	}
	for i, s := range dedupe(streams) {
		write("FuzzFrameConnect", i, s)
	}
}

func dedupe(in [][]byte) [][]byte {
	seen := map[string]bool{}
	var out [][]byte
	for _, b := range in {
		if !seen[string(b)] {
			seen[string(b)] = true
			out = append(out, b)
		}
	}
	return out
}
