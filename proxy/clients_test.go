package proxy

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// transcript keeps the "T " lines of a workload program's output, with
// the run's root path replaced.
func transcript(out, root string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(l, "T "); ok {
			lines = append(lines, strings.ReplaceAll(rest, root, "<root>"))
		}
	}
	return lines
}

// compareWorkload runs a client program's workload against server under the
// root /direct and through px under /proxied, and requires the same
// transcript, of at least minLines lines.
func compareWorkload(t *testing.T, client string, server *zktest.Server, px *testProxy, minLines int,
	run func(ctx context.Context, addr, root string) (string, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	directOut, err := run(ctx, server.ClientAddr(), "/direct")
	if err != nil {
		t.Fatalf("direct run: %v", err)
	}
	proxiedOut, err := run(ctx, px.Addr, "/proxied")
	if err != nil {
		t.Fatalf("proxied run: %v", err)
	}
	want, got := transcript(directOut, "/direct"), transcript(proxiedOut, "/proxied")
	if len(want) < minLines {
		t.Fatalf("direct transcript too short (%d lines):\n%s", len(want), directOut)
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s workload through the proxy differs:\n got: %s\nwant: %s", client,
			strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
	t.Logf("%s transcript:\n%s", client, strings.Join(got, "\n"))
}

// javaWorkload is testdata/ProxyWorkload.java, compiled.
func javaWorkload(t *testing.T) *zktest.Java {
	t.Helper()
	zktest.RequireIntegration(t)
	src, err := os.ReadFile("testdata/ProxyWorkload.java")
	if err != nil {
		t.Fatal(err)
	}
	return zktest.JavaProgram(t, string(src))
}

func TestJavaClientWorkloadThroughProxy(t *testing.T) {
	prog := javaWorkload(t)
	server := zktest.Standalone(t)
	px := startProxy(t, []string{server.ClientAddr()})
	compareWorkload(t, "Java", server, px, 30, func(ctx context.Context, addr, root string) (string, error) {
		return prog.Run(ctx, addr, root)
	})
}

func TestKazooWorkloadThroughProxy(t *testing.T) {
	zktest.RequireIntegration(t)
	script, err := os.ReadFile("testdata/kazoo_workload.py")
	if err != nil {
		t.Fatal(err)
	}
	server := zktest.Standalone(t)
	px := startProxy(t, []string{server.ClientAddr()})
	compareWorkload(t, "kazoo", server, px, 20, func(_ context.Context, addr, root string) (string, error) {
		return zktest.Python(t, string(script), addr, root), nil
	})
}

func TestCClientWorkloadThroughProxy(t *testing.T) {
	zktest.RequireIntegration(t)
	src, err := os.ReadFile("testdata/c_workload.c")
	if err != nil {
		t.Fatal(err)
	}
	prog := zktest.CProgram(t, string(src))
	server := zktest.Standalone(t)
	px := startProxy(t, []string{server.ClientAddr()})
	compareWorkload(t, "C", server, px, 30, func(ctx context.Context, addr, root string) (string, error) {
		return prog.Run(ctx, addr, root)
	})
	// Each of the run's three handles closed its session: counted as such,
	// even when the C client reset its connection right after closeSession.
	waitFor(t, "sessions closed", 10*time.Second, func() bool { return len(px.Sessions()) == 0 })
	if n := counter(t, px.m.connectionsClosed.WithLabelValues("close_session")); n != 3 {
		t.Errorf("connections closed with close_session: %v, want 3", n)
	}
	// zookeeper_close sends closeSession and waits for its answer: the
	// session's ephemerals are gone once the program has exited, not a
	// session timeout later.
	check, _ := connectGo(t, []string{server.ClientAddr()}, 10*time.Second)
	for _, root := range []string{"/direct", "/proxied"} {
		if ok, _, err := check.Exists(root + "/e"); err != nil || ok {
			t.Errorf("%s/e after the program closed its session: exists %v, %v", root, ok, err)
		}
	}
}
