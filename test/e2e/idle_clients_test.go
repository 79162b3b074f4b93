package e2e

import (
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/internal/testkit/kafkaload"
	"github.com/zkproxy/zkproxy/internal/testkit/rig"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// TestIdleClientsThroughJoinAndCutover keeps an idle session of each real
// client library — the Java client (Kafka's), kazoo, and the C client
// (which cli_mt and several language bindings build on) — open through
// zkproxy across the whole mitosis: the join's rolling restart and leader
// re-election, then the cutover to the destination. No client may see a
// disconnect; each keeps its ephemeral and gets every watch event for
// changes made on the destination afterwards.
func TestIdleClientsThroughJoinAndCutover(t *testing.T) {
	r := rig.New(t, rig.Options{})
	ctx := rig.CtxFor(t, 5*time.Minute)
	p := r.Proxies[0]
	java := zktest.JavaProgram(t, kafkaload.JavaIdleClientSource)
	c := zktest.CProgram(t, kafkaload.CIdleClientSource)
	clients := []struct {
		name, root string
		kazoo      bool
		cmd        *exec.Cmd
	}{
		{"java", "/idle-java", false, java.Command(ctx, p.Addr, "/idle-java")},
		{"kazoo", "/idle-kazoo", true, zktest.PythonCommand(ctx, t, kafkaload.KazooIdleClientSource, p.Addr, "/idle-kazoo")},
		{"c", "/idle-c", false, c.Command(ctx, p.Addr, "/idle-c")},
	}
	sessions := kafkaload.Report{Sessions: map[string]int64{}}
	running := make([]*kafkaload.IdleClient, len(clients))
	for i, cl := range clients {
		ic, err := kafkaload.StartIdleClient(cl.cmd)
		if err != nil {
			t.Fatalf("%s: %v", cl.name, err)
		}
		defer ic.Kill()
		running[i] = ic
		sessions.Sessions[cl.name] = ic.ID
	}

	if _, err := r.M.Join(ctx); err != nil {
		t.Fatal(err)
	}
	r.WaitReady()
	r.WaitOnSource(30*time.Second, sessions)
	r.StartCutover(ctx)
	st := rig.WaitPhase(t, p, cutover.PhaseDestination)
	if st.Sessions.Moved != len(clients) || st.Sessions.Failed != 0 {
		t.Fatalf("not every idle session moved live: %s", rig.Explain(st))
	}
	r.WaitOnDestination(10*time.Second, sessions)

	direct, _, err := zk.Connect([]string{r.M.Destination.Members[0].ClientAddr()}, 10*time.Second, zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	for _, cl := range clients {
		if _, err := direct.Set(cl.root+"/d1", []byte("moved"), -1); err != nil {
			t.Fatal(err)
		}
		if _, err := direct.Set(cl.root+"/d2", []byte("moved"), -1); err != nil {
			t.Fatal(err)
		}
		if _, err := direct.Create(cl.root+"/new", nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
	}
	for i, cl := range clients {
		got, err := running[i].Report()
		if err != nil {
			t.Errorf("%s: %v", cl.name, err)
			continue
		}
		if want := kafkaload.WantIdleReport(cl.root, cl.kazoo); !slices.Equal(got, want) {
			t.Errorf("%s client across join and cutover:\n got: %v\nwant: %v\nstderr: %s", cl.name, got, want, running[i].Stderr())
		}
	}
}
