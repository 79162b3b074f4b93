// Package fourlw queries ZooKeeper servers with four-letter words and parses
// the answers zkproxy relies on: srvr (mode, zxid, node count), mntr, conf
// (membership and config version), hash (tree digests), cons (connections
// and their sessions) and dump (ephemeral nodes by owner).
//
// Four-letter words must be whitelisted on the server
// (4lw.commands.whitelist; the default is srvr only, see
// FourLetterCommands.isEnabled). A disabled word is answered with
// "<cmd> is not executed because it is not in the whitelist." which Query
// reports as ErrNotWhitelisted.
package fourlw

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

var (
	// ErrNotWhitelisted: the server refuses the word (4lw.commands.whitelist).
	ErrNotWhitelisted = errors.New("fourlw: command not in the server's 4lw.commands.whitelist")
	// ErrNotServing: the server answered "not currently serving requests"
	// (it is LOOKING, electing, or shutting down).
	ErrNotServing = errors.New("fourlw: server is not currently serving requests")
	// ErrEmptyAnswer: the server closed the connection without a word. For
	// most words that means it would not answer (not serving, connection
	// limit); hash legitimately answers nothing while the member has no
	// digest logged yet.
	ErrEmptyAnswer = errors.New("fourlw: empty answer (connection closed: not serving or connection limit)")
	// ErrAnswerTooLarge: the answer did not fit maxAnswer.
	ErrAnswerTooLarge = errors.New("fourlw: answer larger than 4 MiB")
)

// maxAnswer bounds how much of an answer is read. mntr on a busy 3.8 leader
// is a few KiB and hash keeps at most 1024 lines; cons is ~250 bytes per
// connection and dump ~40 per ephemeral node, so 4 MiB covers some 16,000
// connections or 100,000 ephemerals on one member. A longer answer is an
// error (ErrAnswerTooLarge), never silently cut short.
const maxAnswer = 4 << 20

// DialFunc dials a server; nil means a net.Dialer.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Query sends cmd to addr and returns the whole answer, with the server's
// refusals as errors: ErrNotWhitelisted, ErrNotServing, and ErrEmptyAnswer
// for a connection closed without a word.
func Query(ctx context.Context, dial DialFunc, addr, cmd string) (string, error) {
	answer, err := QueryRaw(ctx, dial, addr, cmd)
	if err != nil {
		return "", err
	}
	switch {
	case strings.Contains(answer, "is not executed because it is not in the whitelist"):
		return "", fmt.Errorf("fourlw %s %s: %w", cmd, addr, ErrNotWhitelisted)
	case strings.Contains(answer, "not currently serving requests"):
		return "", fmt.Errorf("fourlw %s %s: %w", cmd, addr, ErrNotServing)
	case answer == "":
		return "", fmt.Errorf("fourlw %s %s: %w", cmd, addr, ErrEmptyAnswer)
	}
	return answer, nil
}

// QueryRaw sends cmd to addr and returns the answer as the server wrote it,
// refusals and empty answers included: for whoever passes the answer on
// (the proxy relaying a word to a member) or checks the words themselves
// (tests). The server closes the connection after answering
// (NIOServerCnxn.checkFourLetterWord), so the answer is everything up to
// EOF, at most 4 MiB (ErrAnswerTooLarge beyond). Without a deadline on ctx
// the exchange gets 5 seconds. On a read error it returns what arrived
// before the error with it.
func QueryRaw(ctx context.Context, dial DialFunc, addr, cmd string) (string, error) {
	if len(cmd) != 4 {
		return "", fmt.Errorf("fourlw: %q is not a four-letter word", cmd)
	}
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("fourlw %s %s: %w", cmd, addr, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if _, err := io.WriteString(conn, cmd); err != nil {
		return "", fmt.Errorf("fourlw %s %s: sending: %w", cmd, addr, err)
	}
	b, err := io.ReadAll(io.LimitReader(conn, maxAnswer+1))
	if err != nil {
		if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return string(b), fmt.Errorf("fourlw %s %s: reading: %w", cmd, addr, err)
	}
	if len(b) > maxAnswer {
		return "", fmt.Errorf("fourlw %s %s: %w", cmd, addr, ErrAnswerTooLarge)
	}
	return string(b), nil
}

// DefaultTimeout bounds one query of Members whose Timeout is zero.
const DefaultTimeout = 3 * time.Second

// Members asks ensemble members four-letter words: the one way zkproxy's
// sync check, split barrier and status probe reach ZooKeeper outside of
// sessions. The zero value dials TCP and bounds each query by
// DefaultTimeout.
type Members struct {
	// Dial reaches a member (membertls.Policy.DialContext for members on
	// their secure port); nil dials TCP.
	Dial DialFunc
	// Timeout bounds one query; zero means DefaultTimeout.
	Timeout time.Duration
}

// Query sends word to the member at addr and returns its whole answer
// (see the package function Query).
func (m Members) Query(ctx context.Context, addr, word string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, m.timeout())
	defer cancel()
	return Query(ctx, m.Dial, addr, word)
}

