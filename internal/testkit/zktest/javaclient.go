package zktest

import (
	"context"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

//go:embed java/ZKTestClient.java
var javaClientSource string

// JavaClient drives one ZooKeeper 3.8 Java client handle
// (org.apache.zookeeper.ZooKeeper) in its own JVM, command by command (see
// java/ZKTestClient.java). It is the real client whose session re-attachment
// (reconnect with session id, password, last zxid, then SetWatches) tests rely
// on. The JVM is killed in t.Cleanup; its stderr (client logs at WARN) is
// attached to the test output when the test fails.
type JavaClient struct {
	t    TB
	proc *Process

	callMu sync.Mutex // one command at a time
	// abandoned counts replies still owed to calls whose context ended
	// first (under callMu): the next call skips them, or it would take
	// an earlier command's reply for its own.
	abandoned int
	replies   chan string

	mu      sync.Mutex
	events  []ClientEvent
	changed chan struct{} // closed and replaced on every new event
}

// ClientEvent is one watcher event delivered to the Java client's default
// watcher.
type ClientEvent struct {
	State string // KeeperState: SyncConnected, Disconnected, Expired, ...
	Type  string // EventType: None, NodeCreated, NodeDataChanged, NodeChildrenChanged, ...
	Path  string // "" for state changes
	At    time.Time
}

// ClientError is a failed command; Code is the KeeperException.Code name
// (e.g. NONODE, SESSIONEXPIRED, CONNECTIONLOSS) or EXCEPTION.
type ClientError struct {
	Code    string
	Message string
}

func (e *ClientError) Error() string { return "java client: " + e.Code + ": " + e.Message }

// StartJavaClient starts a Java client process; use Connect to open the
// handle.
func StartJavaClient(t TB) *JavaClient {
	t.Helper()
	j := JavaProgram(t, javaClientSource)
	c := &JavaClient{t: t, replies: make(chan string, 1), changed: make(chan struct{})}
	c.proc = startDriver(t, "java client", j, c.demux)
	return c
}

// startDriver starts a Java driver program that answers on stdout (lines
// to onLine) and kills it in t.Cleanup, logging its stderr if t failed.
func startDriver(t TB, name string, j *Java, onLine func(string)) *Process {
	t.Helper()
	proc, err := StartProcess(j.Command(context.Background()), onLine, nil)
	if err != nil {
		t.Fatalf("zktest: %s: %v", name, err)
	}
	t.Cleanup(func() {
		proc.Kill()
		if t.Failed() {
			t.Logf("zktest: %s (pid %d) stderr:\n%s", name, proc.PID(), proc.Stderr())
		}
	})
	return proc
}

// demux sorts the program's output into replies and events.
func (c *JavaClient) demux(line string) {
	switch {
	case strings.HasPrefix(line, "R "):
		c.replies <- line[2:]
	case strings.HasPrefix(line, "E "):
		c.addEvent(line[2:])
	}
}

func (c *JavaClient) addEvent(s string) {
	f := strings.Fields(s)
	if len(f) != 4 {
		return
	}
	ev := ClientEvent{State: f[0], Type: f[1], Path: f[2]}
	if ev.Path == "-" {
		ev.Path = ""
	}
	if ms, err := strconv.ParseInt(f[3], 10, 64); err == nil {
		ev.At = time.UnixMilli(ms)
	}
	c.mu.Lock()
	c.events = append(c.events, ev)
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// Do sends one command (see java/ZKTestClient.java) and returns the result
// text. A KeeperException or other failure is a *ClientError.
func (c *JavaClient) Do(ctx context.Context, args ...string) (string, error) {
	c.callMu.Lock()
	defer c.callMu.Unlock()
	line := strings.Join(args, " ")
	for c.abandoned > 0 {
		select {
		case <-c.replies:
			c.abandoned--
		case <-c.proc.Exited():
			return "", fmt.Errorf("java client %q: process exited", line)
		case <-ctx.Done():
			return "", fmt.Errorf("java client %q: waiting for an earlier command's reply: %w", line, ctx.Err())
		}
	}
	if err := c.proc.Send(line); err != nil {
		return "", fmt.Errorf("java client: %w", err)
	}
	select {
	case r := <-c.replies:
		if rest, ok := strings.CutPrefix(r, "OK"); ok {
			return strings.TrimPrefix(rest, " "), nil
		}
		code, msg, _ := strings.Cut(strings.TrimPrefix(r, "ERR "), " ")
		return "", &ClientError{Code: code, Message: msg}
	case <-c.proc.Exited():
		return "", fmt.Errorf("java client %q: process exited", line)
	case <-ctx.Done():
		// The reply may still come: the next call skips it.
		c.abandoned++
		return "", fmt.Errorf("java client %q: %w", line, ctx.Err())
	}
}

// Events returns every event so far.
func (c *JavaClient) Events() []ClientEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]ClientEvent(nil), c.events...)
}

// EventCount returns the number of events so far, a cursor for WaitEvent.
func (c *JavaClient) EventCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.events)
}

// WaitEvent waits for the first event at index >= from that matches, and
// returns it with its index.
func (c *JavaClient) WaitEvent(ctx context.Context, from int, match func(ClientEvent) bool) (ClientEvent, int, error) {
	for {
		c.mu.Lock()
		for i := from; i < len(c.events); i++ {
			if match(c.events[i]) {
				ev := c.events[i]
				c.mu.Unlock()
				return ev, i, nil
			}
		}
		from = max(from, len(c.events))
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return ClientEvent{}, 0, fmt.Errorf("java client: wait for event: %w (events: %v)", ctx.Err(), c.Events())
		}
	}
}

