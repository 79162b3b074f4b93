package proxy

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/zkproxy/zkproxy/jute"
)

// Four-letter words on the client port fall in three groups. A session id
// is a credential (ZooKeeperServer.generatePasswd derives the password from
// it), and the members' addresses let a client bypass the proxy, so no word
// allowed by default reveals either.
var (
	// proxyWords are answered from the proxy's own view.
	proxyWords = map[string]bool{"ruok": true, "isro": true, "srvr": true, "stat": true, "mntr": true, "cons": true, "conf": true}
	// harmlessMemberWords are relayed to a member: they carry neither a
	// session id nor a host detail (wchs: watch counts; hash: tree
	// digests; gtmk: the trace mask; dirs: the data directories' sizes).
	harmlessMemberWords = map[string]bool{"wchs": true, "hash": true, "gtmk": true, "dirs": true}
	// guardedMemberWords are relayed only when Config.FourLetterWords
	// lists them: dump (every session id with its ephemeral nodes), wchc
	// and wchp (watches by session id), envi (host name, paths, JVM), and
	// crst, srst and stmk, which change a member's counters or trace mask.
	guardedMemberWords = map[string]bool{"dump": true, "envi": true, "wchc": true, "wchp": true, "crst": true, "srst": true, "stmk": true}
)

// answerFourLetterWord answers a four-letter word sent on the client port.
//
// The words monitoring uses to judge "the ZooKeeper server at this
// address" are answered from the proxy's own view, because that is what
// sits at this address: a client's latency, its connection and its
// session are the proxy's, and relaying a member's answer would describe
// some other connection set (and change with every probe, as the member
// picked changes). They keep ZooKeeper's line formats (StatCommand,
// MonitorCommand, ConsCommand, IsReadOnlyCommand, ConfCommand in
// FourLetterCommands) so existing parsers and exporters keep working:
//
//   - ruok: "imok" — the process behind this port is alive (a member
//     answers imok even when not serving, so relaying adds nothing but a
//     dependency on a reachable member).
//   - srvr, stat: "Mode: proxy", the proxy's connections, latency measured
//     at the proxy, its packet counts and outstanding requests, and
//     "Zxid:" the highest lastZxidSeen among its sessions. "Node count" is
//     left out: the proxy holds no data tree. stat adds the short
//     per-connection list, as ZooKeeper's does.
//   - mntr: the same facts in mntr's key<TAB>value lines, with
//     zk_server_state "proxy" and zkproxy_* keys for the proxy's own facts.
//     Keys that describe a data tree or a quorum (zk_znode_count,
//     zk_followers, ...) are left out rather than invented.
//   - cons: one line per proxied client connection, ZooKeeper's format
//     with the proxy's upstream member and session state added.
//   - isro: "rw" — the proxy forwards writes (a read-only member refuses
//     them on its own, as it would for a direct client).
//   - conf: a member's tick and session-timeout bounds, the proxy's client
//     port, and the membership naming the proxies with the members' config
//     version (rewriteConfAnswer); with Config.PassConfigThrough, a
//     member's conf as it is.
//
// Words only a member can answer are relayed to one member of the target
// ensemble and its answer copied back (its 4lw.commands.whitelist still
// applies): the harmless ones always, the guarded ones when listed. Any
// word not allowed gets the answer FourLetterCommands gives a word outside
// 4lw.commands.whitelist. As on a server, the connection is closed after
// the answer.
func (s *Session) answerFourLetterWord(cmd string, deadline time.Time) {
	s.srv.m.fourLetterWords.WithLabelValues(fourLetterLabel(cmd)).Inc()
	if cmd == "telnet close" {
		return
	}
	if !harmlessMemberWords[cmd] && !s.srv.fourLetterAllowed(cmd) {
		io.WriteString(s.client, cmd+" is not executed because it is not in the whitelist.\n")
		return
	}
	var answer string
	switch {
	case cmd == "ruok":
		answer = "imok"
	case cmd == "isro":
		answer = "rw"
	case cmd == "srvr":
		answer = s.srv.srvrAnswer(false)
	case cmd == "stat":
		answer = s.srv.srvrAnswer(true)
	case cmd == "mntr":
		answer = s.srv.mntrAnswer()
	case cmd == "cons":
		answer = s.srv.consAnswer()
	case cmd == "conf" && !s.srv.cfg.PassConfigThrough:
		member, _ := s.askMember("conf", deadline)
		answer = rewriteConfAnswer(string(member), s.srv.advertise())
	default:
		if out, ok := s.askMember(cmd, deadline); ok {
			s.client.Write(out)
		}
		return
	}
	io.WriteString(s.client, answer)
}

