package zktest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
	path, err := gccBuild("c", src, string(header), "prog",
		[]string{"-DTHREADED", "-O1", "-Wall", "-Werror"}, []string{"-lzookeeper_mt", "-lpthread"})
	if err != nil {
		return nil, err
	}
	return &C{Path: path}, nil
}

// gccBuild compiles the C source src with gcc into the build cache, once
// per source text (and keyExtra, e.g. a header it includes), and returns
// the path of the product: gcc flags... -o product source libs...
func gccBuild(kind, src, keyExtra, product string, flags, libs []string) (string, error) {
	dir, err := cachedBuild(kind, cacheKey(src, keyExtra), func(dir string) error {
		file := filepath.Join(dir, "source.c")
		if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
			return err
		}
		args := append(append(slices.Clone(flags), "-o", filepath.Join(dir, product), file), libs...)
		if out, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("gcc: %w\n%s", err, out)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, product), nil
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
	out, err := c.Command(ctx, args...).Output()
	if err != nil {
		return string(out), fmt.Errorf("C program: %w\nstdout:\n%s\nstderr:\n%s", err, out, exitStderr(err))
	}
	return string(out), nil
}
