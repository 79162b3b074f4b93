package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkproxy/zkproxy/internal/membertls"
	"github.com/zkproxy/zkproxy/internal/testkit/kafkaload"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/jute"
)

// ensembleFixture is a 3-member ensemble with a proxy whose source is all
// of it.
type ensembleFixture struct {
	ens     *zktest.Ensemble
	members []string // the proxy's source: client ports, or TLS ports
	px      *testProxy
	tls     bool // the proxy reaches the members' secure ports
	// dialDelay (nanoseconds) slows every upstream dial: fault injection
	// to widen the re-attach window.
	dialDelay atomic.Int64
}

func newEnsembleFixture(t *testing.T) *ensembleFixture {
	t.Helper()
	return newFixture(t, nil)
}

// newFixture is newEnsembleFixture whose proxy, when ca is not nil, reaches
// the members over TLS only, on their secure ports, with a client
// certificate from ca; test clients still reach the members directly on
// their plain ports.
func newFixture(t *testing.T, ca *zktest.CA) *ensembleFixture {
	t.Helper()
	zktest.RequireIntegration(t)
	var opts []zktest.Option
	if ca != nil {
		opts = append(opts, zktest.WithSecureClientPort(ca))
	}
	ens := zktest.NewEnsemble(t, 3, opts...)
	f := &ensembleFixture{ens: ens, tls: ca != nil}
	for _, m := range ens.Members {
		f.members = append(f.members, f.addrOf(m))
	}
	var policy *membertls.Policy
	if ca != nil {
		policy = &membertls.Policy{}
		policy.Add(f.members, memberTLSConfig(t, ca))
	}
	f.px = startProxy(t, f.members, func(c *Config) {
		c.MemberTLS = policy
		c.Dial = func(ctx context.Context, _, member string) (net.Conn, error) {
			if d := time.Duration(f.dialDelay.Load()); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			var d net.Dialer
			return d.DialContext(ctx, "tcp", member)
		}
	})
	return f
}

// addrOf is m's address as the proxy knows it.
func (f *ensembleFixture) addrOf(m *zktest.Server) string {
	if f.tls {
		return m.SecureClientAddr()
	}
	return m.ClientAddr()
}

func (f *ensembleFixture) server(t *testing.T, addr string) *zktest.Server {
	t.Helper()
	for _, m := range f.ens.Members {
		if f.addrOf(m) == addr {
			return m
		}
	}
	t.Fatalf("no member at %s", addr)
	return nil
}

// placeOnFollower moves the session to a follower, so killing its member
// does not also cost an election, and returns that member.
func (f *ensembleFixture) placeOnFollower(t *testing.T, id int64) *zktest.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader, err := f.ens.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	info := sessionInfo(t, f.px.Server, id)
	if info.Member != f.addrOf(leader) {
		return f.server(t, info.Member)
	}
	var follower string
	for _, m := range f.members {
		if m != f.addrOf(leader) {
			follower = m
			break
		}
	}
	// Onto the follower, with the whole ensemble left for failovers.
	if err := f.session(t, id).move(ctx, []string{follower}, f.members); err != nil {
		t.Fatalf("moving the session off the leader: %v", err)
	}
	return f.server(t, follower)
}

func (f *ensembleFixture) session(t *testing.T, id int64) *Session {
	t.Helper()
	for _, s := range f.px.Sessions() {
		if int64(s.ID()) == id {
			return s
		}
	}
	t.Fatalf("session %#x not in the proxy", id)
	return nil
}

// directAvoiding connects a go-zookeeper client straight to the members
// other than avoid (nil: any), so killing avoid does not disturb it.
func (f *ensembleFixture) directAvoiding(t *testing.T, avoid *zktest.Server) *zk.Conn {
	t.Helper()
	var addrs []string
	for _, m := range f.ens.Members {
		if m != avoid {
			addrs = append(addrs, m.ClientAddr())
		}
	}
	conn, _ := connectGo(t, addrs, 10*time.Second)
	return conn
}

