package cutover_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/internal/zksession"
)

// TestCheckEndsIdleEpoch reproduces what CI caught in a Curator mitosis:
// after the leader's restart the new leader reports the new epoch's first
// zxid (counter 0), a member synced after the election reports it too, and
// the members that followed from the election keep the previous epoch's
// last zxid until something commits. A session that read from the first
// kind is ahead of the second, and ZooKeeper refuses it there, so the
// check must not pass, and with no writes it never would by waiting. With
// a Nudge, the check commits a session open and close and passes.
func TestCheckEndsIdleEpoch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e := zktest.NewEnsemble(t, 3)
	if err := e.WaitInSync(ctx); err != nil {
		t.Fatal(err)
	}
	var members []string
	for _, s := range e.Members {
		members = append(members, s.ClientAddr())
	}
	if _, err := zksession.OpenClose(ctx, nil, members[0]); err != nil {
		t.Fatal(err)
	}
	old, err := e.Leader()
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := e.WaitServing(ctx); err != nil {
		t.Fatal(err)
	}
	leader, err := e.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := leader.Srvr()
	if err != nil {
		t.Fatal(err)
	}
	if uint32(ls.Zxid) != 0 {
		t.Fatalf("the new leader reports zxid 0x%x: something committed in the new epoch, the idle epoch this test needs is gone", ls.Zxid)
	}
	var behind string
	for _, st := range e.Status() {
		if st.Err == nil && st.Srvr.Zxid < ls.Zxid {
			behind = st.Server.ClientAddr()
		}
	}
	if behind == "" {
		t.Fatalf("no member behind the leader's 0x%x: %+v", ls.Zxid, e.Status())
	}
	t.Logf("leader %s at 0x%x; %s behind it", leader, ls.Zxid, behind)

	// The session saw the new epoch's first zxid, as Curator's did reading
	// from a member synced after the election.
	sessions := []cutover.SessionView{{ID: 0x42, LastZxidSeen: ls.Zxid, Ensemble: cutover.Source, Member: leader.ClientAddr(), Active: true}}
	cfg := cutover.CheckConfig{Destination: members, MaxLag: 1000, SkipDirect: true}
	rep := cutover.Check(ctx, cfg, sessions)
	if rep.Ready || !strings.Contains(rep.Reason(), "sessions not ahead") || !strings.Contains(rep.Reason(), behind) {
		t.Fatalf("without a nudge the check passed or failed for another reason: ready=%v %s", rep.Ready, rep.Reason())
	}
	// Waiting does not help: nothing commits by itself.
	time.Sleep(2 * time.Second)
	if rep := cutover.Check(ctx, cfg, sessions); rep.Ready {
		t.Fatal("the idle epoch ended by itself; the test shows nothing")
	}

	var nudged []string
	cfg.Nudge = func(ctx context.Context, addr string) (int64, error) {
		nudged = append(nudged, addr)
		return zksession.OpenClose(ctx, nil, addr)
	}
	rep = cutover.Check(ctx, cfg, sessions)
	if !rep.Ready {
		t.Fatalf("with a nudge the check still fails: %s", rep.Reason())
	}
	if len(nudged) != 1 || nudged[0] != leader.ClientAddr() {
		t.Fatalf("nudged %v, want once through the leader %s", nudged, leader.ClientAddr())
	}
	var item *cutover.Item
	for i := range rep.Items {
		if rep.Items[i].Name == "idle epoch ended" {
			item = &rep.Items[i]
		}
	}
	if item == nil || !item.OK {
		t.Fatalf("the report does not say the idle epoch was ended: %+v", rep.Items)
	}
	t.Logf("%s: %s", item.Name, item.Detail)
	if !slicesContain(rep.Usable, behind) {
		t.Fatalf("%s is not usable after the nudge: %v", behind, rep.Usable)
	}

	// A check that needs no nudge commits nothing.
	nudged = nil
	if rep := cutover.Check(ctx, cfg, sessions); !rep.Ready || len(nudged) != 0 {
		t.Fatalf("second check: ready=%v nudged %v", rep.Ready, nudged)
	}
}

func slicesContain(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
