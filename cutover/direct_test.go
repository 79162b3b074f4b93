package cutover_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/internal/testkit/kafkaload"
	"github.com/zkproxy/zkproxy/internal/testkit/rig"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// directClient connects straight to the source members, not through the
// proxy, and creates an ephemeral node at path.
func directClient(t *testing.T, servers []string, path string) *zk.Conn {
	t.Helper()
	conn, _, err := zk.Connect(servers, 30*time.Second, zk.WithLogger(zktest.QuietLogger{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	parent := path[:strings.LastIndexByte(path, '/')]
	for i := 1; i <= len(parent); i++ {
		if i == len(parent) || parent[i] == '/' {
			if _, err := conn.Create(parent[:i], nil, 0, zk.WorldACL(zk.PermAll)); err != nil && err != zk.ErrNodeExists {
				t.Fatalf("creating %s: %v", parent[:i], err)
			}
		}
	}
	if _, err := conn.Create(path, nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatalf("creating %s: %v", path, err)
	}
	return conn
}

// TestCheckFindsClientsNotBehindProxy: two zkproxies in front of the same
// ensembles (an HA pair, each naming the other as a peer), a Kafka-like
// workload through the first, one more broker of the same cluster through
// the second, a broker registered straight on the source (the one an
// operator forgot to repoint) and a client of another tenant. The real
// members' cons and dump show all of them; the check warns about the
// forgotten broker only — not the peer's — and so does the split barrier,
// which also refuses while the peer has not cut over, and, with a
// destination leader, while clients sit on source members directly.
func TestCheckFindsClientsNotBehindProxy(t *testing.T) {
	r := rig.New(t, rig.Options{Proxies: 2})
	ctx := rig.CtxFor(t, 4*time.Minute)
	w := rig.StartGo(t, ctx, kafkaload.Config{Addr: one(r).Addr, Brokers: 2, Writers: 1})
	peerBroker := directClient(t, []string{r.Proxies[1].Addr}, "/kafka/brokers/ids/7")
	missed := directClient(t, r.Source, "/kafka/brokers/ids/9")
	other := directClient(t, r.Source, "/other/brokers/ids/1")
	hex := func(c *zk.Conn) string { return fmt.Sprintf("0x%016x", uint64(c.SessionID())) }
	peerID, missedID, otherID := hex(peerBroker), hex(missed), hex(other)

	rep := one(r).Ctl.Check(ctx)
	var it cutover.Item
	for _, i := range rep.Items {
		if i.Name == "clients behind zkproxy" {
			it = i
		}
	}
	t.Logf("%s: %s", it.Name, it.Detail)
	if !it.OK || !it.Warning || !strings.Contains(it.Detail, missedID) || !strings.Contains(it.Detail, "/kafka/brokers/ids/9") ||
		strings.Contains(it.Detail, otherID) || strings.Contains(it.Detail, peerID) {
		t.Fatalf("item %+v", it)
	}
	got := map[string]cutover.DirectSession{}
	for _, d := range rep.Direct {
		got[d.ID] = d
	}
	if d := got[missedID]; !d.BesideProxied || d.Member == "" || d.Client == "" {
		t.Errorf("forgotten broker: %+v", d)
	}
	if d, ok := got[otherID]; !ok || d.BesideProxied || len(d.Ephemerals) != 1 {
		t.Errorf("other tenant's client: %+v", d)
	}
	if _, ok := got[peerID]; ok || len(rep.PeersOnSource) != 1 || !strings.HasPrefix(rep.PeersOnSource[0], peerID) {
		t.Errorf("the peer's broker: direct %+v, peer sessions on the source %q", got[peerID], rep.PeersOnSource)
	}
	for name, id := range w.Snapshot().Sessions {
		if _, ok := got[fmt.Sprintf("0x%016x", uint64(id))]; ok {
			t.Errorf("proxied session %s listed as direct", name)
		}
	}

	cutOver(t, r, w) // the first proxy only
	// The join's restarts moved the peer's session between source members
	// (invisibly to its client); the barrier sees it where cons shows it.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, ok := rig.SessionsOn(t, r.M.Source.Members)[peerBroker.SessionID()]; ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the peer's session %s is on no source member", peerID)
		}
	}
	warnedAbout := func(plan *cutover.SplitPlan, id string) bool {
		return slices.ContainsFunc(plan.Warnings, func(w string) bool { return strings.Contains(w, id) })
	}
	plan, err := one(r).Ctl.PrepareSplit(ctx, false)
	t.Logf("peer not cut over: warnings %q; err %v", plan.Warnings, err)
	if !errors.Is(err, cutover.ErrPeersOnSource) || !warnedAbout(plan, peerID) {
		t.Fatalf("split with the peer's session on the source: %v %q", err, plan.Warnings)
	}
	if !warnedAbout(plan, missedID) || warnedAbout(plan, otherID) {
		t.Fatalf("the forgotten broker, and only it, must be warned about: %q", plan.Warnings)
	}

	peer := r.Proxies[1]
	if _, err := peer.Ctl.Start(ctx, false); err != nil {
		t.Fatal(err)
	}
	rig.WaitPhase(t, peer, cutover.PhaseDestination)
	// Both direct clients are on source members: with the joint leader on
	// the destination the split would drop them, and the barrier refuses
	// naming them.
	plan, err = one(r).Ctl.PrepareSplit(ctx, false)
	t.Logf("leader %s (%s); warnings %q; err %v", plan.Leader, plan.LeaderEnsemble, plan.Warnings, err)
	if plan.LeaderEnsemble == cutover.Destination {
		if !errors.Is(err, cutover.ErrLeaderOnDestination) || !strings.Contains(strings.Join(plan.Warnings, " "), "the 2 sessions connected to its members directly") {
			t.Fatalf("leader on the destination with direct source clients: %v %q", err, plan.Warnings)
		}
	} else if err != nil {
		t.Fatal(err)
	}
	one(r).Ctl.ReleaseBarrier("test: next step")

	// Without direct clients a destination leader costs nobody anything:
	// no refusal, no force, no warning.
	missed.Close()
	other.Close()
	plan, err = one(r).Ctl.PrepareSplit(ctx, false)
	if err != nil {
		t.Fatalf("split refused with no direct client: %v %q", err, plan.Warnings)
	}
	one(r).Ctl.ReleaseBarrier("test done")
	t.Logf("without direct clients: leader %s (%s), warnings %q", plan.Leader, plan.LeaderEnsemble, plan.Warnings)
	if len(plan.Warnings) != 0 {
		t.Fatalf("warnings with no direct client: %q", plan.Warnings)
	}
}
