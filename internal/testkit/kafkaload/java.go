package kafkaload

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// JavaWorkloadSource is the Java workload program
// (java/KafkaWorkload.java): the same Kafka-like workload as the Go one, on
// the Java ZooKeeper 3.8 client Kafka brokers use. Compile it with
// zktest.JavaProgram and run it with StartJava.
//
//go:embed java/KafkaWorkload.java
var JavaWorkloadSource string

// Client is a running workload, Go (Workload) or Java (JavaWorkload).
type Client interface {
	Snapshot() Report
	ResetLatency()
	WatchesFire(ctx context.Context) error
	Stop() Report
	Ledger() Ledger
	Verify(ctx context.Context, addr string) (Verification, error)
	Close()
}

var (
	_ Client = (*Workload)(nil)
	_ Client = (*JavaWorkload)(nil)
)

// JavaConfig describes a Java workload process.
type JavaConfig struct {
	// Connect is the connect string, with Kafka's chroot: "host:port/kafka".
	// Without a chroot the tree lives at the root.
	Connect string
	// Brokers and Writers are session counts; zero means 3 and 2.
	Brokers, Writers int
	// WriteInterval paces each writer; zero means 5ms.
	WriteInterval time.Duration
	// SessionTimeout requested by each session; zero means Kafka's 18s.
	SessionTimeout time.Duration
	// Prefix starts every session and writer name, so several workloads
	// can share one chroot; empty means "j".
	Prefix string
	// Stderr, when set, receives the JVM's log (client WARN and above).
	Stderr io.Writer
}

// JavaWorkload is a running Java workload process.
type JavaWorkload struct {
	cfg  JavaConfig
	root string
	proc *zktest.Process

	ready   chan struct{}
	stopped chan struct{}
	probed  chan bool
	resetCh chan struct{}

	mu        sync.Mutex
	sessions  map[string]int64
	acked     map[string]int
	uncertain map[string]map[int]bool
	states    map[string]map[string]int64 // session → KeeperState → transitions
	watches   map[string]map[string]int64 // session → "children"/"config"/"controller" → events
	maxOp     map[string]time.Duration
	gen       int
	errs      []string
}

// javaLine is one output line of KafkaWorkload.java.
type javaLine struct {
	Ev       string            `json:"ev"`
	S        string            `json:"s"`
	W        string            `json:"w"`
	Serial   int               `json:"serial"`
	State    string            `json:"state"`
	Type     string            `json:"type"`
	Path     string            `json:"path"`
	Ns       int64             `json:"ns"`
	Gen      int               `json:"gen"`
	Msg      string            `json:"msg"`
	Code     string            `json:"code"`
	Failed   bool              `json:"failed"`
	Sessions map[string]string `json:"sessions"`
}

// StartJava starts prog (compiled from JavaWorkloadSource) and waits until
// every session is connected, the tree exists and the brokers are
// registered. ctx bounds the start only; the process runs until Close.
func StartJava(ctx context.Context, prog *zktest.Java, cfg JavaConfig) (*JavaWorkload, error) {
	if cfg.Brokers == 0 {
		cfg.Brokers = 3
	}
	if cfg.Writers == 0 {
		cfg.Writers = 2
	}
	if cfg.WriteInterval == 0 {
		cfg.WriteInterval = 5 * time.Millisecond
	}
	if cfg.SessionTimeout == 0 {
		cfg.SessionTimeout = 18 * time.Second
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "j"
	}
	if cfg.Brokers < 1 {
		return nil, errors.New("java workload: at least one broker")
	}
	root := ""
	if i := strings.IndexByte(cfg.Connect, '/'); i >= 0 {
		root = strings.TrimRight(cfg.Connect[i:], "/")
	}
	w := &JavaWorkload{
		cfg: cfg, root: root,
		ready: make(chan struct{}), stopped: make(chan struct{}), probed: make(chan bool, 1), resetCh: make(chan struct{}, 1),
		sessions: map[string]int64{}, acked: map[string]int{}, uncertain: map[string]map[int]bool{},
		states: map[string]map[string]int64{}, watches: map[string]map[string]int64{}, maxOp: map[string]time.Duration{},
	}
	for i := range cfg.Writers {
		w.acked[w.writerName(i)] = 0
	}
	// The process must outlive ctx (which only bounds the start): it gets
	// its own context and is ended by Close.
	cmd := prog.Command(context.Background(), cfg.Connect, strconv.Itoa(cfg.Brokers), strconv.Itoa(cfg.Writers),
		strconv.FormatInt(cfg.SessionTimeout.Milliseconds(), 10), strconv.FormatInt(max(1, cfg.WriteInterval.Milliseconds()), 10), cfg.Prefix)
	proc, err := zktest.StartProcess(cmd, w.applyLine, cfg.Stderr)
	if err != nil {
		return nil, fmt.Errorf("java workload: %w", err)
	}
	w.proc = proc
	select {
	case <-w.ready:
		return w, nil
	case <-proc.Exited():
		return nil, fmt.Errorf("java workload exited before it was ready: %v\n%s", proc.Err(), proc.Stderr())
	case <-ctx.Done():
		w.Close()
		return nil, fmt.Errorf("java workload not ready: %w\n%s", context.Cause(ctx), proc.Stderr())
	}
}

