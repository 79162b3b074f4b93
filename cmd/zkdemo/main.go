// Command zkdemo runs a real ZooKeeper "mitosis" through zkproxy on this
// machine, narrating each step of shared/seeds/yelp-zookeeper-mitosis.txt,
// with a Kafka-like workload on the Java ZooKeeper client (the client Kafka
// brokers use) connected through zkproxy the whole time. It ends with a
// report: acknowledged and lost writes, expired sessions, client
// disconnects, the longest client-visible pause and the time per stage.
//
// Everything runs on loopback addresses (127.64.0.0-127.254.255.255) and is
// removed at the end, also on Ctrl-C: every JVM, the zkproxy process and
// every iptables rule. It needs root (iptables) and the packages
// scripts/test-deps.sh installs; `make demo` does both.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zkproxy/zkproxy/internal/testkit/kafkaload"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

func main() {
	os.Exit(run())
}

type options struct {
	zkproxyBin       string
	brokers, writers int
	keep             bool
}

func run() int {
	var o options
	flag.StringVar(&o.zkproxyBin, "zkproxy", "bin/zkproxy", "zkproxy binary to run")
	flag.IntVar(&o.brokers, "brokers", 4, "Kafka-like broker sessions")
	flag.IntVar(&o.writers, "writers", 2, "serial writer sessions")
	flag.BoolVar(&o.keep, "keep-logs", false, "keep the demo's working directory (server and zkproxy logs)")
	flag.Parse()

	d, err := newDemo(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "zkdemo:", err)
		return 1
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		fmt.Fprintf(os.Stderr, "\n%s: stopping every process and removing every firewall rule...\n", sig)
		d.tb.cleanup()
		os.Exit(130)
	}()
	ok := d.run()
	d.tb.cleanup()
	if !ok || d.tb.Failed() {
		fmt.Printf("\nThe demo FAILED. Logs: %s\n", d.tb.logPath)
		return 1
	}
	return 0
}

// demoTB lets zktest drive real servers outside a test: cleanups run once,
// in reverse, at the end or on a signal; a fatal error cleans up and exits.
type demoTB struct {
	mu       sync.Mutex
	cleanups []func()
	failed   bool
	base     string
	keep     bool
	log      *os.File
	logPath  string
	once     sync.Once
}

func (d *demoTB) Helper() {}

func (d *demoTB) Cleanup(f func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cleanups = append(d.cleanups, f)
}

func (d *demoTB) Logf(format string, args ...any) {
	fmt.Fprintf(d.log, format+"\n", args...)
}

func (d *demoTB) Errorf(format string, args ...any) {
	d.mu.Lock()
	d.failed = true
	d.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintln(d.log, "ERROR:", msg)
	fmt.Fprintln(os.Stderr, "  error:", firstLines(msg, 6))
}

func (d *demoTB) Fatalf(format string, args ...any) {
	d.Errorf(format, args...)
	d.cleanup()
	fmt.Printf("\nThe demo FAILED. Logs: %s\n", d.logPath)
	os.Exit(1)
}

func (d *demoTB) Skip(args ...any) { d.Fatalf("cannot run: %s", fmt.Sprint(args...)) }

func (d *demoTB) Failed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.failed
}

func (d *demoTB) TempDir() string {
	dir, err := os.MkdirTemp(d.base, "t")
	if err != nil {
		d.Fatalf("temp dir: %v", err)
	}
	return dir
}

func (d *demoTB) cleanup() {
	d.once.Do(func() {
		d.mu.Lock()
		fs := d.cleanups
		d.cleanups = nil
		d.mu.Unlock()
		for i := len(fs) - 1; i >= 0; i-- {
			fs[i]()
		}
		if !d.keep && !d.failed {
			os.RemoveAll(d.base)
		}
	})
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = append(lines[:n], "...")
	}
	return strings.Join(lines, "\n  ")
}

type stage struct {
	name string
	took time.Duration
}

type demo struct {
	o      options
	tb     *demoTB
	stages []stage
	step   int
	ctx    context.Context

	proxyAddr, adminURL string
}

const totalSteps = 11

