// Package kafkaload is the load for correctness tests and the demo: a
// Kafka-like ZooKeeper workload run through zkproxy while sessions are
// moved, which records what its clients were told (a Ledger) and checks
// afterwards against the tree that nothing was lost (CheckLedger). It
// reports pauses and connection-state changes but is no benchmark: for
// throughput and latency figures use benchload. The workload runs on
// go-zookeeper (Start) or in a JVM on the Java client Kafka brokers use
// (StartJava, java/KafkaWorkload.java); IdleClient runs a quiet Kafka-like
// client in Java, C or kazoo, to show a session moved under it goes
// unnoticed. The workload:
//
//   - brokers register ephemeral /brokers/ids/<n>, keep a child watch on
//     /brokers/ids and an exists watch on /controller, and race for the
//     controller ephemeral like Kafka's controller election;
//   - writers create serial-numbered sequential znodes (layout in verify.go),
//     one after another (Kafka caps pipelining anyway), recording each
//     acknowledged one and each one whose outcome an error made unknown;
//   - every broker keeps a data watch on /config/changes, which a writer
//     updates, so watch delivery through moves is observed;
//   - consumers (optional) follow a writer's serials with child watches, as
//     a Kafka consumer follows a partition, recording every serial they read:
//     a read that later vanishes, or a gap in what was read, is an error.
//
// Every connection-state change a session sees is counted: a transparent
// migration shows zero Disconnected and zero Expired.
package kafkaload

import (
	"context"
	"errors"
	"fmt"
	"github.com/zkproxy/zkproxy/internal/gozkrace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
)

// Config describes the workload.
type Config struct {
	// Addr is where sessions connect (zkproxy's client address).
	Addr string
	// Root is a chroot-like prefix for every path; empty means /kafka.
	Root string
	// Brokers and Writers are session counts; zero means 3 and 2.
	Brokers, Writers int
	// Consumers is the number of consumer sessions; consumer i follows
	// writer i mod Writers. Zero means none.
	Consumers int
	// WriteInterval paces each writer; zero means 5ms.
	WriteInterval time.Duration
	// SessionTimeout requested by each session; zero means Kafka's 18s.
	SessionTimeout time.Duration
	// BucketSize is how many serials share a parent znode (see verify.go);
	// zero means DefaultBucketSize, which the Java workload always uses.
	BucketSize int
}

func (c *Config) defaults() {
	if c.Root == "" {
		c.Root = "/kafka"
	}
	if c.Brokers == 0 {
		c.Brokers = 3
	}
	if c.Writers == 0 {
		c.Writers = 2
	}
	if c.WriteInterval == 0 {
		c.WriteInterval = 5 * time.Millisecond
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 18 * time.Second
	}
	if c.BucketSize <= 0 {
		c.BucketSize = DefaultBucketSize
	}
}

// Workload is a running workload.
type Workload struct {
	cfg       Config
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	brokers   []*session
	writers   []*session
	consumers []*session

	mu        sync.Mutex
	acked     map[string]int // writer → highest acknowledged serial (serials are 1..n, in order)
	uncertain map[string]map[int]bool
	consumed  map[string]map[int]bool // writer → serials a consumer read
	errs      []string
}

// writerName names writer i's serial subtree.
func writerName(i int) string { return fmt.Sprintf("w%d", i) }

// session is one go-zookeeper session and what it observed.
type session struct {
	name      string
	conn      *zk.Conn
	id        int64
	states    sync.Map // zk.State → *atomic.Int64 of transitions into it
	events    atomic.Int64
	maxOp     atomic.Int64 // longest single request, ns
	connected chan struct{}
}

func (s *session) count(st zk.State) int64 {
	v, ok := s.states.Load(st)
	if !ok {
		return 0
	}
	return v.(*atomic.Int64).Load()
}

