package jute

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"
)

// The work the codec does for an input is bounded by the input's bytes, not
// by lengths read off the wire, and a decode failure is cheap: a stream of
// short frames fails a decode per frame. Measured in allocations and
// allocated bytes, which do not depend on the machine's speed.

// bytesPerRun is testing.AllocsPerRun for allocated bytes: the average
// number of bytes f allocates, over runs calls after a warm-up call.
func bytesPerRun(runs int, f func()) uint64 {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	f()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(runs)
}

// TestFrameReaderCostFollowsBytesReceived: a peer announcing a large frame
// and sending little of it makes the reader allocate in proportion to what
// arrived (buffers doubling up to twice the bytes received add up to four
// times, plus the initial buffer), not to the announced length.
func TestFrameReaderCostFollowsBytesReceived(t *testing.T) {
	const initial = 512  // the buffer every reader starts with
	const overhead = 256 // the reader and the error saying the frame was cut short
	for _, announced := range []int{4096, 1 << 16, DefaultMaxFrameSize} {
		for _, sent := range []int{0, 10, 600, 5000} {
			if sent >= announced {
				continue
			}
			stream := binary.BigEndian.AppendUint32(nil, uint32(announced))
			stream = append(stream, make([]byte, sent)...)
			got := bytesPerRun(50, func() {
				fr := NewFrameReader(bytes.NewReader(stream), 0)
				if _, err := fr.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("announced %d, sent %d: %v", announced, sent, err)
				}
			})
			if limit := uint64(initial + 4*(4+sent) + overhead); got > limit {
				t.Errorf("announced %d bytes, sent %d: the reader allocated %d bytes, want at most %d", announced, sent, got, limit)
			}
		}
	}
}

// TestDecodeFailureAllocs: a record that fails to decode costs its decoder
// and the error, nothing more (the record's name is not formatted).
func TestDecodeFailureAllocs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload []byte
		rec     Record
	}{
		{"empty ConnectRequest", nil, new(ConnectRequest)},
		{"empty ConnectResponse", nil, new(ConnectResponse)},
		{"ConnectRequest cut in its password", append(make([]byte, 24), 0, 0, 0, 16, 1, 2), new(ConnectRequest)},
		{"GetDataResponse with a negative length", []byte{0xff, 0xff, 0xff, 0xf0}, new(GetDataResponse)},
	} {
		if err := Unmarshal(tc.payload, tc.rec); err == nil {
			t.Fatalf("%s: decoded", tc.name)
		}
		if n := testing.AllocsPerRun(100, func() { _ = Unmarshal(tc.payload, tc.rec) }); n > 2 {
			t.Errorf("%s: a failed decode allocates %v times, want at most 2 (decoder and error)", tc.name, n)
		}
	}
}

// TestFrameConnectCostPerFrame bounds FuzzFrameConnect's work on its most
// expensive input class, a stream of empty frames (four zero bytes each,
// every one failing both connect decodes), by allocations per frame. The
// fuzzer spends its time minimizing such streams, running the target once
// per candidate; when each frame cost two formatted record names and a 4
// KiB buffer was allocated for every announced frame, minimizing stalled
// the fuzzer for minutes.
func TestFrameConnectCostPerFrame(t *testing.T) {
	const frames = 200
	stream := make([]byte, 4*frames)
	perFrame := testing.AllocsPerRun(20, func() { checkFrameConnect(t, stream) }) / frames
	// Per frame: the two records, and for each a decoder, its error and
	// checkDecodeError's errors.As target.
	if perFrame > 8.1 {
		t.Errorf("%.2f allocations per empty frame, want at most 8", perFrame)
	}
	if b := bytesPerRun(20, func() { checkFrameConnect(t, stream) }) / frames; b > 400 {
		t.Errorf("%d bytes allocated per empty frame, want at most 400", b)
	}
}
