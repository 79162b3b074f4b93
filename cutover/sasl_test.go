package cutover_test

import (
	"bufio"
	_ "embed"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/internal/testkit/rig"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/proxy"
)

//go:embed testdata/SaslSession.java
var saslSessionJava string

// TestSASLSessionReconnectsAcrossCutover: a Java client authenticated with
// SASL DIGEST-MD5 (Kafka with zookeeper.set.acl=true), writing a znode only
// its SASL identity may touch, through zkproxy across a real cutover. SASL is
// bound to its connection and cannot be replayed (docs/protocol.md §6.3), so the
// check lists the session as unmovable and the cutover disconnects it
// (reason sasl): the client sees exactly one Disconnected, reconnects through
// zkproxy to the destination with the same session, authenticates again and
// goes on — its ephemeral node kept, its ACL'd writes allowed, no expiry.
func TestSASLSessionReconnectsAcrossCutover(t *testing.T) {
	jaas, saslOptions := zktest.DigestSASL(t)
	r := rig.New(t, rig.Options{ServerOptions: saslOptions})
	ctx := rig.CtxFor(t, 4*time.Minute)
	prog := zktest.JavaProgram(t, saslSessionJava)

	cmd := prog.Command(ctx, one(r).Addr, jaas)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Connection events as they happen ("EV <state>"), counted from a mark.
	lines := make(chan string, 64)
	var evMu sync.Mutex
	events := map[string]int{}
	var okOps atomic.Int64 // successful write+read pairs so far ("OK <n>")
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if n, ok := strings.CutPrefix(sc.Text(), "OK "); ok {
				okOps.Store(int64(atoi(n)))
				continue
			}
			if ev, ok := strings.CutPrefix(sc.Text(), "EV "); ok {
				evMu.Lock()
				events[ev]++
				evMu.Unlock()
				continue
			}
			lines <- sc.Text()
		}
	}()
	eventsSince := func(mark map[string]int) map[string]int {
		evMu.Lock()
		defer evMu.Unlock()
		d := map[string]int{}
		for k, v := range events {
			if v != mark[k] {
				d[k] = v - mark[k]
			}
		}
		return d
	}
	var sid string
	select {
	case line := <-lines:
		var ok bool
		if sid, ok = strings.CutPrefix(line, "READY "); !ok {
			t.Fatalf("Java client: %q\n%s", line, stderr.String())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("the SASL client did not get ready\n%s", stderr.String())
	}
	id, err := strconv.ParseUint(sid, 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SASL session 0x%s ready through zkproxy", sid)

	if _, err := r.M.Join(ctx); err != nil {
		t.Fatal(err)
	}
	r.WaitReady()
	// The join's restarts made the client reconnect (SASL cannot re-attach
	// invisibly); a reconnect can take a few tries while restarted members
	// catch up with the session's last zxid. The check needs it back.
	for deadline := time.Now().Add(60 * time.Second); !proxied(r, id); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("session 0x%s did not come back through zkproxy after the join", sid)
		}
	}
	// The join restarts the session's member: a SASL session cannot
	// re-attach invisibly either, so it reconnects then (a hold around the
	// restart does not change that). What the cutover does is counted from
	// the moment the client's last connection has authenticated again.
	settled := func() bool {
		evMu.Lock()
		defer evMu.Unlock()
		return events["SyncConnected"] > 0 && events["SaslAuthenticated"] == events["SyncConnected"] && events["Disconnected"] < events["SyncConnected"]
	}
	for deadline := time.Now().Add(60 * time.Second); !settled(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the client did not settle after the join: %v", eventsSince(nil))
		}
	}
	t.Logf("connection events before the cutover (join included): %v", eventsSince(nil))
	// Checked once the client authenticated again on its last connection:
	// only then does zkproxy know the session uses SASL.
	rep := one(r).Ctl.Check(ctx)
	if len(rep.Unmovable) != 1 || !strings.Contains(rep.Unmovable[0].Reason, "sasl") {
		t.Fatalf("unmovable sessions: %+v", rep.Unmovable)
	}
	mark := eventsSince(nil)
	if _, err := one(r).Ctl.Start(ctx, false); err != nil {
		t.Fatal(err)
	}
	st := rig.WaitPhase(t, one(r), cutover.PhaseDestination)
	t.Logf("cutover: %s", rig.Explain(st))
	if st.Reasons["sasl"] != 1 {
		t.Fatalf("the SASL session did not fall back with reason sasl: %s", rig.Explain(st))
	}
	// The client reconnects through zkproxy, which now routes to the
	// destination, with its session.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if _, ok := r.DestinationSessions(ctx)[int64(id)]; ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("session 0x%s not on a destination member", sid)
		}
	}
	// SASL again on the new connection, then ACL'd writes on the
	// destination (OPS below counts them).
	for deadline := time.Now().Add(30 * time.Second); eventsSince(mark)["SaslAuthenticated"] == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no SASL authentication after the cutover: %v", eventsSince(mark))
		}
	}
	// Then the ACL'd writes go on: a few more succeed on the destination
	// (a write without the SASL identity would fail with NoAuth, below).
	okAtAuth := okOps.Load()
	for deadline := time.Now().Add(60 * time.Second); okOps.Load() < okAtAuth+3; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("ACL'd writes did not resume after the cutover: %d before, %d now", okAtAuth, okOps.Load())
		}
	}

	stdin.Close()
	out := map[string]string{}
	var all []string
	for line := range lines {
		all = append(all, line)
		k, v, _ := strings.Cut(line, " ")
		if k == "EVENT" || k == "ERROR" || k == "WHOAMI" {
			k2, v2, _ := strings.Cut(v, " ")
			k, v = k+" "+k2, v2
		}
		out[k] = v
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("Java client: %v\n%s", err, stderr.String())
	}
	t.Logf("Java client:\n%s", strings.Join(all, "\n"))
	// The client has exited: every event since the mark is in.
	cutoverEvents := eventsSince(mark)
	delete(cutoverEvents, "Closed") // the client's own close at the end
	t.Logf("connection events from the cutover on: %v", cutoverEvents)
	if len(cutoverEvents) != 3 || cutoverEvents["Disconnected"] != 1 || cutoverEvents["SyncConnected"] != 1 || cutoverEvents["SaslAuthenticated"] != 1 {
		t.Errorf("from the cutover on the client saw %v, want one Disconnected, SyncConnected and SaslAuthenticated each", cutoverEvents)
	}
	want := map[string]string{"SESSION": sid, "EPHEMERAL": sid, "WHOAMI sasl:bob": "", "DONE": ""}
	for k, v := range want {
		if got, ok := out[k]; !ok || got != v {
			t.Errorf("%s: %q (present %v), want %q", k, got, ok, v)
		}
	}
	for k, v := range out {
		switch {
		case k == "EVENT Expired" || k == "EVENT AuthFailed":
			t.Errorf("%s %s", k, v)
		case strings.HasPrefix(k, "ERROR ") && k != "ERROR CONNECTIONLOSS":
			// While disconnected, the Java client fails what it queued
			// with ConnectionLoss, once per failed connection attempt
			// (restarted members refuse a session ahead of them for a
			// moment): their number is the machine's, not the proxy's.
			// NoAuth would mean a write went out without the SASL
			// identity.
			t.Errorf("%s %s", k, v)
		}
	}
	if n := atoi(strings.TrimPrefix(out["OPS"], "ok=")); int64(n) < okAtAuth+3 {
		t.Errorf("the client counted %s operations, fewer than the %d seen as they happened", out["OPS"], okAtAuth+3)
	}
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

// proxied reports whether the rig's proxy carries session id, attached.
func proxied(r *rig.Rig, id uint64) bool {
	for _, s := range one(r).Srv.Sessions() {
		if uint64(s.ID()) == id && s.State() == proxy.StateActive {
			return true
		}
	}
	return false
}
