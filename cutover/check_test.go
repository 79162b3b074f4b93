package cutover

import (
	"github.com/zkproxy/zkproxy/internal/fourlw"

	"context"
	"fmt"
	"net"
	"strings"
	"testing"
)

// fakeMember answers four-letter words like a 3.8 quorum member. It exists
// for states a real ensemble cannot be held in on demand — a follower that
// serves while trailing the leader — and the check is also run against real
// joint ensembles in integration_test.go.
type fakeMember struct {
	mode      string
	zxid      int64
	nodes     int
	id        int
	version   string
	local     int
	notServed bool
	cons      string // the cons answer; empty: none
	dump      string // the dump answer; empty: no ephemerals
	refuse    string // a word not in this member's whitelist
}

func (f fakeMember) answer(cmd string) string {
	if f.notServed {
		return "This ZooKeeper instance is not currently serving requests\n"
	}
	if cmd == f.refuse {
		return cmd + " is not executed because it is not in the whitelist.\n"
	}
	switch cmd {
	case "srvr":
		return fmt.Sprintf("Zookeeper version: 3.8.0\nLatency min/avg/max: 0/0.1/1\nReceived: 1\nSent: 1\nConnections: 1\nOutstanding: 0\nZxid: 0x%x\nMode: %s\nNode count: %d\n", f.zxid, f.mode, f.nodes)
	case "conf":
		return fmt.Sprintf("clientPort=2181\ntickTime=200\nserverId=%d\nmembership: \nserver.1=a:2888:3888:participant\nserver.2=b:2888:3888:participant\nversion=%s\n", f.id, f.version)
	case "mntr":
		return fmt.Sprintf("zk_version\t3.8.0\nzk_server_state\t%s\nzk_local_sessions\t%d\n", f.mode, f.local)
	case "cons":
		return " /10.0.0.1:40000[0](queued=0,recved=1,sent=0)\n" + f.cons + "\n"
	case "dump":
		if f.dump == "" {
			return "SessionTracker dump:\nephemeral nodes dump:\nSessions with Ephemerals (0):\n"
		}
		return "SessionTracker dump:\nephemeral nodes dump:\n" + f.dump + "Connections dump:\n"
	}
	return ""
}

// fakeDial routes "name:2181" to an in-memory member.
func fakeDial(members map[string]fakeMember) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		m, ok := members[addr]
		if !ok {
			return nil, fmt.Errorf("dial %s: connection refused", addr)
		}
		client, server := net.Pipe()
		go func() {
			defer server.Close()
			cmd := make([]byte, 4)
			if _, err := server.Read(cmd); err != nil {
				return
			}
			_, _ = server.Write([]byte(m.answer(string(cmd))))
		}()
		return client, nil
	}
}

func joint() map[string]fakeMember {
	return map[string]fakeMember{
		"s1:2181": {mode: "follower", zxid: 0x300000050, nodes: 40, id: 1, version: "200000000"},
		"s2:2181": {mode: "follower", zxid: 0x300000050, nodes: 40, id: 2, version: "200000000"},
		"s3:2181": {mode: "follower", zxid: 0x300000050, nodes: 40, id: 3, version: "200000000"},
		"d4:2181": {mode: "follower", zxid: 0x300000050, nodes: 40, id: 4, version: "200000000"},
		"d5:2181": {mode: "leader", zxid: 0x300000050, nodes: 40, id: 5, version: "200000000"},
		// d6 is the dormant third destination node: not running.
	}
}

func runCheck(members map[string]fakeMember, maxLag int64, sessions ...SessionView) *Report {
	return Check(context.Background(), CheckConfig{
		Source:      []string{"s1:2181", "s2:2181", "s3:2181"},
		Destination: []string{"d4:2181", "d5:2181", "d6:2181"},
		MaxLag:      maxLag,
		Members:     fourlw.Members{Dial: fakeDial(members)},
	}, sessions)
}

func item(t *testing.T, r *Report, name string) Item {
	t.Helper()
	for _, it := range r.Items {
		if it.Name == name {
			return it
		}
	}
	t.Fatalf("no item %q in %+v", name, r.Items)
	return Item{}
}

func TestCheckJointEnsembleReady(t *testing.T) {
	r := runCheck(joint(), 0, SessionView{ID: 0x100, LastZxidSeen: 0x300000040, Ensemble: Source, Member: "s1:2181"})
	if !r.Ready {
		t.Fatalf("not ready: %s\n%+v", r.Reason(), r.Items)
	}
	if r.Leader != "d5:2181" || strings.Join(r.Usable, ",") != "d4:2181,d5:2181" {
		t.Fatalf("leader %s usable %v", r.Leader, r.Usable)
	}
	if len(r.Unmovable) != 0 {
		t.Fatalf("unmovable: %+v", r.Unmovable)
	}
}

