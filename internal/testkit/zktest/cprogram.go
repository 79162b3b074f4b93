package zktest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// CClientHeader is the ZooKeeper C client's header (Debian
// libzookeeper-mt-dev, installed by scripts/test-deps.sh); the programs
// link the multi-threaded library, as cli_mt does.
const CClientHeader = "/usr/include/zookeeper/zookeeper.h"

// C is a C program built against the ZooKeeper 3.8 C client, ready to run.
type C struct {
	// Path is the executable.
	Path string
}

// CProgram compiles cSource (one file with main) with gcc against
// libzookeeper_mt. Compilation happens once per source text and machine:
// the executable is cached under the user cache dir, keyed by a hash of
// the source and the header.
func CProgram(t TB, cSource string) *C {
	t.Helper()
	RequireIntegration(t)
	if _, err := os.Stat(CClientHeader); err != nil {
		t.Fatalf("zktest: the C client's header is missing (run scripts/test-deps.sh): %v", err)
	}
	c, err := compileC(cSource)
	if err != nil {
		t.Fatalf("zktest: %v", err)
	}
	return c
}

func compileC(src string) (*C, error) {
	header, err := os.ReadFile(CClientHeader)
	if err != nil {
		return nil, fmt.Errorf("compile C: %w", err)
	}
	dir, err := cachedBuild("c", cacheKey(src, string(header)), func(dir string) error {
		file := filepath.Join(dir, "prog.c")
		if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
			return err
		}
		cmd := exec.Command("gcc", "-DTHREADED", "-O1", "-Wall", "-Werror", "-o", filepath.Join(dir, "prog"), file,
			"-lzookeeper_mt", "-lpthread")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("gcc: %w\n%s", err, out)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &C{Path: filepath.Join(dir, "prog")}, nil
}

// Command returns a command that runs the program with args and SIGKILL if
// the test process dies. The caller starts and waits for it; cancelling
// ctx kills it.
func (c *C) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.Path, args...)
	dieWithParent(cmd)
	return cmd
}

// Run runs the program to completion and returns its stdout (the C
// client logs to stderr). A non-zero exit is an error that includes both.
func (c *C) Run(ctx context.Context, args ...string) (string, error) {
	cmd := c.Command(ctx, args...)
	var stderr safeBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("C program: %w\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
	}
	return string(out), nil
}
