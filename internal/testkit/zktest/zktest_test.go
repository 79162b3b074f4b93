package zktest

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/internal/fourlw"
)

func TestLoopbackIPUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		ip := LoopbackIP(t)
		if seen[ip] {
			t.Fatalf("LoopbackIP returned %s twice", ip)
		}
		seen[ip] = true
		if !strings.HasPrefix(ip, "127.") || net.ParseIP(ip) == nil {
			t.Fatalf("LoopbackIP = %q", ip)
		}
	}
}

func TestStandalone(t *testing.T) {
	s := Standalone(t)
	st, err := s.Srvr()
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode != "standalone" {
		t.Fatalf("mode %q, want standalone", st.Mode)
	}
	m, err := s.Mntr()
	if err != nil {
		t.Fatal(err)
	}
	if m["zk_server_state"] != "standalone" {
		t.Fatalf("mntr zk_server_state = %q", m["zk_server_state"])
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultServingTimeout)
	defer cancel()
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Srvr(); err == nil {
		t.Fatal("srvr answered after kill")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitServing(ctx); err != nil {
		t.Fatal(err)
	}
	pid := s.PID()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if s.Running() || s.PID() != 0 {
		t.Fatalf("still running after Stop (pid was %d)", pid)
	}
}

const javaHello = `
import org.apache.zookeeper.*;
public class ZKTestHello {
    public static void main(String[] args) throws Exception {
        final java.util.concurrent.CountDownLatch connected = new java.util.concurrent.CountDownLatch(1);
        ZooKeeper zk = new ZooKeeper(args[0], 10000, e -> {
            if (e.getState() == Watcher.Event.KeeperState.SyncConnected) connected.countDown();
        });
        connected.await();
        zk.create("/hello", "java".getBytes(), ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        System.out.println("session 0x" + Long.toHexString(zk.getSessionId()));
        zk.close();
    }
}
`

func TestJavaAndPython(t *testing.T) {
	s := Standalone(t)
	j := JavaProgram(t, javaHello)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := j.Run(ctx, s.ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "session 0x1") {
		t.Fatalf("java output %q", out)
	}
	got := Python(t, `
import sys
from kazoo.client import KazooClient
zk = KazooClient(hosts=sys.argv[1])
zk.start(timeout=30)
data, _ = zk.get("/hello")
print(data.decode())
zk.stop()
`, s.ClientAddr())
	if strings.TrimSpace(got) != "java" {
		t.Fatalf("python read %q, want java", got)
	}
}

func TestEnsembleAndMitosis(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	m := NewMitosis(t)
	srcLeader, err := m.Source.Leader()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("source leader %v", srcLeader)
	jl, err := m.Join(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("joint leader %v", jl)
	for _, st := range m.Joint().Status() {
		t.Logf("%v: %s zxid 0x%x err %v", st.Server, st.Srvr.Mode, st.Srvr.Zxid, st.Err)
	}
	// Move the joint leadership to the source side, as zkproxy's cutover
	// wants before a split (docs/protocol.md §5.6).
	jl, err = m.LeadFromSource(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if jl.ID > 3 {
		t.Fatalf("LeadFromSource: leader %v is a destination node", jl)
	}
	if err := m.Joint().WaitServing(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("joint leader after LeadFromSource %v", jl)
	if m.Dormant().Running() {
		t.Fatal("dormant node running before split")
	}
	if err := m.Firewall(ctx); err != nil {
		t.Fatal(err)
	}
	if !m.FirewallActive() {
		t.Fatal("firewall not active")
	}
	// With quorum traffic bound to each node's own address (bind shim), the
	// rules cut 4 and 5 off: they must stop serving, while 1-3 (3 of 5)
	// keep or regain a leader. Without the shim nothing would match.
	if _, err := m.Source.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range m.Destination.Members[:2] {
		for {
			if _, err := s.Srvr(); errors.Is(err, fourlw.ErrNotServing) {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%v still serving behind the firewall", s)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	dl, err := m.RestartDestination(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sl, err := m.RestartSource(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.RemoveFirewall(); err != nil {
		t.Fatal(err)
	}
	if m.FirewallActive() {
		t.Fatal("firewall still active")
	}
	t.Logf("destination leader %v, source leader %v, destination unavailable %v", dl, sl, m.Timeline().DestinationUnavailable())
	for _, e := range []*Ensemble{m.Source, m.Destination} {
		if err := e.WaitInSync(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPartition(t *testing.T) {
	RequireIntegration(t)
	a, b, c := LoopbackIP(t), LoopbackIP(t), LoopbackIP(t)
	ln, err := net.Listen("tcp", net.JoinHostPort(b, "2181"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	dial := func(from string) error {
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		conn, err := d.Dial("tcp", ln.Addr().String())
		if err == nil {
			conn.Close()
		}
		return err
	}
	fw, err := Partition(t, []string{a}, []string{b})
	if err != nil {
		t.Fatal(err)
	}
	if err := dial(a); err == nil {
		t.Fatalf("%s reached %s through the firewall", a, b)
	}
	if err := dial(c); err != nil {
		t.Fatalf("%s, not partitioned, cannot reach %s: %v", c, b, err)
	}
	if err := dial("127.0.0.1"); err != nil {
		t.Fatalf("127.0.0.1 cannot reach %s: %v", b, err)
	}
	if err := fw.Remove(); err != nil {
		t.Fatal(err)
	}
	if chainExists(fw.Chain) {
		t.Fatalf("chain %s still exists", fw.Chain)
	}
	if err := dial(a); err != nil {
		t.Fatalf("after Remove: %v", err)
	}
	if _, err := Partition(t, []string{"127.0.0.1"}, []string{b}); err == nil {
		t.Fatal("Partition accepted 127.0.0.1")
	}
	if _, err := Partition(t, []string{"10.0.0.1"}, []string{b}); err == nil {
		t.Fatal("Partition accepted a non-loopback address")
	}
}

func TestJavaClient(t *testing.T) {
	s := Standalone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := StartJavaClient(t)
	if err := c.Connect(ctx, s.ClientAddr(), 10000, 0, nil); err != nil {
		t.Fatal(err)
	}
	id, passwd, timeout, err := c.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if id == 0 || len(passwd) != 16 || timeout != 10000 {
		t.Fatalf("session %x %x %d", id, passwd, timeout)
	}
	if _, err := c.Do(ctx, "create", "/x", "v1", "ephemeral"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(ctx, "get", "/x", "1"); err != nil {
		t.Fatal(err)
	}
	from := c.EventCount()
	if _, err := c.Do(ctx, "set", "/x", "v2"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.WaitEvent(ctx, from, NodeEvent("NodeDataChanged", "/x")); err != nil {
		t.Fatal(err)
	}
	_, err = c.Do(ctx, "get", "/nope", "0")
	var ce *ClientError
	if !errors.As(err, &ce) || ce.Code != "NONODE" {
		t.Fatalf("get /nope: %v", err)
	}
	in, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Srvr()
	if err != nil {
		t.Fatal(err)
	}
	if in.State != "CONNECTED" || in.RemoteAddr != s.ClientAddr() || in.LastZxid != st.Zxid {
		t.Fatalf("info %+v (srvr zxid 0x%x)", in, st.Zxid)
	}
	// A call whose context ends before its reply must not hand that reply
	// to the next call (MoveTo's polling did, and Session then parsed an
	// info line).
	gone, stop := context.WithCancel(ctx)
	stop()
	if _, err := c.Do(gone, "info"); err == nil {
		t.Fatal("info with an ended context succeeded")
	}
	if id2, _, _, err := c.Session(ctx); err != nil || id2 != id {
		t.Fatalf("session after an abandoned call: 0x%x, %v", id2, err)
	}
	// A second handle re-attaches the same session by id and password.
	c2 := StartJavaClient(t)
	if err := c2.Connect(ctx, s.ClientAddr(), 10000, id, passwd); err != nil {
		t.Fatal(err)
	}
	owner, err := c2.Do(ctx, "exists", "/x", "0")
	if err != nil {
		t.Fatal(err)
	}
	if owner != strconv.FormatUint(uint64(id), 16) {
		t.Fatalf("ephemeral owner %s, want %x", owner, id)
	}
}
