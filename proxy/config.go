package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/zkproxy/zkproxy/internal/membertls"
	"github.com/zkproxy/zkproxy/jute"
)

// Defaults applied by Config for zero-valued fields. They follow the
// ZooKeeper server's own limits where one exists.
const (
	// DefaultMaxReplyFrameSize is the largest member→client frame. The
	// server does not limit its replies (a getChildren of a big znode can
	// be several MB) and the 3.5 client and Kafka accept 4 MiB
	// (ZKClientConfig jute.maxbuffer, KafkaZkClient.apply).
	DefaultMaxReplyFrameSize = 4 << 20
	// DefaultMaxOutstandingPerSession matches the server's
	// globalOutstandingLimit (1000): beyond it ZooKeeper stops reading from
	// its clients (ServerCnxn throttling).
	DefaultMaxOutstandingPerSession = 1000
	// DefaultHandshakeTimeout bounds the time from accept to the relayed
	// ConnectResponse. ZooKeeper clients give a connect attempt
	// sessionTimeout ÷ hosts (ClientCnxn connectTimeout); 10s covers
	// Kafka's 18s timeout with one proxy address and room for one retry.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultParkIdleAfter: clients ping after a third of their session
	// timeout without traffic (ClientCnxn: readTimeout / 2) — 6 s for
	// Kafka's 18 s default — so an idle session spends most of its time
	// parked, while a busy one never waits this long for a frame. Short,
	// because it bounds how many pump goroutines a reconnect storm has
	// alive at once: with 500 ms, 5,000 sessions connecting within a few
	// seconds left ~20 MB of freed goroutine stacks in the heap, which the
	// runtime returns to the OS only slowly (RSS 10.5 KiB per idle session
	// after 40 s, against 7 KiB with 100 ms). Parking costs one epoll_ctl
	// (and taking the connection out of the runtime's poller a dup, an
	// epoll_ctl and a close; see pollConn), waking one goroutine start
	// (and the first wait after it an fcntl and an epoll_ctl):
	// nothing next to 100 ms of silence.
	DefaultParkIdleAfter = 100 * time.Millisecond
	// DefaultDialTimeout bounds one TCP dial to a member.
	DefaultDialTimeout = 3 * time.Second
	// DefaultMemberBackoff is how long a member that failed is tried only
	// after the healthy ones.
	DefaultMemberBackoff = 5 * time.Second
)

// DefaultMaxClientConns is the bound on client connections when
// Config.MaxClientConns is zero, derived from the open-files limit nofile
// (RLIMIT_NOFILE): ZooKeeper itself has no global cap, only maxClientCnxns
// per source IP, but a session holds two descriptors (client and member
// connection) and running out of descriptors fails every accept and every
// re-attach dial alike. So (nofile − reserve) / 2, where the reserve —
// min(256, nofile/4) — stays free for the listeners, the admin server,
// member probes (four-letter words, cutover checks), TLS files and logs:
// 65,536 → 32,640 sessions, 1,024 → 384. Without a known limit (ok false)
// it is 8192.
func DefaultMaxClientConns(nofile uint64, ok bool) int {
	if !ok {
		return 8192
	}
	nofile = min(nofile, 1<<22) // RLIM_INFINITY and the like
	reserve := min(256, nofile/4)
	return max(1, int((nofile-reserve)/2))
}

// DefaultFourLetterWords are the words the proxy answers unless
// Config.FourLetterWords says otherwise: what monitoring polls, nothing that
// lists sessions.
var DefaultFourLetterWords = []string{"ruok", "isro", "srvr", "stat", "mntr", "conf"}

