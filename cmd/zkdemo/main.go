// Command zkdemo runs a real ZooKeeper "mitosis" (Yelp's procedure) through
// zkproxy on this machine, driven by the files and runbook steps `zkproxy
// mitosis plan` generates and checked with `zkproxy mitosis verify` at every
// stage the runbook names,
// with a Kafka-like workload on the Java ZooKeeper client (the client Kafka
// brokers use) connected through a fleet of three zkproxy replicas the whole
// time (its connect string lists all three). One replica is killed before
// the cutover and started again, with an empty data-dir, after the split. It ends with a
// report: acknowledged and lost writes, expired sessions, client
// disconnects, the longest client-visible pause and the time per stage.
//
// Everything runs on loopback addresses (127.64.0.0-127.254.255.255) and is
// removed at the end, also on Ctrl-C: every JVM, the zkproxy processes and
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
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zkproxy/zkproxy/internal/testkit/kafkaload"
	"github.com/zkproxy/zkproxy/internal/testkit/planrun"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/mitosis"
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

// verifyResult is one `zkproxy mitosis verify` run of the migration.
type verifyResult struct {
	step  int
	stage string
	pass  bool
	took  time.Duration
}

type demo struct {
	o        options
	tb       *demoTB
	stages   []stage
	verifies []verifyResult
	step     int
	total    int
	ctx      context.Context

	proxyAddr, adminURL string
	planDir             string

	// The fleet: zkproxy replicas sharing the cutover state (docs/fleet.md);
	// the operator's commands go to replicas[operator].
	replicas []*replica
	fleetLog []string // what happened to the fleet, for the report
}

// replica is one zkproxy process of the demo's fleet.
type replica struct {
	n                 int
	ip, addr, admin   string
	dataDir, logPath  string
	cmd               *exec.Cmd
	done              chan struct{}
	killedBeforeStart bool
}

// The demo's fleet: three replicas; commands go to replica 2; replica 1 is
// killed before the cutover and started again, with an empty data-dir,
// after the split.
const (
	fleetReplicas = 3
	operator      = 1 // index of replica 2
	victim        = 0 // index of replica 1
)

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
	fmt.Printf("\n[%d/%d] %s\n", d.step, d.total, title)
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

// zkproxy runs a zkproxy command against the demo's proxy and shows it.
// While a replica is down, split --prepare refuses naming it: the demo
// shows the refusal, then goes on with --force (the replica is known dead,
// its brokers are on the others).
func (d *demo) zkproxy(ctx context.Context, args ...string) error {
	if slices.Equal(args, []string{"cutover", "split", "--prepare"}) && len(d.replicas) > victim && d.replicas[victim].killedBeforeStart && !d.replicaRunning(d.replicas[victim]) {
		if err := d.runZkproxy(ctx, args...); err == nil {
			return errors.New("split --prepare went ahead with a replica vanished")
		}
		fmt.Printf("      refused, naming replica %d (down since before the cutover): going on with --force\n", victim+1)
		d.fleetLog = append(d.fleetLog, fmt.Sprintf("split --prepare refused while replica %d was down, naming it; forced", victim+1))
		return d.runZkproxy(ctx, append(args, "--force")...)
	}
	return d.runZkproxy(ctx, args...)
}

func (d *demo) replicaRunning(r *replica) bool {
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

func (d *demo) runZkproxy(ctx context.Context, args ...string) error {
	fmt.Printf("      $ zkproxy %s\n", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, d.o.zkproxyBin, args...)
	cmd.Env = append(os.Environ(), "ZKPROXY_ADMIN_URL="+d.adminURL)
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
		if c == '\n' || c == '\r' {
			i.mid = false
		}
	}
	_, err := io.WriteString(i.w, b.String())
	return len(p), err
}

func addrs(e *zktest.Ensemble) []string {
	var out []string
	for _, s := range e.Members {
		out = append(out, s.ClientAddr())
	}
	return out
}

// setupStages are the narrated stages before the plan's own steps, and
// the final write check after them.
const setupStages = 4 + 1

