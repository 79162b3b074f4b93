//go:build linux

// Command eprelay is a Go TCP relay built as an event loop: one epoll loop
// per CPU, each on its own locked OS thread, serving both directions of
// its connections with raw non-blocking reads and writes, with no goroutine
// per connection. relaybench runs it (target "eprelay") to measure what the
// event-loop design HAProxy uses gives a Go relay on this machine, against
// gorelay's two goroutines per connection.
//
// It is a measuring instrument, not a proxy: no timeouts, no limits; a
// connection pair ends at its first error.
package main

import (
	"flag"
	"log"
	"net"
	"runtime"
	"sync"
	"syscall"
	"unsafe"
)

type pair struct {
	fd   [2]int // client, upstream
	dead bool
}

type loop struct {
	epfd  int
	mu    sync.Mutex
	conns map[int]*pair // by fd
}

func main() {
	listen := flag.String("listen", "", "address to listen on")
	backend := flag.String("backend", "", "address to relay to")
	// One loop measured best on this 2-core machine (0.98× HAProxy against
	// 0.96× with two: the second loop competes with ZooKeeper and the client).
	loops := flag.Int("loops", 1, "event loops, each on its own OS thread")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	ls := make([]*loop, *loops)
	for i := range ls {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			log.Fatal(err)
		}
		ls[i] = &loop{epfd: fd, conns: map[int]*pair{}}
		go ls[i].run()
	}
	for n := 0; ; n++ {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go attach(ls[n%len(ls)], c, *backend)
	}
}

// detach takes a connection's descriptor from the Go runtime: a dup keeps
// the socket (and its O_NONBLOCK) once the net.Conn is closed.
func detach(c net.Conn) (int, error) {
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	rc.Control(func(f uintptr) { fd, derr = syscall.Dup(int(f)) })
	c.Close()
	return fd, derr
}

func attach(l *loop, c net.Conn, backend string) {
	up, err := net.Dial("tcp", backend)
	if err != nil {
		log.Print(err)
		c.Close()
		return
	}
	cfd, err := detach(c)
	if err != nil {
		log.Print(err)
		return
	}
	ufd, err := detach(up)
	if err != nil {
		log.Print(err)
		return
	}
	p := &pair{fd: [2]int{cfd, ufd}}
	l.mu.Lock()
	l.conns[cfd], l.conns[ufd] = p, p
	l.mu.Unlock()
	for _, fd := range p.fd {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
		if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			log.Print(err)
		}
	}
}

func (l *loop) run() {
	runtime.LockOSThread()
	events := make([]syscall.EpollEvent, 256)
	buf := make([]byte, 16<<10)
	for {
		n, err := pollNow(l.epfd, events)
		if err == nil && n == 0 {
			n, err = syscall.EpollWait(l.epfd, events, -1)
		}
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			log.Fatal(err)
		}
		for i := 0; i < n; i++ {
			fd := int(events[i].Fd)
			l.mu.Lock()
			p := l.conns[fd]
			l.mu.Unlock()
			if p == nil || p.dead {
				continue
			}
			peer := p.fd[0]
			if peer == fd {
				peer = p.fd[1]
			}
			if !relayOnce(fd, peer, buf) {
				l.end(p)
			}
		}
	}
}

// relayOnce reads what fd has and writes it to peer; false when the pair
// must end.
func relayOnce(fd, peer int, buf []byte) bool {
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		switch {
		case e == syscall.EAGAIN:
			return true
		case e == syscall.EINTR:
			continue
		case e != 0 || r == 0:
			return false
		}
		if !writeAll(peer, buf[:r]) {
			return false
		}
		if int(r) < len(buf) {
			return true
		}
	}
}

// writeAll writes p, waiting with poll(2) on a full buffer (rare with
// request-sized frames; a real relay would queue and watch EPOLLOUT).
func writeAll(fd int, p []byte) bool {
	for len(p) > 0 {
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch {
		case e == syscall.EAGAIN:
			pfd := [1]struct {
				fd             int32
				events, revent int16
			}{{fd: int32(fd), events: 0x4}}
			syscall.Syscall(syscall.SYS_POLL, uintptr(unsafe.Pointer(&pfd[0])), 1, 1000)
			continue
		case e == syscall.EINTR:
			continue
		case e != 0:
			return false
		}
		p = p[r:]
	}
	return true
}

func (l *loop) end(p *pair) {
	p.dead = true
	l.mu.Lock()
	for _, fd := range p.fd {
		delete(l.conns, fd)
		syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, fd, nil)
		syscall.Close(fd)
	}
	l.mu.Unlock()
}

// pollNow is epoll_wait with a zero timeout, without entering the
// scheduler's system-call state (it cannot block).
func pollNow(epfd int, events []syscall.EpollEvent) (int, error) {
	r, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
