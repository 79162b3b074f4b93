package cutover_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/internal/rig"
	"github.com/zkproxy/zkproxy/internal/workload"
)

type quietLog struct{}

func (quietLog) Printf(string, ...any) {}

// directClient connects straight to the source members, not through the
// proxy, and creates an ephemeral node at path.
func directClient(t *testing.T, servers []string, path string) *zk.Conn {
	t.Helper()
	conn, _, err := zk.Connect(servers, 30*time.Second, zk.WithLogger(quietLog{}))
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

// TestCheckFindsClientsNotBehindProxy: a Kafka-like workload through the
// proxy, a "broker" of the same cluster registered straight on the source
// (the one an operator forgot to repoint) and a client of another tenant.
// The real members' cons and dump show both; the check warns about the
// forgotten broker only, and so does the split barrier, which would leave
// it on the source.
func TestCheckFindsClientsNotBehindProxy(t *testing.T) {
	r := rig.New(t, rig.Options{})
	ctx := rig.CtxFor(t, 4*time.Minute)
	w := rig.StartGo(t, ctx, workload.Config{Addr: one(r).Addr, Brokers: 2, Writers: 1})
	missed := directClient(t, r.Source, "/kafka/brokers/ids/9")
	other := directClient(t, r.Source, "/other/brokers/ids/1")
	missedID, otherID := fmt.Sprintf("0x%016x", uint64(missed.SessionID())), fmt.Sprintf("0x%016x", uint64(other.SessionID()))

	rep := one(r).Ctl.Check(ctx)
	var it cutover.Item
	for _, i := range rep.Items {
		if i.Name == "clients behind zkproxy" {
			it = i
		}
	}
	t.Logf("%s: %s", it.Name, it.Detail)
	if !it.OK || !it.Warning || !strings.Contains(it.Detail, missedID) || !strings.Contains(it.Detail, "/kafka/brokers/ids/9") || strings.Contains(it.Detail, otherID) {
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
	for id := range w.Snapshot().Sessions {
		if _, ok := got[fmt.Sprintf("0x%016x", uint64(w.Snapshot().Sessions[id]))]; ok {
			t.Errorf("proxied session %s listed as direct", id)
		}
	}

	cutOver(t, r, w)
	// Both direct clients are on source members: with the joint leader on
	// the destination the split would drop them, and the barrier refuses
	// naming them; either way it warns about the forgotten broker.
	plan, err := one(r).Ctl.PrepareSplit(ctx, false)
	t.Logf("leader %s (%s); split warnings: %q; err %v", plan.Leader, plan.LeaderEnsemble, plan.Warnings, err)
	if plan.LeaderEnsemble == cutover.Destination {
		if !errors.Is(err, cutover.ErrLeaderOnDestination) || !strings.Contains(strings.Join(plan.Warnings, " "), "the 2 sessions connected to its members directly") {
			t.Fatalf("leader on the destination with direct source clients: %v %q", err, plan.Warnings)
		}
	} else if err != nil {
		t.Fatal(err)
	}
	one(r).Ctl.ReleaseBarrier("test: next step")
	warned := 0
	for _, warn := range plan.Warnings {
		if strings.Contains(warn, missedID) && strings.Contains(warn, "stays with the source") {
			warned++
		}
		if strings.Contains(warn, otherID) && strings.Contains(warn, "stays with the source") {
			t.Errorf("warned about another tenant's client: %s", warn)
		}
	}
	if warned != 1 {
		t.Fatalf("the split did not warn about the forgotten broker: %q", plan.Warnings)
	}

	// Without direct clients a destination leader costs nobody anything:
	// no refusal, and no force needed.
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