func TestCheckIdleEnsembleAfterElection(t *testing.T) {
	m := joint()
	for addr, f := range m {
		f.zxid = 0x2000000a0 // last transaction of the previous epoch
		if f.mode == "leader" {
			f.zxid = 0x300000000 // the new epoch, no transaction yet
		}
		m[addr] = f
	}
	r := runCheck(m, 0)
	if !r.Ready {
		t.Fatalf("a synced idle ensemble after an election is not ready: %s", r.Reason())
	}
}

func TestCheckToleratesSessionsAheadWithinLag(t *testing.T) {
	m := joint()
	d := m["d4:2181"]
	d.zxid = 0x30000004e // two behind the leader and the session
	m["d4:2181"] = d
	if r := runCheck(m, 16, SessionView{ID: 1, LastZxidSeen: 0x300000050, Ensemble: Source}); !r.Ready {
		t.Fatalf("a member two transactions behind a session, MaxLag 16: %s", r.Reason())
	}
	if r := runCheck(m, 1, SessionView{ID: 1, LastZxidSeen: 0x300000050, Ensemble: Source}); r.Ready {
		t.Fatal("a member two transactions behind a session passed with MaxLag 1")
	}
}

func TestCheckRefusals(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mutate   func(m map[string]fakeMember)
		maxLag   int64
		sessions []SessionView
		failing  string
		detail   string
	}{
		{"destination lagging", func(m map[string]fakeMember) {
			d := m["d4:2181"]
			d.zxid = 0x300000010
			m["d4:2181"] = d
		}, 16, nil, "caught up", "d4:2181 at 0x300000010 (64 behind)"},
		{"destination in another quorum", func(m map[string]fakeMember) {
			m["d4:2181"] = fakeMember{mode: "leader", zxid: 0x400000002, nodes: 40, id: 4, version: "300000000"}
			m["d5:2181"] = fakeMember{mode: "follower", zxid: 0x400000002, nodes: 40, id: 5, version: "300000000"}
			s := m["s3:2181"]
			s.mode = "leader"
			m["s3:2181"] = s
		}, 0, nil, "one leader", "2 leaders"},
		{"destination not serving", func(m map[string]fakeMember) {
			m["d4:2181"] = fakeMember{notServed: true}
		}, 0, nil, "destination serves", "d4:2181"},
		{"znode count differs", func(m map[string]fakeMember) {
			d := m["d4:2181"]
			d.nodes = 39
			m["d4:2181"] = d
		}, 0, nil, "znode counts agree", "d4:2181 has 39 at the same zxid (leader 40)"},
		{"session ahead of destination", nil, 0,
			[]SessionView{{ID: 1, LastZxidSeen: 0x300000051, Ensemble: Source}}, "sessions not ahead", "0x300000051"},
		{"no destination at all", func(m map[string]fakeMember) {
			delete(m, "d4:2181")
			delete(m, "d5:2181")
			s := m["s3:2181"]
			s.mode = "leader"
			m["s3:2181"] = s
		}, 0, nil, "destination serves", "no destination member reachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := joint()
			if tc.mutate != nil {
				tc.mutate(m)
			}
			r := runCheck(m, tc.maxLag, tc.sessions...)
			if r.Ready {
				t.Fatalf("ready, want refusal on %q", tc.failing)
			}
			it := item(t, r, tc.failing)
			if it.OK || !strings.Contains(it.Detail, tc.detail) {
				t.Fatalf("item %q = %+v, want failed with %q", tc.failing, it, tc.detail)
			}
			if !strings.Contains(r.Reason(), tc.failing) {
				t.Fatalf("reason %q does not name %q", r.Reason(), tc.failing)
			}
		})
	}
}

func TestCheckListsUnmovableSessions(t *testing.T) {
	m := joint()
	s := m["s2:2181"]
	s.local = 3
	m["s2:2181"] = s
	r := runCheck(m, 0,
		SessionView{ID: 1, LastZxidSeen: 0x300000001, SASL: true, Ensemble: Source, Member: "s1:2181"},
		SessionView{ID: 2, LastZxidSeen: 0x300000001, Ensemble: Source, Member: "s2:2181"},
		SessionView{ID: 3, LastZxidSeen: 0x300000001, Ensemble: Source, Member: "s3:2181"},
		SessionView{ID: 4, LastZxidSeen: 0x300000001, SASL: true, Ensemble: Destination, Member: "d4:2181"},
	)
	if !r.Ready {
		t.Fatalf("unmovable sessions must not block the cutover: %s", r.Reason())
	}
	got := fmt.Sprint(r.Unmovable)
	if len(r.Unmovable) != 2 || !strings.Contains(got, "0x0000000000000001 sasl") || !strings.Contains(got, "0x0000000000000002 local_session") {
		t.Fatalf("unmovable = %s", got)
	}
}

