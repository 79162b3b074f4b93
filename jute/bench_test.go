package jute

import (
	"bytes"
	"testing"
)

// cyclicReader yields the same bytes forever, so frame reading can be
// measured without refilling a reader.
type cyclicReader struct {
	data []byte
	off  int
}

func (c *cyclicReader) Read(p []byte) (int, error) {
	n := copy(p, c.data[c.off:])
	c.off = (c.off + n) % len(c.data)
	return n, nil
}

var (
	benchGetDataRequest = AppendRequestFrame(nil, RequestHeader{Xid: 17, Op: OpGetData},
		&GetDataRequest{Path: "/brokers/topics/orders/partitions/0/state", Watch: true})
	benchCreateRequest = AppendRequestFrame(nil, RequestHeader{Xid: 18, Op: OpCreate},
		&CreateRequest{Path: "/brokers/ids/1", Data: bytes.Repeat([]byte("x"), 200), ACL: worldACL, Flags: CreateEphemeral})
	benchGetDataReply = AppendReplyFrame(nil, ReplyHeader{Xid: 17, Zxid: 0x500000123},
		&GetDataResponse{Data: bytes.Repeat([]byte("d"), 1024), Stat: sampleStat})
	benchNotification = AppendReplyFrame(nil, ReplyHeader{Xid: XidNotification, Zxid: -1},
		&WatcherEvent{Type: EventNodeDataChanged, State: StateSyncConnected, Path: "/controller"})
)

func BenchmarkPeekRequestHeader(b *testing.B) {
	p := benchGetDataRequest[4:]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := PeekRequestHeader(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPeekReplyHeader(b *testing.B) {
	p := benchGetDataReply[4:]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := PeekReplyHeader(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeReplyGetData1KiB(b *testing.B) {
	p := benchGetDataReply[4:]
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		if _, _, err := DecodeReply(OpGetData, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeReplyNotification(b *testing.B) {
	p := benchNotification[4:]
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := DecodeReply(OpNotification, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeRequestGetData(b *testing.B) {
	p := benchGetDataRequest[4:]
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := DecodeRequest(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeRequestCreate(b *testing.B) {
	p := benchCreateRequest[4:]
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := DecodeRequest(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendRequestFrameGetData(b *testing.B) {
	body := &GetDataRequest{Path: "/brokers/topics/orders/partitions/0/state", Watch: true}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendRequestFrame(buf[:0], RequestHeader{Xid: 17, Op: OpGetData}, body)
	}
}

func BenchmarkFrameReaderNext(b *testing.B) {
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"getDataRequest", benchGetDataRequest},
		{"getDataReply1KiB", benchGetDataReply},
	} {
		b.Run(tc.name, func(b *testing.B) {
			fr := NewFrameReader(&cyclicReader{data: tc.frame}, 0)
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.frame)))
			for b.Loop() {
				if _, err := fr.Next(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestHotPathAllocs pins the allocation counts the proxy's forwarding path
// relies on: header peeks and steady-state frame reading allocate nothing.
func TestHotPathAllocs(t *testing.T) {
	fr := NewFrameReader(&cyclicReader{data: benchGetDataReply}, 0)
	if _, err := fr.Next(); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		f, err := fr.Next()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := PeekReplyHeader(f.Payload()); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("frame read + peek allocates %v times", n)
	}
}
