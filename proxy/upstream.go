package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkproxy/zkproxy/internal/fourlw"
	"github.com/zkproxy/zkproxy/internal/membertls"
	"github.com/zkproxy/zkproxy/jute"
)

var errTooManyFiles = syscall.EMFILE

// Errors of an attempt to open a session connection on a member.
var (
	// errMemberRefused: the member closed the connection without a
	// ConnectResponse.
	errMemberRefused = errors.New("member closed the connection without a ConnectResponse")
	// errSessionExpired: the member answered timeOut 0 — the session is
	// unknown, expired or the password is wrong (docs/protocol.md §2.5).
	errSessionExpired = errors.New("session expired")
)

// refusalCauses is logged whenever a member closes a new connection right
// after the ConnectRequest, which ZooKeeper does without a word for each of
// these (ZooKeeperServer.processConnectRequest, NIOServerCnxnFactory).
const refusalCauses = "its zxid is behind the session's lastZxidSeen, it is not serving (no quorum, read-only, starting), " +
	"or the proxy's source address reached its maxClientCnxns (raise maxClientCnxns or set local-addrs)"

// upstream is one connection to a member carrying a session.
type upstream struct {
	member  string
	conn    net.Conn
	r       *frameReader
	timeout time.Duration // negotiated by this member
	rw      readWatch     // the pump's idle and silence deadlines
	// The pump's own: its session, and the member frames read but not yet
	// written to the client (see readUpstream).
	sess    *Session
	pending [][]byte
	writeDL lazyDeadline // under the session's sendMu
	// lastSend is the UnixNano of the last frame written, for keep-alive
	// pacing; lastRecv of the last frame read, for the expiry budget.
	lastSend atomic.Int64
	lastRecv atomic.Int64
	done     chan struct{} // closed when readUpstream has returned
	pinger   atomic.Pointer[time.Timer]
	// sessions is this member's zkproxy_sessions_by_member child, resolved
	// once per connection.
	sessions prometheus.Gauge
}