func (w *JavaWorkload) writerName(i int) string { return fmt.Sprintf("%sw%d", w.cfg.Prefix, i) }

func (w *JavaWorkload) brokerName(i int) string { return fmt.Sprintf("%sbroker-%d", w.cfg.Prefix, i) }

// applyLine applies one line of KafkaWorkload.java's output.
func (w *JavaWorkload) applyLine(line string) {
	var l javaLine
	if err := json.Unmarshal([]byte(line), &l); err != nil {
		w.fail("unparsable output %q: %v", line, err)
		return
	}
	w.apply(l)
}

func (w *JavaWorkload) fail(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errs) < 100 {
		w.errs = append(w.errs, fmt.Sprintf(format, args...))
	}
}

func bump(m map[string]map[string]int64, a, b string) {
	if m[a] == nil {
		m[a] = map[string]int64{}
	}
	m[a][b]++
}

func (w *JavaWorkload) apply(l javaLine) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch l.Ev {
	case "ready":
		for name, hex := range l.Sessions {
			id, err := strconv.ParseUint(hex, 16, 64)
			if err != nil {
				w.errs = append(w.errs, fmt.Sprintf("session %s: bad id %q", name, hex))
				continue
			}
			w.sessions[name] = int64(id)
		}
		if !isClosed(w.ready) {
			close(w.ready)
		}
	case "ack":
		if l.Serial != w.acked[l.W]+1 {
			w.errs = append(w.errs, fmt.Sprintf("%s acknowledged serial %d after %d", l.W, l.Serial, w.acked[l.W]))
		}
		w.acked[l.W] = max(w.acked[l.W], l.Serial)
	case "uncertain":
		if w.uncertain[l.W] == nil {
			w.uncertain[l.W] = map[int]bool{}
		}
		w.uncertain[l.W][l.Serial] = true
	case "state":
		bump(w.states, l.S, l.State)
	case "watch":
		kind := "controller"
		switch {
		case l.Type == "NodeChildrenChanged":
			kind = "children"
		case strings.HasSuffix(l.Path, "/config/changes"):
			kind = "config"
		}
		bump(w.watches, l.S, kind)
	case "lat":
		if l.Gen >= w.gen {
			w.maxOp[l.S] = max(w.maxOp[l.S], time.Duration(l.Ns))
		}
	case "reset":
		w.gen = l.Gen
		clear(w.maxOp)
		select {
		case w.resetCh <- struct{}{}:
		default:
		}
	case "probed":
		select {
		case w.probed <- !l.Failed:
		default:
		}
	case "stopped":
		if !isClosed(w.stopped) {
			close(w.stopped)
		}
	case "err":
		if len(w.errs) < 100 {
			w.errs = append(w.errs, l.S+": "+l.Msg)
		}
	default:
		w.errs = append(w.errs, "unknown output event "+l.Ev)
	}
}

func (w *JavaWorkload) command(line string) error {
	if err := w.proc.Send(line); err != nil {
		return fmt.Errorf("java workload: %w", err)
	}
	return nil
}

