package kafkaload

import (
	_ "embed"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// The idle clients, one per real client library (see IdleClient). Each
// takes host:port and a root path; the Java one is built with
// zktest.JavaProgram, the C one with zktest.CProgram, the kazoo one runs
// with zktest.PythonCommand.
var (
	//go:embed java/IdleClient.java
	JavaIdleClientSource string
	//go:embed python/kazoo_idle_client.py
	KazooIdleClientSource string
	//go:embed c/idle_client.c
	CIdleClientSource string
)

// WantIdleReport is the report of an idle client under root whose session
// moved without the client noticing, after the test set root/d1 and root/d2
// and created root/new: every watch fired once, the ephemeral kept its
// owner, no disconnect and no expiry. kazoo spells event types and
// connection states its own way; the C client prints the Java names.
func WantIdleReport(root string, kazoo bool) []string {
	spell := func(java, kz string) string {
		if kazoo {
			return kz
		}
		return java
	}
	want := []string{
		"event " + spell("NodeChildrenChanged", "CHILD") + " " + root,
		"event " + spell("NodeCreated", "CREATED") + " " + root + "/new",
		"event " + spell("NodeDataChanged", "CHANGED") + " " + root + "/d1",
		"event " + spell("NodeDataChanged", "CHANGED") + " " + root + "/d2",
	}
	slices.Sort(want) // the clients print their events sorted
	return append(want,
		"ephemeral owner kept: "+spell("true", "True"),
		spell("disconnects 0 expired 0", "suspended 0 lost 0"))
}

// IdleClient drives a running idle-client program: one that sets its
// watches and ephemeral, prints "READY <session id in hex>" (0x optional),
// waits for "GO" on stdin and then prints its report as "T " lines and
// exits. Tests move the session under it between READY and GO.
type IdleClient struct {
	// ID is the session id the program printed.
	ID   int64
	proc *zktest.Process

	ready    chan struct{} // closed at the first READY line
	readyErr error         // a READY line without a session id; set before ready closes
	mu       sync.Mutex
	report   []string // the "T " lines so far
}

// StartIdleClient starts cmd (from zktest.JavaProgram, zktest.CProgram or
// zktest.PythonCommand, with the source above) and waits for its READY
// line. The caller calls Kill when done (harmless after Report).
func StartIdleClient(cmd *exec.Cmd) (*IdleClient, error) {
	c := &IdleClient{ready: make(chan struct{})}
	proc, err := zktest.StartProcess(cmd, c.readLine, nil)
	if err != nil {
		return nil, fmt.Errorf("idle client: %w", err)
	}
	c.proc = proc
	select {
	case <-c.ready:
		if c.readyErr != nil {
			c.Kill()
			return nil, c.readyErr
		}
		return c, nil
	case <-proc.Exited():
		return nil, fmt.Errorf("idle client never got ready: %v\n%s", proc.Err(), proc.Stderr())
	}
}

// readLine takes the session id from the READY line and collects the
// report.
func (c *IdleClient) readLine(line string) {
	if rest, ok := strings.CutPrefix(line, "READY "); ok && !isClosed(c.ready) {
		id, err := strconv.ParseUint(strings.TrimPrefix(rest, "0x"), 16, 64)
		if err != nil {
			c.readyErr = fmt.Errorf("idle client: bad READY line %q", line)
		}
		c.ID = int64(id)
		close(c.ready)
		return
	}
	if rest, ok := strings.CutPrefix(line, "T "); ok {
		c.mu.Lock()
		c.report = append(c.report, rest)
		c.mu.Unlock()
	}
}

// Report tells the program "GO" and returns its "T " lines (without the
// prefix) once it has exited.
func (c *IdleClient) Report() ([]string, error) {
	// A program that died before GO says why in its exit status below.
	_ = c.proc.Send("GO")
	<-c.proc.Exited()
	c.mu.Lock()
	got := slices.Clone(c.report)
	c.mu.Unlock()
	if err := c.proc.Err(); err != nil {
		return got, fmt.Errorf("idle client: %w\n%s", err, c.proc.Stderr())
	}
	return got, nil
}

// Stderr returns the tail of what the program wrote to stderr.
func (c *IdleClient) Stderr() string { return c.proc.Stderr() }

// Kill stops the program if it still runs.
func (c *IdleClient) Kill() { c.proc.Kill() }