// fourLetterAllowed reports whether Config.FourLetterWords allows cmd.
func (s *Server) fourLetterAllowed(cmd string) bool {
	words := s.cfg.FourLetterWords
	if words == nil {
		words = DefaultFourLetterWords
	}
	for _, w := range words {
		if w == "*" || w == cmd {
			return true
		}
	}
	return false
}

// askMember sends cmd to the members of the target ensemble in turn and
// returns the first answer (ok false: none answered).
func (s *Session) askMember(cmd string, deadline time.Time) ([]byte, bool) {
	opCtx, done := s.operationContext()
	defer done()
	ctx, cancel := context.WithDeadline(opCtx, deadline)
	defer cancel()
	for _, member := range s.srv.members.order(s.srv.Target()) {
		out, err := s.srv.fourLetter(ctx, member, cmd)
		if err != nil {
			s.logger().Debug("four-letter word to a member failed", "command", cmd, "member", member, "err", err)
			continue
		}
		return out, true
	}
	return nil, false
}

// Stats is a snapshot of the proxy's counters, for srvr/mntr and the admin
// status. Latencies are measured at the proxy, from a request read from the
// client to its reply read from the member.
type Stats struct {
	// Connections counts client connections open (handshaking and
	// established); Sessions the established ones.
	Connections int
	Sessions    int
	// SessionsByState counts established sessions by state name
	// (SessionState.String()).
	SessionsByState map[string]int
	// Outstanding counts requests in flight upstream plus requests held.
	Outstanding int
	Held        int
	// Watches counts tracked watch registrations.
	Watches int
	// MaxLastZxid is the highest lastZxidSeen among the sessions.
	MaxLastZxid jute.Zxid
	// Latency over every reply relayed since the start (zero before any).
	LatencyMin, LatencyAvg, LatencyMax time.Duration
	// PacketsReceived counts frames read from clients; PacketsSent frames
	// written to them.
	PacketsReceived, PacketsSent      uint64
	ClientBytesIn, ClientBytesOut     uint64
	UpstreamBytesIn, UpstreamBytesOut uint64
	Target                            []string
}

// Stats returns a snapshot of the proxy's counters. The counters are
// atomics; the per-session figures (outstanding, watches, zxid) take each
// session's lock briefly, so the cost grows with the number of sessions.
func (s *Server) Stats() Stats {
	m := s.m
	t := m.stats.totals()
	st := Stats{
		Connections:      int(m.connections.Load()),
		SessionsByState:  map[string]int{},
		PacketsReceived:  t.packetsReceived,
		PacketsSent:      t.packetsSent,
		ClientBytesIn:    t.clientBytesIn,
		ClientBytesOut:   t.clientBytesOut,
		UpstreamBytesIn:  t.upstreamBytesIn,
		UpstreamBytesOut: t.upstreamBytesOut,
		Target:           s.Target(),
	}
	if t.latencyCount > 0 {
		st.LatencyMin = time.Duration(t.latencyMin)
		st.LatencyMax = time.Duration(t.latencyMax)
		st.LatencyAvg = time.Duration(t.latencySum / t.latencyCount)
	}
	for _, sess := range s.Sessions() {
		sess.mu.Lock()
		if sess.opened && !sess.closedLocked() {
			st.Sessions++
			st.SessionsByState[sess.state.String()]++
			st.Outstanding += sess.queuedLocked()
			st.Held += len(sess.held)
			st.Watches += sess.watches.count()
			st.MaxLastZxid = max(st.MaxLastZxid, sess.lastZxid)
		}
		sess.mu.Unlock()
	}
	return st
}

// proxyVersion is what the proxy reports as its version: the module
// version of the binary, so an operator can tell a proxy from a member.
func proxyVersion() string {
	v := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		v = bi.Main.Version
	}
	return "zkproxy-" + v
}

// latencyMillis formats latencies as ZooKeeper's ServerStats does: min and
// max as whole milliseconds, the average as a decimal.
func latencyMillis(st Stats) (minMs, avgMs, maxMs string) {
	return strconv.FormatInt(st.LatencyMin.Milliseconds(), 10),
		strconv.FormatFloat(float64(st.LatencyAvg)/float64(time.Millisecond), 'f', 4, 64),
		strconv.FormatInt(st.LatencyMax.Milliseconds(), 10)
}