func newDemo(o options) (*demo, error) {
	bin, err := filepath.Abs(o.zkproxyBin)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("zkproxy binary: %w (build it: go build -o bin/zkproxy ./cmd/zkproxy)", err)
	}
	o.zkproxyBin = bin
	if os.Geteuid() != 0 {
		return nil, errors.New("needs root for the iptables split (run as root or with sudo)")
	}
	base, err := os.MkdirTemp("", "zkdemo-")
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(base, "demo.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	return &demo{o: o, tb: &demoTB{base: base, keep: o.keep, log: logf, logPath: logPath}, ctx: context.Background()}, nil
}

// do runs one narrated stage and records its time.
func (d *demo) do(title, what string, f func() error) bool {
	d.step++
	fmt.Printf("\n[%d/%d] %s\n", d.step, totalSteps, title)
	if what != "" {
		fmt.Printf("      %s\n", strings.ReplaceAll(what, "\n", "\n      "))
	}
	start := time.Now()
	err := f()
	took := time.Since(start)
	d.stages = append(d.stages, stage{title, took})
	if err != nil {
		d.tb.Errorf("%s: %v", title, err)
		return false
	}
	fmt.Printf("      done in %s\n", took.Round(10*time.Millisecond))
	return true
}

// cli runs a zkproxy CLI command against the demo's proxy and shows it.
func (d *demo) cli(args ...string) error {
	args = append(args, "--admin", d.adminURL)
	fmt.Printf("      $ zkproxy %s\n", strings.Join(args[:len(args)-2], " "))
	cmd := exec.Command(d.o.zkproxyBin, args...)
	cmd.Stdout = &indent{w: os.Stdout, prefix: "        "}
	cmd.Stderr = cmd.Stdout
	return cmd.Run()
}

type indent struct {
	w      io.Writer
	prefix string
	mid    bool
}

func (i *indent) Write(p []byte) (int, error) {
	var b strings.Builder
	for _, c := range string(p) {
		if !i.mid {
			b.WriteString(i.prefix)
			i.mid = true
		}
		b.WriteRune(c)
		if c == '\n' {
			i.mid = false
		} else if c == '\r' {
			i.mid = false
		}
	}
	_, err := io.WriteString(i.w, b.String())
	return len(p), err
}

func addrs(e *zktest.Ensemble, n int) []string {
	var out []string
	for _, s := range e.Members[:n] {
		out = append(out, s.ClientAddr())
	}
	return out
}

