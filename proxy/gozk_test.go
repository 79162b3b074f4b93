package proxy

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// connectGo opens a go-zookeeper session on addrs and waits until it has a
// session. Its state changes are recorded in the returned recorder.
func connectGo(t *testing.T, addrs []string, timeout time.Duration) (*zk.Conn, *stateRecorder) {
	t.Helper()
	rec := &stateRecorder{}
	conn, _, err := zk.Connect(addrs, timeout, zk.WithLogInfo(false), zk.WithLogger(zkLogger{t}),
		zk.WithEventCallback(rec.record))
	if err != nil {
		t.Fatalf("zk.Connect %v: %v", addrs, err)
	}
	t.Cleanup(conn.Close)
	waitFor(t, "go-zookeeper session", 30*time.Second, func() bool { return conn.State() == zk.StateHasSession })
	return conn, rec
}

type zkLogger struct{ t *testing.T }

func (l zkLogger) Printf(format string, args ...any) { l.t.Logf("go-zookeeper: "+format, args...) }

// stateRecorder records the session states a go-zookeeper client went
// through (its event callback sees every connection event).
type stateRecorder struct {
	mu     sync.Mutex
	states []zk.State
}

func (r *stateRecorder) record(ev zk.Event) {
	if ev.Type != zk.EventSession {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.states = append(r.states, ev.State)
}

// count returns how often the client entered state.
func (r *stateRecorder) count(state zk.State) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.states {
		if s == state {
			n++
		}
	}
	return n
}

// goWorkload runs a workload under root and returns a transcript that is
// equal for equal behaviour: no zxids, times or session ids, only results,
// versions, names and events.
func goWorkload(t *testing.T, conn, other *zk.Conn, root string) []string {
	t.Helper()
	var out []string
	log := func(format string, args ...any) {
		out = append(out, strings.ReplaceAll(fmt.Sprintf(format, args...), root, "<root>"))
	}
	errStr := func(err error) string {
		if err == nil {
			return "ok"
		}
		return err.Error()
	}
	acl := zk.WorldACL(zk.PermAll)
	awaitEvent := func(ch <-chan zk.Event) {
		select {
		case ev := <-ch:
			log("event %s %s", ev.Type, ev.Path)
		case <-time.After(20 * time.Second):
			log("event: none within 20s")
		}
	}

	p, err := conn.Create(root, []byte("r"), 0, acl)
	log("create root: %s %v", p, errStr(err))
	p, err = conn.Create(root+"/a", []byte("1"), 0, acl)
	log("create a: %s %v", p, errStr(err))
	_, err = conn.Create(root+"/a", []byte("1"), 0, acl)
	log("create a again: %v", errStr(err))
	data, st, err := conn.Get(root + "/a")
	log("get a: %q v%d %v", data, st.Version, errStr(err))
	st, err = conn.Set(root+"/a", []byte("2"), 0)
	log("set a v0: v%d %v", st.Version, errStr(err))
	_, err = conn.Set(root+"/a", []byte("3"), 0)
	log("set a stale version: %v", errStr(err))
	_, _, err = conn.Get(root + "/missing")
	log("get missing: %v", errStr(err))

	// Ephemeral owned by this session.
	_, err = conn.Create(root+"/e", nil, zk.FlagEphemeral, acl)
	log("create ephemeral: %v", errStr(err))
	_, st, err = conn.Exists(root + "/e")
	log("ephemeral owner is us: %v %v", st.EphemeralOwner == conn.SessionID(), errStr(err))

	// Sequentials.
	for range 3 {
		p, err = conn.Create(root+"/seq-", nil, zk.FlagSequence, acl)
		log("create sequential: %s %v", p, errStr(err))
	}
	p, err = conn.Create(root+"/eseq-", nil, zk.FlagEphemeral|zk.FlagSequence, acl)
	log("create ephemeral sequential: %s %v", p, errStr(err))
	children, st, err := conn.Children(root)
	slices.Sort(children)
	log("children: %v numChildren=%d %v", children, st.NumChildren, errStr(err))

	// Multi with a failing op: nothing applied.
	res, err := conn.Multi(
		&zk.CreateRequest{Path: root + "/m1", Data: []byte("m"), Acl: acl},
		&zk.SetDataRequest{Path: root + "/nope", Data: []byte("x"), Version: -1},
	)
	log("multi failing: %v", errStr(err))
	for i, r := range res {
		log("  result %d: %v", i, errStr(r.Error))
	}
	ok, _, err := conn.Exists(root + "/m1")
	log("m1 exists after failed multi: %v %v", ok, errStr(err))
	res, err = conn.Multi(
		&zk.CreateRequest{Path: root + "/m2", Data: []byte("m"), Acl: acl},
		&zk.SetDataRequest{Path: root + "/a", Data: []byte("4"), Version: 1},
		&zk.CheckVersionRequest{Path: root + "/a", Version: 2},
	)
	log("multi ok: %v", errStr(err))
	for i, r := range res {
		log("  result %d: %s %v", i, r.String, errStr(r.Error))
	}

	// Watches: data, exist, child.
	_, _, dataCh, err := conn.GetW(root + "/a")
	log("getW a: %v", errStr(err))
	ok, _, existCh, err := conn.ExistsW(root + "/later")
	log("existsW later: %v %v", ok, errStr(err))
	_, _, childCh, err := conn.ChildrenW(root)
	log("childrenW root: %v", errStr(err))
	_, err = other.Set(root+"/a", []byte("5"), -1)
	log("other set a: %v", errStr(err))
	awaitEvent(dataCh)
	_, err = other.Create(root+"/later", nil, 0, acl)
	log("other create later: %v", errStr(err))
	awaitEvent(existCh)
	awaitEvent(childCh)
	_, _, delCh, err := conn.ExistsW(root + "/later")
	log("existsW later again: %v", errStr(err))
	err = other.Delete(root+"/later", -1)
	log("other delete later: %v", errStr(err))
	awaitEvent(delCh)

	// Digest auth with ACLs.
	err = conn.AddAuth("digest", []byte("alice:secret"))
	log("addAuth: %v", errStr(err))
	_, err = conn.Create(root+"/secret", []byte("s"), 0, zk.DigestACL(zk.PermAll, "alice", "secret"))
	log("create secret: %v", errStr(err))
	data, _, err = conn.Get(root + "/secret")
	log("get secret as alice: %q %v", data, errStr(err))
	_, _, err = other.Get(root + "/secret")
	log("get secret as anyone: %v", errStr(err))
	acls, _, err := conn.GetACL(root + "/secret")
	log("getACL secret: %d entries, scheme %s %v", len(acls), acls[0].Scheme, errStr(err))

	// Delete rules.
	err = conn.Delete(root, -1)
	log("delete non-empty root: %v", errStr(err))
	err = conn.Delete(root+"/m2", 5)
	log("delete m2 wrong version: %v", errStr(err))
	err = conn.Delete(root+"/m2", 0)
	log("delete m2: %v", errStr(err))
	_, err = conn.Sync(root)
	log("sync: %v", errStr(err))
	return out
}

