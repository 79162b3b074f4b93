package proxy

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/jute"
)

// TestDisconnectDeliversTheLastBatch: Disconnect waits until nothing is in
// flight, but a reply is off the in-flight queue as soon as the upstream
// pump has read it, and reaches the client only with the pump's next write
// (one writev per read). A client that reads slowly keeps that last batch
// waiting; closing the client connection then would drop replies to writes
// the member applied — an outcome the client cannot know.
func TestDisconnectDeliversTheLastBatch(t *testing.T) {
	zktest.RequireIntegration(t)
	server := zktest.Standalone(t)
	px := startProxy(t, []string{server.ClientAddr()})
	direct, _ := connectGo(t, []string{server.ClientAddr()}, 10*time.Second)
	if _, err := direct.Create("/slow", nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}

	// A small receive buffer, set before connecting, so the replies back up
	// into the proxy.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", px.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, resp := handshakeRaw(t, c, 10000)
	var sess *Session
	for _, s := range px.Sessions() {
		if s.ID() == resp.SessionID {
			sess = s
		}
	}
	if sess == nil {
		t.Fatal("session not found")
	}

	// Creates, then reads of a big znode whose replies add up to more than
	// the proxy's socket send buffer takes (tcp_wmem's 4 MiB at most): the
	// pump's last write waits for the reader. None read yet.
	if _, err := direct.Create("/slow-big", make([]byte, 900<<10), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	const creates, gets = 200, 6
	open := []jute.ACL{{Perms: jute.PermAll, ID: jute.Id{Scheme: "world", ID: "anyone"}}}
	var reqs []byte
	for i := range creates {
		reqs = appendRequestFrame(reqs, jute.RequestHeader{Xid: jute.Xid(i + 1), Op: jute.OpCreate},
			&jute.CreateRequest{Path: fmt.Sprintf("/slow/%04d", i), ACL: open, Flags: jute.CreatePersistent})
	}
	for i := range gets {
		reqs = appendRequestFrame(reqs, jute.RequestHeader{Xid: jute.Xid(creates + i + 1), Op: jute.OpGetData},
			&jute.GetDataRequest{Path: "/slow-big"})
	}
	const n = creates + gets
	go c.Write(reqs)
	waitFor(t, "the member to apply every create", 30*time.Second, func() bool {
		children, _, err := direct.Children("/slow")
		return err == nil && len(children) == creates
	})
	waitFor(t, "every request forwarded", 30*time.Second, func() bool {
		info := sess.Info()
		return info.Held == 0 && sess.recved.Load() == n+1 // and the ConnectRequest
	})

	disconnected := make(chan struct{})
	go func() {
		defer close(disconnected)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		sess.Disconnect(ctx, "test: slow reader")
	}()
	waitFor(t, "Disconnect to start", 10*time.Second, func() bool {
		sess.mu.Lock()
		defer sess.mu.Unlock()
		return sess.stopping
	})
	// Read slowly (4 KiB a millisecond): the pump's writes to this client
	// block.
	c.SetReadDeadline(time.Now().Add(time.Minute))
	r = jute.NewFrameReader(slowReader{c}, 0)
	replies := 0
	for {
		f, err := r.Next()
		if err != nil {
			break // closed by the proxy
		}
		h, err := jute.PeekReplyHeader(f.Payload())
		if err != nil || h.Xid != jute.Xid(replies+1) || h.Err != jute.ErrOK {
			t.Fatalf("reply %d: %+v %v", replies, h, err)
		}
		replies++
	}
	<-disconnected
	if replies != n {
		t.Fatalf("the proxy forwarded %d requests but the client got %d replies: %d outcomes unknown", n, replies, n-replies)
	}
}

// slowReader reads at most 4 KiB a call and a millisecond apart: a client
// slower than the proxy, without a wait for any outcome.
type slowReader struct{ c net.Conn }

func (s slowReader) Read(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	return s.c.Read(p[:min(len(p), 4<<10)])
}
