package e2e

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/fleet"
	"github.com/zkproxy/zkproxy/internal/testkit/kafkaload"
	"github.com/zkproxy/zkproxy/internal/testkit/rig"
)

// Stages of a fleet migration at which fleetRun kills its victim replica.
var fleetStages = []string{"before_cutover", "mid_cutover", "after_cutover", "mid_split"}

// fleetRun is one fleet migration (three replicas, the Java workload listing
// all three, slow moves so the cutover takes seconds) with replica victim
// killed (kill -9: no goodbye to ZooKeeper, client connections dropped) at
// stage (victim -1: the replica carrying the most sessions then, other
// than the operator's). After the split the victim is started again with an empty
// data-dir. It checks: the cutover and the split complete on the
// survivors, every session ends on the destination, a vanished replica
// blocks split --prepare by name until forced, the restarted victim routes
// to the destination, nothing expires, nothing acknowledged is lost, and
// only the victim's sessions saw Disconnected.
func fleetRun(t *testing.T, victim int, stage string, via int) {
	fd := newFaultyDial()
	r, j, base, ctx := startFleet(t, rig.Options{MoveConcurrency: 1, Dial: fd.dial, Quiet: true})
	fd.set(r.Dest, 300*time.Millisecond, 0)
	var v *rig.Proxy
	if victim >= 0 {
		v = r.Proxies[victim]
	}
	killedIDs := map[int64]bool{}
	killed := false
	kill := func(when string) {
		if v == nil { // the replica carrying the most sessions, not the operator's
			for i, p := range r.Proxies {
				if i != via && (v == nil || len(p.Srv.Sessions()) > len(v.Srv.Sessions())) {
					v = p
				}
			}
		}
		for _, s := range v.Srv.Sessions() {
			killedIDs[int64(s.ID())] = true
		}
		t.Logf("%s: killing %s (%d sessions)", when, v.Name, len(killedIDs))
		v.Kill(t)
		killed = true
	}
	if stage == "before_cutover" {
		kill(stage)
		// Its clients come back through the others, still on the source.
		r.WaitOnSource(60*time.Second, j.Snapshot())
	}
	if _, err := r.Proxies[via].Fleet.Start(ctx, false, 0); err != nil {
		t.Fatal(err)
	}
	if stage == "mid_cutover" {
		if _, err := rig.WaitFleet(ctx, r.Proxies[via], "two sessions moved", func(fv fleet.View) bool { return fv.Totals.Moved >= 2 }); err != nil {
			t.Fatal(err)
		}
		kill(stage)
	}
	r.WaitFleetDone(ctx, cutover.PhaseDestination)
	r.WaitOnDestination(60*time.Second, j.Snapshot())
	noProxiedSessionOnSource(t, r, j.Snapshot())
	if stage == "after_cutover" {
		kill(stage)
		r.WaitOnDestination(60*time.Second, j.Snapshot())
	}
	fd.set(r.Dest, 0, 0)
	if killed {
		// The victim's member znode goes with its session (4s); its
		// registration stays: split --prepare names it.
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err := r.Proxies[via].Fleet.PrepareSplit(ctx, false)
			if errors.Is(err, fleet.ErrReplicasNotReady) && strings.Contains(err.Error(), v.Name) && strings.Contains(err.Error(), "vanished") {
				t.Logf("split --prepare refused: %v", err)
				break
			}
			if err == nil {
				t.Fatalf("split --prepare went ahead with %s vanished", v.Name)
			}
			if time.Now().After(deadline) {
				t.Fatalf("split --prepare: %v", err)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	r.SplitBehindBarrierFleet(ctx, r.Proxies[via], func(name string, f func()) {
		f()
		if stage == "mid_split" && name == "split: firewall" {
			kill(stage)
		}
	})
	if killed {
		v.Dir = t.TempDir()
		r.Start(v, r.Opts)
		st := v.Ctl.Status()
		t.Logf("%s restarted after the split with an empty data-dir: %s", v.Name, rig.Explain(st))
		if st.Target != cutover.Destination || !st.Split {
			t.Fatalf("%s routes to %s after the split", v.Name, st.Target)
		}
	}
	r.WaitOnDestination(60*time.Second, j.Snapshot())
	noProxiedSessionOnSource(t, r, j.Snapshot())
	time.Sleep(500 * time.Millisecond)
	final := j.Stop().Since(base)
	t.Logf("run: %s; %s", final, kafkaload.PausesOf(final))
	if final.Expired != 0 {
		t.Fatalf("sessions expired: %s", final)
	}
	for name, n := range final.SessionDisconnects {
		if n > 0 && !killedIDs[final.Sessions[name]] {
			t.Errorf("%s (0x%x) saw %d disconnects, but its replica stayed up", name, final.Sessions[name], n)
		}
	}
	ver, err := j.Verify(ctx, r.M.Destination.Members[2].ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("read back from the destination: %s", ver)
	if !ver.OK() {
		t.Fatalf("verification failed: %s %v", ver, ver.Problems)
	}
}

// TestFleetReplicaKilledMidCutover: kill -9 of the replica carrying the
// most sessions while the fleet's cutover runs; its clients come back through the others with
// their sessions and end on the destination; nothing lost or expired.
func TestFleetReplicaKilledMidCutover(t *testing.T) {
	fleetRun(t, -1, "mid_cutover", 1)
}

// TestFleetChaos runs the fleet migration ZKPROXY_FLEET_CHAOS_RUNS times
// (default 1; make soak-fleet runs 10), each with a random replica killed
// at a random stage, and logs each run's seed, victim, stage and result.
// ZKPROXY_FLEET_CHAOS_SEED replays a whole series, ZKPROXY_FLEET_CHAOS_RUN_SEED
// one run.
func TestFleetChaos(t *testing.T) {
	runs := 1
	if s := os.Getenv("ZKPROXY_FLEET_CHAOS_RUNS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("ZKPROXY_FLEET_CHAOS_RUNS=%q: not a positive integer", s)
		}
		runs = n
	}
	seed := time.Now().UnixNano()
	if s := os.Getenv("ZKPROXY_FLEET_CHAOS_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	// Each run draws from its own generator, seeded from the master: a
	// failing run is replayed with ZKPROXY_FLEET_CHAOS_RUN_SEED.
	master := rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
	var results []string
	for i := range runs {
		runSeed := int64(master.Uint64() >> 1)
		if s := os.Getenv("ZKPROXY_FLEET_CHAOS_RUN_SEED"); s != "" {
			runSeed, _ = strconv.ParseInt(s, 10, 64)
		}
		rng := rand.New(rand.NewPCG(uint64(runSeed), 0x9e3779b97f4a7c15))
		victim := rng.IntN(3)
		stage := fleetStages[rng.IntN(len(fleetStages))]
		via := (victim + 1 + rng.IntN(2)) % 3
		name := fmt.Sprintf("run%02d_seed%d_victim%d_%s", i, runSeed, victim, stage)
		ok := t.Run(name, func(t *testing.T) { fleetRun(t, victim, stage, via) })
		result := "PASS"
		if !ok {
			result = "FAIL"
		}
		line := fmt.Sprintf("run %d: seed %d, victim zkproxy-%d, stage %s, operator on zkproxy-%d: %s", i, runSeed, victim, stage, via, result)
		results = append(results, line)
		t.Log(line)
	}
	t.Logf("fleet chaos (master seed %d): %d runs\n%s", seed, runs, strings.Join(results, "\n"))
}
