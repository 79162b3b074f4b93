package proxy

import (
	"time"

	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkproxy/zkproxy/jute"
)

func benchSession() *Session {
	srv := &Server{m: newMetrics(prometheus.NewRegistry())}
	s := &Session{srv: srv}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// BenchmarkTrackGetData measures the per-request tracking cost of a
// getData with watch: header peek, body decode, FIFO push, reply match,
// watch arming.
func BenchmarkTrackGetData(b *testing.B) {
	s := benchSession()
	req := appendRequestFrame(nil, jute.RequestHeader{Xid: 1, Op: jute.OpGetData}, &pathRequest{Path: "/brokers/topics/t1", Watch: true})
	reply := jute.AppendRecord(nil, &jute.ReplyHeader{Xid: 1, Zxid: 42})
	reply = append(reply, make([]byte, 100+4+68)...)
	b.ReportAllocs()
	for b.Loop() {
		h, _ := jute.PeekRequestHeader(req[4:])
		pr := pendingRequest{xid: h.Xid, op: h.Op}
		if _, err := parseRequest(req[4:], &pr); err != nil {
			b.Fatal(err)
		}
		s.mu.Lock()
		s.enqueueLocked(req, pr, nil)
		s.mu.Unlock()
		if _, _, err := s.onReply(reply, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTrackSetData is the same for a request whose body is not
// decoded.
func BenchmarkTrackSetData(b *testing.B) {
	s := benchSession()
	req := jute.AppendFrame(nil, append(jute.AppendRecord(nil, &jute.RequestHeader{Xid: 1, Op: jute.OpSetData}), make([]byte, 1024)...))
	reply := append(jute.AppendRecord(nil, &jute.ReplyHeader{Xid: 1, Zxid: 42}), make([]byte, 68)...)
	b.ReportAllocs()
	for b.Loop() {
		h, _ := jute.PeekRequestHeader(req[4:])
		pr := pendingRequest{xid: h.Xid, op: h.Op}
		if _, err := parseRequest(req[4:], &pr); err != nil {
			b.Fatal(err)
		}
		s.mu.Lock()
		s.enqueueLocked(req, pr, nil)
		s.mu.Unlock()
		if _, _, err := s.onReply(reply, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}