func (s *session) onEvent(ev zk.Event) {
	if ev.Type != zk.EventSession {
		return
	}
	v, _ := s.states.LoadOrStore(ev.State, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
	if ev.State == zk.StateHasSession {
		select {
		case <-s.connected:
		default:
			close(s.connected)
		}
	}
}

func (s *session) timed(f func() error) error {
	start := time.Now()
	err := f()
	d := int64(time.Since(start))
	for {
		cur := s.maxOp.Load()
		if d <= cur || s.maxOp.CompareAndSwap(cur, d) {
			return err
		}
	}
}

type quiet struct{}

func (quiet) Printf(string, ...any) {}

func dial(ctx context.Context, name, addr string, timeout time.Duration) (*session, error) {
	s := &session{name: name, connected: make(chan struct{})}
	// A verifier lists buckets of up to DefaultBucketSize children; the default
	// 1.5 MB client buffer is enough for one, 4 MB matches Kafka's
	// jute.maxbuffer.
	conn, _, err := zk.Connect([]string{addr}, timeout, zk.WithLogger(quiet{}), zk.WithEventCallback(s.onEvent),
		zk.WithMaxBufferSize(4<<20), zk.WithDialer(gozkrace.Dialer(nil)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	select {
	case <-s.connected:
	case <-ctx.Done():
		conn.Close()
		return nil, fmt.Errorf("%s: no session: %w", name, context.Cause(ctx))
	}
	s.conn, s.id = conn, conn.SessionID()
	return s, nil
}

// Start connects every session, creates the tree and starts the loops.
func Start(ctx context.Context, cfg Config) (*Workload, error) {
	cfg.defaults()
	w := &Workload{cfg: cfg, acked: map[string]int{}, uncertain: map[string]map[int]bool{}, consumed: map[string]map[int]bool{}}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	dialAll := func(kind string, n int) ([]*session, error) {
		var out []*session
		for i := range n {
			s, err := dial(cctx, fmt.Sprintf("%s-%d", kind, i), cfg.Addr, cfg.SessionTimeout)
			if err != nil {
				return out, err
			}
			out = append(out, s)
		}
		return out, nil
	}
	var err error
	if w.brokers, err = dialAll("broker", cfg.Brokers); err == nil {
		if w.writers, err = dialAll("writer", cfg.Writers); err == nil {
			w.consumers, err = dialAll("consumer", cfg.Consumers)
		}
	}
	if err != nil {
		w.closeAll()
		return nil, err
	}
	c := w.brokers[0].conn
	var tree []string
	for i := 1; i < len(cfg.Root); i++ {
		if cfg.Root[i] == '/' {
			tree = append(tree, cfg.Root[:i]) // ancestors of a nested root
		}
	}
	tree = append(tree, cfg.Root, cfg.Root+"/brokers", cfg.Root+"/brokers/ids", cfg.Root+"/serial", cfg.Root+"/config", cfg.Root+"/config/changes")
	for i := range cfg.Writers {
		tree = append(tree, cfg.Root+"/serial/"+writerName(i), BucketPath(cfg.Root, writerName(i), 1, cfg.BucketSize))
	}
	for _, p := range tree {
		if _, err := c.Create(p, nil, 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			w.closeAll()
			return nil, fmt.Errorf("creating %s: %w", p, err)
		}
	}
	// Registrations happen before Start returns, so callers can check
	// ephemeral owners at once.
	for i, b := range w.brokers {
		path := fmt.Sprintf("%s/brokers/ids/%d", cfg.Root, i)
		if _, err := b.conn.Create(path, []byte(b.name), zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
			w.closeAll()
			return nil, fmt.Errorf("registering %s: %w", path, err)
		}
	}
	runCtx, runCancel := context.WithCancel(context.Background())
	w.cancel = runCancel
	for _, b := range w.brokers {
		w.wg.Add(3)
		go w.watchChildren(runCtx, b)
		go w.watchController(runCtx, b)
		go w.watchConfig(runCtx, b)
	}
	for i, s := range w.writers {
		w.wg.Add(1)
		go w.write(runCtx, i, s)
	}
	for i, s := range w.consumers {
		w.wg.Add(1)
		go w.consume(runCtx, s, writerName(i%max(cfg.Writers, 1)))
	}
	return w, nil
}

func (w *Workload) fail(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errs) < 100 {
		w.errs = append(w.errs, fmt.Sprintf(format, args...))
	}
}

// loopWatch re-arms a watch after each event, as Kafka's handlers do.
func (w *Workload) loopWatch(ctx context.Context, s *session, what string, arm func() (<-chan zk.Event, error)) {
	defer w.wg.Done()
	for ctx.Err() == nil {
		var ch <-chan zk.Event
		err := s.timed(func() error {
			var err error
			ch, err = arm()
			return err
		})
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, zk.ErrClosing) {
				w.fail("%s %s: %v", s.name, what, err)
			}
			select {
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
			}
			continue
		}
		select {
		case ev := <-ch:
			if ev.Type != zk.EventNotWatching {
				s.events.Add(1)
			}
		case <-ctx.Done():
		}
	}
}