// Snapshot reports what has been observed so far without stopping.
func (w *JavaWorkload) Snapshot() Report {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := Report{Sessions: map[string]int64{}, SessionMaxOp: map[string]time.Duration{}, SessionDisconnects: map[string]int64{},
		Errors: slices.Clone(w.errs)}
	for _, n := range w.acked {
		r.AckedWrites += n
	}
	for _, m := range w.uncertain {
		r.Uncertain += len(m)
	}
	for name, id := range w.sessions {
		r.Sessions[name] = id
		r.SessionMaxOp[name] = w.maxOp[name]
		r.MaxOpLatency = max(r.MaxOpLatency, w.maxOp[name])
		r.Disconnects += w.states[name]["Disconnected"]
		r.SessionDisconnects[name] = w.states[name]["Disconnected"]
		r.Expired += w.states[name]["Expired"]
		for _, n := range w.watches[name] {
			r.WatchEvents += n
		}
	}
	select {
	case <-w.proc.Exited():
		r.Errors = append(r.Errors, fmt.Sprintf("java workload exited: %v", w.proc.Err()))
	default:
	}
	return r
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// ResetLatency forgets the longest request of every session (waiting up to
// 10s for the process to confirm).
func (w *JavaWorkload) ResetLatency() {
	if err := w.command("reset"); err != nil {
		w.fail("%v", err)
		return
	}
	select {
	case <-w.resetCh:
	case <-w.proc.Exited():
	case <-time.After(10 * time.Second):
		w.fail("java workload did not confirm the latency reset")
	}
}

// WatchesFire changes /config/changes and /brokers/ids once and waits until
// every broker session has received a data event for the one and a child
// event for the other: their watches survived.
func (w *JavaWorkload) WatchesFire(ctx context.Context) error {
	before := w.watchCounts()
	if err := w.command("probe"); err != nil {
		return err
	}
	select {
	case ok := <-w.probed:
		if !ok {
			return errors.New("java workload: probe writes failed (see Errors)")
		}
	case <-w.proc.Exited():
		return errors.New("java workload exited")
	case <-ctx.Done():
		return fmt.Errorf("java workload: probe: %w", context.Cause(ctx))
	}
	for {
		now := w.watchCounts()
		var missing []string
		for i := range w.cfg.Brokers {
			b := w.brokerName(i)
			if now[b]["children"] <= before[b]["children"] {
				missing = append(missing, b+" children")
			}
			if now[b]["config"] <= before[b]["config"] {
				missing = append(missing, b+" config")
			}
		}
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("watches did not fire: %s: %w", strings.Join(missing, ", "), context.Cause(ctx))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (w *JavaWorkload) watchCounts() map[string]map[string]int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]map[string]int64{}
	for s, m := range w.watches {
		out[s] = map[string]int64{}
		for k, n := range m {
			out[s][k] = n
		}
	}
	return out
}

// Stop ends the loops (sessions stay open: call Close) and reports. Each
// writer finishes the request it is in, so its outcome is known.
func (w *JavaWorkload) Stop() Report {
	if err := w.command("stop"); err != nil {
		w.fail("%v", err)
	} else {
		select {
		case <-w.stopped:
		case <-w.proc.Exited():
		case <-time.After(60 * time.Second):
			w.fail("java workload did not stop within 60s")
		}
	}
	return w.Snapshot()
}

// Ledger is what the workload's clients were told so far.
func (w *JavaWorkload) Ledger() Ledger {
	w.mu.Lock()
	defer w.mu.Unlock()
	acked, uncertain := cloneLedgerMaps(w.acked, w.uncertain)
	owners := map[string]int64{}
	for i := range w.cfg.Brokers {
		owners[fmt.Sprintf("/brokers/ids/%d", i)] = w.sessions[w.brokerName(i)]
	}
	return Ledger{Root: w.root, Acked: acked, Uncertain: uncertain, Owners: owners}
}

// Verify reads the tree back from addr with CheckLedger.
func (w *JavaWorkload) Verify(ctx context.Context, addr string) (Verification, error) {
	return CheckLedger(ctx, addr, w.Ledger())
}

// Close closes stdin (the program closes its sessions and exits) and waits
// up to 20s before killing it.
func (w *JavaWorkload) Close() { w.proc.Close(20 * time.Second) }

// Stderr returns the tail of the JVM's log.
func (w *JavaWorkload) Stderr() string { return w.proc.Stderr() }
