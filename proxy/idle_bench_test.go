package proxy

import (
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/internal/zktest"
	"github.com/zkproxy/zkproxy/jute"
)

// BenchmarkIdleSessionMemory reports the proxy's Go memory (heap in use
// plus goroutine stacks) per idle established session. It runs the client
// side in the same process, so only the proxy's share is counted: client
// connections are plain sockets with nothing buffered.
func BenchmarkIdleSessionMemory(b *testing.B) {
	zktest.RequireIntegration(b)
	const sessions = 1000
	server := zktest.Standalone(b, zktest.WithConfig("maxClientCnxns=0"), zktest.WithHeapMB(256))
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
	measure := func() (heap, stack uint64) {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse, ms.StackInuse
	}
	for b.Loop() {
		heap0, stack0 := measure()
		var conns []net.Conn
		for range sessions {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
			req := jute.ConnectRequest{TimeOut: 30000, Passwd: make([]byte, 16)}
			c.Write(jute.AppendFrame(nil, jute.Marshal(&req)))
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, err := jute.NewFrameReader(c, 0).Next(); err != nil {
				b.Fatal(err)
			}
		}
		heap1, stack1 := measure()
		b.ReportMetric(float64(heap1+stack1-heap0-stack0)/sessions, "bytes/session")
		b.ReportMetric(float64(stack1-stack0)/sessions, "stack-bytes/session")
		for _, c := range conns {
			c.Close()
		}
	}
}