func (w *Workload) watchChildren(ctx context.Context, s *session) {
	w.loopWatch(ctx, s, "children watch", func() (<-chan zk.Event, error) {
		_, _, ch, err := s.conn.ChildrenW(w.cfg.Root + "/brokers/ids")
		return ch, err
	})
}

func (w *Workload) watchConfig(ctx context.Context, s *session) {
	w.loopWatch(ctx, s, "data watch", func() (<-chan zk.Event, error) {
		_, _, ch, err := s.conn.GetW(w.cfg.Root + "/config/changes")
		return ch, err
	})
}

// watchController is Kafka's controller election: whoever creates the
// ephemeral /controller leads; the others keep an exists watch on it.
func (w *Workload) watchController(ctx context.Context, s *session) {
	path := w.cfg.Root + "/controller"
	w.loopWatch(ctx, s, "controller election", func() (<-chan zk.Event, error) {
		_, err := s.conn.Create(path, []byte(s.name), zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
		if err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return nil, err
		}
		_, _, ch, err := s.conn.ExistsW(path)
		return ch, err
	})
}

// write creates serial-numbered sequential znodes one at a time. A create
// that fails is retried with the same serial, as Kafka's
// retryRequestsUntilConnected does; since a failed request's outcome may be
// unknown (connection loss: it may have been applied), the serial is noted as
// uncertain and may then legitimately exist twice.
func (w *Workload) write(ctx context.Context, id int, s *session) {
	defer w.wg.Done()
	tick := time.NewTicker(w.cfg.WriteInterval)
	defer tick.Stop()
	name := writerName(id)
	for serial := 1; ctx.Err() == nil; {
		if serial > 1 && (serial-1)%w.cfg.BucketSize == 0 {
			bucket := BucketPath(w.cfg.Root, name, serial, w.cfg.BucketSize)
			if _, err := s.conn.Create(bucket, nil, 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
				if ctx.Err() == nil && !errors.Is(err, zk.ErrClosing) {
					w.fail("%s create %s: %v", s.name, bucket, err)
				}
				select {
				case <-tick.C:
				case <-ctx.Done():
				}
				continue
			}
		}
		path := SerialPrefix(w.cfg.Root, name, serial, w.cfg.BucketSize)
		err := s.timed(func() error {
			_, err := s.conn.Create(path, []byte(strconv.Itoa(serial)), zk.FlagSequence, zk.WorldACL(zk.PermAll))
			return err
		})
		if err == nil {
			w.mu.Lock()
			w.acked[name] = serial
			w.mu.Unlock()
			serial++
			if id == 0 && serial%10 == 0 {
				// The first writer also drives the config watch.
				if err := s.timed(func() error {
					_, err := s.conn.Set(w.cfg.Root+"/config/changes", []byte(strconv.Itoa(serial)), -1)
					return err
				}); err != nil && ctx.Err() == nil {
					w.fail("%s setData config: %v", s.name, err)
				}
			}
		} else {
			w.mu.Lock()
			if w.uncertain[name] == nil {
				w.uncertain[name] = map[int]bool{}
			}
			w.uncertain[name][serial] = true
			w.mu.Unlock()
			if ctx.Err() == nil && !errors.Is(err, zk.ErrClosing) {
				w.fail("%s create %s: %v", s.name, path, err)
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
}

// consume follows writer's serials bucket by bucket with a child watch,
// recording each serial read. A bucket is done once it holds BucketSize
// distinct serials (the writer then moves to the next).
func (w *Workload) consume(ctx context.Context, s *session, writer string) {
	defer w.wg.Done()
	first := 1 // first serial of the bucket being followed
	pause := func() {
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	for ctx.Err() == nil {
		path := BucketPath(w.cfg.Root, writer, first, w.cfg.BucketSize)
		var children []string
		var ch <-chan zk.Event
		err := s.timed(func() error {
			var err error
			children, _, ch, err = s.conn.ChildrenW(path)
			return err
		})
		if errors.Is(err, zk.ErrNoNode) {
			pause() // the writer has not reached this bucket yet
			continue
		}
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, zk.ErrClosing) {
				w.fail("%s children %s: %v", s.name, path, err)
			}
			pause()
			continue
		}
		distinct := map[int]bool{}
		w.mu.Lock()
		if w.consumed[writer] == nil {
			w.consumed[writer] = map[int]bool{}
		}
		for _, name := range children {
			if n, ok := parseSerialNode(name); ok {
				distinct[n.serial] = true
				w.consumed[writer][n.serial] = true
			}
		}
		w.mu.Unlock()
		if len(distinct) >= w.cfg.BucketSize {
			first += w.cfg.BucketSize
			continue
		}
		select {
		case ev := <-ch:
			if ev.Type != zk.EventNotWatching {
				s.events.Add(1)
			}
		case <-ctx.Done():
		}
	}
}

// Report is what the sessions observed.
type Report struct {
	AckedWrites int
	// Uncertain counts serials retried after an error (outcome unknown).
	Uncertain    int
	Disconnects  int64 // transitions into Disconnected, all sessions
	Expired      int64
	WatchEvents  int64
	MaxOpLatency time.Duration // longest single request any session saw
	// SessionMaxOp is each session's longest single request: the pause
	// that session's client saw (see ResetLatency).
	SessionMaxOp map[string]time.Duration
	// SessionDisconnects is each session's transitions into Disconnected.
	SessionDisconnects map[string]int64
	Errors             []string
	Sessions           map[string]int64 // name → session id
}

func (r Report) String() string {
	return fmt.Sprintf("acked writes %d, disconnects %d, expired %d, watch events %d, longest request %s, errors %d",
		r.AckedWrites, r.Disconnects, r.Expired, r.WatchEvents, r.MaxOpLatency.Round(time.Millisecond), len(r.Errors))
}

// Snapshot reports what has been observed so far without stopping.
func (w *Workload) Snapshot() Report {
	r := Report{Sessions: map[string]int64{}, SessionMaxOp: map[string]time.Duration{}, SessionDisconnects: map[string]int64{}}
	w.mu.Lock()
	for _, n := range w.acked {
		r.AckedWrites += n
	}
	for _, m := range w.uncertain {
		r.Uncertain += len(m)
	}
	r.Errors = slices.Clone(w.errs)
	w.mu.Unlock()
	for _, s := range w.all() {
		r.Disconnects += s.count(zk.StateDisconnected)
		r.SessionDisconnects[s.name] = s.count(zk.StateDisconnected)
		r.Expired += s.count(zk.StateExpired)
		r.WatchEvents += s.events.Load()
		d := time.Duration(s.maxOp.Load())
		r.MaxOpLatency = max(r.MaxOpLatency, d)
		r.SessionMaxOp[s.name] = d
		r.Sessions[s.name] = s.conn.SessionID()
	}
	return r
}

// Since reports what happened after base was taken: counters are
// differences, errors only the new ones, MaxOpLatency and SessionMaxOp are
// unchanged (see ResetLatency).
func (r Report) Since(base Report) Report {
	r.Uncertain -= base.Uncertain
	d := make(map[string]int64, len(r.SessionDisconnects))
	for name, n := range r.SessionDisconnects {
		d[name] = n - base.SessionDisconnects[name]
	}
	r.SessionDisconnects = d
	r.Disconnects -= base.Disconnects
	r.Expired -= base.Expired
	r.WatchEvents -= base.WatchEvents
	if len(r.Errors) >= len(base.Errors) {
		r.Errors = r.Errors[len(base.Errors):]
	}
	return r
}

// ResetLatency forgets the longest request seen so far, so a caller can
// measure one phase (e.g. the cutover) on its own.
func (w *Workload) ResetLatency() {
	for _, s := range w.all() {
		s.maxOp.Store(0)
	}
}

func (w *Workload) all() []*session {
	return append(append(slices.Clone(w.brokers), w.writers...), w.consumers...)
}

// Stop ends the loops (sessions stay open: call Close) and reports.
func (w *Workload) Stop() Report {
	w.cancel()
	w.wg.Wait()
	return w.Snapshot()
}

// Close closes every session.
func (w *Workload) Close() {
	if w.cancel != nil {
		w.cancel()
		w.wg.Wait()
	}
	w.closeAll()
}

func (w *Workload) closeAll() {
	for _, s := range w.all() {
		s.conn.Close()
	}
}

// WatchesFire changes each watched node once and waits until every broker
// session has received an event for each change: watches survived.
func (w *Workload) WatchesFire(ctx context.Context) error {
	before := make([]int64, len(w.brokers))
	for i, b := range w.brokers {
		before[i] = b.events.Load()
	}
	c := w.writers[0].conn
	if _, err := c.Set(w.cfg.Root+"/config/changes", []byte("probe"), -1); err != nil {
		return fmt.Errorf("changing the config node: %w", err)
	}
	probe := w.cfg.Root + "/brokers/ids/probe"
	if _, err := c.Create(probe, nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		return fmt.Errorf("creating %s: %w", probe, err)
	}
	defer c.Delete(probe, -1)
	for {
		var missing []string
		for i, b := range w.brokers {
			// Two changes: the config data watch and the ids child watch.
			if b.events.Load()-before[i] < 2 {
				missing = append(missing, b.name)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("watches did not fire for %s: %w", strings.Join(missing, ", "), context.Cause(ctx))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Verify reads the tree back from addr (typically a destination member,
// directly) with CheckLedger: every acknowledged serial is there, once unless
// retried, in order, and each broker's ephemeral is owned by that broker's
// session.
func (w *Workload) Verify(ctx context.Context, addr string) (Verification, error) {
	return CheckLedger(ctx, addr, w.Ledger())
}

// Ledger is what the workload's clients were told so far.
func (w *Workload) Ledger() Ledger {
	w.mu.Lock()
	acked, uncertain := cloneLedgerMaps(w.acked, w.uncertain)
	_, consumed := cloneLedgerMaps(nil, w.consumed)
	w.mu.Unlock()
	for i := range w.cfg.Writers {
		if _, ok := acked[writerName(i)]; !ok {
			acked[writerName(i)] = 0
		}
	}
	owners := map[string]int64{}
	for i, b := range w.brokers {
		owners[fmt.Sprintf("/brokers/ids/%d", i)] = b.id
	}
	return Ledger{Root: w.cfg.Root, Acked: acked, Uncertain: uncertain, Consumed: consumed, Owners: owners}
}
