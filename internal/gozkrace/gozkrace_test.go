package gozkrace_test

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkproxy/zkproxy/internal/gozkrace"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// TestGatedClientReconnects: a go-zookeeper client on the gated dialer
// works across reconnects against a real server, with watches (the gate
// opens at its SetWatches, and the watch still fires) and without (the
// gate opens on its own).
func TestGatedClientReconnects(t *testing.T) {
	s := zktest.Standalone(t)
	var mu sync.Mutex
	var conns []net.Conn
	dial := gozkrace.Dialer(func(network, address string, timeout time.Duration) (net.Conn, error) {
		c, err := net.DialTimeout(network, address, timeout)
		if err == nil {
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
		return c, err
	})
	cut := func() {
		mu.Lock()
		defer mu.Unlock()
		conns[len(conns)-1].Close()
	}
	connect := func() *zk.Conn {
		c, _, err := zk.Connect([]string{s.ClientAddr()}, 10*time.Second, zk.WithDialer(dial), zk.WithLogInfo(false))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		for deadline := time.Now().Add(10 * time.Second); c.State() != zk.StateHasSession; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("no session")
			}
		}
		return c
	}

	watcher := connect()
	_, _, ch, err := watcher.ExistsW("/gated")
	if err != nil {
		t.Fatal(err)
	}
	id := watcher.SessionID()
	cut()
	// Requests right after the reconnect: their replies wait for the
	// SetWatches, then come.
	for i := 0; ; i++ {
		if _, _, err := watcher.Exists("/"); err == nil {
			break
		} else if i > 100 {
			t.Fatalf("no request succeeded after the reconnect: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if watcher.SessionID() != id {
		t.Fatalf("session changed: 0x%x -> 0x%x", id, watcher.SessionID())
	}

	plain := connect()
	cut()
	start := time.Now()
	for i := 0; ; i++ {
		if _, err := plain.Create("/gated", nil, 0, zk.WorldACL(zk.PermAll)); err == nil {
			break
		} else if i > 100 {
			t.Fatalf("the client without watches got no reply after the reconnect: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("without watches, the first write after the reconnect took %s", time.Since(start).Round(time.Millisecond))

	select {
	case ev := <-ch:
		if ev.Type != zk.EventNodeCreated {
			t.Fatalf("watch event %+v, want NodeCreated", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch re-set after the reconnect never fired")
	}
}
