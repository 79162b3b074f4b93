package proxy

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/jute"
)

// BenchmarkPumpGetData measures the proxy's whole per-request path (client
// read, tracking, upstream write, upstream read, client write) for a 100 B
// getData from 16 raw sessions, each with one request in flight, against a
// real ZooKeeper server. The clients run in this process and allocate
// nothing per op, so allocs/op is the proxy's; ns/op includes the server
// and the client, so compare runs on the same machine only (relaybench
// compares with HAProxy).
func BenchmarkPumpGetData(b *testing.B) {
	zktest.RequireIntegration(b)
	server := zktest.Standalone(b, zktest.WithHeapMB(256))
	srv, err := New(Config{Source: []string{server.ClientAddr()}}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(zktest.LoopbackIP(b), "2181"))
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()

	const sessions = 16
	conns := make([]net.Conn, sessions)
	for i := range conns {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		req := jute.ConnectRequest{TimeOut: 30000, Passwd: make([]byte, 16)}
		c.Write(jute.AppendFrame(nil, jute.Marshal(&req)))
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := jute.NewFrameReader(c, 0).Next(); err != nil {
			b.Fatal(err)
		}
		conns[i] = c
	}
	create := appendRequestFrame(nil, jute.RequestHeader{Xid: 1, Op: jute.OpCreate},
		&jute.CreateRequest{Path: "/pump", Data: make([]byte, 100), ACL: []jute.ACL{{Perms: 31, ID: jute.Id{Scheme: "world", ID: "anyone"}}}})
	conns[0].Write(create)
	if _, err := jute.NewFrameReader(conns[0], 0).Next(); err != nil {
		b.Fatal(err)
	}
	get := appendRequestFrame(nil, jute.RequestHeader{Xid: 2, Op: jute.OpGetData}, &pathRequest{Path: "/pump"})

	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N / sessions
	for i, c := range conns {
		n := per
		if i == 0 {
			n += b.N % sessions
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := jute.NewFrameReader(c, 0)
			for range n {
				if _, err := c.Write(get); err != nil {
					b.Error(err)
					return
				}
				if _, err := r.Next(); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
