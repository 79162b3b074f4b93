package upgrade

import (
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// TestUpgradeInFleet upgrades a fleet replica in place. The new process is
// the same replica (same listen address, same replica id): it must take the
// ephemeral member znode over from the old process's fleet session before
// that session ends, and the old process must leave the znode and the
// registration to it instead of deleting them as a clean leave does. A gap
// would hide the replica from `split --prepare` and the barrier.
func TestUpgradeInFleet(t *testing.T) {
	zktest.RequireIntegration(t)
	binA, binB := build(t, "upgrade-a"), build(t, "upgrade-b")
	ens := zktest.NewEnsemble(t, 1)
	mem := members(ens)
	p := startServe(t, binA, mem, nil, "--fleet", "upgrades")

	direct, _, err := zk.Connect(mem, 10*time.Second, zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	replica := "/zkproxy/upgrades/replicas/" + p.Addr
	registered := "/zkproxy/upgrades/registered/" + p.Addr
	owner := func() int64 {
		_, st, err := direct.Get(replica)
		if err != nil {
			return 0
		}
		return st.EphemeralOwner
	}
	waitFor(t, "the member znode "+replica, 30*time.Second, func() bool { return owner() != 0 })
	oldOwner := owner()

	gs := &goSessions{states: map[zk.State]int{}}
	busy := startBusySessions(t, gs, p.Addr, 2)

	p.installBinary(binB)
	st := p.upgrade(byPOST, 60*time.Second)
	t.Logf("upgraded to pid %d (%s)", st.PID, st.Version)

	// The old process is gone: the znode is there, owned by the new
	// process's session, and stays there.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		o := owner()
		if o == 0 {
			t.Fatalf("the member znode %s is missing after the upgrade", replica)
		}
		if o == oldOwner {
			t.Fatalf("the member znode %s is still the old process's (session 0x%x), and goes with it", replica, o)
		}
		if ok, _, err := direct.Exists(registered); err != nil || !ok {
			t.Fatalf("the registration %s is gone after the upgrade (%v)", registered, err)
		}
	}
	stopBusy(t, busy)
	if n := gs.count(zk.StateDisconnected); n != 0 {
		t.Errorf("clients saw %d disconnects", n)
	}
}
