//go:build linux

package proxy

import (
	"errors"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestParkerWaitSeesEventsFromBetweenWaits: an event that arrives between
// two waits of the parker's loop (while it relays pings inline) is
// returned by the next wait, not left until the sweep deadline.
// RawConn.Read clears the epoll descriptor's readiness before it calls its
// callback, and the runtime's poller reports the descriptor edge-triggered,
// so a wait that trusted an earlier empty look and went straight to the
// poller missed it (once the runtime's poller had seen it, which the pause
// below lets happen).
func TestParkerWaitSeesEventsFromBetweenWaits(t *testing.T) {
	p, err := newParker(prometheus.NewGauge(prometheus.GaugeOpts{Name: "test_parked"}))
	if err != nil {
		t.Fatal(err)
	}
	defer p.ep.Close()
	var pairs [2][2]int
	for i := range pairs {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		pairs[i] = fds
		defer syscall.Close(fds[0])
		defer syscall.Close(fds[1])
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | epollEdge, Fd: int32(i + 1)}
		if errno := epollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fds[0], &ev); errno != 0 {
			t.Fatal(errno)
		}
	}
	w := epollWaiter{events: make([]syscall.EpollEvent, 8)}
	w.fn = w.poll
	wait := func(what string, want int32) {
		t.Helper()
		p.ep.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := w.wait(p.epRaw)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("%s: the wait ran into its deadline; the event was missed", what)
		}
		if err != nil || n != 1 || w.events[0].Fd != want {
			t.Fatalf("%s: %d events (first %+v), %v; want one for %d", what, n, w.events[0], err, want)
		}
	}
	for round := range 3 {
		syscall.Write(pairs[0][1], []byte{1})
		wait("first socket", 1)
		// The second event arrives after that look; the loop is busy
		// meanwhile and the runtime's poller, idle, consumes its edge.
		syscall.Write(pairs[1][1], []byte{1})
		time.Sleep(50 * time.Millisecond)
		wait("second socket, round "+strconv.Itoa(round+1), 2)
	}
}