// restart brings a killed member back and waits until it serves.
func (f *ensembleFixture) restart(t *testing.T, s *zktest.Server) {
	t.Helper()
	if err := s.Start(); err != nil {
		t.Fatalf("restart %s: %v", s, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := f.ens.WaitServing(ctx); err != nil {
		t.Fatal(err)
	}
}

func expectEvent(t *testing.T, what string, ch <-chan zk.Event, typ zk.EventType, path string) {
	t.Helper()
	select {
	case ev := <-ch:
		if ev.Type != typ || ev.Path != path {
			t.Errorf("%s: got event %s %s (state %s, err %v), want %s %s", what, ev.Type, ev.Path, ev.State, ev.Err, typ, path)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("%s: no event within 30s", what)
	}
}

func TestFailover(t *testing.T) {
	f := newEnsembleFixture(t)
	acl := zk.WorldACL(zk.PermAll)

	t.Run("idle client does not notice", func(t *testing.T) { idleFailoverUnnoticed(t, f) })

	t.Run("requests in flight: one visible disconnect, session kept", func(t *testing.T) {
		conn, rec := connectGo(t, []string{f.px.Addr}, 10*time.Second)
		id := conn.SessionID()
		if _, err := conn.Create("/busy", nil, 0, acl); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			t.Fatal(err)
		}
		if _, err := conn.Create("/busy/eph", nil, zk.FlagEphemeral, acl); err != nil {
			t.Fatal(err)
		}
		victim := f.placeOnFollower(t, id)
		direct := f.directAvoiding(t, victim)
		var acked []string
		for i := range 20 {
			p, err := conn.Create(fmt.Sprintf("/busy/w-%02d", i), nil, 0, acl)
			if err != nil {
				t.Fatal(err)
			}
			acked = append(acked, p)
		}
		// Freeze the member so the next request stays in flight, then kill
		// it: its outcome is unknown to the proxy.
		if err := syscall.Kill(victim.PID(), syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.restart(t, victim) })
		inflight := make(chan error, 1)
		go func() {
			_, err := conn.Create("/busy/inflight", nil, 0, acl)
			inflight <- err
		}()
		waitFor(t, "request in flight", 10*time.Second, func() bool {
			return sessionInfo(t, f.px.Server, id).Outstanding > 0
		})
		if err := victim.Kill(); err != nil {
			t.Fatal(err)
		}
		err := <-inflight
		t.Logf("in-flight create returned %v", err)
		waitFor(t, "reconnect through the proxy", 30*time.Second, func() bool {
			return conn.State() == zk.StateHasSession && len(f.px.Sessions()) > 0 && slices.ContainsFunc(f.px.Sessions(), func(s *Session) bool {
				return int64(s.ID()) == id && s.State() == StateActive
			})
		})
		if conn.SessionID() != id {
			t.Fatalf("session changed: %#x, was %#x", conn.SessionID(), id)
		}
		children, _, err := conn.Children("/busy")
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range acked {
			if !slices.Contains(children, p[len("/busy/"):]) {
				t.Errorf("acknowledged write %s lost", p)
			}
		}
		_, st, err := direct.Exists("/busy/eph")
		if err != nil || st == nil || st.EphemeralOwner != id {
			t.Fatalf("ephemeral after reconnect: %+v %v", st, err)
		}
		if n := rec.count(zk.StateDisconnected); n != 1 {
			t.Errorf("client saw %d disconnects, want 1", n)
		}
		if n := rec.count(zk.StateExpired); n != 0 {
			t.Errorf("client saw %d expiries", n)
		}
		if !f.px.Logs.contains("session closed", "requests in flight") {
			t.Error("no log line for the in-flight close")
		}
	})

	t.Run("move between members keeps watches", func(t *testing.T) {
		conn, rec := connectGo(t, []string{f.px.Addr}, 10*time.Second)
		id := conn.SessionID()
		if _, err := conn.Create("/mv", nil, 0, acl); err != nil {
			t.Fatal(err)
		}
		_, _, ch, err := conn.GetW("/mv")
		if err != nil {
			t.Fatal(err)
		}
		sess := f.session(t, id)
		direct := f.directAvoiding(t, nil)
		for i, m := range f.members {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			err := sess.Move(ctx, []string{m})
			cancel()
			if err != nil {
				t.Fatalf("move %d to %s: %v", i, m, err)
			}
			if got := sess.Info().Member; got != m {
				t.Fatalf("after move to %s the session is on %s", m, got)
			}
			if _, _, err := conn.Exists("/mv"); err != nil {
				t.Fatalf("request after move %d: %v", i, err)
			}
		}
		if _, err := direct.Set("/mv", []byte("x"), -1); err != nil {
			t.Fatal(err)
		}
		expectEvent(t, "data watch after three moves", ch, zk.EventNodeDataChanged, "/mv")
		if n := rec.count(zk.StateDisconnected); n != 0 {
			t.Errorf("client saw %d disconnects", n)
		}
	})

	t.Run("requests during a re-attach are held, pings answered", func(t *testing.T) {
		conn, rec := connectGo(t, []string{f.px.Addr}, 10*time.Second)
		id := conn.SessionID()
		if _, err := conn.Create("/held", []byte("h"), 0, acl); err != nil {
			t.Fatal(err)
		}
		victim := f.placeOnFollower(t, id)
		// A raw session on the same member, to see the proxy's own ping
		// answers on the wire.
		raw, rawR, resp := rawSession(t, f.px.Addr, 10000)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := f.session(t, int64(resp.SessionID)).move(ctx, []string{victim.ClientAddr()}, f.members); err != nil {
			t.Fatal(err)
		}
		heldBefore := counter(t, f.px.m.heldRequests)
		// Each dial now takes 2.5s (under the 3s dial timeout): the request
		// below is sent while the session has no upstream.
		f.dialDelay.Store(int64(2500 * time.Millisecond))
		defer f.dialDelay.Store(0)
		if err := victim.Kill(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.restart(t, victim) })
		waitFor(t, "re-attaching state", 10*time.Second, func() bool {
			return sessionInfo(t, f.px.Server, id).State == StateReattaching
		})
		if _, err := raw.Write(pingFrame); err != nil {
			t.Fatal(err)
		}
		raw.SetReadDeadline(time.Now().Add(2 * time.Second))
		pf, err := rawR.Next()
		if err != nil {
			t.Fatalf("ping during re-attach: %v", err)
		}
		if h, _ := jute.PeekReplyHeader(pf.Payload()); h.Xid != jute.XidPing || h.Err != 0 {
			t.Fatalf("ping reply during re-attach: %+v", h)
		}
		if st := sessionInfo(t, f.px.Server, int64(resp.SessionID)).State; st != StateReattaching {
			t.Errorf("raw session is %s while its ping was answered; want reattaching", st)
		}
		data, _, err := conn.Get("/held")
		if err != nil || string(data) != "h" {
			t.Fatalf("request during re-attach: %q %v", data, err)
		}
		if counter(t, f.px.m.heldRequests) <= heldBefore {
			t.Error("the request was not held")
		}
		if n := rec.count(zk.StateDisconnected); n != 0 {
			t.Errorf("client saw %d disconnects", n)
		}
	})

	t.Run("move with a request stuck in flight times out and stays", func(t *testing.T) {
		conn, rec := connectGo(t, []string{f.px.Addr}, 10*time.Second)
		id := conn.SessionID()
		victim := f.placeOnFollower(t, id)
		if err := syscall.Kill(victim.PID(), syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		resumed := false
		defer func() {
			if !resumed {
				syscall.Kill(victim.PID(), syscall.SIGCONT)
			}
		}()
		inflight := make(chan error, 1)
		go func() {
			_, _, err := conn.Exists("/")
			inflight <- err
		}()
		waitFor(t, "request in flight", 10*time.Second, func() bool {
			select {
			case err := <-inflight:
				t.Fatalf("the request returned (%v) while its member was stopped; session %+v", err, sessionInfo(t, f.px.Server, id))
			default:
			}
			return sessionInfo(t, f.px.Server, id).Outstanding > 0
		})
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := f.session(t, id).Move(ctx, f.members)
		cancel()
		var me *MoveError
		if !errors.As(err, &me) || me.MoveReason() != "drain_timeout" || me.Disconnected || !errors.Is(err, ErrDrainTimeout) {
			t.Fatalf("Move with a stuck request: %v", err)
		}
		// Requests sent while draining were held, and are released to the
		// old member once it answers again.
		later := make(chan error, 1)
		go func() {
			_, _, err := conn.Exists("/held")
			later <- err
		}()
		syscall.Kill(victim.PID(), syscall.SIGCONT)
		resumed = true
		if err := <-inflight; err != nil {
			t.Fatalf("stuck request after resume: %v", err)
		}
		if err := <-later; err != nil {
			t.Fatalf("request after the failed move: %v", err)
		}
		if info := sessionInfo(t, f.px.Server, id); info.Member != victim.ClientAddr() || info.State != StateActive {
			t.Fatalf("session after the failed move: %+v", info)
		}
		if n := rec.count(zk.StateDisconnected); n != 0 {
			t.Errorf("client saw %d disconnects", n)
		}
	})

	t.Run("hold survives a failover and releases in order", func(t *testing.T) {
		conn, rec := connectGo(t, []string{f.px.Addr}, 10*time.Second)
		id := conn.SessionID()
		if _, err := conn.Create("/hold", nil, 0, acl); err != nil {
			t.Fatal(err)
		}
		victim := f.placeOnFollower(t, id)
		sess := f.session(t, id)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sess.Hold(ctx); err != nil {
			t.Fatalf("Hold: %v", err)
		}
		results := make(chan string, 3)
		for i := range 3 {
			go func() {
				p, err := conn.Create("/hold/n-", nil, zk.FlagSequence, acl)
				results <- fmt.Sprint(i, " ", p, " ", err)
			}()
			waitFor(t, "request held", 10*time.Second, func() bool { return sessionInfo(t, f.px.Server, id).Held == i+1 })
		}
		reattached := counter(t, f.px.m.reattaches.WithLabelValues("ok"))
		if err := victim.Kill(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.restart(t, victim) })
		waitFor(t, "re-attach while held", 30*time.Second, func() bool {
			return counter(t, f.px.m.reattaches.WithLabelValues("ok")) > reattached
		})
		if info := sessionInfo(t, f.px.Server, id); !info.Holding || info.Held != 3 {
			t.Fatalf("after re-attach the hold is gone: %+v", info)
		}
		sess.Release()
		var got []string
		for range 3 {
			got = append(got, <-results)
		}
		slices.Sort(got)
		want := []string{"0 /hold/n-0000000000 <nil>", "1 /hold/n-0000000001 <nil>", "2 /hold/n-0000000002 <nil>"}
		if !slices.Equal(got, want) {
			t.Errorf("held requests after release: %v, want %v (in order)", got, want)
		}
		if n := rec.count(zk.StateDisconnected); n != 0 {
			t.Errorf("client saw %d disconnects", n)
		}
	})

	t.Run("leader killed: re-attach after the election", func(t *testing.T) {
		conn, rec := connectGo(t, []string{f.px.Addr}, 10*time.Second)
		id := conn.SessionID()
		_, _, ch, err := conn.ExistsW("/after-election")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		leader, err := f.ens.WaitLeader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		direct := f.directAvoiding(t, leader)
		if err := f.session(t, id).move(ctx, []string{leader.ClientAddr()}, f.members); err != nil {
			t.Fatal(err)
		}
		reattached := counter(t, f.px.m.reattaches.WithLabelValues("ok"))
		if err := leader.Kill(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.restart(t, leader) })
		waitFor(t, "re-attach after the election", 30*time.Second, func() bool {
			return counter(t, f.px.m.reattaches.WithLabelValues("ok")) > reattached
		})
		// The surviving followers dropped their own clients for the
		// election too: retry the direct write until it is connected.
		var err2 error
		waitFor(t, "direct client back after the election", 30*time.Second, func() bool {
			_, err2 = direct.Create("/after-election", nil, zk.FlagEphemeral, acl)
			return !errors.Is(err2, zk.ErrConnectionClosed) && !errors.Is(err2, zk.ErrNoServer)
		})
		if err2 != nil {
			t.Fatal(err2)
		}
		expectEvent(t, "exist watch across the election", ch, zk.EventNodeCreated, "/after-election")
		if n := rec.count(zk.StateDisconnected); n != 0 {
			t.Errorf("client saw %d disconnects", n)
		}
	})
}

