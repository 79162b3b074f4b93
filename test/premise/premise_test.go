package premise

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/jute"
)

const (
	// kafkaSessionTimeoutMS is Kafka's default zookeeper.session.timeout.ms;
	// the moved session S uses it so the test covers the timing Kafka needs.
	kafkaSessionTimeoutMS = 18000
	// stayTimeoutMS is the timeout of session T, which is never moved and
	// whose expiry on the destination part (c) waits for.
	stayTimeoutMS     = 6000
	writesBeforeSplit = 100
)

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}

// goClient connects a go-zookeeper client (a real client, used here only to
// make and check changes from outside the session under test) and waits for
// its session.
func goClient(ctx context.Context, t *testing.T, servers []string) *zk.Conn {
	t.Helper()
	conn, events, err := zk.Connect(servers, 10*time.Second, zk.WithLogger(discardLogger{}))
	if err != nil {
		t.Fatalf("go-zookeeper connect %v: %v", servers, err)
	}
	t.Cleanup(conn.Close)
	for {
		select {
		case ev := <-events:
			if ev.State == zk.StateHasSession {
				return conn
			}
		case <-ctx.Done():
			t.Fatalf("go-zookeeper connect %v: %v", servers, ctx.Err())
		}
	}
}

func addrs(servers []*zktest.Server) []string {
	a := make([]string, len(servers))
	for i, s := range servers {
		a[i] = s.ClientAddr()
	}
	return a
}

func sessionHex(id int64) string { return strconv.FormatUint(uint64(id), 16) }

