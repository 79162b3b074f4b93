package opstest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnit checks deploy/systemd/zkproxy.service with systemd's own
// parser (systemd-analyze verify; this machine's PID 1 is not systemd, so
// the unit cannot be run here) and holds the directives the in-place
// upgrade relies on (docs/upgrade.md): Type=notify, because zkproxy says
// READY=1 and, after an upgrade, MAINPID=<new process>; NotifyAccess=all,
// because that message comes from the new process, which systemd did not
// start; ExecReload sending SIGUSR2 to $MAINPID.
func TestSystemdUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (Debian package systemd): the unit's syntax is not checked")
	}
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "systemd", "zkproxy.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	directives := map[string]string{}
	for _, line := range strings.Split(unit, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(strings.TrimSpace(line), "#") {
			directives[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	for k, want := range map[string]string{
		"Type":         "notify",
		"NotifyAccess": "all",
		"ExecReload":   "/bin/kill -USR2 $MAINPID",
		"KillSignal":   "SIGTERM",
	} {
		if got := directives[k]; got != want {
			t.Errorf("%s=%q, want %q", k, got, want)
		}
	}

	verify := func(unit string) string {
		t.Helper()
		// The unit names the installed binary; verify wants an executable
		// there, so point it at one (what runs is not under test).
		truePath, err := exec.LookPath("true")
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		p := filepath.Join(dir, "zkproxy.service")
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(unit, "/usr/local/bin/zkproxy", truePath)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, _ := exec.Command(analyze, "verify", p).CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	// systemd-analyze exits 0 on many a bad line and only says so: any
	// output is a finding.
	if out := verify(unit); out != "" {
		t.Errorf("systemd-analyze verify:\n%s", out)
	}
	if out := verify(strings.Replace(unit, "Type=notify", "Type=notifyy", 1)); !strings.Contains(out, "notifyy") {
		t.Errorf("a broken unit passed systemd-analyze verify (%q): the check cannot fail", out)
	}
}
