package upgrade

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// busySession is a go-zookeeper session writing one znode in a loop.
type busySession struct {
	conn  *zk.Conn
	id    int64
	acked atomic.Int64
	stop  chan struct{}
	done  chan error
}

func startBusySessions(t *testing.T, gs *goSessions, addr string, n int) []*busySession {
	t.Helper()
	var out []*busySession
	for i := range n {
		c := gs.connect(t, addr)
		path := fmt.Sprintf("/busy-%d-%d", time.Now().UnixNano(), i)
		if _, err := c.Create(path, []byte("0"), 0, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
		b := &busySession{conn: c, id: c.SessionID(), stop: make(chan struct{}), done: make(chan error, 1)}
		go func() {
			for k := 1; ; k++ {
				select {
				case <-b.stop:
					b.done <- nil
					return
				default:
				}
				if _, err := c.Set(path, []byte(fmt.Sprint(k)), -1); err != nil {
					// Tolerated where a disconnect is expected: a request
					// in flight fails with ConnectionClosed, one queued
					// while go-zookeeper reconnects to its only server with
					// NoServer (Conn.connect flushes unsent requests on every
					// pass over its server list).
					if err == zk.ErrConnectionClosed || err == zk.ErrNoServer {
						time.Sleep(50 * time.Millisecond)
						continue
					}
					b.done <- fmt.Errorf("set %d: %w", k, err)
					return
				}
				b.acked.Store(int64(k))
				time.Sleep(5 * time.Millisecond)
			}
		}()
		out = append(out, b)
	}
	return out
}

func stopBusy(t *testing.T, bs []*busySession) {
	t.Helper()
	for _, b := range bs {
		close(b.stop)
		if err := <-b.done; err != nil {
			t.Errorf("session %#x: %v", b.id, err)
		}
		if b.conn.SessionID() != b.id {
			t.Errorf("session %#x became %#x", b.id, b.conn.SessionID())
		}
	}
}

// TestUpgradeAbortsKeepEverything: a new binary that exits at start, one
// that speaks an unknown handoff version, and one killed (-9) halfway
// through the handoff. The first two abort with no client seeing anything;
// after the kill the sessions not yet handed over never noticed, those
// handed over reconnect through zkproxy with their sessions, and nothing
// expires. A later upgrade then succeeds.
func TestUpgradeAbortsKeepEverything(t *testing.T) {
	zktest.RequireIntegration(t)
	binA, binB := build(t, "upgrade-a"), build(t, "upgrade-b")
	binV99 := build(t, "upgrade-v99", "github.com/zkproxy/zkproxy/proxy.handoffVersion=99")
	ens := zktest.NewEnsemble(t, 1)
	mem := members(ens)

	t.Run("new binary refused or dead at start", func(t *testing.T) {
		p := startServe(t, binA, mem, nil)
		gs := &goSessions{states: map[zk.State]int{}}
		busy := startBusySessions(t, gs, p.Addr, 4)
		st0, _ := p.status()

		exits := filepath.Join(t.TempDir(), "exits")
		if err := os.WriteFile(exits, []byte("#!/bin/sh\necho new binary exits at start >&2\nexit 3\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct{ name, bin, want string }{
			{"exits at start", exits, "hello"},
			{"unknown handoff version", binV99, "refused"},
		} {
			p.installBinary(c.bin)
			if _, _, err := p.call("POST", "/upgrade"); err != nil {
				t.Fatal(err)
			}
			var st upgradeStatus
			waitFor(t, c.name+": the upgrade to abort", 60*time.Second, func() bool {
				st, _ = p.status()
				return st.State == "failed" && st.PID == st0.PID
			})
			t.Logf("%s: %s", c.name, st.Error)
			if !strings.Contains(st.Error, c.want) {
				t.Errorf("%s: error %q does not say %q", c.name, st.Error, c.want)
			}
			if pids := p.pids(); len(pids) != 1 || pids[0] != st0.PID {
				t.Fatalf("%s: zkproxy processes %v, want only %d", c.name, pids, st0.PID)
			}
			// Still serving, new connections included.
			before := busy[0].acked.Load()
			waitFor(t, "writes after the abort", 30*time.Second, func() bool { return busy[0].acked.Load() > before+5 })
			c := gs.connect(t, p.Addr)
			if _, _, err := c.Exists("/"); err != nil {
				t.Fatal(err)
			}
		}
		// A later upgrade may be tried, and works.
		p.installBinary(binB)
		st := p.upgrade(bySignal, 2*time.Minute)
		if st.Version != "upgrade-b" {
			t.Fatalf("serving %q after the retried upgrade", st.Version)
		}
		stopBusy(t, busy)
		if d, e := gs.count(zk.StateDisconnected), gs.count(zk.StateExpired); d != 0 || e != 0 {
			t.Errorf("%d disconnects, %d expiries", d, e)
		}
	})

	t.Run("new process killed halfway", func(t *testing.T) {
		const pauseAfter = 3
		p := startServe(t, binA, mem, []string{fmt.Sprintf("ZKPROXY_TEST_HANDOFF_PAUSE_AFTER=%d", pauseAfter)},
			"--upgrade-batch", "2", "--log-level", "debug")
		gs := &goSessions{states: map[zk.State]int{}}
		busy := startBusySessions(t, gs, p.Addr, 8)
		st0, _ := p.status()
		p.installBinary(binB)
		if _, _, err := p.call("POST", "/upgrade"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the new process to pause", 60*time.Second, func() bool { return p.logContains("pausing the adoption") })
		var child int
		for _, pid := range p.pids() {
			if pid != st0.PID {
				child = pid
			}
		}
		if child == 0 {
			t.Fatal("no new process found")
		}
		if err := syscall.Kill(child, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		var st upgradeStatus
		waitFor(t, "the upgrade to abort", 60*time.Second, func() bool {
			st, _ = p.status()
			return st.State == "failed" && st.PID == st0.PID
		})
		t.Logf("after kill -9 of the new process: %+v", st)
		if st.HandedOver > pauseAfter+1 {
			t.Errorf("%d sessions handed over, the new process took at most %d", st.HandedOver, pauseAfter)
		}
		// Every session is back with the old process, none expired.
		waitFor(t, "every session writing again", 60*time.Second, func() bool {
			for _, b := range busy {
				if b.conn.State() != zk.StateHasSession {
					return false
				}
			}
			return true
		})
		for _, b := range busy {
			before := b.acked.Load()
			waitFor(t, fmt.Sprintf("writes of session %#x after the abort", b.id), 30*time.Second, func() bool {
				select {
				case err := <-b.done:
					t.Fatalf("session %#x stopped writing: %v", b.id, err)
				default:
				}
				return b.acked.Load() > before+2
			})
		}
		if pids := p.pids(); len(pids) != 1 || pids[0] != st0.PID {
			t.Fatalf("zkproxy processes %v, want only %d", pids, st0.PID)
		}
		stopBusy(t, busy)
		d, e := gs.count(zk.StateDisconnected), gs.count(zk.StateExpired)
		t.Logf("handed over %d before the kill; disconnects seen: %d; expiries: %d", st.HandedOver, d, e)
		if e != 0 {
			t.Errorf("%d sessions expired", e)
		}
		if d > st.HandedOver {
			t.Errorf("%d disconnects: only the %d sessions handed over may reconnect", d, st.HandedOver)
		}
	})
}