func (d *demo) run() bool {
	ctx, cancel := context.WithTimeout(d.ctx, 10*time.Minute)
	defer cancel()
	fmt.Println("zkproxy demo: a real ZooKeeper mitosis (Yelp's procedure) with every client behind zkproxy.")
	fmt.Printf("Working directory and logs: %s\n", d.tb.base)

	var m *zktest.Mitosis
	if !d.do("Source ensemble", "Three ZooKeeper 3.8 nodes (myid 1-3), each on its own loopback address.", func() error {
		m = zktest.NewMitosis(d.tb, zktest.WithHeapMB(96))
		fmt.Printf("      source: %s\n", strings.Join(addrs(m.Source, 3), ", "))
		fmt.Printf("      destination (not started yet): %s; node 6 stays dormant until the split\n", strings.Join(addrs(m.Destination, 3), ", "))
		return nil
	}) {
		return false
	}

	if !d.do("zkproxy in front of the source", "Clients connect to zkproxy only: zookeeper.connect=<zkproxy>/kafka.", func() error {
		return d.startProxy(m)
	}) {
		return false
	}

	var w *kafkaload.JavaWorkload
	if !d.do("Kafka-like workload through zkproxy",
		fmt.Sprintf("Java ZooKeeper 3.8 client (Kafka's): %d brokers register ephemerals with a CheckedEphemeral multi,\nelect a controller (/controller ephemeral, exists watch), watch /brokers/ids and /config/changes;\n%d writers create serial-numbered znodes, one after another. Session timeout 18 s, as Kafka.", d.o.brokers, d.o.writers),
		func() error {
			prog := zktest.JavaProgram(d.tb, kafkaload.JavaWorkloadSource)
			var err error
			w, err = kafkaload.StartJava(ctx, prog, kafkaload.JavaConfig{Connect: d.proxyAddr + "/kafka", Brokers: d.o.brokers, Writers: d.o.writers, Stderr: d.tb.log})
			if err != nil {
				return err
			}
			d.tb.Cleanup(w.Close)
			time.Sleep(time.Second)
			fmt.Printf("      %d sessions connected; %d writes acknowledged so far\n", len(w.Snapshot().Sessions), w.Snapshot().AckedWrites)
			return nil
		}) {
		return false
	}

	joinBase := w.Snapshot()
	w.ResetLatency()
	if !d.do("Stage one: DNA replication (join)",
		"Destination nodes 4 and 5 start empty with the five-node joint zoo.cfg and sync from the source leader;\nthen a rolling restart moves the source members onto the joint config, leader last, one at a time.\nBefore each restart zkproxy holds the sessions on that member (all of them for the leader, whose\nrestart makes every member drop its clients), so nothing is in flight when the member goes away.",
		func() error {
			leader, err := m.JoinAround(ctx, func(s *zktest.Server, leader bool, restart func() error) error {
				args := []string{"cutover", "hold", "--member", s.ClientAddr()}
				if leader {
					args = []string{"cutover", "hold"}
				}
				if err := d.cli(args...); err != nil {
					return err
				}
				fmt.Printf("      restarting %s (leader: %t) onto the joint config\n", s, leader)
				if err := restart(); err != nil {
					return err
				}
				if err := d.waitReleased(ctx); err != nil {
					return err
				}
				return d.cli("cutover", "release")
			})
			if err == nil {
				fmt.Printf("      joint ensemble of 5 serving; leader %s\n", leader)
			}
			return err
		}) {
		return false
	}
	base := w.Snapshot()
	joinPause := base.MaxOpLatency
	w.ResetLatency()

	if !d.do("Is mitosis sync confirmed?", "", func() error {
		deadline := time.Now().Add(60 * time.Second)
		for {
			err := d.cli("cutover", "check")
			if err == nil || time.Now().After(deadline) {
				return err
			}
			fmt.Println("      not yet; checking again")
			time.Sleep(time.Second)
		}
	}) {
		return false
	}

	if !d.do("Cutover: move every live session to the destination",
		"Each session: hold new requests, drain in-flight, re-open with the same id/password/last zxid on\nnode 4 or 5, replay auth, re-register watches, release. New connections go to the destination.",
		func() error { return d.cli("cutover", "start") }) {
		return false
	}
	afterCutover := w.Snapshot()

	if !d.do("Split barrier", "zkproxy checks leader placement, zxid and digest parity, then holds every request\n(pings are answered) so nothing is in flight when the destination drops its connections.\nThe joint leader is usually node 5 (highest id wins an election with equal zxids): the source then\nre-elects at the split, which would drop clients connected to it directly; zkproxy finds none here.",
		func() error {
			return d.cli("cutover", "split", "--prepare")
		}) {
		return false
	}

	if !d.do("Stage two: mitosis (firewall split, destination restart)",
		"iptables REJECT (TCP) between destination and source addresses, both directions; then nodes 4 and 5\nrestart with the destination's own three-node zoo.cfg and node 6 starts empty; they elect a leader.",
		func() error {
			if err := m.Firewall(ctx); err != nil {
				return err
			}
			fmt.Println("      firewall up")
			leader, err := m.RestartDestination(ctx)
			if err != nil {
				return err
			}
			tl := m.Timeline()
			fmt.Printf("      destination leader %s; destination served nobody for %s\n", leader, tl.DestinationUnavailable().Round(time.Millisecond))
			return d.waitReleased(ctx)
		}) {
		return false
	}

	if !d.do("Record the split", "From here on the source is gone for good: rollback is refused.", func() error {
		return d.cli("cutover", "split")
	}) {
		return false
	}

	if !d.do("Clean up the source", "Rolling restart of the source with its original three-node zoo.cfg, then the firewall rules go.", func() error {
		if _, err := m.RestartSource(ctx); err != nil {
			return err
		}
		return m.RemoveFirewall()
	}) {
		return false
	}

	var v kafkaload.Verification
	var final, cut, split kafkaload.Report
	if !d.do("Check every write", "Stop the workload; read every serial back from node 6, the formerly dormant destination node.", func() error {
		if err := w.WatchesFire(ctx); err != nil {
			return fmt.Errorf("watches after the migration: %w", err)
		}
		final = w.Stop()
		cut = afterCutover.Since(base)
		split = final.Since(afterCutover)
		var err error
		v, err = w.Verify(ctx, m.Dormant().ClientAddr())
		return err
	}) {
		return false
	}
	return d.report(joinBase, base, final, cut, split, v, joinPause)
}

