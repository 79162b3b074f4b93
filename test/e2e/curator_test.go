package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/internal/testkit/rig"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// TestCuratorKeepsProxyThroughMitosis runs a Curator 5 client (its
// EnsembleTracker follows /zookeeper/config, whose server lines here carry
// every member's client address) through zkproxy across the whole mitosis:
// the join's rolling restarts, the cutover and the split behind the barrier.
// The tracker must only ever hand Curator zkproxy's address, and the
// config Curator reads names neither the source's members nor the
// destination's.
func TestCuratorKeepsProxyThroughMitosis(t *testing.T) {
	r := rig.New(t, rig.Options{ServerOptions: []zktest.Option{zktest.WithClientAddrInServerLines()}})
	ctx := rig.CtxFor(t, 5*time.Minute)
	p := r.Proxies[0]
	c := zktest.StartCurator(t)
	do := func(args ...string) string {
		t.Helper()
		out, err := c.Do(ctx, args...)
		if err != nil {
			t.Fatalf("curator %v: %v", args, err)
		}
		return out
	}
	var memberIPs []string
	for _, e := range []*zktest.Ensemble{r.M.Source, r.M.Destination} {
		memberIPs = append(memberIPs, e.IPs()...)
	}
	keepsProxy := func(stage string) {
		t.Helper()
		do("check")
		for _, cs := range c.ConnectionStrings() {
			if cs != p.Addr {
				t.Fatalf("%s: Curator was handed %q (want only %s); all: %q", stage, cs, p.Addr, c.ConnectionStrings())
			}
		}
		if cs := do("conn"); cs != p.Addr+" "+p.Addr {
			t.Fatalf("%s: Curator's connection string is %q, want %s", stage, cs, p.Addr)
		}
		config := do("config")
		for _, ip := range memberIPs {
			if strings.Contains(config, ip) {
				t.Fatalf("%s: Curator's getConfig names member %s: %q", stage, ip, config)
			}
		}
		if !strings.Contains(config, ";"+p.Addr) {
			t.Fatalf("%s: Curator's getConfig does not name the proxy: %q", stage, config)
		}
		t.Logf("%s: Curator holds %s; config %q", stage, p.Addr, config)
	}

	do("curator", p.Addr)
	deadline := time.Now().Add(60 * time.Second)
	for len(c.ConnectionStrings()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Curator's EnsembleTracker never processed the config")
		}
		time.Sleep(50 * time.Millisecond)
	}
	keepsProxy("start")

	if _, err := r.M.Join(ctx); err != nil {
		t.Fatal(err)
	}
	r.WaitReady()
	keepsProxy("after the join")

	// Curator's reads since the check may have shown its session a zxid a
	// destination member has not reached yet: confirm the sync again
	// right before the cutover, as `zkproxy cutover check --wait` does.
	r.WaitReady()
	r.StartCutover(ctx)
	if st := rig.WaitPhase(t, p, cutover.PhaseDestination); st.Sessions.Moved != st.Sessions.Total {
		t.Fatalf("cutover: %s", rig.Explain(st))
	}
	keepsProxy("after the cutover")

	r.SplitBehindBarrier(ctx, func(_ string, f func()) { f() })
	keepsProxy("after the split")
	if n := len(p.Srv.Sessions()); n != 1 {
		t.Fatalf("the proxy holds %d sessions, want Curator's", n)
	}
}
