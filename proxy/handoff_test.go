package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/jute"
)

// handoffPair is an old and a new Server sharing one listening socket, as
// an upgrade's parent and child do, and a Unix socket pair between them.
type handoffPair struct {
	members  []string
	old, new *Server
	oldLogs  *logBuffer
	addr     string
	lnFile   *os.File // the listening socket, kept like the parent keeps it
	oldConn  *net.UnixConn
	newConn  *net.UnixConn
	newServe chan error
	wrap     func(net.Listener) net.Listener
}

func newHandoffPair(t *testing.T, members []string) *handoffPair {
	t.Helper()
	return newHandoffPairWrapped(t, members, nil)
}

// newHandoffPairWrapped is newHandoffPair with both servers' listeners
// passed through wrap (TLS) when it is not nil.
func newHandoffPairWrapped(t *testing.T, members []string, wrap func(net.Listener) net.Listener) *handoffPair {
	t.Helper()
	p := &handoffPair{members: members, wrap: wrap}
	newServer := func(name string) (*Server, *logBuffer) {
		logs := &logBuffer{t: t}
		srv, err := New(Config{Source: members}, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("process", name), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close(); logs.stop() })
		return srv, logs
	}
	p.old, p.oldLogs = newServer("old")
	p.new, _ = newServer("new")
	ln, err := net.Listen("tcp", net.JoinHostPort(zktest.LoopbackIP(t), "2181"))
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	if p.lnFile, err = ln.(*net.TCPListener).File(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.lnFile.Close() })
	if wrap != nil {
		ln = wrap(ln)
	}
	go p.old.Serve(ln)
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	p.oldConn, p.newConn = unixConn(t, fds[0]), unixConn(t, fds[1])
	return p
}

func unixConn(t *testing.T, fd int) *net.UnixConn {
	t.Helper()
	f := os.NewFile(uintptr(fd), "handoff")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UnixConn)
}

// startNew makes the new server accept on the shared listening socket, as
// the child does with the inherited one.
func (p *handoffPair) startNew(t *testing.T) {
	t.Helper()
	ln, err := net.FileListener(p.lnFile)
	if err != nil {
		t.Fatal(err)
	}
	if p.wrap != nil {
		ln = p.wrap(ln)
	}
	p.newServe = make(chan error, 1)
	go func() { p.newServe <- p.new.Serve(ln) }()
}

// resumeOld makes the old server accept again on the kept listening
// socket, as the parent does after a failed handoff.
func (p *handoffPair) resumeOld(t *testing.T) {
	t.Helper()
	p.old.ResumeAccepting()
	ln, err := net.FileListener(p.lnFile)
	if err != nil {
		t.Fatal(err)
	}
	if p.wrap != nil {
		ln = p.wrap(ln)
	}
	go p.old.Serve(ln)
}

// run hands over from old to new and returns both sides' results.
func (p *handoffPair) run(t *testing.T, opts HandOverOptions, adopt AdoptOptions) (HandOverResult, error, AdoptResult, error) {
	t.Helper()
	var ar AdoptResult
	var aerr error
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		defer close(done)
		ar, aerr = p.new.Adopt(ctx, p.newConn, adopt)
	}()
	hr, herr := p.old.HandOver(context.Background(), p.oldConn, opts)
	if herr != nil {
		cancel()
	}
	<-done
	return hr, herr, ar, aerr
}

// handoffClient is a go-zookeeper session that keeps writing: each write
// acknowledged is remembered, so none may be lost.
type handoffClient struct {
	conn  *zk.Conn
	rec   *stateRecorder
	path  string
	acked atomic.Int64
	// tolerateLoss retries after ConnectionLoss instead of failing.
	tolerateLoss bool
	stop         chan struct{}
	done         chan error
}

func startBusyClient(t *testing.T, addr, path string) *handoffClient {
	t.Helper()
	return startBusy(t, addr, path, false)
}

