//go:build linux

package proxy

import (
	"syscall"
	"unsafe"
)

// The pumps' reads and writes on their non-blocking sockets are raw
// system calls: they never block (EAGAIN instead), so there is nothing for
// the scheduler to hand off. Through syscall.Read and Write each one
// entered and left the scheduler's syscall state, and a loopback write that
// spends tens of microseconds delivering to the peer made sysmon take the
// P away and wake another thread: strace showed ~1.4 futex calls and 2
// nanosleeps per request beside the 2 writes and 4 reads, none of which
// HAProxy makes.

func rawRead(fd uintptr, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), e
}

func rawWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), e
}

func rawWritev(fd uintptr, iov []syscall.Iovec) (int, syscall.Errno) {
	if len(iov) == 0 {
		return 0, 0
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	return int(n), e
}

// The parker's epoll calls never block either (it waits in the runtime's
// poller, parker_linux.go), and they are raw for a reason of their own:
// entering the syscall state also wakes sysmon from its deep sleep
// (runtime/proc.go: entersyscall → entersyscallWakeSysmon), which then
// polls every 20 µs for a while. With one epoll_wait and one epoll_ctl per
// idle session's ping that was about a quarter of an idle proxy's CPU.

// epollWaitNow returns the events ready in epfd, without waiting.
func epollWaitNow(epfd uintptr, events []syscall.EpollEvent) (int, syscall.Errno) {
	if len(events) == 0 {
		return 0, 0
	}
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, epfd, uintptr(unsafe.Pointer(&events[0])),
		uintptr(len(events)), 0, 0, 0)
	return int(n), e
}

// epollCtl is syscall.EpollCtl as a raw system call.
func epollCtl(epfd, op, fd int, ev *syscall.EpollEvent) syscall.Errno {
	_, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd),
		uintptr(unsafe.Pointer(ev)), 0, 0)
	return e
}