// dial opens a TCP connection to member from the next LocalAddrs entry.
func (s *Server) dial(ctx context.Context, member string) (net.Conn, error) {
	local := ""
	if n := len(s.cfg.LocalAddrs); n > 0 {
		local = s.cfg.LocalAddrs[int(s.dialSeq.Add(1)%uint64(n))]
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	var conn net.Conn
	var err error
	if s.cfg.Dial != nil {
		conn, err = s.cfg.Dial(ctx, local, member)
	} else {
		d := net.Dialer{}
		if local != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
		}
		conn, err = d.DialContext(ctx, "tcp", member)
	}
	if err != nil {
		return nil, err
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	conn = s.ownConn(conn)
	// The handshake shares the dial's timeout: a member that accepts but
	// never completes it counts as unreachable like one that never
	// accepts.
	return s.cfg.MemberTLS.Client(ctx, conn, member)
}

// connectMember opens a session connection on member: it sends
// connectFrame (a complete ConnectRequest frame) and reads the
// ConnectResponse. On success the caller owns the returned upstream. A
// response with timeOut 0 returns errSessionExpired along with the raw
// response frame, which the caller may relay.
func (s *Server) connectMember(ctx context.Context, member string, connectFrame []byte, deadline time.Time, st *statShard) (*upstream, *jute.ConnectResponse, []byte, error) {
	conn, err := s.dial(ctx, member)
	if err != nil {
		reason := "dial"
		if errors.As(err, new(*membertls.HandshakeError)) {
			reason = "tls_handshake"
		}
		s.m.upstreamConnectFails.WithLabelValues(reason).Inc()
		s.members.markFailed(member)
		return nil, nil, nil, fmt.Errorf("dialing member %s: %w", member, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	conn.SetDeadline(deadline)
	if _, err := conn.Write(connectFrame); err != nil {
		conn.Close()
		s.m.upstreamConnectFails.WithLabelValues("write").Inc()
		s.members.markFailed(member)
		return nil, nil, nil, fmt.Errorf("sending ConnectRequest to %s: %w", member, err)
	}
	st.upstreamBytesOut.Add(uint64(len(connectFrame)))
	r := newFrameReader(conn, s.cfg.MaxReplyFrameSize, &st.upstreamBytesIn)
	f, err := r.Next()
	if err != nil {
		conn.Close()
		s.members.markFailed(member)
		var ne net.Error
		if he, ok := membertls.Refused(conn, member, err); ok {
			s.m.upstreamConnectFails.WithLabelValues("tls_handshake").Inc()
			return nil, nil, nil, fmt.Errorf("waiting for ConnectResponse from %s: %w", member, he)
		}
		if errors.As(err, &ne) && ne.Timeout() || ctx.Err() != nil {
			s.m.upstreamConnectFails.WithLabelValues("timeout").Inc()
			return nil, nil, nil, fmt.Errorf("waiting for ConnectResponse from %s: %w", member, err)
		}
		s.m.upstreamConnectFails.WithLabelValues("closed_after_connect").Inc()
		return nil, nil, nil, fmt.Errorf("%w (%s): %v", errMemberRefused, member, err)
	}
	var resp jute.ConnectResponse
	if err := jute.Unmarshal(f.Payload(), &resp); err != nil {
		conn.Close()
		s.m.decodeErrors.WithLabelValues("connect_response").Inc()
		s.m.upstreamConnectFails.WithLabelValues("bad_response").Inc()
		s.members.markFailed(member)
		return nil, nil, nil, fmt.Errorf("decoding ConnectResponse from %s: %w", member, err)
	}
	raw := append([]byte(nil), f.Raw()...)
	if resp.TimeOut <= 0 {
		conn.Close()
		s.m.upstreamConnectFails.WithLabelValues("session_expired").Inc()
		return nil, &resp, raw, errSessionExpired
	}
	conn.SetDeadline(time.Time{})
	s.members.markOK(member)
	up := &upstream{
		sessions: s.m.sessionsByMember.WithLabelValues(member),
		member:   member,
		conn:     conn,
		r:        r,
		timeout:  time.Duration(resp.TimeOut) * time.Millisecond,
		done:     make(chan struct{}),
	}
	up.rw = newReadWatch(r, up.readTimeout(), s.cfg.ParkIdleAfter)
	up.lastSend.Store(time.Now().UnixNano())
	up.lastRecv.Store(time.Now().UnixNano())
	return up, &resp, raw, nil
}

// Ready reports whether a member of the target ensemble is serving. It asks
// `srvr` (whitelisted by default, docs/protocol.md §7.1) rather than opening a
// session: a ConnectRequest with a real session id would close that
// session's live connection, and one with id 0 costs a quorum write.
// `ruok` is no use either, the server answers imok even when not serving.
func (s *Server) Ready(ctx context.Context) error {
	members := s.members.order(s.Target())
	var problems []string
	for _, m := range members {
		out, err := s.fourLetter(ctx, m, "srvr")
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", m, err))
			continue
		}
		mode := ""
		for _, line := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(line, "Mode: "); ok {
				mode = strings.TrimSpace(v)
			}
		}
		switch mode {
		case "leader", "follower", "observer", "standalone":
			return nil
		case "":
			problems = append(problems, fmt.Sprintf("%s: not serving (%q)", m, firstLine(out)))
		default:
			problems = append(problems, fmt.Sprintf("%s: mode %s", m, mode))
		}
	}
	if len(problems) == 0 {
		return errors.New("proxy: no target members configured")
	}
	return fmt.Errorf("proxy: no target member is serving: %s", strings.Join(problems, "; "))
}

func firstLine(b []byte) string {
	line, _, _ := strings.Cut(string(b), "\n")
	if len(line) > 120 {
		line = line[:120]
	}
	return line
}

// fourLetter sends cmd to member, reached as sessions reach it (local
// addresses, TLS), and returns its answer as sent, refusals included.
func (s *Server) fourLetter(ctx context.Context, member, cmd string) ([]byte, error) {
	var conn net.Conn
	dial := func(ctx context.Context, _, addr string) (net.Conn, error) {
		c, err := s.dial(ctx, addr)
		conn = c
		return c, err
	}
	out, err := fourlw.QueryRaw(ctx, dial, member, cmd)
	// A TLS member's refusal of the proxy's certificate shows after the
	// handshake (TLS 1.3): name it as the TLS failure it is.
	if err != nil && conn != nil {
		if he, ok := membertls.Refused(conn, member, err); ok {
			return nil, he
		}
	}
	return []byte(out), err
}
