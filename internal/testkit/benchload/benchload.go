// Package benchload is the load for benchmarks: it drives a ZooKeeper
// server (directly, through zkproxy or through another relay) with
// go-zookeeper sessions that send one kind of request, as fast as they can
// or at a fixed rate, and measures throughput and a latency histogram.
// cmd/zkbench is its command line; the relay comparison benchmarks
// (test/relaybench) use it in-process. It counts errors and checks nothing
// else: the load that proves a migration lost nothing is kafkaload's.
package benchload

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// Op is the workload a session runs.
type Op string

const (
	OpRead  Op = "read"  // getData of one shared znode
	OpWrite Op = "write" // setData of the session's own znode
)

// Config describes one load run.
type Config struct {
	// Addr is the host:port the sessions connect to.
	Addr string
	// Sessions is the number of concurrent sessions; zero means 1.
	Sessions int
	// Op is the request each session sends; empty means OpRead.
	Op Op
	// Size is the znode payload in bytes; zero means 100.
	Size int
	// Duration of the measured phase; zero means 10s.
	Duration time.Duration
	// Warmup runs the workload unmeasured first; zero means none.
	Warmup time.Duration
	// Rate, when positive, is the total request rate (open loop: requests
	// are released on a fixed clock whatever the latency). Latency is timed
	// from when a session sends, not from the scheduled slot, so timer slop
	// of this machine is not charged to the target. Zero runs closed loop,
	// each session as fast as it can.
	Rate float64
	// Root is the znode under which the run creates its nodes; empty means
	// /zkbench.
	Root string
	// SessionTimeout for each session; zero means 10s.
	SessionTimeout time.Duration
}

// Result is what one run measured.
type Result struct {
	Ops, Errors uint64
	Elapsed     time.Duration
	Latency     Histogram
}

// Throughput is completed operations per second.
func (r *Result) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

func (r *Result) String() string {
	return fmt.Sprintf("ops=%d errors=%d throughput=%.0f/s p50=%s p99=%s max=%s",
		r.Ops, r.Errors, r.Throughput(), r.Latency.Quantile(0.5), r.Latency.Quantile(0.99), r.Latency.Max())
}

func (c *Config) withDefaults() Config {
	out := *c
	if out.Sessions <= 0 {
		out.Sessions = 1
	}
	if out.Op == "" {
		out.Op = OpRead
	}
	if out.Size <= 0 {
		out.Size = 100
	}
	if out.Duration <= 0 {
		out.Duration = 10 * time.Second
	}
	if out.Root == "" {
		out.Root = "/zkbench"
	}
	if out.SessionTimeout <= 0 {
		out.SessionTimeout = 10 * time.Second
	}
	return out
}

// Connect opens one go-zookeeper session to addr and waits until it has
// a session, so callers never measure the handshake as request latency.
func Connect(ctx context.Context, addr string, timeout time.Duration) (*zk.Conn, error) {
	conn, events, err := zk.Connect([]string{addr}, timeout, zk.WithLogger(quietLogger{}))
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	for {
		select {
		case ev := <-events:
			if ev.State == zk.StateHasSession {
				go drain(events)
				return conn, nil
			}
		case <-ctx.Done():
			conn.Close()
			return nil, fmt.Errorf("connecting to %s: %w", addr, context.Cause(ctx))
		}
	}
}

func drain(events <-chan zk.Event) {
	for range events {
	}
}

type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}

// Run executes one load run against cfg.Addr.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	if cfg.Op != OpRead && cfg.Op != OpWrite {
		return nil, fmt.Errorf("benchload: unknown op %q (want read or write)", cfg.Op)
	}
	conns := make([]*zk.Conn, 0, cfg.Sessions)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	connectCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for range cfg.Sessions {
		c, err := Connect(connectCtx, cfg.Addr, cfg.SessionTimeout)
		if err != nil {
			return nil, err
		}
		conns = append(conns, c)
	}
	payload := []byte(strings.Repeat("x", cfg.Size))
	paths, err := prepare(conns[0], cfg, payload)
	if err != nil {
		return nil, err
	}

	if cfg.Warmup > 0 {
		if _, err := measure(ctx, conns, paths, cfg, payload, cfg.Warmup); err != nil {
			return nil, err
		}
	}
	return measure(ctx, conns, paths, cfg, payload, cfg.Duration)
}

