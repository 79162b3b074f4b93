package zktest

import (
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/zkproxy/zkproxy/internal/fourlw"
)

// FourLetter sends a four-letter word (e.g. "srvr", "mntr", "conf", "hash",
// "cons", "wchc", "dump") to the server's client port and returns the whole
// answer. The server closes the connection after answering
// (NIOServerCnxn.checkFourLetterWord).
func (s *Server) FourLetter(cmd string) (string, error) {
	return FourLetter(s.ClientAddr(), cmd)
}

// FourLetter sends a four-letter word to addr ("host:port") and returns the
// answer.
func FourLetter(addr, cmd string) (string, error) {
	if len(cmd) != 4 {
		return "", fmt.Errorf("4lw %q: not four letters", cmd)
	}
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", fmt.Errorf("4lw %s to %s: %w", cmd, addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, cmd); err != nil {
		return "", fmt.Errorf("4lw %s to %s: %w", cmd, addr, err)
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		return string(b), fmt.Errorf("4lw %s to %s: %w", cmd, addr, err)
	}
	return string(b), nil
}

// Srvr is the parsed answer to srvr.
type Srvr struct {
	Mode      string // "standalone", "leader", "follower", "observer", "read-only"
	Zxid      int64  // the server's last processed zxid
	NodeCount int
	Raw       string
}

// Serving reports whether the mode is one in which the server serves
// read-write clients.
func (st Srvr) Serving() bool {
	switch st.Mode {
	case "standalone", "leader", "follower", "observer":
		return true
	}
	return false
}

// Srvr runs srvr and parses Mode, Zxid and Node count. While the server is
// not serving it returns ErrNotServing (the 4lw answer "This ZooKeeper
// instance is not currently serving requests").
func (s *Server) Srvr() (Srvr, error) {
	raw, err := s.FourLetter("srvr")
	if err != nil {
		return Srvr{}, err
	}
	return parseSrvr(raw)
}

func parseSrvr(raw string) (Srvr, error) {
	st := Srvr{Raw: raw}
	if strings.Contains(raw, "not currently serving") {
		return st, ErrNotServing
	}
	p, err := fourlw.ParseSrvr(raw)
	if err != nil {
		return st, err
	}
	st.Mode, st.Zxid, st.NodeCount = p.Mode, p.Zxid, p.NodeCount
	return st, nil
}

// Mntr runs mntr and returns its zk_* keys with the "zk_" prefix kept (e.g.
// "zk_server_state", "zk_znode_count", "zk_synced_followers").
func (s *Server) Mntr() (map[string]string, error) {
	raw, err := s.FourLetter("mntr")
	if err != nil {
		return nil, err
	}
	return parseMntr(raw)
}

func parseMntr(raw string) (map[string]string, error) {
	if strings.Contains(raw, "not currently serving") {
		return nil, ErrNotServing
	}
	return fourlw.ParseMntr(raw)
}