// State matches a session state change (EventType None) to the given
// KeeperState.
func State(state string) func(ClientEvent) bool {
	return func(ev ClientEvent) bool { return ev.Type == "None" && ev.State == state }
}

// NodeEvent matches a watch notification of the given type for path.
func NodeEvent(typ, path string) func(ClientEvent) bool {
	return func(ev ClientEvent) bool { return ev.Type == typ && ev.Path == path }
}

// ErrSessionExpired is returned by Connect when the server answered with an
// expired session.
var ErrSessionExpired = errors.New("zktest: session expired")

// Connect creates the client handle — a new session, or, with a non-zero
// sessionID, re-attaching that session with passwd — and waits until it is
// connected. The handle reconnects by itself within connectString from then on.
func (c *JavaClient) Connect(ctx context.Context, connectString string, timeoutMS int, sessionID int64, passwd []byte) error {
	from := c.EventCount()
	args := []string{"connect", connectString, strconv.Itoa(timeoutMS)}
	if sessionID != 0 {
		args = append(args, strconv.FormatUint(uint64(sessionID), 16), hex.EncodeToString(passwd))
	}
	if _, err := c.Do(ctx, args...); err != nil {
		return err
	}
	ev, _, err := c.WaitEvent(ctx, from, func(ev ClientEvent) bool {
		return ev.Type == "None" && (ev.State == "SyncConnected" || ev.State == "Expired")
	})
	if err != nil {
		return err
	}
	if ev.State == "Expired" {
		return ErrSessionExpired
	}
	return nil
}

// Session returns the handle's session id, password and negotiated timeout.
func (c *JavaClient) Session(ctx context.Context) (id int64, passwd []byte, timeoutMS int, err error) {
	r, err := c.Do(ctx, "session")
	if err != nil {
		return 0, nil, 0, err
	}
	f := strings.Fields(r)
	if len(f) != 3 {
		return 0, nil, 0, fmt.Errorf("java client session: bad reply %q", r)
	}
	u, err1 := strconv.ParseUint(f[0], 16, 64)
	passwd, err2 := hex.DecodeString(f[1])
	timeoutMS, err3 := strconv.Atoi(f[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		return 0, nil, 0, fmt.Errorf("java client session: bad reply %q: %w", r, err)
	}
	return int64(u), passwd, timeoutMS, nil
}

// Info is what the handle's toString reports about its connection.
type Info struct {
	State      string // CONNECTED, CONNECTING, CLOSED, ...
	RemoteAddr string // "127.a.b.c:2181" of the server it is connected to, "" if none
	LastZxid   int64  // highest zxid seen in replies (ClientCnxn.lastZxid)
	Raw        string
}

// Info returns the connection details from ZooKeeper.toString (state,
// ClientCnxn remoteserver and lastZxid).
func (c *JavaClient) Info(ctx context.Context) (Info, error) {
	r, err := c.Do(ctx, "info")
	if err != nil {
		return Info{}, err
	}
	in := Info{Raw: r}
	for _, f := range strings.Fields(r) {
		k, v, ok := strings.Cut(f, ":")
		if !ok {
			continue
		}
		switch k {
		case "State":
			in.State = v
		case "remoteserver":
			// InetSocketAddress.toString: "host/ip:port" or "/ip:port".
			if _, after, ok := strings.Cut(v, "/"); ok {
				in.RemoteAddr = after
			} else if v != "null" {
				in.RemoteAddr = v
			}
		case "lastZxid":
			in.LastZxid, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return in, nil
}

// WaitAttached polls Info until the handle is CONNECTED to one of addrs
// ("ip:port") and returns that address.
func (c *JavaClient) WaitAttached(ctx context.Context, addrs []string) (string, error) {
	var last Info
	for {
		in, err := c.Info(ctx)
		if err != nil {
			return "", err
		}
		if in.State == "CONNECTED" && slices.Contains(addrs, in.RemoteAddr) {
			return in.RemoteAddr, nil
		}
		last = in
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("java client not attached to %v: %w (last: %s)", addrs, ctx.Err(), last.Raw)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// MoveTo moves the handle to one of addrs with ZooKeeper.updateServerList:
// when the current server is not in the new list, the client closes its
// connection and reconnects to a listed server
// (StaticHostProvider.updateServerList, reconfigMode), re-attaching its
// session with ConnectRequest{sessionId, passwd, lastZxidSeen} and then
// re-registering its watches with SetWatches. It returns the new server's
// address.
//
// updateServerList only closes a live socket: if the client is between
// connections — it has already picked its next server but is still in
// ClientCnxn.startConnect's random back-off of up to 1 s — the pick stands and
// the client lands on an old server. MoveTo therefore repeats the update until
// the client is connected to a listed server.
func (c *JavaClient) MoveTo(ctx context.Context, addrs []string) (string, error) {
	for {
		if _, err := c.Do(ctx, "servers", strings.Join(addrs, ",")); err != nil {
			return "", err
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		at, err := c.WaitAttached(wctx, addrs)
		cancel()
		if err == nil {
			return at, nil
		}
		if ctx.Err() != nil {
			return "", err
		}
	}
}
