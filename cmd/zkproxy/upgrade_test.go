package main

import (
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// sdNotify sends each state as one datagram to NOTIFY_SOCKET, as systemd's
// sd_notify does; MAINPID and READY=1 travel together.
func TestSDNotify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sdNotify(log, "MAINPID=42\nREADY=1")
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(buf[:n]); got != "MAINPID=42\nREADY=1" {
		t.Fatalf("datagram %q", got)
	}
	t.Setenv("NOTIFY_SOCKET", "")
	sdNotify(log, "READY=1") // no socket: nothing, no error
}

// A listener named in ZKPROXY_LISTEN_FDS is taken over; others are
// listened on afresh.
func TestInheritedListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	t.Setenv(envListenFDs, "admin=99999,client="+itoa(int(f.Fd())))
	got, err := listenTCP("client", "127.0.0.1:1") // the address is ignored when inherited
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if got.Addr().String() != ln.Addr().String() {
		t.Fatalf("inherited listener on %s, want %s", got.Addr(), ln.Addr())
	}
	t.Setenv(envListenFDs, "client=x")
	if _, err := listenTCP("client", "127.0.0.1:0"); err == nil {
		t.Fatal("a bad descriptor was accepted")
	}
	_ = os.Getpid
}

func itoa(n int) string { return strconv.Itoa(n) }