func (d *demo) run() bool {
	ctx, cancel := context.WithTimeout(d.ctx, 10*time.Minute)
	defer cancel()
	fmt.Println("zkproxy demo: a real ZooKeeper mitosis (Yelp's procedure) with every client behind zkproxy,")
	fmt.Println("driven by the files and commands `zkproxy mitosis plan` generates, verified at every stage.")
	fmt.Printf("Working directory and logs: %s\n", d.tb.base)
	d.total = setupStages
	var m *zktest.Mitosis
	if !d.do("Source ensemble", "Three ZooKeeper 3.8 nodes (myid 1-3), each on its own loopback address.", func() error {
		m = d.startSource()
		return nil
	}) || !d.do("A fleet of three zkproxies in front of the source", "Clients connect to zkproxy only, listing every replica: zookeeper.connect=<zkp1>,<zkp2>,<zkp3>/kafka.\nThe replicas share one cutover state in ZooKeeper (--fleet demo).", func() error {
		return d.startProxy(m)
	}) {
		return false
	}
	var w *kafkaload.JavaWorkload
	if !d.do("Kafka-like workload through zkproxy",
		fmt.Sprintf("Java ZooKeeper 3.8 client (Kafka's): %d brokers register ephemerals with a CheckedEphemeral multi,\nelect a controller (/controller ephemeral, exists watch), watch /brokers/ids and /config/changes;\n%d writers create serial-numbered znodes, one after another. Session timeout 18 s, as Kafka.", d.o.brokers, d.o.writers),
		func() (err error) {
			w, err = d.startWorkload(ctx)
			return err
		}) {
		return false
	}
	var p *mitosis.Plan
	if !d.do("zkproxy mitosis plan", "The plan reads the source live (conf, srvr) and writes every zoo.cfg, the firewall scripts and RUNBOOK.md.\nThe demo runs the runbook's steps as written: its files, its zkproxy commands, its verify checks.", func() (err error) {
		p, err = d.makePlan(ctx, m)
		return err
	}) {
		return false
	}
	d.total += len(p.Steps) + 2 // and the fleet's kill and restart
	snaps, ok := d.migrate(ctx, m, p, w)
	if !ok {
		return false
	}
	var v kafkaload.Verification
	var final kafkaload.Report
	if !d.do("Check every write", "Stop the workload; read every serial back from node 6, the formerly dormant destination node.", func() (err error) {
		final, v, err = d.checkWrites(ctx, w, m)
		return err
	}) {
		return false
	}
	return d.report(snaps, final, v)
}

// startSource starts the source ensemble; every server's dataDir is where
// the plan's destination files will say (--destination-data-dir).
func (d *demo) startSource() *zktest.Mitosis {
	m := zktest.NewMitosis(d.tb, zktest.WithHeapMB(96), zktest.WithDataDirPattern(filepath.Join(d.tb.base, "data", "zk{id}")))
	fmt.Printf("      source: %s\n", strings.Join(addrs(m.Source), ", "))
	fmt.Printf("      destination (not started yet): %s; node 6 stays dormant until the split\n", strings.Join(addrs(m.Destination), ", "))
	return m
}

func (d *demo) startWorkload(ctx context.Context) (*kafkaload.JavaWorkload, error) {
	prog := zktest.JavaProgram(d.tb, kafkaload.JavaWorkloadSource)
	w, err := kafkaload.StartJava(ctx, prog, kafkaload.JavaConfig{Connect: d.proxyAddr + "/kafka", Brokers: d.o.brokers, Writers: d.o.writers, Stderr: d.tb.log})
	if err != nil {
		return nil, err
	}
	d.tb.Cleanup(w.Close)
	time.Sleep(time.Second) // let the workload get going before the narration counts it
	fmt.Printf("      %d sessions connected; %d writes acknowledged so far\n", len(w.Snapshot().Sessions), w.Snapshot().AckedWrites)
	return w, nil
}

// makePlan runs `zkproxy mitosis plan` against the live source, with
// source member 1's zoo.cfg for the settings conf does not show.
func (d *demo) makePlan(ctx context.Context, m *zktest.Mitosis) (*mitosis.Plan, error) {
	d.planDir = filepath.Join(d.tb.base, "plan")
	tmpl := filepath.Join(d.tb.base, "source-zoo.cfg")
	if err := os.WriteFile(tmpl, m.Source.Members[0].ConfigFile(), 0o644); err != nil {
		return nil, err
	}
	args := []string{"mitosis", "plan", "--source", strings.Join(addrs(m.Source), ","), "--out", d.planDir,
		"--source-zoo-cfg", tmpl, "--destination-data-dir", filepath.Join(d.tb.base, "data", "zk{id}"),
		"--dormant", "6", "--chroot", "/kafka", "--firewall-chain", fmt.Sprintf("ZKDEMO-%d", os.Getpid())}
	for _, s := range m.Destination.Members {
		args = append(args, "--destination", fmt.Sprintf("%d=%s:%d:%d", s.ID, s.IP, zktest.QuorumPort, zktest.ElectionPort))
	}
	if err := d.zkproxy(ctx, args...); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(d.planDir, "plan.json"))
	if err != nil {
		return nil, err
	}
	p, err := mitosis.ParsePlan(b)
	if err != nil {
		return nil, err
	}
	// Registered before any rule exists: Ctrl-C or a failure removes them.
	d.tb.Cleanup(func() {
		for _, m := range p.Destination {
			if err := planrun.RunScript(context.Background(), filepath.Join(d.planDir, mitosis.FirewallFile("iptables", "remove", m.ID))); err != nil {
				d.tb.Errorf("removing the firewall: %v", err)
			}
		}
	})
	fmt.Printf("      %d steps in %s\n", len(p.Steps), filepath.Join(d.planDir, "RUNBOOK.md"))
	return p, nil
}

