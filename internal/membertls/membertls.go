// Package membertls decides which ensemble members zkproxy reaches over TLS
// and opens those connections.
//
// ZooKeeper serves TLS on its own port (secureClientPort, with
// serverCnxnFactory=NettyServerCnxnFactory), beside or instead of the plain
// clientPort, and by default requires a client certificate
// (ssl.clientAuth=need, X509Util). Session traffic and four-letter words both
// go over that port: NettyServerCnxn answers four-letter words on a secure
// connection as on a plain one. So the proxy's sessions, its readiness probe
// and the cutover sync checks all dial a TLS member the same way, and a
// source and a destination ensemble may differ: a cutover can move clients
// from a plain ensemble to a TLS-only one without the clients knowing.
package membertls

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
)

// Policy maps member addresses (host:port, as configured) to the TLS
// configuration used to reach them. Members it does not list are reached
// in plain TCP. The zero Policy is ready to use; it is not safe to modify
// concurrently with use.
type Policy struct {
	byMember map[string]*tls.Config
}

// Add reaches members with cfg. cfg's ServerName, when empty, becomes each
// member's host, so the member's certificate must name it (an IP address
// SAN for a member given by IP), as the Java client checks by default
// (zookeeper.ssl.hostnameVerification).
func (p *Policy) Add(members []string, cfg *tls.Config) {
	if cfg == nil {
		return
	}
	if p.byMember == nil {
		p.byMember = map[string]*tls.Config{}
	}
	// One session cache for the ensemble: a cutover opens a connection per
	// session to the same few members, and resumption spares each one a
	// full handshake.
	cache := tls.NewLRUClientSessionCache(len(members) * 64)
	for _, m := range members {
		c := cfg.Clone()
		if c.ClientSessionCache == nil {
			c.ClientSessionCache = cache
		}
		if c.ServerName == "" {
			host, _, err := net.SplitHostPort(m)
			if err != nil {
				host = m
			}
			c.ServerName = host
		}
		p.byMember[m] = c
	}
}

// For returns the TLS configuration for member, nil for plain TCP. A nil
// Policy reaches every member in plain TCP.
func (p *Policy) For(member string) *tls.Config {
	if p == nil {
		return nil
	}
	return p.byMember[member]
}

// Enabled reports whether any member is reached over TLS.
func (p *Policy) Enabled() bool { return p != nil && len(p.byMember) > 0 }

// Client runs the TLS handshake on conn, a fresh TCP connection to member,
// when the policy says so, and returns the connection to use: conn itself
// for a plain member. On a failed handshake conn is closed and the error
// names the member and says it was the handshake (a certificate problem
// reads very differently from a refused connection in an operator's log).
func (p *Policy) Client(ctx context.Context, conn net.Conn, member string) (net.Conn, error) {
	cfg := p.For(member)
	if cfg == nil {
		return conn, nil
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, &HandshakeError{Member: member, Err: err}
	}
	return &memberConn{Conn: tc, tcp: conn}, nil
}

// memberConn is a TLS connection to a member that closes without
// close_notify: tls.Conn.Close first writes the alert, waiting up to 5 s
// when the member is not reading (a frozen member is just when the proxy
// closes), and ZooKeeper does not need it.
type memberConn struct {
	*tls.Conn
	tcp net.Conn
}

func (c *memberConn) Close() error { return c.tcp.Close() }

// IsTLS reports whether conn is a TLS connection Client made.
func IsTLS(conn net.Conn) bool {
	_, ok := conn.(*memberConn)
	return ok
}

// Refused reports whether err, from reading or writing a TLS connection
// to member, is the member's TLS alert, and returns it as a HandshakeError.
// Under TLS 1.3 the client's handshake completes before the server has
// checked the client certificate, so a member refusing the proxy's
// certificate (or wanting one it did not get: ZooKeeper's default
// ssl.clientAuth=need) shows only at the first read, as a "remote error".
func Refused(conn net.Conn, member string, err error) (*HandshakeError, bool) {
	var oe *net.OpError
	if !IsTLS(conn) || !errors.As(err, &oe) || oe.Op != "remote error" {
		return nil, false
	}
	return &HandshakeError{Member: member, Err: err}, true
}

// DialContext dials addr in TCP, then over TLS if the policy lists it; it
// fits fourlw.DialFunc (fourlw.Members.Dial, what the cutover controller and the status probe ask members through).
func (p *Policy) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return p.Client(ctx, conn, addr)
}

// HandshakeError is a failed TLS handshake with a member.
type HandshakeError struct {
	Member string
	Err    error
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("TLS handshake with member %s: %v", e.Member, e.Err)
}

func (e *HandshakeError) Unwrap() error { return e.Err }
