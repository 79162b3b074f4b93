package zktest

import (
	"context"
	_ "embed"
	"fmt"
	"slices"
	"strings"
	"sync"
)

//go:embed java/CuratorDriver.java
var curatorDriverSource string

// Curator is an Apache Curator 5 client (Debian libcurator-framework-java,
// EnsembleTracker on, as by default) plus plain ZooKeeper handles and a
// ZooKeeperAdmin, driven by java/CuratorDriver.java. It records every
// connection string Curator's EnsembleTracker hands its ensemble provider.
type Curator struct {
	proc    *Process
	callMu  sync.Mutex // one command at a time
	replies chan string

	mu       sync.Mutex
	provided []string
}

// StartCurator starts the driver; its "curator <connectString>" command
// starts the Curator client. It is killed in t.Cleanup.
func StartCurator(t TB) *Curator {
	t.Helper()
	j := JavaProgramWith(t, curatorDriverSource, CuratorJar)
	c := &Curator{replies: make(chan string, 1)}
	c.proc = startDriver(t, "curator driver", j, c.demux)
	return c
}

func (c *Curator) demux(line string) {
	switch {
	case strings.HasPrefix(line, "R "):
		c.replies <- line[2:]
	case strings.HasPrefix(line, "C "):
		c.mu.Lock()
		c.provided = append(c.provided, line[2:])
		c.mu.Unlock()
	}
}

// Do sends one command (see java/CuratorDriver.java) and returns its result;
// a KeeperException or other failure is a *ClientError. Config data comes
// with its newlines as '|'.
func (c *Curator) Do(ctx context.Context, args ...string) (string, error) {
	c.callMu.Lock()
	defer c.callMu.Unlock()
	line := strings.Join(args, " ")
	if err := c.proc.Send(line); err != nil {
		return "", fmt.Errorf("curator driver: %w", err)
	}
	select {
	case r := <-c.replies:
		if rest, ok := strings.CutPrefix(r, "OK"); ok {
			return strings.TrimPrefix(rest, " "), nil
		}
		code, msg, _ := strings.Cut(strings.TrimPrefix(r, "ERR "), " ")
		return "", &ClientError{Code: code, Message: msg}
	case <-c.proc.Exited():
		return "", fmt.Errorf("curator driver %q: process exited", line)
	case <-ctx.Done():
		// A late reply would be taken for the next command's: give up on
		// the driver instead.
		c.proc.Kill()
		return "", fmt.Errorf("curator driver %q: %w", line, ctx.Err())
	}
}

// ConnectionStrings returns every connection string Curator's
// EnsembleTracker handed its ensemble provider, oldest first.
func (c *Curator) ConnectionStrings() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.provided)
}
