package kafkaload

import (
	"bufio"
	_ "embed"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strconv"
	"strings"
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
	ID     int64
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  *bufio.Scanner
	stderr *tailBuffer // the program's stderr (the C client logs there)
}

// StartIdleClient starts cmd and waits for its READY line. The caller
// calls Kill when done (harmless after Report).
func StartIdleClient(cmd *exec.Cmd) (*IdleClient, error) {
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c := &IdleClient{cmd: cmd, stdin: stdin, lines: bufio.NewScanner(stdout), stderr: &tailBuffer{max: 64 << 10}}
	cmd.Stderr = c.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	for c.lines.Scan() {
		if rest, ok := strings.CutPrefix(c.lines.Text(), "READY "); ok {
			id, err := strconv.ParseUint(strings.TrimPrefix(rest, "0x"), 16, 64)
			if err != nil {
				c.Kill()
				return nil, fmt.Errorf("idle client: bad READY line %q", c.lines.Text())
			}
			c.ID = int64(id)
			return c, nil
		}
	}
	c.Kill()
	return nil, fmt.Errorf("idle client never got ready: %s", c.stderr.String())
}

// Report tells the program "GO" and returns its "T " lines (without the
// prefix) once it has exited.
func (c *IdleClient) Report() ([]string, error) {
	io.WriteString(c.stdin, "GO\n")
	var got []string
	for c.lines.Scan() {
		if rest, ok := strings.CutPrefix(c.lines.Text(), "T "); ok {
			got = append(got, rest)
		}
	}
	if err := c.cmd.Wait(); err != nil {
		return got, fmt.Errorf("idle client: %w\n%s", err, c.stderr.String())
	}
	return got, nil
}

// Stderr returns what the program wrote to stderr so far.
func (c *IdleClient) Stderr() string { return c.stderr.String() }

// Kill stops the program if it still runs.
func (c *IdleClient) Kill() {
	if c.cmd.ProcessState == nil {
		c.cmd.Process.Kill()
		c.cmd.Wait()
	}
}
