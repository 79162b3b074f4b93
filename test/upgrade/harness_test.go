package upgrade

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// builds caches the zkproxy binaries built by this test process, by their
// -ldflags.
var builds = struct {
	sync.Mutex
	dir  string
	bins map[string]string
}{bins: map[string]string{}}

// build returns a zkproxy binary reporting version, with extra -X flags.
func build(t *testing.T, version string, extraX ...string) string {
	t.Helper()
	builds.Lock()
	defer builds.Unlock()
	flags := "-X main.version=" + version
	for _, x := range extraX {
		flags += " -X " + x
	}
	if bin, ok := builds.bins[flags]; ok {
		return bin
	}
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "zkproxy-upgrade-bins")
		if err != nil {
			t.Fatal(err)
		}
		builds.dir = dir
	}
	bin := filepath.Join(builds.dir, fmt.Sprintf("zkproxy-%d", len(builds.bins)))
	cmd := exec.Command("go", "build", "-o", bin, "-ldflags", flags, "github.com/zkproxy/zkproxy/cmd/zkproxy")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", flags, err, out)
	}
	builds.bins[flags] = bin
	return bin
}

// proc is a `zkproxy serve` run from its own install path, which upgrades
// replace.
type proc struct {
	t       *testing.T
	install string
	Addr    string
	admin   string
	token   string
	log     string
	first   *exec.Cmd
	http    *http.Client
	// last is the old process's last status seen by upgrade.
	last upgradeStatus
}

const testToken = "upgrade-test-token"

// startServe installs bin and runs `serve` in front of members.
func startServe(t *testing.T, bin string, members []string, env []string, args ...string) *proc {
	t.Helper()
	dir := t.TempDir()
	ip := zktest.LoopbackIP(t)
	p := &proc{t: t, install: filepath.Join(dir, "zkproxy"), Addr: ip + ":2181", admin: "http://" + ip + ":9181",
		token: testToken, log: filepath.Join(dir, "zkproxy.log"),
		http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	p.installBinary(bin)
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(p.install, "serve", "--source", strings.Join(members, ","), "--listen", p.Addr,
		"--admin-listen", ip+":9181", "--admin-token", testToken, "--data-dir", filepath.Join(dir, "data"),
		"--upgrade-timeout", "20s", "--log-level", "info")
	cmd.Args = append(cmd.Args, args...)
	cmd.Stdout, cmd.Stderr = logf, logf // files, not pipes: Wait must not wait for the new processes
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.first = cmd
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		for _, pid := range p.pids() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			keep := filepath.Join(os.TempDir(), "zkproxy-"+strings.ReplaceAll(t.Name(), "/", "-")+".log")
			if data, err := os.ReadFile(p.log); err == nil && os.WriteFile(keep, data, 0o644) == nil {
				t.Logf("zkproxy log kept in %s", keep)
			}
			data, _ := os.ReadFile(p.log)
			if len(data) > 20000 {
				data = data[len(data)-20000:]
			}
			t.Logf("zkproxy log (tail):\n%s", data)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := p.status(); err == nil {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatal("zkproxy never answered on its admin port")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// installBinary replaces the installed binary the way a package manager
// does: a new file renamed over the old path (the running process keeps
// its deleted inode).
func (p *proc) installBinary(bin string) {
	p.t.Helper()
	data, err := os.ReadFile(bin)
	if err != nil {
		p.t.Fatal(err)
	}
	tmp := p.install + ".new"
	if err := os.WriteFile(tmp, data, 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := os.Rename(tmp, p.install); err != nil {
		p.t.Fatal(err)
	}
}

// upgradeStatus mirrors cmd/zkproxy's GET /upgrade answer.
type upgradeStatus struct {
	State        string         `json:"state"`
	PID          int            `json:"pid"`
	Version      string         `json:"version"`
	Error        string         `json:"error"`
	NewVersion   string         `json:"new_version"`
	HandedOver   int            `json:"handed_over"`
	Disconnected map[string]int `json:"disconnected"`
	Kept         map[string]int `json:"kept"`
	Attempts     int            `json:"attempts"`
}

func (p *proc) call(method, path string) (upgradeStatus, int, error) {
	var st upgradeStatus
	req, err := http.NewRequest(method, p.admin+path, nil)
	if err != nil {
		return st, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := p.http.Do(req)
	if err != nil {
		return st, 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return st, resp.StatusCode, fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(body))
	}
	return st, resp.StatusCode, json.Unmarshal(body, &st)
}

func (p *proc) status() (upgradeStatus, error) {
	st, _, err := p.call("GET", "/upgrade")
	return st, err
}

// How an upgrade is triggered.
const (
	bySignal = "SIGUSR2"
	byPOST   = "POST /upgrade"
	byCLI    = "zkproxy upgrade"
)

// upgrade triggers an upgrade of the serving process (SIGUSR2, POST
// /upgrade, or the CLI, which posts and waits) and waits until another
// process serves and the old one is gone. It returns the new status.
func (p *proc) upgrade(how string, timeout time.Duration) upgradeStatus {
	p.t.Helper()
	old, err := p.status()
	if err != nil {
		p.t.Fatal(err)
	}
	switch how {
	case bySignal:
		if err := syscall.Kill(old.PID, syscall.SIGUSR2); err != nil {
			p.t.Fatal(err)
		}
	case byPOST:
		if _, _, err := p.call("POST", "/upgrade"); err != nil {
			p.t.Fatal(err)
		}
	case byCLI:
		out, err := exec.Command(p.install, "upgrade", "--admin", p.admin, "--token", p.token, "--wait", timeout.String()).CombinedOutput()
		if err != nil {
			p.t.Fatalf("zkproxy upgrade: %v\n%s", err, out)
		}
		p.t.Logf("zkproxy upgrade:\n%s", bytes.TrimSpace(out))
	}
	deadline := time.Now().Add(timeout)
	for {
		time.Sleep(100 * time.Millisecond)
		st, err := p.status()
		if err == nil && st.PID == old.PID && st.State == "failed" {
			p.t.Fatalf("upgrade of pid %d failed: %s", old.PID, st.Error)
		}
		if err == nil && st.PID == old.PID {
			p.last = st
		}
		if err == nil && st.PID != old.PID && !alive(old.PID) {
			return st
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("upgrade of pid %d did not finish within %s (last status %+v, %v)", old.PID, timeout, st, err)
		}
	}
}

// pids returns the running processes of the installed binary.
func (p *proc) pids() []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !alive(pid) {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if arg0, _, _ := bytes.Cut(cmdline, []byte{0}); string(arg0) == p.install {
			out = append(out, pid)
		}
	}
	return out
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: the state follows the last ')'.
	i := bytes.LastIndexByte(data, ')')
	return i >= 0 && i+2 < len(data) && data[i+2] != 'Z'
}

// fdCount is the number of open descriptors of pid.
func fdCount(t *testing.T, pid int) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// logContains reports whether the zkproxy log has a line with every part.
func (p *proc) logContains(parts ...string) bool {
	f, err := os.Open(p.log)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
next:
	for sc.Scan() {
		for _, part := range parts {
			if !strings.Contains(sc.Text(), part) {
				continue next
			}
		}
		return true
	}
	return false
}

// logLines returns the zkproxy log lines holding every part.
func (p *proc) logLines(parts ...string) []string {
	data, _ := os.ReadFile(p.log)
	var out []string
next:
	for _, line := range strings.Split(string(data), "\n") {
		for _, part := range parts {
			if !strings.Contains(line, part) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}

var _ = runtime.GOOS