// Config configures a Server. Every zero-valued field means the documented
// default; Validate reports what cannot be used.
type Config struct {
	// Source lists the members (host:port) of the source ensemble. New
	// sessions go there until SetTarget names another list. Required.
	Source []string
	// Destination lists the members of the destination ensemble; the proxy
	// itself only validates it (cutover moves sessions there).
	Destination []string

	// MaxClientConns bounds accepted client connections (handshaking and
	// established). Zero means DefaultMaxClientConns of the process's
	// open-files limit, which New logs. Connections beyond
	// it are closed at once and counted (reason "max_client_conns").
	MaxClientConns int
	// MaxFrameSize bounds one client→member frame. Zero means
	// jute.DefaultMaxFrameSize: the server's jute.maxbuffer (0xfffff) plus
	// header room. A bigger frame closes that client, exactly as
	// NIOServerCnxn.readLength does ("Len error").
	MaxFrameSize int
	// MaxReplyFrameSize bounds one member→client frame. Zero means
	// DefaultMaxReplyFrameSize, or MaxFrameSize when that is larger.
	MaxReplyFrameSize int
	// MaxOutstandingPerSession bounds requests forwarded and not yet
	// answered plus requests held during a re-attach. Reaching it stops
	// reading from the client until replies arrive. Zero means
	// DefaultMaxOutstandingPerSession.
	MaxOutstandingPerSession int
	// MaxBufferedBytesPerSession bounds the bytes of client requests held
	// while a session re-attaches or moves. Reaching it stops reading from
	// the client. Zero means twice the effective MaxFrameSize. It must be
	// at least MaxFrameSize so one request always fits.
	MaxBufferedBytesPerSession int
	// HandshakeTimeout bounds the time a new client has to complete its
	// handshake (send the ConnectRequest and get the member's answer
	// relayed). Zero means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// ParkIdleAfter is how long a session's connection must be idle before
	// its pump gives its goroutine up and waits in the proxy's shared
	// poller (Linux): an idle session then costs a few KiB instead of two
	// goroutine stacks. Idle pumps are found by a sweep every ParkIdleAfter,
	// so a pump parks between one and two ParkIdleAfter after its last
	// frame. Zero means DefaultParkIdleAfter; negative never parks.
	ParkIdleAfter time.Duration
	// RuntimePoller keeps sessions' TCP connections registered in the Go
	// runtime's poller for their whole life, as *net.TCPConns. By default
	// (Linux) they are pollConns, registered only while an operation
	// waits, so an idle session, whose pumps wait in the parker's epoll
	// instance, holds no runtime poller record: about 2 KiB less per
	// idle session. A way back, should pollConn ever misbehave.
	RuntimePoller bool
	// DialTimeout bounds one TCP dial to a member. Zero means
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// MemberBackoff is how long a member that refused or dropped a
	// connection is tried only after the others. Zero means
	// DefaultMemberBackoff.
	MemberBackoff time.Duration
	// FourLetterWords lists the four-letter words allowed on the client
	// port beyond those that reveal nothing (wchs, hash, gtmk, dirs, which
	// are always relayed to a member): the proxy's own words (ruok, isro,
	// srvr, stat, mntr, cons, conf; see answerFourLetterWord) and the
	// member words that reveal sessions or hosts or change a member (dump,
	// envi, wchc, wchp, crst, srst, stmk), relayed only when listed; "*"
	// allows every word. Nil means DefaultFourLetterWords. A word not
	// allowed gets ZooKeeper's "not in the whitelist" answer. cons, dump,
	// wchc and wchp are off by default: they list session ids, and a
	// session's password is derived from its id
	// (ZooKeeperServer.generatePasswd), so anyone who can reach the client
	// port could take sessions over.
	FourLetterWords []string

	// Advertise lists the client addresses (host:port) of every zkproxy
	// replica in front of the ensembles: clients reading the membership
	// (/zookeeper/config, getConfig, conf) see these as the members. Nil
	// means DefaultAdvertise of the first listener Serve is given.
	Advertise []string
	// PassConfigThrough hands clients the members' real membership
	// (/zookeeper/config and conf) instead of the proxies'. A client that
	// follows it (Curator's EnsembleTracker) then reconnects to members
	// directly, bypassing the proxy.
	PassConfigThrough bool
	// AllowReconfig forwards reconfig requests to the members. False
	// answers each with ReconfigDisabled (counted and logged): through a
	// proxy, a client's view of the membership is the proxies', and
	// changing the ensemble is an operator's job done on the members.
	AllowReconfig bool

	// LocalAddrs are local IP addresses that upstream connections are
	// spread over, round-robin, so one proxy stays under a member's
	// maxClientCnxns (60 per source IP by default). Empty lets the kernel
	// choose.
	LocalAddrs []string

	// Dial opens an upstream connection from localAddr ("" = any) to a
	// member. Nil means a net.Dialer with DialTimeout. Tests use it to
	// inject faults.
	Dial func(ctx context.Context, localAddr, member string) (net.Conn, error)

	// MemberTLS lists the members reached over TLS (their secureClientPort)
	// and how; nil reaches every member in plain TCP. It applies to
	// session connections and to the readiness probe's four-letter words,
	// after Dial. Sessions on a TLS member relay through tls.Conn with
	// plain Reads and Writes; an idle one's upstream pump parks on the
	// socket underneath, like a plaintext one (see newReadWatch).
	MemberTLS *membertls.Policy
}