// prepare creates the root, the shared read node and one node per session
// for writes; it tolerates nodes left by an earlier run.
func prepare(c *zk.Conn, cfg Config, payload []byte) ([]string, error) {
	create := func(p string, data []byte) error {
		_, err := c.Create(p, data, 0, zk.WorldACL(zk.PermAll))
		if err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("creating %s: %w", p, err)
		}
		if errors.Is(err, zk.ErrNodeExists) && data != nil {
			if _, err := c.Set(p, data, -1); err != nil {
				return fmt.Errorf("resetting %s: %w", p, err)
			}
		}
		return nil
	}
	if err := create(cfg.Root, nil); err != nil {
		return nil, err
	}
	paths := make([]string, cfg.Sessions)
	for i := range paths {
		if cfg.Op == OpRead {
			paths[i] = cfg.Root + "/read"
		} else {
			paths[i] = fmt.Sprintf("%s/write-%d", cfg.Root, i)
		}
	}
	for _, p := range uniq(paths) {
		if err := create(p, payload); err != nil {
			return nil, err
		}
	}
	return paths, nil
}

func uniq(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func measure(ctx context.Context, conns []*zk.Conn, paths []string, cfg Config, payload []byte, d time.Duration) (*Result, error) {
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()

	// In open-loop mode one clock hands out scheduled start times; the
	// channel is bounded so a stalled target shows as latency, not memory.
	var schedule chan time.Time
	if cfg.Rate > 0 {
		schedule = make(chan time.Time, 1024)
		go tick(runCtx, cfg.Rate, schedule)
	}

	results := make([]Result, len(conns))
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[i]
			for {
				if schedule != nil {
					select {
					case <-schedule:
					case <-runCtx.Done():
						return
					}
				} else if runCtx.Err() != nil {
					return
				}
				begin := time.Now()
				var err error
				if cfg.Op == OpRead {
					_, _, err = c.Get(paths[i])
				} else {
					_, err = c.Set(paths[i], payload, -1)
				}
				if err != nil {
					r.Errors++
					continue
				}
				r.Ops++
				r.Latency.Record(time.Since(begin))
			}
		}()
	}
	wg.Wait()
	total := &Result{Elapsed: time.Since(start)}
	for i := range results {
		total.Ops += results[i].Ops
		total.Errors += results[i].Errors
		total.Latency.Merge(&results[i].Latency)
	}
	if total.Ops == 0 {
		return total, fmt.Errorf("benchload: no request succeeded against %s (%d errors)", cfg.Addr, total.Errors)
	}
	return total, nil
}

// tick sends one scheduled time per request at the given total rate.
func tick(ctx context.Context, rate float64, out chan<- time.Time) {
	interval := time.Duration(float64(time.Second) / rate)
	next := time.Now()
	for {
		next = next.Add(interval)
		if wait := time.Until(next); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return
			}
		}
		select {
		case out <- next:
		case <-ctx.Done():
			return
		}
	}
}

// IdleSessions opens n sessions to addr and keeps them open until the
// returned close function is called.
func IdleSessions(ctx context.Context, addr string, n int, timeout time.Duration) (closeAll func(), err error) {
	conns := make([]*zk.Conn, 0, n)
	closeAll = func() {
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Add(1)
			go func() { defer wg.Done(); c.Close() }()
		}
		wg.Wait()
	}
	// Open in parallel batches: each new session is a quorum write on the
	// server, so one at a time would take minutes for thousands.
	const parallel = 32
	sem := make(chan struct{}, parallel)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := Connect(ctx, addr, timeout)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				firstErr = cmpErr(firstErr, err)
				return
			}
			conns = append(conns, c)
		}()
	}
	wg.Wait()
	if firstErr != nil {
		closeAll()
		return nil, firstErr
	}
	return closeAll, nil
}

func cmpErr(prev, err error) error {
	if prev != nil {
		return prev
	}
	return err
}