func consLine(client string, sid int64) string {
	return fmt.Sprintf(" /%s[1](queued=0,recved=3,sent=3,sid=0x%x,lop=PING,est=1,to=10000,lcxid=0x2,lzxid=0x1,lresp=1,llat=0,minlat=0,avglat=0,maxlat=1)\n", client, sid)
}

// TestCheckFindsDirectSessions: a session that is not this proxy's and owns
// an ephemeral node beside a proxied session's is a client of the same
// tenant left pointing at the ensemble: the check warns, naming it, but
// stays ready (other tenants' clients are direct too).
func TestCheckFindsDirectSessions(t *testing.T) {
	members := joint()
	dump := "Sessions with Ephemerals (4):\n0x100:\n\t/kafka/brokers/ids/1\n0x200:\n\t/kafka/brokers/ids/2\n0x300:\n\t/other/brokers/ids/1\n0x500:\n\t/kafka/brokers/ids/5\n"
	for _, addr := range []string{"s1:2181", "d5:2181"} {
		m := members[addr]
		m.dump = dump
		members[addr] = m
	}
	s1, s2, d4 := members["s1:2181"], members["s2:2181"], members["d4:2181"]
	s1.cons = consLine("10.0.0.9:5000", 0x100) // the proxy's session
	s2.cons = consLine("10.0.0.2:6000", 0x200) + consLine("10.0.0.4:6001", 0x400)
	d4.cons = consLine("10.0.0.3:7000", 0x300)
	members["s1:2181"], members["s2:2181"], members["d4:2181"] = s1, s2, d4

	r := runCheck(members, 0, SessionView{ID: 0x100, LastZxidSeen: 0x300000040, Ensemble: Source, Member: "s1:2181"})
	if !r.Ready {
		t.Fatalf("a direct session made the check fail: %s", r.Reason())
	}
	it := item(t, r, "clients behind zkproxy")
	if !it.OK || !it.Warning {
		t.Fatalf("item %+v, want ok with a warning", it)
	}
	for _, want := range []string{"2 of 4 sessions", "0x0000000000000200 (10.0.0.2:6000 on s2:2181) owns /kafka/brokers/ids/2", "0x0000000000000500 (connection not seen) owns /kafka/brokers/ids/5"} {
		if !strings.Contains(it.Detail, want) {
			t.Errorf("detail lacks %q: %s", want, it.Detail)
		}
	}
	got := map[string]DirectSession{}
	for _, d := range r.Direct {
		got[d.ID] = d
	}
	if len(got) != 4 || !got["0x0000000000000200"].BesideProxied || got["0x0000000000000300"].BesideProxied ||
		got["0x0000000000000400"].BesideProxied || got["0x0000000000000300"].Member != "d4:2181" || !got["0x0000000000000500"].BesideProxied {
		t.Fatalf("direct sessions: %+v", r.Direct)
	}

	// Only other tenants' sessions: no warning.
	members["s2:2181"] = joint()["s2:2181"]
	for _, addr := range []string{"s1:2181", "d5:2181"} {
		m := members[addr]
		m.dump = "Sessions with Ephemerals (2):\n0x100:\n\t/kafka/brokers/ids/1\n0x300:\n\t/other/brokers/ids/1\n"
		members[addr] = m
	}
	r = runCheck(members, 0, SessionView{ID: 0x100, LastZxidSeen: 0x300000040, Ensemble: Source, Member: "s1:2181"})
	if it := item(t, r, "clients behind zkproxy"); !it.OK || it.Warning || !strings.Contains(it.Detail, "1 sessions not through this proxy, none") {
		t.Fatalf("item %+v", it)
	}

	// A word the members refuse: the list may be incomplete, and it says so.
	refusing := joint()
	for addr, m := range refusing {
		m.refuse = "dump"
		refusing[addr] = m
	}
	r = runCheck(refusing, 0)
	if it := item(t, r, "clients behind zkproxy"); !it.OK || !it.Warning || !strings.Contains(it.Detail, "could not list every session: dump: fourlw dump") || !r.Ready {
		t.Fatalf("item %+v", it)
	}
}