// withDefaults returns c with every zero value replaced by its default.
func (c Config) withDefaults() Config {
	if c.MaxClientConns == 0 {
		c.MaxClientConns = DefaultMaxClientConns(openFilesLimit())
	}
	if c.MaxFrameSize == 0 {
		c.MaxFrameSize = jute.DefaultMaxFrameSize
	}
	if c.MaxReplyFrameSize == 0 {
		c.MaxReplyFrameSize = max(DefaultMaxReplyFrameSize, c.MaxFrameSize)
	}
	if c.MaxOutstandingPerSession == 0 {
		c.MaxOutstandingPerSession = DefaultMaxOutstandingPerSession
	}
	if c.MaxBufferedBytesPerSession == 0 {
		c.MaxBufferedBytesPerSession = 2 * c.MaxFrameSize
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	switch {
	case c.ParkIdleAfter == 0:
		c.ParkIdleAfter = DefaultParkIdleAfter
	case c.ParkIdleAfter < 0:
		c.ParkIdleAfter = 0 // readWatch: never
	}
	if c.MemberBackoff == 0 {
		c.MemberBackoff = DefaultMemberBackoff
	}
	return c
}

// Validate reports every problem of c, each naming its key, joined into one
// error; nil means New will accept c.
func (c Config) Validate() error {
	var problems []error
	bad := func(key, format string, args ...any) {
		problems = append(problems, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if len(c.Source) == 0 {
		bad("source", "required: at least one member host:port")
	}
	for _, w := range c.FourLetterWords {
		if w != "*" && !proxyWords[w] && !guardedMemberWords[w] && !harmlessMemberWords[w] {
			bad("four-letter-words", "%q cannot be listed (proxy words: ruok, isro, srvr, stat, mntr, cons, conf; "+
				"member words: dump, envi, wchc, wchp, crst, srst, stmk, wchs, hash, gtmk, dirs; or *)", w)
		}
	}
	for _, a := range c.Advertise {
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" {
			bad("advertise", "%q is not host:port", a)
			continue
		}
		if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
			bad("advertise", "%q: bad port", a)
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			bad("advertise", "%q: a client cannot connect to the wildcard address", a)
		}
	}
	checkMembers := func(key string, members []string) {
		seen := map[string]bool{}
		for _, m := range members {
			if _, _, err := net.SplitHostPort(m); err != nil {
				bad(key, "%q is not host:port: %v", m, err)
			}
			if seen[m] {
				bad(key, "%q listed twice", m)
			}
			seen[m] = true
		}
	}
	checkMembers("source", c.Source)
	checkMembers("destination", c.Destination)
	nonNeg := func(key string, v int) {
		if v < 0 {
			bad(key, "must not be negative, got %d", v)
		}
	}
	nonNeg("max-client-conns", c.MaxClientConns)
	nonNeg("max-frame-size", c.MaxFrameSize)
	nonNeg("max-reply-frame-size", c.MaxReplyFrameSize)
	nonNeg("max-outstanding", c.MaxOutstandingPerSession)
	nonNeg("max-buffered-bytes", c.MaxBufferedBytesPerSession)
	if c.MaxFrameSize > 0 && c.MaxFrameSize < 64 {
		bad("max-frame-size", "%d is too small for a ConnectRequest (45 bytes) plus headers; use 0 for the default", c.MaxFrameSize)
	}
	if c.MaxReplyFrameSize > 0 && c.MaxReplyFrameSize < 64 {
		bad("max-reply-frame-size", "%d is too small for a ConnectResponse; use 0 for the default", c.MaxReplyFrameSize)
	}
	d := c.withDefaults()
	if c.MaxBufferedBytesPerSession > 0 && c.MaxBufferedBytesPerSession < d.MaxFrameSize {
		bad("max-buffered-bytes", "%d is below max-frame-size %d: one held request must fit", c.MaxBufferedBytesPerSession, d.MaxFrameSize)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"handshake-timeout", c.HandshakeTimeout},
		{"dial-timeout", c.DialTimeout},
		{"member-backoff", c.MemberBackoff},
	} {
		if d.v < 0 {
			bad(d.key, "must not be negative, got %s", d.v)
		}
	}
	for _, a := range c.LocalAddrs {
		if _, err := netip.ParseAddr(a); err != nil {
			bad("local-addrs", "%q is not an IP address", a)
		}
	}
	if len(problems) == 0 {
		return nil
	}
	msgs := make([]string, len(problems))
	for i, p := range problems {
		msgs[i] = p.Error()
	}
	return fmt.Errorf("proxy config: %w", errors.New(strings.Join(msgs, "; ")))
}
