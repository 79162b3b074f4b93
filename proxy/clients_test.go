package proxy

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/internal/zktest"
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

func TestJavaClientWorkloadThroughProxy(t *testing.T) {
	zktest.RequireIntegration(t)
	src, err := os.ReadFile("testdata/ProxyWorkload.java")
	if err != nil {
		t.Fatal(err)
	}
	prog := zktest.JavaProgram(t, string(src))
	server := zktest.Standalone(t)
	px := startProxy(t, []string{server.ClientAddr()})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	directOut, err := prog.Run(ctx, server.ClientAddr(), "/direct")
	if err != nil {
		t.Fatalf("direct run: %v", err)
	}
	proxiedOut, err := prog.Run(ctx, px.Addr, "/proxied")
	if err != nil {
		t.Fatalf("proxied run: %v", err)
	}
	want, got := transcript(directOut, "/direct"), transcript(proxiedOut, "/proxied")
	if len(want) < 30 {
		t.Fatalf("direct transcript too short (%d lines):\n%s", len(want), directOut)
	}
	if !slices.Equal(got, want) {
		t.Errorf("Java workload through the proxy differs:\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
	t.Logf("Java transcript:\n%s", strings.Join(got, "\n"))
}

func TestKazooWorkloadThroughProxy(t *testing.T) {
	zktest.RequireIntegration(t)
	script, err := os.ReadFile("testdata/kazoo_workload.py")
	if err != nil {
		t.Fatal(err)
	}
	server := zktest.Standalone(t)
	px := startProxy(t, []string{server.ClientAddr()})
	want := transcript(zktest.Python(t, string(script), server.ClientAddr(), "/direct"), "/direct")
	got := transcript(zktest.Python(t, string(script), px.Addr, "/proxied"), "/proxied")
	if len(want) < 20 {
		t.Fatalf("direct transcript too short: %v", want)
	}
	if !slices.Equal(got, want) {
		t.Errorf("kazoo workload through the proxy differs:\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
	t.Logf("kazoo transcript:\n%s", strings.Join(got, "\n"))
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
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	directOut, err := prog.Run(ctx, server.ClientAddr(), "/direct")
	if err != nil {
		t.Fatalf("direct run: %v", err)
	}
	proxiedOut, err := prog.Run(ctx, px.Addr, "/proxied")
	if err != nil {
		t.Fatalf("proxied run: %v", err)
	}
	want, got := transcript(directOut, "/direct"), transcript(proxiedOut, "/proxied")
	if len(want) < 30 {
		t.Fatalf("direct transcript too short (%d lines):\n%s", len(want), directOut)
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
	if !slices.Equal(got, want) {
		t.Errorf("C workload through the proxy differs:\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
	t.Logf("C transcript:\n%s", strings.Join(got, "\n"))
}
