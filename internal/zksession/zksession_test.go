package zksession_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/internal/zksession"
)

// TestOpenCloseCommitsTwo: a session opened and closed on a real server
// commits exactly two transactions (createSession, closeSession) and
// leaves no session behind.
func TestOpenCloseCommitsTwo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := zktest.Standalone(t)
	before, err := s.Srvr()
	if err != nil {
		t.Fatal(err)
	}
	id, err := zksession.OpenClose(ctx, nil, s.ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	if id == 0 {
		t.Fatal("no session id")
	}
	after, err := s.Srvr()
	if err != nil {
		t.Fatal(err)
	}
	if after.Zxid-before.Zxid != 2 {
		t.Fatalf("zxid 0x%x -> 0x%x, want two transactions", before.Zxid, after.Zxid)
	}
	// The server drops the closed connection asynchronously (after it has
	// answered closeSession), so a busy machine may count it a moment
	// longer: ask again until it is gone.
	for deadline := time.Now().Add(5 * time.Second); after.Connections > 1; { // srvr's own connection
		if time.Now().After(deadline) {
			t.Fatalf("%d connections left", after.Connections)
		}
		time.Sleep(50 * time.Millisecond)
		if after, err = s.Srvr(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOpenCloseRefused: a member that closes the connection after the
// ConnectRequest (as a server that is not serving does) is an ErrRefused,
// and a dead port an error, neither blocking past the context.
func TestOpenCloseRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 64)
			c.Read(buf)
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := zksession.OpenClose(ctx, nil, ln.Addr().String()); !errors.Is(err, zksession.ErrRefused) {
		t.Fatalf("got %v, want ErrRefused", err)
	}
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := dead.Addr().String()
	dead.Close()
	if _, err := zksession.OpenClose(ctx, nil, addr); err == nil {
		t.Fatal("a closed port took the session")
	}
}
