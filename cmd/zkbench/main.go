// Command zkbench is a ZooKeeper load tool (go-zookeeper sessions) for
// comparing zkproxy with a direct connection or a plain TCP relay.
//
//	zkbench -addr 127.0.0.1:2181 -op read -sessions 64 -size 100 -duration 20s
//	zkbench -addr 127.0.0.1:2181 -op read -rate 2000      # open loop, fixed rate
//	zkbench -addr 127.0.0.1:2181 -idle 5000 -hold 60s     # idle sessions
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/zkproxy/zkproxy/internal/testkit/benchload"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "zkbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("zkbench", flag.ContinueOnError)
	var cfg benchload.Config
	var op string
	var idle int
	var hold time.Duration
	var asJSON bool
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:2181", "ZooKeeper or proxy address, host:port")
	fs.IntVar(&cfg.Sessions, "sessions", 16, "concurrent sessions")
	fs.StringVar(&op, "op", "read", "read (getData of one znode) or write (setData of a znode per session)")
	fs.IntVar(&cfg.Size, "size", 100, "payload bytes")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured run time")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "unmeasured warm-up time")
	fs.Float64Var(&cfg.Rate, "rate", 0, "total requests per second (open loop); 0 runs closed loop")
	fs.StringVar(&cfg.Root, "root", "/zkbench", "znode under which the run creates its nodes")
	fs.DurationVar(&cfg.SessionTimeout, "session-timeout", 10*time.Second, "session timeout")
	fs.IntVar(&idle, "idle", 0, "instead of load: open this many idle sessions and hold them")
	fs.DurationVar(&hold, "hold", 30*time.Second, "with -idle: how long to hold the sessions")
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Op = benchload.Op(op)

	if idle > 0 {
		closeAll, err := benchload.IdleSessions(ctx, cfg.Addr, idle, cfg.SessionTimeout)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "holding %d idle sessions for %s\n", idle, hold)
		select {
		case <-time.After(hold):
		case <-ctx.Done():
		}
		closeAll()
		return nil
	}

	res, err := benchload.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(out).Encode(map[string]any{
			"ops": res.Ops, "errors": res.Errors, "elapsed_seconds": res.Elapsed.Seconds(),
			"throughput": res.Throughput(), "p50_us": res.Latency.Quantile(0.5).Microseconds(),
			"p99_us": res.Latency.Quantile(0.99).Microseconds(), "max_us": res.Latency.Max().Microseconds(),
		})
	}
	fmt.Fprintln(out, res)
	return nil
}