// snapshots are the workload's counters at the migration's milestones.
type snapshots struct {
	beforeJoin, joined, cutOver kafkaload.Report
	joinPause                   time.Duration
	killDisconnects             int64 // seen by the killed replica's clients
}

// migrate runs every step of the plan as a narrated stage.
func (d *demo) migrate(ctx context.Context, m *zktest.Mitosis, p *mitosis.Plan, w *kafkaload.JavaWorkload) (snapshots, bool) {
	servers := map[int]*zktest.Server{}
	for _, s := range append(slices.Clone(m.Source.Members), m.Destination.Members...) {
		servers[s.ID] = s
	}
	r := &planrun.Runner{Plan: p, Dir: d.planDir, Servers: servers,
		Zkproxy:  func(ctx context.Context, args []string) error { return d.zkproxy(ctx, args...) },
		Released: d.waitReleased,
		Check:    d.check,
	}
	var snaps snapshots
	snaps.beforeJoin = w.Snapshot()
	w.ResetLatency()
	for _, s := range p.Steps {
		var narration []string
		if s.Note != "" {
			narration = append(narration, s.Note)
		}
		for _, a := range s.Actions {
			if a.Kind != mitosis.Zkproxy { // zkproxy commands show as they run
				narration = append(narration, "$ "+a.Command)
			}
		}
		if hasZkproxy(s, "cutover", "start") {
			if !d.do(fmt.Sprintf("Kill zkproxy replica %d", victim+1), fmt.Sprintf("kill -9, before the cutover: its brokers carry on through replicas %s with their sessions.", d.others(victim)), func() error {
				return d.killVictim(ctx, w, &snaps)
			}) {
				return snaps, false
			}
		}
		if !d.do(s.Title, strings.Join(narration, "\n"), func() error {
			if s.Check.Stage == mitosis.StageJoined && snaps.joined.AckedWrites == 0 {
				// Every restart of the join is behind us.
				snaps.joined = w.Snapshot()
				snaps.joinPause = snaps.joined.MaxOpLatency
				w.ResetLatency()
			}
			return r.Step(ctx, s)
		}) {
			return snaps, false
		}
		if hasZkproxy(s, "cutover", "split") && !hasZkproxy(s, "cutover", "split", "--prepare") {
			if !d.do(fmt.Sprintf("Start zkproxy replica %d again, with an empty data-dir", victim+1), "A pod without a volume: the fleet state in ZooKeeper, not the data-dir, decides where it routes.", func() error {
				return d.restartVictim(ctx, m)
			}) {
				return snaps, false
			}
		}
		if s.Check.Stage == mitosis.StagePreSplit {
			snaps.cutOver = w.Snapshot()
		}
	}
	return snaps, true
}

// hasZkproxy reports whether step s runs `zkproxy <args...>` exactly.
func hasZkproxy(s mitosis.Step, args ...string) bool {
	for _, a := range s.Actions {
		if a.Kind == mitosis.Zkproxy && slices.Equal(a.Args, args) {
			return true
		}
	}
	return false
}

// others names the replicas but i ("2 and 3").
func (d *demo) others(i int) string {
	var names []string
	for _, r := range d.replicas {
		if r.n != i+1 {
			names = append(names, fmt.Sprint(r.n))
		}
	}
	return strings.Join(names, " and ")
}

