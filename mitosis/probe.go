package mitosis

import (
	"context"
	"net"
	"time"
)

// LocalProber probes from addresses on this machine: it binds the
// connection's source address to fromHost, so the firewall sees the
// connection exactly as one from that member would be seen. A member whose
// address is not on this machine is not probed.
type LocalProber struct {
	// Timeout bounds each connection attempt; zero means 2s. A firewall
	// that drops instead of rejecting shows as a timeout: not reached.
	Timeout time.Duration
}

// Reaches reports whether a TCP connection from fromHost to toAddr is
// accepted.
func (l LocalProber) Reaches(ctx context.Context, fromHost, toAddr string) (reached, probed bool) {
	ip := net.ParseIP(fromHost)
	if ip == nil || !isLocal(ip) {
		return false, false
	}
	timeout := l.Timeout
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", toAddr)
	if err != nil {
		return false, true
	}
	conn.Close()
	return true, true
}

// isLocal: ip is one of this machine's addresses. On Linux every address of
// 127.0.0.0/8 is local (the loopback route covers the whole block).
func isLocal(ip net.IP) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if n.IP.Equal(ip) || (n.IP.IsLoopback() && n.Contains(ip)) {
			return true
		}
	}
	return false
}