func startBusy(t *testing.T, addr, path string, tolerateLoss bool) *handoffClient {
	t.Helper()
	conn, rec := connectGo(t, []string{addr}, 10*time.Second)
	if _, err := conn.Create(path, []byte("0"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	c := &handoffClient{conn: conn, rec: rec, path: path, stop: make(chan struct{}), done: make(chan error, 1), tolerateLoss: tolerateLoss}
	go func() {
		for i := int64(1); ; i++ {
			select {
			case <-c.stop:
				c.done <- nil
				return
			default:
			}
			// Sequential children in order: each create's name must
			// follow the one before (held requests kept in order).
			_, err := conn.Create(path+"/n-", []byte(strconv.FormatInt(i, 10)), zk.FlagSequence, zk.WorldACL(zk.PermAll))
			if err == nil {
				_, err = conn.Set(path, []byte(strconv.FormatInt(i, 10)), -1)
			}
			if err != nil {
				if c.tolerateLoss && (errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, zk.ErrNoServer)) {
					i-- // unknown outcome: the next create may repeat i
					time.Sleep(50 * time.Millisecond)
					continue
				}
				c.done <- fmt.Errorf("write %d: %w", i, err)
				return
			}
			c.acked.Store(i)
		}
	}()
	return c
}

// finish stops the writer and checks every acknowledged write is there,
// in order.
func (c *handoffClient) finish(t *testing.T) {
	t.Helper()
	close(c.stop)
	if err := <-c.done; err != nil {
		t.Fatalf("%s: %v", c.path, err)
	}
	n := c.acked.Load()
	children, _, err := c.conn.Children(c.path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(children)) < n {
		t.Fatalf("%s: %d children, %d creates acknowledged", c.path, len(children), n)
	}
	slices.Sort(children) // n-%010d: sequence order
	last := int64(0)
	for _, child := range children {
		data, _, err := c.conn.Get(c.path + "/" + child)
		if err != nil {
			t.Fatal(err)
		}
		v, _ := strconv.ParseInt(string(data), 10, 64)
		if v < last || !c.tolerateLoss && v != last+1 {
			t.Fatalf("%s/%s holds %d after %d: creates out of order", c.path, child, v, last)
		}
		last = v
	}
	if last < n {
		t.Fatalf("%s: last create holds %d, create %d was acknowledged", c.path, last, n)
	}
	data, _, err := c.conn.Get(c.path)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := strconv.ParseInt(string(data), 10, 64); v < n {
		t.Fatalf("%s holds %d, write %d was acknowledged", c.path, v, n)
	}
	t.Logf("%s: %d writes acknowledged, all there", c.path, n)
}

func TestHandOverSessions(t *testing.T) {
	zktest.RequireIntegration(t)
	ens := zktest.NewEnsemble(t, 3)
	members := ens.IPs()
	for i, m := range ens.Members {
		members[i] = m.ClientAddr()
	}
	p := newHandoffPair(t, members)

	var busy []*handoffClient
	for i := range 3 {
		busy = append(busy, startBusyClient(t, p.addr, fmt.Sprintf("/busy%d", i)))
	}
	idle, idleRec := connectGo(t, []string{p.addr}, 10*time.Second)
	if _, err := idle.Create("/watched", []byte("x"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	_, _, dataW, err := idle.GetW("/watched")
	if err != nil {
		t.Fatal(err)
	}
	_, _, childW, err := idle.ChildrenW("/watched")
	if err != nil {
		t.Fatal(err)
	}
	_, _, existW, err := idle.ExistsW("/not-yet")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := idle.Create("/pipe", nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	pipe := startPipelinedWriter(t, p.addr, "/pipe", 32)
	ids := map[int64]bool{idle.SessionID(): true}
	for _, c := range busy {
		ids[c.conn.SessionID()] = true
	}
	waitFor(t, "some writes", 30*time.Second, func() bool { return busy[0].acked.Load() > 20 && pipe.acked.Load() > 100 })
	for _, s := range p.old.Sessions() {
		ids[int64(s.ID())] = true // the pipelined writer's raw session too
	}

	p.startNew(t)
	hr, herr, ar, aerr := p.run(t, HandOverOptions{Batch: 2}, AdoptOptions{Version: "test-new"})
	if herr != nil || aerr != nil {
		t.Fatalf("HandOver: %v; Adopt: %v", herr, aerr)
	}
	t.Logf("handover: %+v; adopt: %+v", hr, ar)
	if hr.HandedOver != len(ids) || ar.Adopted != len(ids) || hr.Remaining() != 0 {
		t.Fatalf("handed over %d, adopted %d, kept %v; want %d", hr.HandedOver, ar.Adopted, hr.Kept, len(ids))
	}
	if n := len(p.old.Sessions()); n != 0 {
		t.Fatalf("old process still has %d sessions", n)
	}
	waitFor(t, "the new process to re-attach every session", 30*time.Second, func() bool {
		n := 0
		for _, s := range p.new.Sessions() {
			if ids[int64(s.ID())] && s.State() == StateActive {
				n++
			}
		}
		return n == len(ids)
	})
	held := counter(t, p.old.m.heldRequests)
	t.Logf("requests held by the old process during the handoff: %v", held)
	if held == 0 {
		t.Fatal("no request was held across the handoff: the pipelined writer did not exercise it")
	}
	// The old process is gone, as after an upgrade.
	p.old.Close()

	before := busy[0].acked.Load()
	waitFor(t, "writes through the new process", 30*time.Second, func() bool { return busy[0].acked.Load() > before+20 })

	// Watches set before the handoff fire after it.
	direct, _ := connectGo(t, []string{members[0]}, 10*time.Second)
	if _, err := direct.Set("/watched", []byte("y"), -1); err != nil {
		t.Fatal(err)
	}
	if _, err := direct.Create("/watched/c", nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if _, err := direct.Create("/not-yet", nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]<-chan zk.Event{"data": dataW, "child": childW, "exist": existW} {
		select {
		case ev := <-ch:
			t.Logf("%s watch fired: %v %s", name, ev.Type, ev.Path)
		case <-time.After(30 * time.Second):
			t.Fatalf("%s watch set before the handoff did not fire", name)
		}
	}
	// The pipelined writer: every reply in order; its last acknowledged
	// write is what the node holds once it stopped.
	before = pipe.acked.Load()
	waitFor(t, "pipelined writes through the new process", 30*time.Second, func() bool { return pipe.acked.Load() > before+100 })
	close(pipe.stop)
	time.Sleep(200 * time.Millisecond) // the last replies come in
	select {
	case err := <-pipe.done:
		if err != nil {
			t.Fatal(err)
		}
	default:
	}
	for _, c := range busy {
		c.finish(t)
		if n := c.rec.count(zk.StateDisconnected); n != 0 {
			t.Errorf("%s: %d disconnects", c.path, n)
		}
	}
	if n := idleRec.count(zk.StateDisconnected); n != 0 {
		t.Errorf("idle client: %d disconnects", n)
	}
	if n := idleRec.count(zk.StateExpired); n != 0 {
		t.Errorf("idle client: session expired")
	}
}

// A new process that does not accept this process's handoff version is
// refused: nothing leaves the old process, which accepts again.
func TestHandOverUnknownVersionRefused(t *testing.T) {
	zktest.RequireIntegration(t)
	ens := zktest.NewEnsemble(t, 1)
	p := newHandoffPair(t, []string{ens.Members[0].ClientAddr()})
	c, rec := connectGo(t, []string{p.addr}, 10*time.Second)
	_, herr, _, _ := p.run(t, HandOverOptions{}, AdoptOptions{accepts: []uint16{HandoffVersion() + 41}})
	if !errors.Is(herr, ErrHandoffRefused) {
		t.Fatalf("HandOver: %v, want ErrHandoffRefused", herr)
	}
	if n := len(p.old.Sessions()); n != 1 {
		t.Fatalf("old process has %d sessions, want 1", n)
	}
	if _, err := c.Create("/after", nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	c2, _ := connectGo(t, []string{p.addr}, 10*time.Second) // still accepting: never released
	if _, _, err := c2.Get("/after"); err != nil {
		t.Fatal(err)
	}
	if n := rec.count(zk.StateDisconnected); n != 0 {
		t.Fatalf("%d disconnects", n)
	}
}

// The new process stops answering halfway (it is killed): the old process
// takes back every session it had not handed over, the client sees at most
// a pause, and accepts again; sessions already handed over reconnect to it
// with their session when the new process goes.
func TestHandOverNewProcessDiesHalfway(t *testing.T) {
	zktest.RequireIntegration(t)
	ens := zktest.NewEnsemble(t, 1)
	p := newHandoffPair(t, []string{ens.Members[0].ClientAddr()})
	var clients []*handoffClient
	for i := range 6 {
		clients = append(clients, startBusy(t, p.addr, fmt.Sprintf("/c%d", i), true))
	}
	waitFor(t, "some writes", 30*time.Second, func() bool { return clients[5].acked.Load() > 5 })
	p.startNew(t)
	var once sync.Once
	abort := func() { once.Do(func() { p.new.Close() }) }
	hr, herr, ar, _ := p.run(t, HandOverOptions{Batch: 2, AckTimeout: 2 * time.Second, Abort: abort},
		AdoptOptions{PauseAfter: 3})
	if herr == nil {
		t.Fatal("HandOver succeeded with a new process that stopped halfway")
	}
	t.Logf("handover: %v %+v; adopt: %+v", herr, hr, ar)
	p.resumeOld(t)
	// Every session ends up in the old process, none expired.
	waitFor(t, "every session back in the old process", 60*time.Second, func() bool {
		n := 0
		for _, s := range p.old.Sessions() {
			if s.State() == StateActive {
				n++
			}
		}
		return n == len(clients)
	})
	for _, c := range clients {
		before := c.acked.Load()
		waitFor(t, "writes after the abort", 30*time.Second, func() bool { return c.acked.Load() > before+2 })
	}
	kept := 0
	for _, c := range clients {
		if c.rec.count(zk.StateExpired) != 0 {
			t.Errorf("%s: session expired", c.path)
		}
		if c.rec.count(zk.StateDisconnected) == 0 {
			kept++
		}
	}
	if kept < len(clients)-hr.HandedOver {
		t.Errorf("%d clients saw no disconnect; the %d not handed over should not have", kept, len(clients)-hr.HandedOver)
	}
	for _, c := range clients {
		c.finish(t)
	}
}

// The new process stops reading halfway without dying (hung): the old
// process's sends fill the socket and block, so each send is bounded by
// AckTimeout too; the handoff fails, every session not acknowledged is
// taken back, and its watches still fire. The sessions' records are made
// large (thousands of watches each) so the socket's buffer fills.
func TestHandOverNewProcessStopsReading(t *testing.T) {
	zktest.RequireIntegration(t)
	ens := zktest.NewEnsemble(t, 1)
	p := newHandoffPair(t, []string{ens.Members[0].ClientAddr()})
	const sessions, watches = 3, 1500
	pad := strings.Repeat("w", 200)
	var conns []*zk.Conn
	var recs []*stateRecorder
	var fired []<-chan zk.Event
	for i := range sessions {
		c, rec := connectGo(t, []string{p.addr}, 30*time.Second)
		conns, recs = append(conns, c), append(recs, rec)
		var wg sync.WaitGroup
		errs := make(chan error, watches)
		for j := range watches {
			wg.Go(func() {
				if _, _, _, err := c.ExistsW(fmt.Sprintf("/absent-%d-%s-%d", i, pad, j)); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		_, _, ev, err := c.ExistsW(fmt.Sprintf("/later-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		fired = append(fired, ev)
	}
	p.startNew(t)
	type result struct {
		hr   HandOverResult
		herr error
	}
	done := make(chan result, 1)
	go func() {
		hr, herr, _, _ := p.run(t, HandOverOptions{Batch: sessions, AckTimeout: 2 * time.Second,
			Abort: func() { p.new.Close() }}, AdoptOptions{PauseAfter: 1})
		done <- result{hr, herr}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("HandOver still blocked 60 s after starting with a new process that stopped reading")
	}
	if r.herr == nil {
		t.Fatal("HandOver succeeded with a new process that stopped reading")
	}
	t.Logf("handover: %v %+v", r.herr, r.hr)
	p.resumeOld(t)
	waitFor(t, "every session working again", 60*time.Second, func() bool {
		for _, c := range conns {
			if _, _, err := c.Exists("/"); err != nil {
				return false
			}
		}
		return true
	})
	direct, _ := connectGo(t, []string{ens.Members[0].ClientAddr()}, 10*time.Second)
	for i := range sessions {
		if _, err := direct.Create(fmt.Sprintf("/later-%d", i), nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
	}
	for i, ev := range fired {
		expectEvent(t, fmt.Sprintf("session %d's watch", i), ev, zk.EventNodeCreated, fmt.Sprintf("/later-%d", i))
		if recs[i].count(zk.StateExpired) != 0 {
			t.Errorf("session %d expired", i)
		}
	}
}

// A TLS client connection cannot be handed over (its keys live in the old
// process): it is drained and disconnected, counted, and the client
// reconnects to the new process with its session.
func TestHandOverTLSSessionDisconnected(t *testing.T) {
	zktest.RequireIntegration(t)
	ens := zktest.NewEnsemble(t, 1)
	ca := zktest.NewCA(t)
	tlsPair := newHandoffPairWrapped(t, []string{ens.Members[0].ClientAddr()}, tlsListener(t, ca, false))
	secure, secureRec := connectGoTLS(t, tlsPair.addr, ca, nil)
	waitFor(t, "the TLS session", 30*time.Second, func() bool { return secure.State() == zk.StateHasSession })
	id := secure.SessionID()
	tlsPair.startNew(t)
	hr, herr, ar, aerr := tlsPair.run(t, HandOverOptions{}, AdoptOptions{})
	if herr != nil || aerr != nil {
		t.Fatalf("HandOver: %v; Adopt: %v", herr, aerr)
	}
	if hr.Disconnected["tls"] != 1 || hr.HandedOver != 0 || ar.Adopted != 0 {
		t.Fatalf("handover %+v, adopt %+v; want the TLS session disconnected", hr, ar)
	}
	if n := counter(t, tlsPair.old.m.handedOver.WithLabelValues("tls")); n != 1 {
		t.Fatalf("zkproxy_handoff_sessions_total{result=tls} = %v", n)
	}
	waitFor(t, "the TLS client back, on the new process", 30*time.Second, func() bool {
		return sessionByID(tlsPair.new, jute.SessionID(id)) != nil && secure.State() == zk.StateHasSession
	})
	if _, err := secure.Create("/tls-after", nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if secure.SessionID() != id || secureRec.count(zk.StateExpired) != 0 {
		t.Fatalf("session %#x became %#x (expired %d)", id, secure.SessionID(), secureRec.count(zk.StateExpired))
	}
	if n := secureRec.count(zk.StateDisconnected); n != 1 {
		t.Fatalf("TLS client saw %d disconnects, want 1", n)
	}
}

// A SASL session cannot be handed over (SASL cannot be replayed on a new
// member connection, docs/protocol.md §6.3): it is drained and disconnected,
// counted (result sasl), and the Java client reconnects to the new process
// with its session and authenticates again; nothing expires.
func TestHandOverSASLSessionDisconnected(t *testing.T) {
	zktest.RequireIntegration(t)
	src, err := os.ReadFile("../cutover/testdata/SaslSession.java")
	if err != nil {
		t.Fatal(err)
	}
	jaas, opts := zktest.DigestSASL(t)
	ens := zktest.NewEnsemble(t, 1, opts...)
	p := newHandoffPair(t, []string{ens.Members[0].ClientAddr()})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var mu sync.Mutex
	events := map[string]int{}
	ready := make(chan string, 1)
	proc, err := zktest.StartProcess(zktest.JavaProgram(t, string(src)).Command(ctx, p.addr, jaas), func(line string) {
		if ev, ok := strings.CutPrefix(line, "EV "); ok {
			mu.Lock()
			events[ev]++
			mu.Unlock()
		} else if id, ok := strings.CutPrefix(line, "READY "); ok {
			ready <- id
		}
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proc.Kill)
	count := func(ev string) int {
		mu.Lock()
		defer mu.Unlock()
		return events[ev]
	}
	var sid string
	select {
	case sid = <-ready:
	case <-time.After(90 * time.Second):
		t.Fatalf("the SASL client did not get ready\n%s", proc.Stderr())
	}
	id, err := strconv.ParseUint(sid, 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	p.startNew(t)
	hr, herr, ar, aerr := p.run(t, HandOverOptions{}, AdoptOptions{})
	if herr != nil || aerr != nil {
		t.Fatalf("HandOver: %v; Adopt: %v", herr, aerr)
	}
	if hr.Disconnected["sasl"] != 1 || hr.HandedOver != 0 || ar.Adopted != 0 {
		t.Fatalf("handover %+v, adopt %+v; want the SASL session disconnected", hr, ar)
	}
	waitFor(t, "the SASL client back on the new process, authenticated again", 60*time.Second, func() bool {
		return sessionByID(p.new, jute.SessionID(id)) != nil && count("SaslAuthenticated") == 2
	})
	if d, e := count("Disconnected"), count("Expired"); d != 1 || e != 0 {
		t.Fatalf("SASL client: %d disconnects, %d expiries; want 1 and 0", d, e)
	}
}

// pipelinedWriter keeps up to window setData requests in flight on one raw
// session, each writing its own sequence number to path, and checks every
// reply comes back in order and succeeds: requests held across a handoff
// must reach the member in the order the client sent them.
type pipelinedWriter struct {
	acked atomic.Int64
	stop  chan struct{}
	done  chan error
}

func startPipelinedWriter(t *testing.T, addr, path string, window int) *pipelinedWriter {
	t.Helper()
	c, r, _ := rawSession(t, addr, 30000)
	w := &pipelinedWriter{stop: make(chan struct{}), done: make(chan error, 2)}
	slots := make(chan struct{}, window)
	go func() { // writeRequests
		for xid := int32(1); ; xid++ {
			select {
			case <-w.stop:
				return
			case slots <- struct{}{}:
			}
			frame := appendRequestFrame(nil, jute.RequestHeader{Xid: jute.Xid(xid), Op: jute.OpSetData},
				&jute.SetDataRequest{Path: path, Data: []byte(strconv.Itoa(int(xid))), Version: -1})
			if _, err := c.Write(frame); err != nil {
				w.done <- fmt.Errorf("writing request %d: %w", xid, err)
				return
			}
		}
	}()
	go func() { // readReplies
		for want := int32(1); ; want++ {
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			f, err := r.Next()
			if err != nil {
				select {
				case <-w.stop:
					w.done <- nil
				default:
					w.done <- fmt.Errorf("reading reply %d: %w", want, err)
				}
				return
			}
			h, err := jute.PeekReplyHeader(f.Payload())
			if err != nil || h.Xid != jute.Xid(want) || h.Err != jute.ErrOK {
				w.done <- fmt.Errorf("reply %+v (%v), want xid %d ok: out of order or failed", h, err, want)
				return
			}
			w.acked.Store(int64(want))
			<-slots
		}
	}()
	t.Cleanup(func() { c.Close() })
	return w
}

// A client caught halfway through sending a frame: the bytes the old
// process read go over with the session and the new process completes the
// frame with the rest the client sends.
func TestHandOverPartialFrame(t *testing.T) {
	zktest.RequireIntegration(t)
	ens := zktest.NewEnsemble(t, 1)
	p := newHandoffPair(t, []string{ens.Members[0].ClientAddr()})
	c, r, resp := rawSession(t, p.addr, 30000)
	frame := appendRequestFrame(nil, jute.RequestHeader{Xid: 1, Op: jute.OpCreate},
		&jute.CreateRequest{Path: "/partial", Data: []byte("across the handoff"), ACL: []jute.ACL{{Perms: 31, ID: jute.Id{Scheme: "world", ID: "anyone"}}}})
	half := len(frame) / 2
	sess := sessionByID(p.old, resp.SessionID)
	if sess == nil {
		t.Fatal("session not in the old process")
	}
	// The only session: its stat shard's byte count is its own.
	before := sess.st.clientBytesIn.Load()
	if _, err := c.Write(frame[:half]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the old process to read the first half", 30*time.Second, func() bool {
		return sess.st.clientBytesIn.Load() == before+uint64(half)
	})
	p.startNew(t)
	hr, herr, _, aerr := p.run(t, HandOverOptions{}, AdoptOptions{})
	if herr != nil || aerr != nil || hr.HandedOver != 1 {
		t.Fatalf("HandOver %+v: %v; Adopt: %v", hr, herr, aerr)
	}
	if _, err := c.Write(frame[half:]); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	f, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	h, err := jute.PeekReplyHeader(f.Payload())
	if err != nil || h.Xid != 1 || h.Err != jute.ErrOK {
		t.Fatalf("reply %+v, %v: want xid 1 ok", h, err)
	}
}