func TestJavaClientIdleFailover(t *testing.T) {
	zktest.RequireIntegration(t)
	prog := zktest.JavaProgram(t, kafkaload.JavaIdleClientSource)
	f := newEnsembleFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	runIdleFailover(t, f, prog.Command(ctx, f.px.Addr, "/jf"), "/jf", false)
}

func TestKazooIdleFailover(t *testing.T) {
	zktest.RequireIntegration(t)
	f := newEnsembleFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	runIdleFailover(t, f, zktest.PythonCommand(ctx, t, kafkaload.KazooIdleClientSource, f.px.Addr, "/kf"), "/kf", true)
}

func TestCClientIdleFailover(t *testing.T) {
	zktest.RequireIntegration(t)
	prog := zktest.CProgram(t, kafkaload.CIdleClientSource)
	f := newEnsembleFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	runIdleFailover(t, f, prog.Command(ctx, f.px.Addr, "/cf"), "/cf", false)
}

// runIdleFailover drives an idle client program (kafkaload.IdleClient) under
// root: it kills the member the session is on, changes the watched nodes
// during and after the re-attach, tells the program "GO" and checks its
// report (kazoo: spelled kazoo's way).
func runIdleFailover(t *testing.T, f *ensembleFixture, cmd *exec.Cmd, root string, kazoo bool) {
	t.Helper()
	client, err := kafkaload.StartIdleClient(cmd)
	if err != nil {
		t.Fatal(err)
	}
	// On any failure below, do not wait for a program blocked on stdin.
	defer client.Kill()
	id := client.ID
	victim := f.placeOnFollower(t, id)
	direct := f.directAvoiding(t, victim)
	reattached := counter(t, f.px.m.reattaches.WithLabelValues("ok"))
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.restart(t, victim) })
	if _, err := direct.Set(root+"/d1", []byte("during"), -1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "re-attach", 30*time.Second, func() bool {
		return counter(t, f.px.m.reattaches.WithLabelValues("ok")) > reattached
	})
	if _, err := direct.Set(root+"/d2", []byte("after"), -1); err != nil {
		t.Fatal(err)
	}
	if _, err := direct.Create(root+"/new", nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	got, err := client.Report()
	if err != nil {
		t.Fatal(err)
	}
	want := kafkaload.WantIdleReport(root, kazoo)
	if !slices.Equal(got, want) {
		t.Errorf("client across the failover:\n got: %v\nwant: %v\nstderr: %s", got, want, client.Stderr())
	}
}

