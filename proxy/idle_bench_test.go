package proxy

import (
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/jute"
)

// settledMemStats reads the runtime's memory statistics after two
// collections (the second frees what the first only unlinked).
func settledMemStats() runtime.MemStats {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms
}

// heapAndStacks is the Go heap and goroutine stacks in use, settled.
func heapAndStacks() (heap, stack uint64) {
	ms := settledMemStats()
	return ms.HeapInuse, ms.StackInuse
}

func writeHeapProfile(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkIdleSessionMemory reports the proxy's Go memory (heap in use
// plus goroutine stacks) per idle established session. It runs the client
// side in the same process, so only the proxy's share is counted: client
// connections are plain sockets with nothing buffered.
func BenchmarkIdleSessionMemory(b *testing.B) {
	zktest.RequireIntegration(b)
	const sessions = 1000
	if os.Getenv("ZKPROXY_IDLE_HEAP_PROFILE") != "" {
		runtime.MemProfileRate = 1 // every allocation, so the profile adds up per session
	}
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
	for b.Loop() {
		heap0, stack0 := heapAndStacks()
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
		// Idle pumps park after ParkIdleAfter: measure the steady state.
		deadline := time.Now().Add(10 * time.Second)
		for testutil.ToFloat64(srv.m.parkedPumps) < 2*sessions && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		heap1, stack1 := heapAndStacks()
		if path := os.Getenv("ZKPROXY_IDLE_HEAP_PROFILE"); path != "" {
			writeHeapProfile(b, path)
		}
		// Signed: a run after another may start with more garbage.
		b.ReportMetric(float64(int64(heap1+stack1)-int64(heap0+stack0))/sessions, "bytes/session")
		b.ReportMetric(float64(int64(stack1)-int64(stack0))/sessions, "stack-bytes/session")
		for _, c := range conns {
			c.Close()
		}
	}
}
