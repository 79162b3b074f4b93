package zktest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Debian's python3-kazoo installs into the system interpreter; a python3 found
// first on PATH (pyenv, venv) may not see it.
const systemPython = "/usr/bin/python3"

func pythonPath() string {
	if _, err := os.Stat(systemPython); err == nil {
		return systemPython
	}
	return "python3"
}

// PythonCommand returns a command running script (Python 3 source, kazoo
// importable) with args; sys.argv[1:] == args. The script is written under
// t.TempDir(). The process gets SIGKILL if the test process dies; cancelling
// ctx kills it.
func PythonCommand(ctx context.Context, t TB, script string, args ...string) *exec.Cmd {
	t.Helper()
	RequireIntegration(t)
	f := filepath.Join(t.TempDir(), "script.py")
	if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
		t.Fatalf("zktest: %v", err)
	}
	cmd := exec.CommandContext(ctx, pythonPath(), append([]string{f}, args...)...)
	dieWithParent(cmd)
	return cmd
}

// Python runs script to completion (at most 2 minutes) and returns its
// stdout; it fails the test, showing stdout and stderr, if the script exits
// non-zero.
func Python(t TB, script string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := PythonCommand(ctx, t, script, args...).Output()
	if err != nil {
		t.Fatalf("zktest: python: %v\nstdout:\n%s\nstderr:\n%s", err, out, exitStderr(err))
	}
	return string(out)
}