// idleFailoverUnnoticed kills the member an idle go-zookeeper session is on
// and checks the client notices nothing: no disconnect, watches fire for
// changes during and after the re-attach, ephemerals and auth kept.
func idleFailoverUnnoticed(t *testing.T, f *ensembleFixture) {
	acl := zk.WorldACL(zk.PermAll)
	conn, rec := connectGo(t, []string{f.px.Addr}, 10*time.Second)
	id := conn.SessionID()
	for _, p := range []string{"/idle", "/idle/d1", "/idle/d2", "/idle/c"} {
		if _, err := conn.Create(p, []byte("x"), 0, acl); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Create("/idle/eph", nil, zk.FlagEphemeral, acl); err != nil {
		t.Fatal(err)
	}
	if err := conn.AddAuth("digest", []byte("bob:pw")); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Create("/idle/private", []byte("p"), 0, zk.DigestACL(zk.PermAll, "bob", "pw")); err != nil {
		t.Fatal(err)
	}
	_, _, during, err := conn.GetW("/idle/d1")
	if err != nil {
		t.Fatal(err)
	}
	_, _, after, err := conn.GetW("/idle/d2")
	if err != nil {
		t.Fatal(err)
	}
	_, _, existCh, err := conn.ExistsW("/idle/new")
	if err != nil {
		t.Fatal(err)
	}
	_, _, childCh, err := conn.ChildrenW("/idle/c")
	if err != nil {
		t.Fatal(err)
	}
	victim := f.placeOnFollower(t, id)
	direct := f.directAvoiding(t, victim)
	if w := sessionInfo(t, f.px.Server, id).Watches; w != 4 {
		t.Fatalf("proxy tracks %d watches, want 4", w)
	}
	reattached := counter(t, f.px.m.reattaches.WithLabelValues("ok"))

	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.restart(t, victim) })
	// A change made while the session is off any member: the
	// SetWatches catch-up (relativeZxid = last zxid seen) reports it.
	if _, err := direct.Set("/idle/d1", []byte("during"), -1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "re-attach", 30*time.Second, func() bool {
		return counter(t, f.px.m.reattaches.WithLabelValues("ok")) > reattached
	})
	info := sessionInfo(t, f.px.Server, id)
	if info.Member == f.addrOf(victim) || info.State != StateActive {
		t.Fatalf("session after re-attach: %+v", info)
	}
	expectEvent(t, "data watch, change during re-attach", during, zk.EventNodeDataChanged, "/idle/d1")

	// Changes after the re-attach reach the re-registered watches.
	if _, err := direct.Set("/idle/d2", []byte("after"), -1); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, "data watch, change after re-attach", after, zk.EventNodeDataChanged, "/idle/d2")
	if _, err := direct.Create("/idle/new", nil, 0, acl); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, "exist watch", existCh, zk.EventNodeCreated, "/idle/new")
	if _, err := direct.Create("/idle/c/kid", nil, 0, acl); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, "child watch", childCh, zk.EventNodeChildrenChanged, "/idle/c")

	// Session, ephemeral and auth kept.
	_, st, err := direct.Exists("/idle/eph")
	if err != nil || st == nil || st.EphemeralOwner != id {
		t.Fatalf("ephemeral after re-attach: %+v %v", st, err)
	}
	if data, _, err := conn.Get("/idle/private"); err != nil || string(data) != "p" {
		t.Fatalf("digest-protected read after re-attach (auth replayed?): %q %v", data, err)
	}
	if n := rec.count(zk.StateDisconnected); n != 0 {
		t.Errorf("client saw %d disconnects", n)
	}
	if n := rec.count(zk.StateExpired); n != 0 {
		t.Errorf("client saw %d expiries", n)
	}
	if !f.px.Logs.contains("session re-attached", "upstream lost") {
		t.Error("no re-attach log line")
	}
}