func TestGoZookeeperWorkloadThroughProxy(t *testing.T) {
	zktest.RequireIntegration(t)
	server := zktest.Standalone(t)
	px := startProxy(t, []string{server.ClientAddr()})
	checkGoroutines := goroutineBaseline(t)

	direct, _ := connectGo(t, []string{server.ClientAddr()}, 10*time.Second)
	directOther, _ := connectGo(t, []string{server.ClientAddr()}, 10*time.Second)
	want := goWorkload(t, direct, directOther, "/direct")

	proxied, rec := connectGo(t, []string{px.Addr}, 10*time.Second)
	proxiedOther, _ := connectGo(t, []string{px.Addr}, 10*time.Second)
	got := goWorkload(t, proxied, proxiedOther, "/proxied")

	if !slices.Equal(got, want) {
		t.Errorf("through the proxy the workload differs:\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
	if n := rec.count(zk.StateDisconnected); n != 0 {
		t.Errorf("proxied client saw %d disconnects", n)
	}
	if n := len(px.Sessions()); n != 2 {
		t.Errorf("proxy holds %d sessions, want 2", n)
	}
	info := sessionInfo(t, px.Server, proxied.SessionID())
	if info.Auths != 1 {
		t.Errorf("session tracked %d auth packets, want 1", info.Auths)
	}
	t.Logf("session after workload: %+v", info)

	proxied.Close()
	proxiedOther.Close()
	direct.Close()
	directOther.Close()
	waitFor(t, "proxied sessions to close", 10*time.Second, func() bool { return len(px.Sessions()) == 0 })
	checkGoroutines()
}

func sessionInfo(t *testing.T, srv *Server, id int64) SessionInfo {
	t.Helper()
	for _, s := range srv.Sessions() {
		if int64(s.ID()) == id {
			return s.Info()
		}
	}
	t.Fatalf("session %#x not found in the proxy", id)
	return SessionInfo{}
}