func (d *demo) startProxy(m *zktest.Mitosis) error {
	ip := zktest.LoopbackIP(d.tb)
	d.proxyAddr = net.JoinHostPort(ip, "2181")
	d.adminURL = "http://" + net.JoinHostPort(ip, "9181")
	logPath := filepath.Join(d.tb.base, "zkproxy.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(d.o.zkproxyBin, "serve",
		"--listen", d.proxyAddr, "--admin-listen", net.JoinHostPort(ip, "9181"),
		"--source", strings.Join(addrs(m.Source, 3), ","),
		"--destination", strings.Join(addrs(m.Destination, 3), ","),
		"--data-dir", d.tb.TempDir(), "--cutover-max-lag", "1000")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting zkproxy: %w", err)
	}
	d.tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", d.proxyAddr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("zkproxy not listening on %s (see %s)", d.proxyAddr, logPath)
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Printf("      zkproxy %s, admin API %s, log %s\n", d.proxyAddr, d.adminURL, logPath)
	return nil
}

// waitReleased waits until the barrier has released every session (each
// re-attached to the restarted destination) or came down by itself.
func (d *demo) waitReleased(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := exec.CommandContext(ctx, d.o.zkproxyBin, "cutover", "status", "-o", "json", "--admin", d.adminURL).Output()
		if err != nil {
			return fmt.Errorf("cutover status: %w", err)
		}
		var st struct {
			Barrier struct {
				Up   bool `json:"up"`
				Held int  `json:"held"`
			} `json:"barrier"`
		}
		if err := json.Unmarshal(out, &st); err != nil {
			return fmt.Errorf("cutover status: %w", err)
		}
		if !st.Barrier.Up || st.Barrier.Held == 0 {
			fmt.Println("      every session re-attached to the new destination ensemble and was released")
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("sessions still held 30 s after the destination restart")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (d *demo) report(joinBase, base, final, cut, split kafkaload.Report, v kafkaload.Verification, joinPause time.Duration) bool {
	pauses := kafkaload.PausesOf(final)
	fmt.Println("\n================ report ================")
	fmt.Printf("acknowledged writes        %d\n", v.Acked)
	fmt.Printf("lost acknowledged writes   %d\n", v.Lost)
	fmt.Printf("duplicates (unexplained)   %d (%d)\n", v.Duplicates, v.UnexplainedDuplicates)
	fmt.Printf("ephemeral owners intact    %t\n", v.OwnersIntact)
	fmt.Printf("sessions expired           %d\n", final.Expired)
	fmt.Printf("client disconnects         %d during the join, %d during cutover, %d during the split\n",
		base.Since(joinBase).Disconnects, cut.Disconnects, split.Disconnects)
	fmt.Printf("longest client pause       %s during the join; %s from the cutover on (per session %s)\n",
		joinPause.Round(time.Millisecond), final.MaxOpLatency.Round(time.Millisecond), pauses)
	fmt.Println("time per stage:")
	for _, s := range d.stages {
		fmt.Printf("  %-58s %s\n", s.name, s.took.Round(10*time.Millisecond))
	}
	ok := v.Lost == 0 && final.Expired == 0 && v.OwnersIntact
	if ok && final.Since(joinBase).Disconnects == 0 {
		fmt.Println("\nNo client saw a disconnect at any point of the migration.")
	}
	if ok {
		fmt.Println("\nOK: no acknowledged write lost, no session expired; clients never changed their connect string.")
	}
	return ok
}
