package zktest

import (
	"context"

	"github.com/zkproxy/zkproxy/internal/fourlw"
)

// FourLetter sends a four-letter word (e.g. "srvr", "mntr", "conf", "hash",
// "cons", "wchc", "dump") to the server's client port and returns the whole
// answer as the server wrote it (fourlw.QueryRaw).
func (s *Server) FourLetter(cmd string) (string, error) {
	return FourLetter(s.ClientAddr(), cmd)
}

// FourLetter sends a four-letter word to addr ("host:port"), a member or a
// proxy, and returns the answer as written, refusals included
// (fourlw.QueryRaw, 5 seconds at most).
func FourLetter(addr, cmd string) (string, error) {
	return fourlw.QueryRaw(context.Background(), nil, addr, cmd)
}

// Srvr runs srvr and parses it. While the server is not serving it returns
// an error that is fourlw.ErrNotServing (the answer "This ZooKeeper instance is not
// currently serving requests").
func (s *Server) Srvr() (fourlw.Srvr, error) {
	raw, err := fourlw.Query(context.Background(), nil, s.ClientAddr(), "srvr")
	if err != nil {
		return fourlw.Srvr{}, err
	}
	return fourlw.ParseSrvr(raw)
}

// Mntr runs mntr and returns its zk_* keys with the "zk_" prefix kept (e.g.
// "zk_server_state", "zk_znode_count", "zk_synced_followers").
func (s *Server) Mntr() (map[string]string, error) {
	raw, err := fourlw.Query(context.Background(), nil, s.ClientAddr(), "mntr")
	if err != nil {
		return nil, err
	}
	return fourlw.ParseMntr(raw)
}
