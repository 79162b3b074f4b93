package e2e

import (
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/internal/testkit/kafkaload"
	"github.com/zkproxy/zkproxy/internal/testkit/rig"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// TestJavaWorkloadCutover moves a Kafka-like workload on the Java 3.8 client
// (chroot /kafka, CheckedEphemeral registrations, controller election,
// re-armed child/data/exists watches, sequential writes) live to the
// destination: no Disconnected, no Expired, no lost write, every watch fires
// afterwards, every ephemeral keeps its owner.
func TestJavaWorkloadCutover(t *testing.T) {
	r := rig.New(t, rig.Options{})
	ctx := rig.CtxFor(t, 5*time.Minute)
	prog := zktest.JavaProgram(t, kafkaload.JavaWorkloadSource)
	p := r.Proxies[0]
	j := startJava(t, ctx, prog, kafkaload.JavaConfig{Connect: p.Addr + "/kafka", Brokers: 4, Writers: 2})
	time.Sleep(500 * time.Millisecond)

	joinStart := time.Now()
	leader, err := r.M.Join(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("join took %s; joint leader %s", time.Since(joinStart).Round(time.Millisecond), leader)
	r.WaitReady()
	// The join's rolling restart re-elects the source leader, which drops
	// every member's clients (a writer with a request in flight then sees
	// ConnectionLoss: its outcome is unknown). Measure from here on, once
	// every session is back.
	r.WaitOnSource(30*time.Second, j.Snapshot())
	base := j.Snapshot()
	t.Logf("before the cutover (join included): %s", base)
	j.ResetLatency()

	start := time.Now()
	r.StartCutover(ctx)
	st := rig.WaitPhase(t, p, cutover.PhaseDestination)
	t.Logf("cutover took %s: %s", time.Since(start).Round(time.Millisecond), rig.Explain(st))
	if st.Sessions.Moved != st.Sessions.Total || st.Sessions.Failed != 0 || st.Sessions.Total != 6 {
		t.Fatalf("not every session moved live: %s", rig.Explain(st))
	}
	r.WaitOnDestination(10*time.Second, j.Snapshot())
	if err := j.WatchesFire(rig.CtxFor(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // writes keep flowing on the destination
	final := j.Stop().Since(base)
	t.Logf("from the cutover on: %s; %s", final, kafkaload.PausesOf(final))
	if final.Disconnects != 0 || final.Expired != 0 || len(final.Errors) != 0 {
		t.Fatalf("clients noticed the cutover: %s %v", final, final.Errors)
	}
	if final.AckedWrites <= base.AckedWrites {
		t.Fatalf("no write acknowledged after the cutover: %s", final)
	}
	v, err := j.Verify(ctx, r.M.Destination.Members[0].ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("read back from the destination: %s", v)
	if !v.OK() {
		t.Fatalf("verification failed: %s %v", v, v.Problems)
	}
}