// Hash asks the member at addr for its tree digests (see QueryHash).
func (m Members) Hash(ctx context.Context, addr string) ([]Digest, error) {
	ctx, cancel := context.WithTimeout(ctx, m.timeout())
	defer cancel()
	return QueryHash(ctx, m.Dial, addr)
}

func (m Members) timeout() time.Duration {
	if m.Timeout <= 0 {
		return DefaultTimeout
	}
	return m.Timeout
}

// Srvr is the parsed answer to srvr.
type Srvr struct {
	Version   string
	Mode      string // leader, follower, observer, standalone, read-only
	Zxid      int64
	NodeCount int
	// Connections and Outstanding as the server counts them.
	Connections, Outstanding int
}

// Serving reports whether the mode is one in which the server serves
// read-write clients (a read-only server serves reads only).
func (s Srvr) Serving() bool {
	switch s.Mode {
	case "standalone", "leader", "follower", "observer":
		return true
	}
	return false
}

// Epoch is the leader epoch in the high 32 bits of the zxid.
func (s Srvr) Epoch() int64 { return s.Zxid >> 32 }

// ParseSrvr parses srvr (or stat) output.
func ParseSrvr(answer string) (Srvr, error) {
	var s Srvr
	var haveZxid, haveMode bool
	for _, line := range strings.Split(answer, "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		var err error
		switch key {
		case "Zookeeper version":
			s.Version = val
		case "Mode":
			s.Mode, haveMode = val, true
		case "Zxid":
			s.Zxid, err = strconv.ParseInt(strings.TrimPrefix(val, "0x"), 16, 64)
			haveZxid = err == nil
		case "Node count":
			s.NodeCount, err = strconv.Atoi(val)
		case "Connections":
			s.Connections, err = strconv.Atoi(val)
		case "Outstanding":
			s.Outstanding, err = strconv.Atoi(val)
		}
		if err != nil {
			return s, fmt.Errorf("fourlw: srvr line %q: %w", line, err)
		}
	}
	if !haveZxid || !haveMode {
		return s, fmt.Errorf("fourlw: srvr answer lacks Zxid or Mode: %q", firstLine(answer))
	}
	return s, nil
}

// ParseMntr parses mntr's "key<TAB>value" lines (zk_ prefix kept).
func ParseMntr(answer string) (map[string]string, error) {
	out := make(map[string]string)
	for _, line := range strings.Split(answer, "\n") {
		if k, v, ok := strings.Cut(line, "\t"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	if _, ok := out["zk_server_state"]; !ok {
		return nil, fmt.Errorf("fourlw: mntr answer lacks zk_server_state: %q", firstLine(answer))
	}
	return out, nil
}

// Conf is the part of the conf answer zkproxy checks.
type Conf struct {
	ServerID int
	// Members maps server id to its membership line
	// ("host:quorumPort:electionPort:role[;clientAddr]").
	Members map[int]string
	// Version is the hex config version ("version=" line); empty standalone.
	Version string
	// Raw key=value settings (tickTime, maxClientCnxns, localSessionsEnabled...).
	Settings map[string]string
}

// ParseConf parses conf output (QuorumPeerConfig as the server prints it).
func ParseConf(answer string) (Conf, error) {
	c := Conf{Members: map[int]string{}, Settings: map[string]string{}}
	for _, line := range strings.Split(answer, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(k, "server."):
			id, err := strconv.Atoi(strings.TrimPrefix(k, "server."))
			if err != nil {
				return c, fmt.Errorf("fourlw: conf line %q: %w", line, err)
			}
			c.Members[id] = v
		case k == "version":
			c.Version = v
		case k == "serverId":
			id, err := strconv.Atoi(v)
			if err != nil {
				return c, fmt.Errorf("fourlw: conf line %q: %w", line, err)
			}
			c.ServerID = id
		default:
			c.Settings[k] = v
		}
	}
	if _, ok := c.Settings["tickTime"]; !ok {
		return c, fmt.Errorf("fourlw: conf answer lacks tickTime: %q", firstLine(answer))
	}
	return c, nil
}

// Digest is one line of the hash answer: the tree digest after zxid.
type Digest struct {
	Zxid   int64
	Digest int64
}

// QueryHash asks addr for hash and parses it. A member that has logged no
// digest yet answers nothing at all (the connection closes without output):
// its digest log lives in memory, starts empty when the member starts and
// gains an entry when it applies a transaction whose zxid is a multiple of
// 128, so a quiet ensemble just after restarts has none. That is no digests,
// not ErrEmptyAnswer.
func QueryHash(ctx context.Context, dial DialFunc, addr string) ([]Digest, error) {
	ans, err := Query(ctx, dial, addr, "hash")
	if errors.Is(err, ErrEmptyAnswer) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseHash(ans)
}

// ParseHash parses hash output, one "<zxid hex>: <digest>" line per
// recorded digest (every 128 zxids; DataTree.addDigestLog), oldest first.
func ParseHash(answer string) ([]Digest, error) {
	var out []Digest
	sc := bufio.NewScanner(strings.NewReader(answer))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		z, d, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("fourlw: hash line %q: no colon", line)
		}
		zxid, err := strconv.ParseInt(strings.TrimSpace(z), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("fourlw: hash line %q: %w", line, err)
		}
		digest, err := strconv.ParseInt(strings.TrimSpace(d), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("fourlw: hash line %q: %w", line, err)
		}
		out = append(out, Digest{Zxid: zxid, Digest: digest})
	}
	return out, nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	if len(line) > 120 {
		line = line[:120]
	}
	return line
}