// killVictim kills the victim replica before the cutover and waits until
// every session is back, through the other replicas, still on the source.
func (d *demo) killVictim(ctx context.Context, w *kafkaload.JavaWorkload, snaps *snapshots) error {
	v := d.replicas[victim]
	before := w.Snapshot()
	d.killReplica(v)
	v.killedBeforeStart = true
	want := len(before.Sessions)
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := exec.CommandContext(ctx, d.o.zkproxyBin, "cutover", "status", "-o", "json", "--admin", d.adminURL).Output()
		if err != nil {
			return fmt.Errorf("cutover status: %w", err)
		}
		var st struct {
			Fleet struct {
				Totals struct {
					Replicas int `json:"replicas"`
					Sessions struct {
						Source int `json:"source"`
					} `json:"sessions"`
				} `json:"totals"`
			} `json:"fleet"`
		}
		if err := json.Unmarshal(out, &st); err != nil {
			return fmt.Errorf("cutover status: %w", err)
		}
		if st.Fleet.Totals.Replicas == fleetReplicas-1 && st.Fleet.Totals.Sessions.Source == want {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after the kill: %d live replicas carry %d of %d sessions", st.Fleet.Totals.Replicas, st.Fleet.Totals.Sessions.Source, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
	after := w.Snapshot().Since(before)
	line := fmt.Sprintf("replica %d killed (kill -9) before the cutover: its brokers came back through replicas %s with their sessions (%d client disconnects, %d expired)",
		v.n, d.others(victim), after.Disconnects, after.Expired)
	d.fleetLog = append(d.fleetLog, line)
	snaps.killDisconnects = after.Disconnects
	fmt.Println("      " + line)
	return d.zkproxy(ctx, "cutover", "status")
}

// restartVictim starts the killed replica again after the split with an
// empty data-dir and checks that it routes to the destination.
func (d *demo) restartVictim(ctx context.Context, m *zktest.Mitosis) error {
	v := d.replicas[victim]
	if err := d.startReplica(m, v); err != nil {
		return err
	}
	phase, split, target, err := d.replicaStatus(ctx, v)
	if err != nil {
		return err
	}
	line := fmt.Sprintf("replica %d started again after the split with an empty data-dir: phase %s, split %t, new connections go to the %s", v.n, phase, split, target)
	d.fleetLog = append(d.fleetLog, line)
	fmt.Println("      " + line)
	if target != "destination" || !split {
		return fmt.Errorf("replica %d routes to the %s after the split", v.n, target)
	}
	return d.zkproxy(ctx, "cutover", "status")
}

// check runs a step's check: every `mitosis verify` (which must pass where
// the runbook says so) is recorded for the report, and leftovers is shown;
// the other checks only show state the narration already shows.
func (d *demo) check(ctx context.Context, s mitosis.Step) error {
	if s.Check.Stage == "" {
		if slices.Contains(s.Check.Args, "leftovers") {
			return d.zkproxy(ctx, s.Check.Args...)
		}
		return nil
	}
	start := time.Now()
	err := d.zkproxy(ctx, s.Check.Args...)
	d.verifies = append(d.verifies, verifyResult{step: s.N, stage: s.Check.Stage, pass: err == nil, took: time.Since(start)})
	if err != nil && s.Check.MustPass {
		return fmt.Errorf("%s: %w", s.Check.Command, err)
	}
	return nil
}

func (d *demo) checkWrites(ctx context.Context, w *kafkaload.JavaWorkload, m *zktest.Mitosis) (kafkaload.Report, kafkaload.Verification, error) {
	if err := w.WatchesFire(ctx); err != nil {
		return kafkaload.Report{}, kafkaload.Verification{}, fmt.Errorf("watches after the migration: %w", err)
	}
	final := w.Stop()
	v, err := w.Verify(ctx, m.Dormant().ClientAddr())
	return final, v, err
}

// startProxy starts the fleet: fleetReplicas zkproxy processes with one
// fleet name, each on its own loopback address; the brokers list them all.
func (d *demo) startProxy(m *zktest.Mitosis) error {
	var connect []string
	for i := range fleetReplicas {
		ip := zktest.LoopbackIP(d.tb)
		r := &replica{n: i + 1, ip: ip, addr: net.JoinHostPort(ip, "2181"), admin: "http://" + net.JoinHostPort(ip, "9181"),
			logPath: filepath.Join(d.tb.base, fmt.Sprintf("zkproxy-%d.log", i+1))}
		if err := d.startReplica(m, r); err != nil {
			return err
		}
		d.replicas = append(d.replicas, r)
		connect = append(connect, r.addr)
		fmt.Printf("      replica %d: %s, admin API %s, log %s\n", r.n, r.addr, r.admin, r.logPath)
	}
	d.proxyAddr = strings.Join(connect, ",")
	d.adminURL = d.replicas[operator].admin
	fmt.Printf("      fleet \"demo\": the cutover state lives in /zkproxy/demo on the ensembles; commands go to replica %d\n", operator+1)
	return nil
}

// startReplica starts r with a new, empty data-dir and waits until it
// accepts clients (after it read the fleet state).
func (d *demo) startReplica(m *zktest.Mitosis, r *replica) error {
	r.dataDir = d.tb.TempDir()
	logf, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(d.o.zkproxyBin, "serve",
		"--listen", r.addr, "--admin-listen", net.JoinHostPort(r.ip, "9181"),
		"--source", strings.Join(addrs(m.Source), ","),
		"--destination", strings.Join(addrs(m.Destination), ","),
		"--data-dir", r.dataDir, "--cutover-max-lag", "1000", "--fleet", "demo")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting zkproxy replica %d: %w", r.n, err)
	}
	r.cmd, r.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(r.done) }()
	d.tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-r.done
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("zkproxy replica %d not listening on %s (see %s)", r.n, r.addr, r.logPath)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// killReplica kills r with SIGKILL: no goodbye to ZooKeeper, every client
// connection dropped.
func (d *demo) killReplica(r *replica) {
	fmt.Printf("      $ kill -9 %d   # zkproxy replica %d\n", r.cmd.Process.Pid, r.n)
	_ = r.cmd.Process.Kill()
	<-r.done
}

