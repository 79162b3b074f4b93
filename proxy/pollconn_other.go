//go:build !linux

package proxy

import "net"

// ownConn keeps conn: the proxy's own poller is Linux-only (pollconn_linux.go).
func (s *Server) ownConn(conn net.Conn) net.Conn { return conn }

func detachParked(*frameReader) {}
