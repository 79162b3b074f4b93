package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkproxy/zkproxy/admin"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// TestCutoverCLI drives a real mitosis with the operator's commands, the
// way the runbook does, against `zkproxy serve` in front of a real source
// ensemble: check (refused before the join; --wait until the destination
// caught up), start, sessions, split --prepare and release, status. The
// background sync check's metrics follow along. A client session with an
// ephemeral node rides through all of it without a disconnect.
func TestCutoverCLI(t *testing.T) {
	m := zktest.NewMitosis(t)
	ip := zktest.LoopbackIP(t)
	listen, adminAddr := net.JoinHostPort(ip, "2181"), net.JoinHostPort(ip, "9181")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	serveCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- run(serveCtx, []string{"serve", "--listen", listen, "--admin-listen", adminAddr, "--data-dir", t.TempDir(),
			"--source", m.Source.ConnectString(), "--destination", m.Destination.ConnectString(),
			"--cutover-check-interval", "300ms", "--log-level", "warn"}, io.Discard, io.Discard)
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	cli := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(ctx, append(args, "--admin", "http://"+adminAddr), &out, &out)
		t.Logf("$ zkproxy %s\n%s(err: %v)", strings.Join(args, " "), out.String(), err)
		return out.String(), err
	}
	metric := func(name string) string {
		r, err := http.Get("http://" + adminAddr + "/metrics")
		if err != nil {
			return ""
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				return v
			}
		}
		return ""
	}
	waitMetric := func(name, want string) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); metric(name) != want; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s = %q, want %q", name, metric(name), want)
			}
		}
	}

	// A broker-like client through the proxy, once it listens.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("zkproxy does not listen: %v", err)
		}
	}
	conn, events, err := zk.Connect([]string{listen}, 10*time.Second, zk.WithLogger(zktest.QuietLogger{}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, p := range []string{"/kafka", "/kafka/brokers", "/kafka/brokers/ids"} {
		if _, err := conn.Create(p, nil, 0, zk.WorldACL(zk.PermAll)); err != nil && err != zk.ErrNodeExists {
			t.Fatal(err)
		}
	}
	if _, err := conn.Create("/kafka/brokers/ids/1", nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	disconnects := make(chan zk.Event, 16)
	go func() {
		for ev := range events {
			if ev.State == zk.StateDisconnected || ev.State == zk.StateExpired {
				disconnects <- ev
			}
		}
	}()

	// Before the join the destination is not running: refused, and --wait
	// gives up when its time is up, having said why on the way.
	if out, err := cli("cutover", "check"); err == nil || !strings.Contains(out, "destination serves") || !strings.Contains(out, "FAIL") {
		t.Fatalf("check before the join: %v", err)
	}
	if out, err := cli("cutover", "check", "--wait", "2500ms"); err == nil || !strings.Contains(out, "not yet: destination serves: ") {
		t.Fatalf("check --wait before the join: %v", err)
	}
	waitMetric("zkproxy_cutover_sync_ready", "0")

	if _, err := m.Join(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := cli("cutover", "check", "--wait", "90s")
	if err != nil || !strings.Contains(out, "READY: mitosis sync confirmed") {
		t.Fatalf("check --wait after the join: %v", err)
	}
	if !strings.Contains(out, "every session on the members comes through this proxy") {
		t.Errorf("check does not say every session comes through the proxy")
	}
	waitMetric("zkproxy_cutover_sync_ready", "1")
	waitMetric(`zkproxy_cutover_direct_sessions{beside_proxied="true"}`, "0")

	if out, err := cli("cutover", "start"); err != nil || !strings.Contains(out, "destination") {
		t.Fatalf("start: %v", err)
	}
	out, err = cli("sessions", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []admin.SessionRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 1 || rows[0].Ensemble != "destination" {
		t.Fatalf("sessions after the cutover: %v %+v", err, rows)
	}
	// No client sits on a source member directly, so the barrier goes up
	// without --force wherever the joint leader is.
	if out, err := cli("cutover", "split", "--prepare"); err != nil || !strings.Contains(out, "barrier up") {
		t.Fatalf("split --prepare: %v", err)
	}
	if _, err := cli("cutover", "release"); err != nil {
		t.Fatal(err)
	}
	out, err = cli("cutover", "status", "-o", "json")
	var st struct {
		Phase   string `json:"phase"`
		Barrier struct {
			Up bool `json:"up"`
		} `json:"barrier"`
	}
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.Phase != "destination" || st.Barrier.Up {
		t.Fatalf("status: %v %+v", err, st)
	}

	if _, _, err := conn.Get("/kafka/brokers/ids/1"); err != nil {
		t.Fatalf("the client's session after the cutover: %v", err)
	}
	select {
	case ev := <-disconnects:
		t.Fatalf("the client saw %v", ev.State)
	default:
	}
}