// TestMitosisPremise runs one Yelp mitosis on real servers and checks, in
// order: (a) re-attachment on a destination member in the joint phase, (b)
// re-attachment to the split-off destination, (c) the limits. Each part needs
// the previous one, so a failure stops the rest.
func TestMitosisPremise(t *testing.T) {
	zktest.RequireIntegration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	m := zktest.NewMitosis(t)
	joint := m.Joint()
	src, dst := m.Source, m.Destination
	writer := goClient(ctx, t, addrs(src.Members))
	acl := zk.WorldACL(zk.PermAll)
	for _, p := range []string{"/premise", "/premise/watched", "/premise/kids", "/premise/eph", "/premise/writes"} {
		if _, err := writer.Create(p, nil, 0, acl); err != nil {
			t.Fatalf("create %s: %v", p, err)
		}
	}

	// Session S: the session that moves, with Kafka's timeout, created on
	// the source before the destination joins.
	s := zktest.StartJavaClient(t)
	if err := s.Connect(ctx, src.ConnectString(), kafkaSessionTimeoutMS, 0, nil); err != nil {
		t.Fatalf("S connect: %v", err)
	}
	sid, _, stimeout, err := s.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stimeout != kafkaSessionTimeoutMS {
		t.Fatalf("S negotiated %d ms, want %d (maxSessionTimeout too low?)", stimeout, kafkaSessionTimeoutMS)
	}
	for _, cmd := range [][]string{
		{"create", "/premise/eph/S", "S", "ephemeral"},
		{"get", "/premise/watched", "1"},   // data watch
		{"children", "/premise/kids", "1"}, // child watch
	} {
		if _, err := s.Do(ctx, cmd...); err != nil {
			t.Fatalf("S %v: %v", cmd, err)
		}
	}
	// Session T: stays on the source, never re-attached to the destination.
	tc := zktest.StartJavaClient(t)
	if err := tc.Connect(ctx, src.ConnectString(), stayTimeoutMS, 0, nil); err != nil {
		t.Fatalf("T connect: %v", err)
	}
	tid, tpasswd, _, err := tc.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tc.Do(ctx, "create", "/premise/eph/T", "T", "ephemeral"); err != nil {
		t.Fatalf("T create: %v", err)
	}
	t.Logf("session S 0x%016x (%d ms), session T 0x%016x (%d ms)", sid, stimeout, tid, stayTimeoutMS)

	// Stage one: destination nodes 4 and 5 join; source rolling restart.
	jl, err := m.Join(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("joint ensemble %v formed; leader %v", joint.Members, jl)

	ok := t.Run("a_JointReattachOnDestinationMember", func(t *testing.T) {
		if _, err := s.WaitAttached(ctx, addrs(src.Members)); err != nil {
			t.Fatalf("S after the rolling restart: %v", err)
		}
		from := s.EventCount()
		at, err := s.MoveTo(ctx, addrs(dst.Members[:2]))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.WaitEvent(ctx, from, zktest.State("Disconnected")); err != nil {
			t.Fatalf("S never left the source member: %v", err)
		}
		id, _, _, err := s.Session(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if id != sid {
			t.Fatalf("S re-attached as 0x%x, want 0x%x", id, sid)
		}
		// The ephemeral is still S's, seen from the source side.
		_, st, err := writer.Exists("/premise/eph/S")
		if err != nil || st == nil || st.EphemeralOwner != sid {
			t.Fatalf("S's ephemeral from the source: stat %+v err %v", st, err)
		}
		// The destination member holds S's watches: they came with SetWatches.
		var member *zktest.Server
		for _, d := range dst.Members[:2] {
			if d.ClientAddr() == at {
				member = d
			}
		}
		// The client sends SetWatches right after the handshake and counts as
		// connected before the server has applied it, so poll. wchc lists
		// data and exists watches only (DataTree.getWatches reads
		// dataWatches); the child watch is proven by its event below.
		deadline := time.Now().Add(30 * time.Second)
		for {
			wchc, err := member.FourLetter("wchc")
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(wchc, "0x"+sessionHex(sid)) && strings.Contains(wchc, "/premise/watched") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("wchc on %v lacks S's data watch:\n%s", member, wchc)
			}
			time.Sleep(50 * time.Millisecond)
		}
		// Changes made afterwards through the source fire them.
		if _, err := writer.Set("/premise/watched", []byte("changed"), -1); err != nil {
			t.Fatal(err)
		}
		if _, err := writer.Create("/premise/kids/k1", nil, 0, acl); err != nil {
			t.Fatal(err)
		}
		for _, want := range []func(zktest.ClientEvent) bool{
			zktest.NodeEvent("NodeDataChanged", "/premise/watched"),
			zktest.NodeEvent("NodeChildrenChanged", "/premise/kids"),
		} {
			if _, _, err := s.WaitEvent(ctx, from, want); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("S 0x%x re-attached on destination member %v; ephemeral and both watches intact", sid, member)
	})
	if !ok {
		t.FailNow()
	}

	// Writes acknowledged before the split: by an outside client through the
	// source, and by S itself through its destination member.
	var acked []string
	for i := range writesBeforeSplit {
		p, err := writer.Create(fmt.Sprintf("/premise/writes/w-%03d", i), []byte(strconv.Itoa(i)), 0, acl)
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		acked = append(acked, p)
	}
	if _, err := s.Do(ctx, "create", "/premise/writes/by-S", "S", "persistent"); err != nil {
		t.Fatal(err)
	}
	acked = append(acked, "/premise/writes/by-S")
	if _, err := s.Do(ctx, "get", "/premise/watched", "1"); err != nil { // re-arm for part b
		t.Fatal(err)
	}
	// T is alive in the joint ensemble, so its ephemeral is on the
	// destination members when they split off.
	if _, st, err := writer.Exists("/premise/eph/T"); err != nil || st == nil || st.EphemeralOwner != tid {
		t.Fatalf("T's ephemeral before the split: stat %+v err %v", st, err)
	}

	// Stage two, split. Step 1: firewall. Step 2: destination restart.
	splitFrom := s.EventCount()
	if err := m.Firewall(ctx); err != nil {
		t.Fatal(err)
	}
	dl, err := m.RestartDestination(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tl := m.Timeline()
	t.Logf("destination unavailable for %v: firewall up %s, destination 4+5 stopped after %v, first destination member serving %v after that (leader %v)",
		tl.DestinationUnavailable().Round(time.Millisecond), tl.FirewallUp.Format("15:04:05.000"),
		tl.DestinationStopped.Sub(tl.FirewallUp).Round(time.Millisecond),
		tl.DestinationLeader.Sub(tl.DestinationStopped).Round(time.Millisecond), dl)

	// Watch T's ephemeral on the destination from now on, to time its expiry.
	tGoneAt := make(chan time.Time, 1)
	tExists, _, tGone, err := goClient(ctx, t, addrs(dst.Members)).ExistsW("/premise/eph/T")
	if err != nil {
		t.Fatal(err)
	}
	if tExists {
		go func() {
			if ev := <-tGone; ev.Type == zk.EventNodeDeleted {
				tGoneAt <- time.Now()
			}
			close(tGoneAt)
		}()
	} else {
		close(tGoneAt)
	}

	ok = t.Run("b_ReattachAfterSplit", func(t *testing.T) {
		down, _, err := s.WaitEvent(ctx, splitFrom, zktest.State("Disconnected"))
		if err != nil {
			t.Fatal(err)
		}
		// The first connection after the old destination members were
		// stopped (S may briefly hop to the other joint member before that).
		stopped := tl.DestinationStopped.Truncate(time.Millisecond)
		up, _, err := s.WaitEvent(ctx, splitFrom, func(ev zktest.ClientEvent) bool {
			return zktest.State("SyncConnected")(ev) && !ev.At.Before(stopped)
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.WaitAttached(ctx, addrs(dst.Members)); err != nil {
			t.Fatal(err)
		}
		t.Logf("S saw the destination unavailable for %v (Disconnected %s → SyncConnected %s), %v after the first destination member served",
			up.At.Sub(down.At).Round(time.Millisecond), down.At.Format("15:04:05.000"), up.At.Format("15:04:05.000"),
			up.At.Sub(tl.DestinationLeader).Round(time.Millisecond))
		id, _, _, err := s.Session(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if id != sid {
			t.Fatalf("S is 0x%x after the split, want 0x%x", id, sid)
		}
		// Check through the formerly dormant node 6, which started empty
		// and got everything from the destination's leader.
		verifier := goClient(ctx, t, []string{m.Dormant().ClientAddr()})
		_, st, err := verifier.Exists("/premise/eph/S")
		if err != nil || st == nil || st.EphemeralOwner != sid {
			t.Fatalf("S's ephemeral on the destination: stat %+v err %v", st, err)
		}
		kids, _, err := verifier.Children("/premise/writes")
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range acked {
			if !slices.Contains(kids, strings.TrimPrefix(p, "/premise/writes/")) {
				t.Errorf("acknowledged write %s missing on the destination", p)
			}
		}
		if data, _, err := verifier.Get("/premise/writes/w-042"); err != nil || string(data) != "42" {
			t.Errorf("w-042 on the destination: %q, %v", data, err)
		}
		// S keeps working on the destination: a write, and the watch it
		// re-registered after the split fires.
		from := s.EventCount()
		if _, err := verifier.Set("/premise/watched", []byte("after-split"), -1); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.WaitEvent(ctx, from, zktest.NodeEvent("NodeDataChanged", "/premise/watched")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Do(ctx, "set", "/premise/watched", "by-S-after-split"); err != nil {
			t.Fatal(err)
		}
		t.Logf("S 0x%x re-attached to the split destination; %d acknowledged writes and its ephemeral present on node 6", sid, len(acked))
	})
	if !ok {
		t.FailNow()
	}

	// Step 3 and 4: the source restarts onto {1,2,3}; the rules go.
	sl, err := m.RestartSource(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.RemoveFirewall(); err != nil {
		t.Fatal(err)
	}
	t.Logf("split done: destination leader %v, source leader %v", dl, sl)
	// The two ensembles have really parted: the destination's post-split
	// write is not on the source.
	if data, _, err := goClient(ctx, t, addrs(src.Members)).Get("/premise/watched"); err != nil || string(data) != "changed" {
		t.Fatalf("source /premise/watched = %q, %v; want the pre-split value", data, err)
	}

	t.Run("c_Limits", func(t *testing.T) {
		// A session not re-attached within its timeout expires on the
		// destination: the new leader tracks every persisted session with a
		// fresh timeout (SessionTrackerImpl) and expires T after it.
		if !tExists {
			t.Fatalf("T's ephemeral was already gone when the destination came up")
		}
		select {
		case at, ok := <-tGoneAt:
			if !ok {
				t.Fatal("lost the watch on T's ephemeral before it was deleted")
			}
			t.Logf("T 0x%x (never re-attached, %d ms) expired on the destination %v after its first member served",
				tid, stayTimeoutMS, at.Sub(tl.DestinationLeader).Round(10*time.Millisecond))
		case <-ctx.Done():
			t.Fatal("T's ephemeral never expired on the destination")
		}
		verifier := goClient(ctx, t, addrs(dst.Members))
		if exists, _, err := verifier.Exists("/premise/eph/T"); err != nil || exists {
			t.Fatalf("T's ephemeral on the destination after expiry: exists=%v err=%v", exists, err)
		}
		// Re-attaching T now is answered with the expired-session response.
		req := jute.ConnectRequest{TimeOut: stayTimeoutMS, SessionID: jute.SessionID(tid), Passwd: tpasswd, HasReadOnly: true}
		c, resp, err := zktest.DialRaw(ctx, dst.Members[0].ClientAddr(), req)
		if err != nil {
			t.Fatalf("re-attach T: %v", err)
		}
		c.Close()
		if resp.TimeOut != 0 || resp.SessionID != 0 {
			t.Fatalf("re-attach expired T: %+v, want the expired response (timeOut 0)", resp)
		}

		// A client whose last zxid is ahead of a member is refused by it,
		// with no response (ZooKeeperServer.processConnectRequest), while
		// the member's own zxid is accepted.
		for _, d := range dst.Members {
			st, err := d.Srvr()
			if err != nil {
				t.Fatal(err)
			}
			ahead := zktest.NewSessionRequest(stayTimeoutMS)
			ahead.LastZxidSeen = jute.Zxid(st.Zxid + 1000)
			if c, resp, err := zktest.DialRaw(ctx, d.ClientAddr(), ahead); !errors.Is(err, zktest.ErrClosedWithoutResponse) {
				if c != nil {
					c.Close()
				}
				t.Fatalf("%v at zxid 0x%x accepted lastZxidSeen 0x%x: %+v, %v", d, st.Zxid, ahead.LastZxidSeen, resp, err)
			}
			same := zktest.NewSessionRequest(stayTimeoutMS)
			same.LastZxidSeen = jute.Zxid(st.Zxid)
			c, resp, err := zktest.DialRaw(ctx, d.ClientAddr(), same)
			if err != nil {
				t.Fatalf("%v refused lastZxidSeen = its own zxid 0x%x: %v", d, st.Zxid, err)
			}
			if resp.TimeOut <= 0 {
				t.Fatalf("%v: %+v", d, resp)
			}
			if err := c.CloseSession(ctx); err != nil {
				t.Fatal(err)
			}
		}
	})
}
