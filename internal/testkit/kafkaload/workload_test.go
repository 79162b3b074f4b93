package kafkaload

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

func TestParseSerialNode(t *testing.T) {
	for _, tc := range []struct {
		name string
		want serialNode
		ok   bool
	}{
		{"s000000012-0000000045", serialNode{12, 45}, true},
		{"s000000001-0000000000", serialNode{1, 0}, true},
		{"000000001-0000000000", serialNode{}, false},
		{"s000000000-0000000000", serialNode{}, false},
		{"sabc-0000000001", serialNode{}, false},
		{"s000000001", serialNode{}, false},
		{"s000000001-", serialNode{}, false},
	} {
		got, ok := parseSerialNode(tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseSerialNode(%q) = %+v, %t; want %+v, %t", tc.name, got, ok, tc.want, tc.ok)
		}
	}
	if p := SerialPrefix("/kafka", "w0", 5001, DefaultBucketSize); p != "/kafka/serial/w0/0001/s000005001-" {
		t.Errorf("SerialPrefix = %s", p)
	}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestCheckLedgerFindsFaults writes a tree with every kind of fault and
// checks that the verifier reports each one: the verifier must be able to
// fail.
func TestCheckLedgerFindsFaults(t *testing.T) {
	srv := zktest.Standalone(t)
	ctx := ctxFor(t, time.Minute)
	s, err := dial(ctx, "setup", srv.ClientAddr(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.conn.Close()
	acl := zk.WorldACL(zk.PermAll)
	for _, p := range []string{"/t", "/t/serial", "/t/serial/a", "/t/serial/a/0000", "/t/serial/b", "/t/serial/b/0000", "/t/brokers", "/t/brokers/ids"} {
		if _, err := s.conn.Create(p, nil, 0, acl); err != nil {
			t.Fatal(err)
		}
	}
	// Writer a: 1, 2, 2 (retried: explained), 4, 3 (out of order), 6 (lost 5;
	// 6 is in flight), 9 (unexpected).
	// Writer b: 1, 1 (never uncertain: unexplained), 2.
	for _, w := range []struct {
		writer  string
		serials []int
	}{{"a", []int{1, 2, 2, 4, 3, 6, 9}}, {"b", []int{1, 1, 2}}} {
		for _, n := range w.serials {
			if _, err := s.conn.Create(SerialPrefix("/t", w.writer, n, DefaultBucketSize), nil, zk.FlagSequence, acl); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := s.conn.Create("/t/brokers/ids/0", nil, zk.FlagEphemeral, acl); err != nil {
		t.Fatal(err)
	}
	v, err := CheckLedger(ctx, srv.ClientAddr(), Ledger{
		Root:      "/t",
		Acked:     map[string]int{"a": 5, "b": 2},
		Uncertain: map[string]map[int]bool{"a": {2: true}},
		// Consumers read 5 (now lost: a phantom) but never 4 (a gap).
		Consumed: map[string]map[int]bool{"a": {1: true, 2: true, 3: true, 5: true}},
		Owners:   map[string]int64{"/brokers/ids/0": s.id + 1, "/brokers/ids/1": s.id},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s\n%s", v, strings.Join(v.Problems, "\n"))
	want := Verification{Acked: 7, Found: 6, Lost: 1, Duplicates: 2, UnexplainedDuplicates: 1, OutOfOrder: 1, Unexpected: 1,
		Consumed: 4, Phantom: 1, ConsumerGaps: 1}
	got := v
	got.Problems, got.OwnersIntact = nil, false
	if fmt.Sprint(got) != fmt.Sprint(want) || v.OwnersIntact || v.OK() {
		t.Fatalf("got %s, want %s and owners not intact", v, want)
	}
}

// TestWorkloadsVerifyClean runs the Go and the Java workload (with a chroot)
// against one server and reads both back: nothing lost, duplicated or
// reordered, every watch fires, no disconnect.
func TestWorkloadsVerifyClean(t *testing.T) {
	srv := zktest.Standalone(t)
	ctx := ctxFor(t, 2*time.Minute)
	g, err := Start(ctx, Config{Addr: srv.ClientAddr(), Root: "/go/nested", Brokers: 2, Writers: 2, Consumers: 2,
		// Small buckets: writers and consumers cross several.
		BucketSize: 40})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	prog := zktest.JavaProgram(t, JavaWorkloadSource)
	j, err := StartJava(ctx, prog, JavaConfig{Connect: srv.ClientAddr() + "/kafka/a", Brokers: 3, Writers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	time.Sleep(time.Second)
	j.ResetLatency()
	for _, c := range []Client{g, j} {
		if err := c.WatchesFire(ctxFor(t, 30*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	for name, c := range map[string]Client{"go": g, "java": j} {
		r := c.Stop()
		t.Logf("%s workload: %s", name, r)
		if r.AckedWrites == 0 || r.Disconnects != 0 || r.Expired != 0 || len(r.Errors) != 0 || r.WatchEvents == 0 {
			t.Fatalf("%s workload: %s %v", name, r, r.Errors)
		}
		if len(r.SessionMaxOp) != len(r.Sessions) {
			t.Fatalf("%s workload: latency for %d of %d sessions", name, len(r.SessionMaxOp), len(r.Sessions))
		}
		v, err := c.Verify(ctx, srv.ClientAddr())
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s read back: %s", name, v)
		if !v.OK() || v.Found != v.Acked || (name == "go" && v.Consumed == 0) {
			t.Fatalf("%s verification: %s %v", name, v, v.Problems)
		}
	}
	if l := j.Ledger(); l.Root != "/kafka/a" || len(l.Owners) != 3 || l.Owners["/brokers/ids/2"] == 0 {
		t.Fatalf("java ledger: %+v", l)
	}
}
