package proxy

import (
	"net"
	"os"
	"sync"
	"syscall"
)

// maxIovecs bounds one writev (Linux's IOV_MAX is 1024).
const maxIovecs = 1024

// writeFrames writes frames to conn, all of them or an error, with raw
// non-blocking write/writev calls inside RawConn.Write (see rawio_linux.go):
// the runtime poller waits only when the socket's buffer is full, and the
// connection's write deadline applies as for conn.Write. Connections
// without a RawConn (TLS, tests' wrappers) are written the ordinary way.
func writeFrames(conn net.Conn, raw syscall.RawConn, frames [][]byte) (int, error) {
	if raw == nil {
		if len(frames) == 1 {
			return conn.Write(frames[0])
		}
		bufs := net.Buffers(frames)
		n, err := bufs.WriteTo(conn)
		return int(n), err
	}
	op := writeOps.Get().(*writeOp)
	op.bufs = frames
	return op.run(raw)
}

// writeFrame writes one frame (see writeFrames).
func writeFrame(conn net.Conn, raw syscall.RawConn, frame []byte) (int, error) {
	if raw == nil {
		return conn.Write(frame)
	}
	op := writeOps.Get().(*writeOp)
	op.one[0] = frame
	op.bufs = op.one[:]
	return op.run(raw)
}

// run writes op.bufs through raw, then returns op to the pool.
func (op *writeOp) run(raw syscall.RawConn) (int, error) {
	err := raw.Write(op.fn)
	n, werr := op.n, op.err
	clear(op.iov) // the iovecs point into the frames: do not keep them alive
	*op = writeOp{fn: op.fn, iov: op.iov[:0]}
	writeOps.Put(op)
	if werr != nil {
		return n, os.NewSyscallError("write", werr)
	}
	return n, err
}

// writeOp is one write's state through RawConn.Write, pooled so that
// writing allocates nothing (a closure per write would). fn is write bound
// once.
type writeOp struct {
	bufs [][]byte // what is left, from off in bufs[0]
	off  int
	one  [1][]byte
	iov  []syscall.Iovec
	n    int
	err  error
	fn   func(fd uintptr) bool
}

var writeOps = sync.Pool{New: func() any {
	op := &writeOp{}
	op.fn = op.write
	return op
}}

// write is the RawConn.Write callback: true when everything is written or
// a write failed, false to wait until the socket is writable.
func (op *writeOp) write(fd uintptr) bool {
	for {
		for len(op.bufs) > 0 && op.off == len(op.bufs[0]) {
			op.bufs, op.off = op.bufs[1:], 0
		}
		if len(op.bufs) == 0 {
			return true
		}
		var n int
		var errno syscall.Errno
		if len(op.bufs) == 1 {
			n, errno = rawWrite(fd, op.bufs[0][op.off:])
		} else {
			op.iov = op.iov[:0]
			for i, b := range op.bufs {
				if i == 0 {
					b = b[op.off:]
				}
				if len(b) == 0 {
					continue
				}
				v := syscall.Iovec{Base: &b[0]}
				v.SetLen(len(b))
				op.iov = append(op.iov, v)
				if len(op.iov) == maxIovecs {
					break
				}
			}
			n, errno = rawWritev(fd, op.iov)
		}
		switch errno {
		case 0:
			if n == 0 {
				op.err = syscall.EIO // a socket write of >0 bytes never returns 0
				return true
			}
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			op.err = errno
			return true
		}
		op.n += n
		for n > 0 {
			rest := len(op.bufs[0]) - op.off
			if n < rest {
				op.off += n
				break
			}
			n -= rest
			op.bufs, op.off = op.bufs[1:], 0
		}
	}
}

// rawConnOf returns conn's RawConn, or nil if it has none.
func rawConnOf(conn net.Conn) syscall.RawConn {
	if sc, ok := conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			return raw
		}
	}
	return nil
}
