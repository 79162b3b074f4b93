package proxy

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// BenchmarkNetConnFloorMemory is the floor under BenchmarkIdleSessionMemory
// and under the relay benchmark's RSS per idle session: what the two
// connections zkproxy holds per session (the one accepted from the client,
// the one dialed to a member) cost a Go process as bare net.Conns, held by no
// goroutine, with nothing of the proxy's own. It runs in a child process
// (netConnFloorChild), because the runtime poller's descriptors live off the
// Go heap and are never given back (freed ones wait in a cache for the next
// connection): only a fresh process shows what they cost. The peers are raw
// sockets, which cost the Go runtime nothing. The child runs at GOGC=50,
// the proxy's default (cmd/zkproxy/gc.go), and reports per session:
// heap-bytes (Go heap in use), offheap-bytes (runtime memory outside the
// heap: the poller's descriptors, finalizer records, GC metadata) and
// rss-bytes (resident memory after a collection, which also holds the heap
// the collector keeps free for reuse).
//
// The sub-benchmark "own-poller" holds them as zkproxy holds an idle
// session's: pollConns, out of the runtime's poller (their pumps are
// parked in the parker's epoll instance, which costs the process nothing
// per socket); "runtime-poller" as *net.TCPConns (Config.RuntimePoller).
func BenchmarkNetConnFloorMemory(b *testing.B) {
	b.Run("runtime-poller", func(b *testing.B) { netConnFloor(b, "") })
	b.Run("own-poller", func(b *testing.B) { netConnFloor(b, ":own") })
}

func netConnFloor(b *testing.B, form string) {
	for b.Loop() {
		cmd := exec.Command(os.Args[0], "-test.run=^TestNetConnFloorChild$", "-test.v")
		cmd.Env = append(os.Environ(), netConnFloorEnv+"="+strconv.Itoa(netConnFloorSessions)+form)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("floor child: %v\n%s", err, out)
		}
		var heap, offHeap, rss float64
		i := bytes.Index(out, []byte("floor:"))
		if i < 0 {
			b.Fatalf("floor child printed no result:\n%s", out)
		}
		if _, err := fmt.Sscanf(string(out[i:]), "floor: heap %g offheap %g rss %g", &heap, &offHeap, &rss); err != nil {
			b.Fatalf("floor child: %v\n%s", err, out)
		}
		b.ReportMetric(heap, "heap-bytes/session")
		b.ReportMetric(offHeap, "offheap-bytes/session")
		b.ReportMetric(rss, "rss-bytes/session")
	}
}

const (
	netConnFloorEnv = "ZKPROXY_NETCONN_FLOOR_CHILD"
	// Four descriptors per session in the child (both ends of both
	// connections) within this machine's limit of 20,000.
	netConnFloorSessions = 4000
)

// TestNetConnFloorChild is BenchmarkNetConnFloorMemory's child process; it
// does nothing unless started by it.
func TestNetConnFloorChild(t *testing.T) {
	arg, form, _ := strings.Cut(os.Getenv(netConnFloorEnv), ":")
	n, err := strconv.Atoi(arg)
	if err != nil {
		t.Skip("run by BenchmarkNetConnFloorMemory")
	}
	debug.SetGCPercent(50)
	hold := func(c net.Conn) net.Conn {
		if form != "own" {
			return c
		}
		moved, err := moveTCP(c.(*net.TCPConn))
		if err != nil {
			t.Fatal(err)
		}
		return moved
	}
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	member, memberAddr := rawListener(t)
	defer syscall.Close(member)
	frontPort := front.Addr().(*net.TCPAddr).Port

	heap0, off0, rss0 := goMemory(t)
	conns := make([]net.Conn, 0, 2*n)
	raw := make([]int, 0, 2*n)
	for range n {
		c := rawConnect(t, frontPort) // the client's end
		a, err := front.Accept()
		if err != nil {
			t.Fatal(err)
		}
		m, err := net.Dial("tcp", memberAddr)
		if err != nil {
			t.Fatal(err)
		}
		peer, _, err := syscall.Accept(member) // the member's end
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, hold(a), hold(m))
		raw = append(raw, c, peer)
	}
	heap1, off1, rss1 := goMemory(t)
	per := func(a, b uint64) float64 { return (float64(b) - float64(a)) / float64(n) }
	fmt.Printf("floor: heap %.0f offheap %.0f rss %.0f\n", per(heap0, heap1), per(off0, off1), per(rss0, rss1))
	for _, c := range conns {
		c.Close()
	}
	for _, fd := range raw {
		syscall.Close(fd)
	}
}

// goMemory is the Go heap in use, the runtime's memory outside the heap
// (all it holds from the OS but the heap and stacks) and the resident set,
// settled (settledMemStats).
func goMemory(t *testing.T) (heap, offHeap, rss uint64) {
	ms := settledMemStats()
	statm, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Fatal(err)
	}
	var size, pages uint64
	if _, err := fmt.Sscan(string(statm), &size, &pages); err != nil {
		t.Fatal(err)
	}
	return ms.HeapInuse, ms.Sys - ms.HeapSys - ms.StackSys, pages * uint64(os.Getpagesize())
}

// rawListener is a listening socket outside the Go runtime, and its address.
func rawListener(t *testing.T) (int, string) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 128); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fd, net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}

// rawConnect is a socket outside the Go runtime connected to port on
// 127.0.0.1 (the kernel completes it from the listener's backlog).
func rawConnect(t *testing.T, port int) int {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Connect(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}); err != nil {
		t.Fatal(err)
	}
	return fd
}