// Conn is one client connection in a cons answer.
type Conn struct {
	// Remote is the client's address as the server sees it (host:port).
	Remote string
	// SessionID is 0 while the connection has no session (a four-letter
	// word, or a handshake not finished).
	SessionID int64
}

// ParseCons parses cons output: one line per connection of the factory that
// answered (ServerCnxn.dumpConnectionInfo), " /ip:port[interest](k=v,…)",
// with sid=0x… once the connection has a session. ConsCommand lists only the
// connections of the factory that received the word, so a member with both
// a plain and a secure port shows each port's connections on that port.
func ParseCons(answer string) ([]Conn, error) {
	var out []Conn
	for _, line := range strings.Split(answer, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		open := strings.IndexByte(line, '(')
		bracket := strings.LastIndexByte(line[:max(open, 0)], '[')
		if open < 0 || bracket < 0 || !strings.HasSuffix(line, ")") {
			return nil, fmt.Errorf("fourlw: cons line %q: not /address[interest](stats)", firstLine(line))
		}
		c := Conn{Remote: strings.TrimPrefix(line[:bracket], "/")}
		for _, kv := range strings.Split(line[open+1:len(line)-1], ",") {
			k, v, _ := strings.Cut(kv, "=")
			if k != "sid" {
				continue
			}
			id, err := strconv.ParseUint(strings.TrimPrefix(v, "0x"), 16, 64)
			if err != nil {
				return nil, fmt.Errorf("fourlw: cons line %q: sid: %w", firstLine(line), err)
			}
			c.SessionID = int64(id)
		}
		out = append(out, c)
	}
	return out, nil
}

// ParseEphemerals parses the "ephemeral nodes dump" part of dump output
// (DataTree.dumpEphemerals): every session owning ephemeral nodes, with
// their paths. Every serving member has the whole replicated tree, so any of
// them answers for the ensemble.
func ParseEphemerals(answer string) (map[int64][]string, error) {
	_, rest, ok := strings.Cut(answer, "Sessions with Ephemerals")
	if !ok {
		return nil, fmt.Errorf("fourlw: dump answer lacks the ephemeral nodes dump: %q", firstLine(answer))
	}
	out := map[int64][]string{}
	var cur int64
	have := false
	for i, line := range strings.Split(rest, "\n") {
		switch {
		case i == 0: // " (N):"
		case strings.HasPrefix(line, "\t"):
			if !have {
				return nil, fmt.Errorf("fourlw: dump: path %q before any session", strings.TrimSpace(line))
			}
			out[cur] = append(out[cur], strings.TrimSpace(line))
		case strings.HasPrefix(line, "0x") && strings.HasSuffix(line, ":"):
			id, err := strconv.ParseUint(strings.TrimSuffix(line[2:], ":"), 16, 64)
			if err != nil {
				return nil, fmt.Errorf("fourlw: dump: session line %q: %w", line, err)
			}
			cur, have = int64(id), true
			out[cur] = out[cur][:0:0]
		default:
			return out, nil // the next section ("Connections dump:") or the end
		}
	}
	return out, nil
}