// replicaStatus asks replica r's admin API for its cutover status.
func (d *demo) replicaStatus(ctx context.Context, r *replica) (phase string, split bool, target string, err error) {
	out, err := exec.CommandContext(ctx, d.o.zkproxyBin, "cutover", "status", "-o", "json", "--admin", r.admin).Output()
	if err != nil {
		return "", false, "", fmt.Errorf("cutover status of replica %d: %w", r.n, err)
	}
	var st struct {
		Phase  string `json:"phase"`
		Split  bool   `json:"split"`
		Target string `json:"target"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return "", false, "", fmt.Errorf("cutover status of replica %d: %w", r.n, err)
	}
	return st.Phase, st.Split, st.Target, nil
}

// waitReleased waits until the barrier has released every session (each
// re-attached to the restarted member) or came down by itself.
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
			fmt.Println("      every held session re-attached and was released")
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("sessions still held 30 s after the restart")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (d *demo) report(s snapshots, final kafkaload.Report, v kafkaload.Verification) bool {
	cut := s.cutOver.Since(s.joined)
	split := final.Since(s.cutOver)
	pauses := kafkaload.PausesOf(final)
	fmt.Println("\n================ report ================")
	fmt.Printf("acknowledged writes        %d\n", v.Acked)
	fmt.Printf("lost acknowledged writes   %d\n", v.Lost)
	fmt.Printf("duplicates (unexplained)   %d (%d)\n", v.Duplicates, v.UnexplainedDuplicates)
	fmt.Printf("ephemeral owners intact    %t\n", v.OwnersIntact)
	fmt.Printf("sessions expired           %d\n", final.Expired)
	fmt.Printf("client disconnects         %d during the join, %d during cutover, %d during the split\n",
		s.joined.Since(s.beforeJoin).Disconnects, cut.Disconnects, split.Disconnects)
	fmt.Printf("longest client pause       %s during the join; %s from the cutover on (per session %s)\n",
		s.joinPause.Round(time.Millisecond), final.MaxOpLatency.Round(time.Millisecond), pauses)
	fmt.Printf("zkproxy fleet              %d replicas, brokers listing all of them; every command sent to replica %d\n", fleetReplicas, operator+1)
	for _, l := range d.fleetLog {
		fmt.Printf("  %s\n", l)
	}
	fmt.Println("mitosis verify, per runbook step:")
	verified := true
	for _, r := range d.verifies {
		result := "PASS"
		if !r.pass {
			result, verified = "FAIL", false
		}
		fmt.Printf("  step %2d  %-10s %s  (%s)\n", r.step, r.stage, result, r.took.Round(time.Millisecond))
	}
	fmt.Println("time per stage:")
	for _, st := range d.stages {
		fmt.Printf("  %-66s %s\n", st.name, st.took.Round(10*time.Millisecond))
	}
	ok := v.Lost == 0 && final.Expired == 0 && v.OwnersIntact && verified
	if ok && final.Since(s.beforeJoin).Disconnects == s.killDisconnects {
		fmt.Println("\nNo client saw a disconnect at any point of the migration but those of the killed replica.")
	}
	if ok {
		fmt.Println("\nOK: every stage verified, no acknowledged write lost, no session expired; clients never changed their connect string.")
	}
	return ok
}