// srvrAnswer is the srvr (and, with clients, stat) answer in ZooKeeper's
// layout (StatCommand.commandRun, ServerStats.toString).
func (s *Server) srvrAnswer(clients bool) string {
	st := s.Stats()
	var b strings.Builder
	fmt.Fprintf(&b, "Zookeeper version: %s, built on n/a\n", proxyVersion())
	if clients {
		b.WriteString("Clients:\n")
		for _, sess := range s.connections() {
			c := sess.connStats()
			fmt.Fprintf(&b, " /%s[1](queued=%d,recved=%d,sent=%d)\n", c.addr, c.queued, c.recved, c.sent)
		}
		b.WriteString("\n")
	}
	minMs, avgMs, maxMs := latencyMillis(st)
	fmt.Fprintf(&b, "Latency min/avg/max: %s/%s/%s\n", minMs, avgMs, maxMs)
	fmt.Fprintf(&b, "Received: %d\n", st.PacketsReceived)
	fmt.Fprintf(&b, "Sent: %d\n", st.PacketsSent)
	fmt.Fprintf(&b, "Connections: %d\n", st.Connections)
	fmt.Fprintf(&b, "Outstanding: %d\n", st.Outstanding)
	fmt.Fprintf(&b, "Zxid: 0x%x\n", int64(st.MaxLastZxid))
	b.WriteString("Mode: proxy\n")
	return b.String()
}

// mntrAnswer is the mntr answer: key<TAB>value lines (MonitorCommand).
func (s *Server) mntrAnswer() string {
	st := s.Stats()
	var b strings.Builder
	kv := func(k string, v any) { fmt.Fprintf(&b, "%s\t%v\n", k, v) }
	minMs, avgMs, maxMs := latencyMillis(st)
	kv("zk_version", proxyVersion())
	kv("zk_server_state", "proxy")
	kv("zk_avg_latency", avgMs)
	kv("zk_max_latency", maxMs)
	kv("zk_min_latency", minMs)
	kv("zk_packets_received", st.PacketsReceived)
	kv("zk_packets_sent", st.PacketsSent)
	kv("zk_num_alive_connections", st.Connections)
	kv("zk_outstanding_requests", st.Outstanding)
	kv("zk_watch_count", st.Watches)
	kv("zkproxy_sessions", st.Sessions)
	for state := StateHandshake; state < StateClosed; state++ {
		kv("zkproxy_sessions_"+state.String(), st.SessionsByState[state.String()])
	}
	kv("zkproxy_held_requests", st.Held)
	kv("zkproxy_max_last_zxid_seen", fmt.Sprintf("0x%x", int64(st.MaxLastZxid)))
	kv("zkproxy_client_bytes_in", st.ClientBytesIn)
	kv("zkproxy_client_bytes_out", st.ClientBytesOut)
	kv("zkproxy_upstream_bytes_in", st.UpstreamBytesIn)
	kv("zkproxy_upstream_bytes_out", st.UpstreamBytesOut)
	return b.String()
}

// consAnswer is the cons answer: one line per client connection in
// ZooKeeper's layout (ServerCnxn.dumpConnectionInfo), with the upstream
// member and the session's state added, then an empty line.
func (s *Server) consAnswer() string {
	var b strings.Builder
	for _, sess := range s.connections() {
		c := sess.connStats()
		fmt.Fprintf(&b, " /%s[1](queued=%d,recved=%d,sent=%d", c.addr, c.queued, c.recved, c.sent)
		if c.id != 0 {
			fmt.Fprintf(&b, ",sid=0x%x,est=%d,to=%d,lzxid=0x%x", uint64(c.id), c.created.UnixMilli(),
				c.timeout.Milliseconds(), int64(c.lastZxid))
		}
		fmt.Fprintf(&b, ",member=%s,state=%s)\n", c.member, c.state)
	}
	b.WriteString("\n")
	return b.String()
}

// connections returns every client connection, oldest first.
func (s *Server) connections() []*Session {
	s.mu.Lock()
	out := make([]*Session, 0, len(s.conns))
	for sess := range s.conns {
		out = append(out, sess)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b *Session) int { return a.created.Compare(b.created) })
	return out
}

type connStats struct {
	addr          string
	id            jute.SessionID
	queued        int
	recved, sent  uint64
	created       time.Time
	timeout       time.Duration
	lastZxid      jute.Zxid
	member, state string
}

func (s *Session) connStats() connStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := connStats{
		addr:     s.clientAddr,
		queued:   s.queuedLocked(),
		recved:   s.recved.Load(),
		sent:     s.sent.Load(),
		created:  s.created,
		timeout:  s.clientTimeout,
		lastZxid: s.lastZxid,
		state:    s.state.String(),
		member:   "-",
	}
	if s.opened {
		c.id = s.id
	}
	if s.up != nil {
		c.member = s.up.member
	}
	return c
}
