package mitosis

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
)

// Member is one ZooKeeper server of either ensemble, as a zoo.cfg
// "server.N=host:quorumPort:electionPort" line names it, plus the client port
// zkproxy and the four-letter words reach it on.
type Member struct {
	ID           int    `json:"id"`
	Host         string `json:"host"`
	QuorumPort   int    `json:"quorum_port"`
	ElectionPort int    `json:"election_port"`
	ClientPort   int    `json:"client_port"`
	// Client is the address the member was reached at when it differs from
	// Host:ClientPort (a source member given by name, or on another port).
	Client string `json:"client,omitempty"`
}

// ClientAddr is host:clientPort, where the member answers clients and
// four-letter words.
func (m Member) ClientAddr() string {
	if m.Client != "" {
		return m.Client
	}
	return net.JoinHostPort(m.Host, strconv.Itoa(m.ClientPort))
}

// ServerLine is the member's membership line for a static zoo.cfg.
func (m Member) ServerLine() string {
	return fmt.Sprintf("server.%d=%s:%d:%d", m.ID, m.Host, m.QuorumPort, m.ElectionPort)
}

// String names the member in messages: "zk4 (10.0.0.4)".
func (m Member) String() string { return fmt.Sprintf("zk%d (%s)", m.ID, m.Host) }

// ParseMember parses a destination member given on the command line:
// "ID=host:quorumPort:electionPort[;clientPort]" (zoo.cfg's server line
// without "server."). A missing client port is 0: the plan fills in the
// source's clientPort.
func ParseMember(s string) (Member, error) {
	idStr, rest, ok := strings.Cut(strings.TrimSpace(strings.TrimPrefix(s, "server.")), "=")
	if !ok {
		return Member{}, fmt.Errorf("member %q: want ID=host:quorumPort:electionPort[;clientPort]", s)
	}
	id, err := strconv.Atoi(idStr)
	if err != nil || id < 1 || id > 255 {
		// QuorumPeerConfig accepts any long, but myid 1-255 is what the
		// server id fits in for sid-based conflict handling in practice; a
		// typo is likelier than an id above 255.
		return Member{}, fmt.Errorf("member %q: server id must be 1-255", s)
	}
	m, err := parseServerValue(id, rest)
	if err != nil {
		return Member{}, fmt.Errorf("member %q: %w", s, err)
	}
	return m, nil
}

// parseServerValue parses the value of a server.N line as conf prints it
// (QuorumPeer.QuorumServer.toString: "host:quorumPort:electionPort:role"
// with ";clientAddr:port" when the dynamic form names a client address) or
// as an operator writes it.
func parseServerValue(id int, v string) (Member, error) {
	addrPart, client, hasClient := strings.Cut(v, ";")
	parts := strings.Split(addrPart, ":")
	if len(parts) < 3 {
		return Member{}, fmt.Errorf("%q: want host:quorumPort:electionPort", v)
	}
	m := Member{ID: id, Host: parts[0]}
	var err error
	if m.QuorumPort, err = port(parts[1]); err != nil {
		return Member{}, fmt.Errorf("%q: quorum port: %w", v, err)
	}
	if m.ElectionPort, err = port(parts[2]); err != nil {
		return Member{}, fmt.Errorf("%q: election port: %w", v, err)
	}
	if len(parts) > 3 && parts[3] != "participant" {
		return Member{}, fmt.Errorf("%q: role %q: only participants are planned (observers are not supported)", v, parts[3])
	}
	if hasClient {
		_, p, err := net.SplitHostPort(client)
		if err != nil {
			p = client // ";2181" alone
		}
		if m.ClientPort, err = port(p); err != nil {
			return Member{}, fmt.Errorf("%q: client port: %w", v, err)
		}
	}
	if m.Host == "" {
		return Member{}, fmt.Errorf("%q: empty host", v)
	}
	return m, nil
}

func port(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("%q is not a port", s)
	}
	return p, nil
}

func ids(ms []Member) []int {
	out := make([]int, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.ID)
	}
	slices.Sort(out)
	return out
}

func idList(ms []Member) string {
	var s []string
	for _, id := range ids(ms) {
		s = append(s, strconv.Itoa(id))
	}
	return strings.Join(s, ",")
}

func byID(ms []Member, id int) (Member, bool) {
	for _, m := range ms {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}
