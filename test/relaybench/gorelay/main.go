//go:build linux

// Command gorelay is the least a Go TCP relay can do: two goroutines per
// connection, each reading its socket inside RawConn.Read and writing what
// it read with a raw write(2), with none of zkproxy's framing, state,
// deadlines or metrics. relaybench runs it (target "gorelay") to measure
// the floor a Go relay reaches on this machine, against HAProxy's C event
// loop, so that zkproxy's own cost and the runtime's can be told apart.
//
// It is a measuring instrument, not a proxy: no timeouts, no limits, and it
// stops at the first error of a connection.
package main

import (
	"flag"
	"log"
	"net"
	"syscall"
	"unsafe"
)

func main() {
	listen := flag.String("listen", "", "address to listen on")
	backend := flag.String("backend", "", "address to relay to")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go relay(c.(*net.TCPConn), *backend)
	}
}

func relay(client *net.TCPConn, backend string) {
	up, err := net.Dial("tcp", backend)
	if err != nil {
		log.Print(err)
		client.Close()
		return
	}
	go pipe(client, up.(*net.TCPConn))
	pipe(up.(*net.TCPConn), client)
}

// pipe copies src to dst until either fails, then closes both. A read
// that leaves room in the buffer ends the wake-up (zkproxy does the same
// with parking on), so both relays make the same system calls.
func pipe(src, dst *net.TCPConn) {
	defer src.Close()
	defer dst.Close()
	sr, err := src.SyscallConn()
	if err != nil {
		return
	}
	dr, err := dst.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, 16<<10)
	var failed bool
	write := func(p []byte) bool {
		for len(p) > 0 {
			var n int
			var errno syscall.Errno
			werr := dr.Write(func(fd uintptr) bool {
				r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
				n, errno = int(r), e
				return e != syscall.EAGAIN
			})
			if werr != nil || errno != 0 {
				return false
			}
			p = p[n:]
		}
		return true
	}
	read := func(fd uintptr) bool {
		for {
			r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
			switch {
			case e == syscall.EAGAIN:
				return false
			case e == syscall.EINTR:
				continue
			case e != 0 || r == 0:
				failed = true
				return true
			}
			if !write(buf[:r]) {
				failed = true
				return true
			}
			if int(r) < len(buf) {
				return false
			}
		}
	}
	for !failed {
		if err := sr.Read(read); err != nil {
			return
		}
	}
}
