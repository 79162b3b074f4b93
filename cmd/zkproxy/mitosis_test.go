package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/mitosis"
)

// TestMitosisExitStatus: verify's exit status without any server: 2 when
// it cannot check at all.
func TestMitosisExitStatus(t *testing.T) {
	ctx := context.Background()
	for _, args := range [][]string{
		{"mitosis", "verify", "pre-join", "--plan", t.TempDir()}, // no plan.json
		{"mitosis", "verify", "pre-join", "--plan", ".", "-o", "yaml"},
		{"mitosis", "plan", "--out", t.TempDir()}, // no --source
	} {
		err := run(ctx, args, &bytes.Buffer{}, &bytes.Buffer{})
		if got := exitStatus(err); got != exitCannotCheck {
			t.Errorf("zkproxy %s: exit %d (%v), want %d", strings.Join(args, " "), got, err, exitCannotCheck)
		}
	}
	if got := exitStatus(nil); got != exitOK {
		t.Errorf("exitStatus(nil) = %d", got)
	}
}

// TestMitosisCLI plans from a live source with `zkproxy mitosis plan`,
// verifies through the command (table and -o json, exit statuses 0, 1
// and 2), and lists leftovers between the source and a second ensemble
// standing in for a split destination that holds another tenant's tree.
func TestMitosisCLI(t *testing.T) {
	zktest.RequireIntegration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	src := zktest.NewEnsemble(t, 3)
	dst := zktest.NewEnsemble(t, 3)
	write := func(e *zktest.Ensemble, paths ...string) {
		conn, _, err := zk.Connect(strings.Split(e.ConnectString(), ","), 10*time.Second, zk.WithLogger(zktest.QuietLogger{}))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, p := range paths {
			if _, err := conn.Create(p, []byte("12345"), 0, zk.WorldACL(zk.PermAll)); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(src, "/kafka", "/kafka/a", "/other")
	write(dst, "/kafka", "/tenant2", "/tenant2/x")
	cli := func(args ...string) (string, int) {
		var out bytes.Buffer
		err := run(ctx, args, &out, &out)
		t.Logf("$ zkproxy %s\n%s(err: %v)", strings.Join(args, " "), out.String(), err)
		return out.String(), exitStatus(err)
	}
	dir := t.TempDir()
	args := []string{"mitosis", "plan", "--source", src.ConnectString(), "--out", dir, "--chroot", "/kafka", "--firewall-chain", "ZKCLI-" + fmt.Sprint(time.Now().UnixNano()%1e6)}
	for i, s := range dst.Members {
		args = append(args, "--destination", fmt.Sprintf("%d=%s:%d:%d", 4+i, s.IP, zktest.QuorumPort, zktest.ElectionPort))
	}
	out, code := cli(args...)
	if code != 0 || !strings.Contains(out, "RUNBOOK.md") {
		t.Fatalf("plan: exit %d", code)
	}
	for _, f := range []string{"RUNBOOK.md", "plan.json", mitosis.JointFile(4), mitosis.DestinationFile(6), mitosis.SourceFile(1), mitosis.FirewallFile("nftables", "apply", 5)} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	// The stand-in destination runs ids 1-3 and holds data: pre-join fails.
	out, code = cli("mitosis", "verify", "pre-join", "--plan", dir, "--no-admin")
	if code != exitFailed || !strings.Contains(out, "FAIL: stage pre-join not reached") || !strings.Contains(out, "fix: write 4 into myid") {
		t.Errorf("pre-join: exit %d, want %d with the table and its fixes", code, exitFailed)
	}
	out, code = cli("mitosis", "verify", "joined", "--plan", dir, "--no-admin", "-o", "json")
	var res mitosis.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Stage != "joined" || res.OK || code != exitFailed {
		t.Errorf("joined -o json: exit %d, %+v, %v", code, res, err)
	}
	if _, code = cli("mitosis", "verify", "halfway", "--plan", dir); code != exitCannotCheck {
		t.Errorf("unknown stage: exit %d, want %d", code, exitCannotCheck)
	}

	out, code = cli("mitosis", "leftovers", "--plan", dir, "-o", "json")
	var ls []mitosis.Leftover
	if err := json.Unmarshal([]byte(out), &ls); err != nil || code != 0 {
		t.Fatalf("leftovers: exit %d, %v", code, err)
	}
	want := map[string]string{"source /kafka": "2 nodes 10 bytes", "destination /tenant2": "2 nodes 10 bytes"}
	for _, l := range ls {
		key := l.Side + " " + l.Path
		got := fmt.Sprintf("%d nodes %d bytes", l.Nodes, l.Bytes)
		if want[key] != got || !strings.Contains(l.Delete, "deleteall "+l.Path) {
			t.Errorf("leftover %s: %s, delete %q; want %s", key, got, l.Delete, want[key])
		}
		delete(want, key)
	}
	if len(want) > 0 {
		t.Errorf("leftovers missing: %v", want)
	}
	// It never deletes.
	write(src, "/kafka/b")
}
