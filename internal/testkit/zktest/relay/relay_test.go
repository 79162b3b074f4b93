package relay

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
)

func frame(payload string) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(payload))), payload...)
}

// TestRelayRecordsFrames relays through a loopback upstream that answers
// each frame with the same frame reversed, and checks what was recorded.
// The upstream is a stand-in for ZooKeeper: the relay does not interpret
// frames, and jute's capture test runs it against a real server.
func TestRelayRecordsFrames(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() {
		c, err := up.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		for {
			var l [4]byte
			if _, err := io.ReadFull(c, l[:]); err != nil {
				return
			}
			p := make([]byte, binary.BigEndian.Uint32(l[:]))
			if _, err := io.ReadFull(c, p); err != nil {
				return
			}
			for i, j := 0, len(p)-1; i < j; i, j = i+1, j-1 {
				p[i], p[j] = p[j], p[i]
			}
			if _, err := c.Write(frame(string(p))); err != nil {
				return
			}
		}
	}()
	r, err := Start("127.0.0.1:0", up.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"abc", "", "hello"} {
		if _, err := c.Write(frame(p)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 4+len(p))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	want := []Frame{
		{Conn: 0, Dir: ClientToServer, Index: 0, Bytes: frame("abc")},
		{Conn: 0, Dir: ServerToClient, Index: 0, Bytes: frame("cba")},
		{Conn: 0, Dir: ClientToServer, Index: 1, Bytes: frame("")},
		{Conn: 0, Dir: ServerToClient, Index: 1, Bytes: frame("")},
		{Conn: 0, Dir: ClientToServer, Index: 2, Bytes: frame("hello")},
		{Conn: 0, Dir: ServerToClient, Index: 2, Bytes: frame("olleh")},
	}
	got := r.Frames()
	if len(got) != len(want) {
		t.Fatalf("recorded %d frames, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i].Conn != want[i].Conn || got[i].Dir != want[i].Dir || got[i].Index != want[i].Index ||
			got[i].Raw || !bytes.Equal(got[i].Bytes, want[i].Bytes) {
			t.Errorf("frame %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestRelayRawFourLetterWord checks that a four-letter word, which is not a
// plausible frame length, is forwarded and recorded raw.
func TestRelayRawFourLetterWord(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() {
		c, err := up.Accept()
		if err != nil {
			return
		}
		var cmd [4]byte
		if _, err := io.ReadFull(c, cmd[:]); err == nil && string(cmd[:]) == "ruok" {
			c.Write([]byte("imok"))
		}
		c.Close()
	}()
	r, err := Start("127.0.0.1:0", up.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ruok")); err != nil {
		t.Fatal(err)
	}
	answer, err := io.ReadAll(c)
	if err != nil || string(answer) != "imok" {
		t.Fatalf("answer %q %v", answer, err)
	}
	r.Close()
	var sawCmd bool
	for _, f := range r.Frames() {
		if f.Dir == ClientToServer && f.Raw && string(f.Bytes) == "ruok" {
			sawCmd = true
		}
	}
	if !sawCmd {
		t.Fatalf("ruok not recorded raw: %+v", r.Frames())
	}
}
