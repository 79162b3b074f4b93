package e2e

import (
	"slices"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/internal/rig"
	"github.com/zkproxy/zkproxy/internal/workload"
	"github.com/zkproxy/zkproxy/internal/zktest"
)

// TestCClientIdleThroughJoinAndCutover keeps an idle C-client session (the
// ZooKeeper C library, which cli_mt and several language bindings build on)
// open through zkproxy across the whole mitosis: the join's rolling
// restart and leader re-election, then the cutover to the destination. The
// client must see no disconnect, keep its ephemeral, and get every watch
// event for changes made on the destination afterwards.
func TestCClientIdleThroughJoinAndCutover(t *testing.T) {
	r := rig.New(t, rig.Options{})
	ctx := rig.CtxFor(t, 5*time.Minute)
	prog := zktest.CProgram(t, workload.CIdleClientSource)
	p := r.Proxies[0]
	const root = "/c-idle"
	client, err := workload.StartIdleClient(prog.Command(ctx, p.Addr, root))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Kill()
	sessions := workload.Report{Sessions: map[string]int64{"c-client": client.ID}}

	if _, err := r.M.Join(ctx); err != nil {
		t.Fatal(err)
	}
	r.WaitReady()
	r.WaitOnSource(30*time.Second, sessions)
	r.StartCutover(ctx)
	st := rig.WaitPhase(t, p, cutover.PhaseDestination)
	if st.Sessions.Moved != 1 || st.Sessions.Failed != 0 {
		t.Fatalf("the C session did not move live: %s", rig.Explain(st))
	}
	r.WaitOnDestination(10*time.Second, sessions)

	direct, _, err := zk.Connect([]string{r.M.Destination.Members[0].ClientAddr()}, 10*time.Second, zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	for _, change := range []func() error{
		func() error { _, err := direct.Set(root+"/d1", []byte("moved"), -1); return err },
		func() error { _, err := direct.Set(root+"/d2", []byte("moved"), -1); return err },
		func() error { _, err := direct.Create(root+"/new", nil, 0, zk.WorldACL(zk.PermAll)); return err },
	} {
		if err := change(); err != nil {
			t.Fatal(err)
		}
	}
	got, err := client.Report()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"event NodeChildrenChanged " + root,
		"event NodeCreated " + root + "/new",
		"event NodeDataChanged " + root + "/d1",
		"event NodeDataChanged " + root + "/d2",
		"ephemeral owner kept: true",
		"disconnects 0 expired 0",
	}
	if !slices.Equal(got, want) {
		t.Errorf("C client across join and cutover:\n got: %v\nwant: %v\nstderr: %s", got, want, client.Stderr())
	}
}
