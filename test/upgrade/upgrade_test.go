// Package upgrade tests zkproxy's in-place upgrade (docs/upgrade.md) with
// real binaries, a real ensemble and real clients.
package upgrade

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkproxy/zkproxy/internal/testkit/kafkaload"
	"github.com/zkproxy/zkproxy/internal/testkit/rig"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

//go:embed PersistentWatcher.java
var persistentWatcherSource string

// rounds is ZKPROXY_UPGRADE_ROUNDS, default 2 (make soak-upgrade runs 10).
func rounds(t *testing.T) int {
	if v := os.Getenv("ZKPROXY_UPGRADE_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("ZKPROXY_UPGRADE_ROUNDS=%q", v)
		}
		return n
	}
	return 2
}

func members(ens *zktest.Ensemble) []string {
	var out []string
	for _, m := range ens.Members {
		out = append(out, m.ClientAddr())
	}
	return out
}

// lineWatcher collects a process's stdout lines.
type lineWatcher struct {
	mu    sync.Mutex
	lines []string
}

func (w *lineWatcher) add(l string) { w.mu.Lock(); w.lines = append(w.lines, l); w.mu.Unlock() }

func (w *lineWatcher) count(prefix string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, l := range w.lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// goSessions are go-zookeeper sessions, idle ones with watches: their
// connection states are counted.
type goSessions struct {
	mu     sync.Mutex
	states map[zk.State]int
	conns  []*zk.Conn
	events []<-chan zk.Event
}

func (g *goSessions) connect(t *testing.T, addr string) *zk.Conn {
	t.Helper()
	c, _, err := zk.Connect([]string{addr}, 10*time.Second, zk.WithLogInfo(false), zk.WithEventCallback(func(ev zk.Event) {
		if ev.Type == zk.EventSession {
			g.mu.Lock()
			g.states[ev.State]++
			g.mu.Unlock()
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	deadline := time.Now().Add(30 * time.Second)
	for c.State() != zk.StateHasSession {
		if time.Now().After(deadline) {
			t.Fatal("go-zookeeper session never established")
		}
		time.Sleep(20 * time.Millisecond)
	}
	g.conns = append(g.conns, c)
	return c
}

func (g *goSessions) count(s zk.State) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.states[s]
}

// TestUpgradeUnderLoad upgrades a serving zkproxy ZKPROXY_UPGRADE_ROUNDS
// times, alternating two builds, by SIGUSR2, `zkproxy upgrade` and POST
// /upgrade in turn, under the
// Java Kafka-like workload, a go-zookeeper Kafka-like workload, idle Java
// and kazoo clients with watches and ephemerals, a Java session with
// persistent watches and idle go-zookeeper sessions: no client may see a
// disconnect or an expiry, no acknowledged write may be lost, watches set
// before fire after, one zkproxy process is left with as many descriptors
// as at the start.
func TestUpgradeUnderLoad(t *testing.T) {
	zktest.RequireIntegration(t)
	binA, binB := build(t, "upgrade-a"), build(t, "upgrade-b")
	ens := zktest.NewEnsemble(t, 3)
	mem := members(ens)
	p := startServe(t, binA, mem, nil)
	ctx := rig.CtxFor(t, 10*time.Minute)

	javaProg := zktest.JavaProgram(t, kafkaload.JavaWorkloadSource)
	j, err := kafkaload.StartJava(ctx, javaProg, kafkaload.JavaConfig{Connect: p.Addr + "/jkafka", Brokers: 3, Writers: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(j.Close)
	gw := rig.StartGo(t, ctx, kafkaload.Config{Addr: p.Addr, Root: "/gokafka", Brokers: 3, Writers: 2, Consumers: 1})

	idleJava := zktest.JavaProgram(t, kafkaload.JavaIdleClientSource)
	idle := []struct {
		name, root string
		kazoo      bool
		c          *kafkaload.IdleClient
	}{{name: "java", root: "/idle-java"}, {name: "kazoo", root: "/idle-kazoo", kazoo: true}}
	for i := range idle {
		cmd := idleJava.Command(ctx, p.Addr, idle[i].root)
		if idle[i].kazoo {
			cmd = zktest.PythonCommand(ctx, t, kafkaload.KazooIdleClientSource, p.Addr, idle[i].root)
		}
		ic, err := kafkaload.StartIdleClient(cmd)
		if err != nil {
			t.Fatalf("%s: %v", idle[i].name, err)
		}
		t.Cleanup(ic.Kill)
		idle[i].c = ic
	}
	pw := &lineWatcher{}
	pwProc, err := zktest.StartProcess(zktest.JavaProgram(t, persistentWatcherSource).Command(ctx, p.Addr, "/persist"), pw.add, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pwProc.Kill)
	gs := &goSessions{states: map[zk.State]int{}}
	for i := range 4 {
		c := gs.connect(t, p.Addr)
		path := fmt.Sprintf("/go-idle-%d", i)
		if _, err := c.Create(path, []byte("x"), 0, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
		_, _, ev, err := c.GetW(path)
		if err != nil {
			t.Fatal(err)
		}
		gs.events = append(gs.events, ev)
	}
	waitFor(t, "the persistent watcher", 60*time.Second, func() bool { return pw.count("READY") == 1 })
	waitFor(t, "writes", 60*time.Second, func() bool { return j.Snapshot().AckedWrites > 50 && gw.Snapshot().AckedWrites > 50 })
	jBase, gBase := j.Snapshot(), gw.Snapshot()
	j.ResetLatency()
	gw.ResetLatency()

	st, err := p.status()
	if err != nil {
		t.Fatal(err)
	}
	startFDs := fdCount(t, st.PID)
	t.Logf("serving: pid %d version %s, %d descriptors", st.PID, st.Version, startFDs)

	n := rounds(t)
	for i := range n {
		next := binB
		if i%2 == 1 {
			next = binA
		}
		p.installBinary(next)
		start := time.Now()
		how := []string{bySignal, byCLI, byPOST}[i%3]
		st = p.upgrade(how, 2*time.Minute)
		t.Logf("upgrade %d/%d (%s): now pid %d version %s, took %s", i+1, n, how,
			st.PID, st.Version, time.Since(start).Round(time.Millisecond))
		want := "upgrade-b"
		if i%2 == 1 {
			want = "upgrade-a"
		}
		if st.Version != want {
			t.Fatalf("after upgrade %d the serving version is %q, want %q", i+1, st.Version, want)
		}
		if pids := p.pids(); len(pids) != 1 {
			t.Fatalf("after upgrade %d: zkproxy processes %v, want one", i+1, pids)
		}
		// Writes go on through the new process.
		acked := j.Snapshot().AckedWrites
		waitFor(t, "writes after the upgrade", 60*time.Second, func() bool { return j.Snapshot().AckedWrites > acked+10 })
	}
	// Descriptors back to where they were: the new process holds the same
	// sockets, nothing inherited left open.
	var fds int
	waitFor(t, "descriptors back to the start", 30*time.Second, func() bool {
		fds = fdCount(t, st.PID)
		return fds == startFDs
	})

	// Watches set before the upgrades fire after them.
	direct, _, err := zk.Connect([]string{mem[0]}, 10*time.Second, zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	for _, ic := range idle {
		for _, op := range []func() error{
			func() error { _, err := direct.Set(ic.root+"/d1", []byte("after"), -1); return err },
			func() error { _, err := direct.Set(ic.root+"/d2", []byte("after"), -1); return err },
			func() error { _, err := direct.Create(ic.root+"/new", nil, 0, zk.WorldACL(zk.PermAll)); return err },
		} {
			if err := op(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range gs.events {
		if _, err := direct.Set(fmt.Sprintf("/go-idle-%d", i), []byte("after"), -1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := direct.Set("/persist/p", []byte("after"), -1); err != nil {
		t.Fatal(err)
	}
	if _, err := direct.Create("/persist/r/child", nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	for i, ev := range gs.events {
		select {
		case <-ev:
		case <-time.After(30 * time.Second):
			t.Errorf("go-zookeeper idle session %d: its data watch did not fire", i)
		}
	}
	waitFor(t, "persistent watch events", 30*time.Second, func() bool {
		return pw.count("EV NodeDataChanged /persist/p") == 1 && pw.count("EV NodeCreated /persist/r/child") == 1
	})
	if err := j.WatchesFire(rig.CtxFor(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := gw.WatchesFire(rig.CtxFor(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, ic := range idle {
		got, err := ic.c.Report()
		if err != nil {
			t.Errorf("%s: %v", ic.name, err)
			continue
		}
		if want := kafkaload.WantIdleReport(ic.root, ic.kazoo); !slices.Equal(got, want) {
			t.Errorf("%s idle client across %d upgrades:\n got: %v\nwant: %v", ic.name, n, got, want)
		}
	}

	jr, gr := j.Stop().Since(jBase), gw.Stop().Since(gBase)
	t.Logf("java workload across the upgrades: %s; %s", jr, kafkaload.PausesOf(jr))
	t.Logf("go workload across the upgrades: %s; %s", gr, kafkaload.PausesOf(gr))
	for name, r := range map[string]kafkaload.Report{"java": jr, "go": gr} {
		if r.Disconnects != 0 || r.Expired != 0 || len(r.Errors) != 0 {
			t.Errorf("%s workload noticed the upgrades: %s %v", name, r, r.Errors)
		}
	}
	if n := pw.count("STATE Disconnected") + pw.count("STATE Expired"); n != 0 {
		t.Errorf("persistent-watch session saw %d disconnects/expiries", n)
	}
	if d, e := gs.count(zk.StateDisconnected), gs.count(zk.StateExpired); d != 0 || e != 0 {
		t.Errorf("idle go-zookeeper sessions: %d disconnects, %d expiries", d, e)
	}
	for name, w := range map[string]kafkaload.Client{"java": j, "go": gw} {
		v, err := w.Verify(rig.CtxFor(t, 2*time.Minute), mem[0])
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s writes read back: %s", name, v)
		if !v.OK() {
			t.Errorf("%s: %s %v", name, v, v.Problems)
		}
	}
	for _, line := range p.logLines("upgrade complete") {
		t.Log(line)
	}
	t.Logf("%d upgrades; one zkproxy process (pid %d), %d descriptors as at the start", n, st.PID, fds)
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var _ = context.Background
