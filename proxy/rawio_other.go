//go:build !linux

package proxy

import (
	"syscall"
	"unsafe"
)

// Elsewhere the pumps use the ordinary system call wrappers (see
// rawio_linux.go) and write frames one at a time.

func errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	if e, ok := err.(syscall.Errno); ok {
		return e
	}
	return syscall.EIO
}

func rawRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), p)
	return n, errno(err)
}

func rawWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), p)
	return n, errno(err)
}

// rawWritev writes the first buffer only: a short write, which the caller
// continues.
func rawWritev(fd uintptr, iov []syscall.Iovec) (int, syscall.Errno) {
	if len(iov) == 0 {
		return 0, 0
	}
	return rawWrite(fd, unsafe.Slice(iov[0].Base, int(iov[0].Len)))
}