// TestCheckCountsPeerSessions: the sessions of a peer zkproxy (an HA pair's
// partner, its brokers registered beside ours) are not direct clients; a
// peer that cannot be asked makes the look incomplete, and says so.
func TestCheckCountsPeerSessions(t *testing.T) {
	members := joint()
	for addr, m := range members {
		m.dump = "Sessions with Ephemerals (2):\n0x100:\n\t/kafka/brokers/ids/1\n0x200:\n\t/kafka/brokers/ids/2\n"
		members[addr] = m
	}
	s2 := members["s2:2181"]
	s2.cons = consLine("10.0.0.8:6000", 0x200) // the peer proxy's connection
	members["s2:2181"] = s2
	check := func(peers func(context.Context) ([]int64, []string)) *Report {
		return Check(context.Background(), CheckConfig{
			Source: []string{"s1:2181", "s2:2181", "s3:2181"}, Destination: []string{"d4:2181", "d5:2181", "d6:2181"},
			Members: fourlw.Members{Dial: fakeDial(members)}, PeerSessions: peers,
		}, []SessionView{{ID: 0x100, LastZxidSeen: 0x300000040, Ensemble: Source, Member: "s1:2181"}})
	}

	r := check(func(context.Context) ([]int64, []string) { return []int64{0x200}, nil })
	if it := item(t, r, "clients behind zkproxy"); !it.OK || it.Warning || len(r.Direct) != 0 || r.directIncomplete {
		t.Fatalf("with the peer's sessions: %+v, direct %+v", it, r.Direct)
	}
	if len(r.PeersOnSource) != 1 || r.PeersOnSource[0] != "0x0000000000000200 (10.0.0.8:6000 on s2:2181)" {
		t.Fatalf("peer sessions on the source: %q", r.PeersOnSource)
	}

	r = check(func(context.Context) ([]int64, []string) {
		return nil, []string{"peer http://b:9181: connection refused"}
	})
	it := item(t, r, "clients behind zkproxy")
	if !it.Warning || !strings.Contains(it.Detail, "could not list every session: peer http://b:9181: connection refused") ||
		!strings.Contains(it.Detail, "0x0000000000000200 (10.0.0.8:6000 on s2:2181) owns /kafka/brokers/ids/2") || !r.directIncomplete {
		t.Fatalf("with the peer unreachable: %+v", it)
	}
}

// TestIdleEpochNudge: the check nudges only when every destination member
// behind the sessions is a follower of the previous epoch under a leader
// with no transaction in its epoch yet, tries each serving member once
// when the nudges fail, and says so. (TestCheckEndsIdleEpoch runs it on a
// real ensemble.)
func TestIdleEpochNudge(t *testing.T) {
	idle := map[string]fakeMember{
		"s1:2181": {mode: "follower", zxid: 0x400000000, nodes: 40, id: 1, version: "200000000"},
		"s2:2181": {mode: "follower", zxid: 0x300000050, nodes: 40, id: 2, version: "200000000"},
		"s3:2181": {mode: "follower", zxid: 0x300000050, nodes: 40, id: 3, version: "200000000"},
		"d4:2181": {mode: "follower", zxid: 0x300000050, nodes: 40, id: 4, version: "200000000"},
		"d5:2181": {mode: "leader", zxid: 0x400000000, nodes: 40, id: 5, version: "200000000"},
	}
	session := SessionView{ID: 7, LastZxidSeen: 0x400000000, Ensemble: Source, Member: "s1:2181"}
	var nudged []string
	cfg := CheckConfig{
		Source:      []string{"s1:2181", "s2:2181", "s3:2181"},
		Destination: []string{"d4:2181", "d5:2181", "d6:2181"},
		MaxLag:      100,
		Members:     fourlw.Members{Dial: fakeDial(idle)},
		SkipDirect:  true,
		Nudge: func(_ context.Context, addr string) (int64, error) {
			nudged = append(nudged, addr)
			return 0, fmt.Errorf("refused")
		},
	}
	rep := Check(context.Background(), cfg, []SessionView{session})
	if rep.Ready {
		t.Fatal("ready with every nudge refused")
	}
	if it := item(t, rep, "idle epoch ended"); it.OK || !strings.Contains(it.Detail, "d5:2181: refused") {
		t.Fatalf("idle epoch item: %+v", it)
	}
	if len(nudged) != 5 || nudged[0] != "d5:2181" {
		t.Fatalf("nudged %v, want the leader first, then each other serving member once", nudged)
	}

	// A member behind for another reason (same epoch, trailing) is not an
	// idle epoch: no nudge.
	nudged = nil
	lagging := joint()
	lagging["d4:2181"] = fakeMember{mode: "follower", zxid: 0x300000010, nodes: 40, id: 4, version: "200000000"}
	cfg.Members = fourlw.Members{Dial: fakeDial(lagging)}
	ahead := SessionView{ID: 7, LastZxidSeen: 0x300000050, Ensemble: Source, Member: "s1:2181"}
	cfg.MaxLag = 10
	if rep := Check(context.Background(), cfg, []SessionView{ahead}); rep.Ready || len(nudged) != 0 {
		t.Fatalf("a trailing member: ready=%v, nudged %v (want not ready, no nudge)", rep.Ready, nudged)
	}
}
