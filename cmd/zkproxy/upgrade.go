package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/zkproxy/zkproxy/admin"
	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/proxy"
)

// An upgrade (docs/upgrade.md): the running `zkproxy serve` starts the
// binary found at its own path now, with the same arguments, passing it
// its listening sockets and one end of a Unix socket pair; the new process
// loads its configuration, listens on the inherited sockets and says hello
// over the pair (proxy.Server.Adopt); the old one hands its sessions over
// (proxy.Server.HandOver) and exits when none is left. Any failure before
// that aborts the upgrade: the new process is killed and the old one keeps
// serving everything.

// Environment of the new process.
const (
	// envListenFDs names the inherited listening sockets, like systemd's
	// LISTEN_FDS: "client=3,admin=4" (descriptors from exec.Cmd.ExtraFiles).
	envListenFDs = "ZKPROXY_LISTEN_FDS"
	// envHandoffFD is the descriptor of the new process's end of the pair.
	envHandoffFD = "ZKPROXY_HANDOFF_FD"
	// envTestPauseAfter (tests only) makes the new process stop taking
	// sessions after that many, as if it hung halfway.
	envTestPauseAfter = "ZKPROXY_TEST_HANDOFF_PAUSE_AFTER"
)

// exePath is the binary an upgrade starts: the path this process was
// started from, resolved once at start. os.Executable reads
// /proc/self/exe, which names the old inode with " (deleted)" appended
// once a new version is installed over it; the path string kept from the
// start is what names the new file.
var exePath = func() string {
	p, err := os.Executable()
	if err != nil {
		return os.Args[0]
	}
	return strings.TrimSuffix(p, " (deleted)")
}()

// inheritedListener returns the listener passed as name by the process
// this one replaces, or nil.
func inheritedListener(name string) (net.Listener, error) {
	for _, kv := range strings.Split(os.Getenv(envListenFDs), ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k != name {
			continue
		}
		fd, err := strconv.Atoi(v)
		if err != nil || fd < 3 {
			return nil, fmt.Errorf("%s: bad descriptor %q for %s", envListenFDs, v, name)
		}
		f := os.NewFile(uintptr(fd), name+"-listener")
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("inherited %s listener: %w", name, err)
		}
		return ln, nil
	}
	return nil, nil
}

// listenTCP listens on addr, or takes over the inherited socket of name.
func listenTCP(name, addr string) (net.Listener, error) {
	if ln, err := inheritedListener(name); ln != nil || err != nil {
		return ln, err
	}
	return net.Listen("tcp", addr)
}

// handoffConn returns the new process's end of the socket pair, if this
// process was started by an upgrade.
func handoffConn() (*net.UnixConn, error) {
	v := os.Getenv(envHandoffFD)
	if v == "" {
		return nil, nil
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("%s: bad descriptor %q", envHandoffFD, v)
	}
	f := os.NewFile(uintptr(fd), "handoff")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("handoff socket: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("handoff socket is a %T", c)
	}
	return uc, nil
}

// adoptSessions takes the sessions of the process this one replaces. An
// error before any session arrived (the old process refused this binary or
// went away) ends this process: the old one keeps serving.
func adoptSessions(ctx context.Context, p *proxy.Server, u *upgrader, conn *net.UnixConn, listen string, log *slog.Logger) error {
	defer conn.Close()
	pause, _ := strconv.Atoi(os.Getenv(envTestPauseAfter))
	from := os.Getppid()
	res, err := p.Adopt(ctx, conn, proxy.AdoptOptions{Version: version, Listener: listen, PauseAfter: pause})
	u.mu.Lock()
	u.status.TakenOver = &takeover{FromPID: from, Adopted: res.Adopted, Refused: res.Refused, At: time.Now()}
	u.mu.Unlock()
	if err != nil && res.Adopted == 0 {
		return fmt.Errorf("taking over from the running zkproxy: %w", err)
	}
	if err != nil {
		log.Warn("the old process stopped handing sessions over", "adopted", res.Adopted, "err", err)
	}
	return nil
}

// upgradeStatus is GET /upgrade's answer.
type upgradeStatus struct {
	// State: idle, running, done (this process handed over and is
	// exiting), failed (the last attempt aborted; this process serves on).
	State      string    `json:"state"`
	PID        int       `json:"pid"`
	Version    string    `json:"version"`
	Binary     string    `json:"binary"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	Error      string    `json:"error,omitempty"`
	NewVersion string    `json:"new_version,omitempty"`
	NewPID     int64     `json:"new_pid,omitempty"`
	HandedOver int       `json:"handed_over"`
	// Disconnected: sessions that could not be handed over (tls, sasl),
	// drained and disconnected; Kept: sessions that stayed until the end,
	// then were disconnected (their clients reconnect to the new process).
	Disconnected map[string]int `json:"disconnected,omitempty"`
	Kept         map[string]int `json:"kept,omitempty"`
	Attempts     int            `json:"attempts"`
	// TakenOver: this process was started by an upgrade and took these
	// sessions over from the process it replaced.
	TakenOver *takeover `json:"taken_over,omitempty"`
}

// takeover is what a process started by an upgrade took over.
type takeover struct {
	FromPID int       `json:"from_pid"`
	Adopted int       `json:"adopted"`
	Refused int       `json:"refused,omitempty"`
	At      time.Time `json:"at"`
}

// errUpgradeBusy refuses an upgrade while another runs or cutover is
// between phases.
var errUpgradeBusy = errors.New("upgrade refused")

// upgrader runs upgrades of a serving process.
type upgrader struct {
	p       *proxy.Server
	ctl     *cutover.Controller
	log     *slog.Logger
	args    []string
	timeout time.Duration
	batch   int
	// files are dups of the listening sockets, by name, for the new
	// process; kept open so a failed upgrade can listen on them again.
	files map[string]*os.File
	tls   func(net.Listener) net.Listener // wraps the client listener (nil: plain)

	// resumed carries a fresh client listener after a failed upgrade had
	// released the old one; done is closed once the sessions are handed
	// over and this process should exit.
	resumed chan net.Listener
	done    chan struct{}

	mu      sync.Mutex
	running bool
	status  upgradeStatus
}

func newUpgrader(p *proxy.Server, ctl *cutover.Controller, cfg serveConfig, log *slog.Logger, listeners map[string]net.Listener) (*upgrader, error) {
	u := &upgrader{
		p: p, ctl: ctl, log: log, args: os.Args[1:], timeout: cfg.UpgradeTimeout, batch: cfg.UpgradeBatch,
		files: map[string]*os.File{}, resumed: make(chan net.Listener, 1), done: make(chan struct{}),
		status: upgradeStatus{State: "idle", PID: os.Getpid(), Version: version, Binary: exePath},
	}
	for name, ln := range listeners {
		tl, ok := ln.(*net.TCPListener)
		if !ok {
			continue
		}
		f, err := tl.File()
		if err != nil {
			u.close()
			return nil, fmt.Errorf("keeping the %s listener for upgrades: %w", name, err)
		}
		u.files[name] = f
	}
	return u, nil
}

func (u *upgrader) close() {
	for _, f := range u.files {
		f.Close()
	}
}

// Status returns the current or last upgrade's status.
func (u *upgrader) Status() upgradeStatus {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.status
}

// Start begins an upgrade in the background, or says why not.
func (u *upgrader) Start(trigger string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.running {
		return fmt.Errorf("%w: an upgrade is running", errUpgradeBusy)
	}
	if u.status.State == "done" {
		return fmt.Errorf("%w: this process has handed its sessions over and is exiting", errUpgradeBusy)
	}
	if u.ctl != nil {
		// Two controllers must never act at once: the new process's starts
		// from the phase stored in data-dir, which is only final between
		// transitions. A hold or split barrier lasts seconds; retry after.
		st := u.ctl.Status()
		if st.Phase == cutover.PhaseCuttingOver || st.Phase == cutover.PhaseRollingBack {
			return fmt.Errorf("%w: cutover is %s; upgrade once it has finished", errUpgradeBusy, st.Phase)
		}
		if st.Barrier.Up {
			return fmt.Errorf("%w: a hold or split barrier is up; upgrade once it is down", errUpgradeBusy)
		}
	}
	u.running = true
	u.status = upgradeStatus{State: "running", PID: os.Getpid(), Version: version, Binary: exePath,
		StartedAt: time.Now(), Attempts: u.status.Attempts + 1, TakenOver: u.status.TakenOver}
	u.log.Info("upgrade starting", "trigger", trigger, "binary", exePath, "timeout", u.timeout)
	go u.run()
	return nil
}

func (u *upgrader) run() {
	res, err := u.upgrade()
	u.mu.Lock()
	defer u.mu.Unlock()
	u.running = false
	st := &u.status
	st.FinishedAt = time.Now()
	st.NewVersion, st.NewPID = res.NewVersion, res.NewPID
	st.HandedOver, st.Disconnected, st.Kept = res.HandedOver, res.Disconnected, res.Kept
	if err != nil {
		st.State, st.Error = "failed", err.Error()
		u.log.Error("upgrade aborted; this process keeps serving", "err", err, "new_version", res.NewVersion,
			"took", st.FinishedAt.Sub(st.StartedAt).Round(time.Millisecond))
		return
	}
	st.State = "done"
	u.log.Info("upgrade complete: sessions handed over; exiting", "new_version", res.NewVersion, "new_pid", res.NewPID,
		"handed_over", res.HandedOver, "disconnected", res.Disconnected, "kept", res.Kept,
		"took", st.FinishedAt.Sub(st.StartedAt).Round(time.Millisecond))
	close(u.done)
}

// upgrade starts the new process and hands the sessions over, telling
// systemd (Type=notify) it is reloading and then which process is the main
// one: the new one, in the same datagram as READY=1.
func (u *upgrader) upgrade() (proxy.HandOverResult, error) {
	sdNotify(u.log, "RELOADING=1")
	res, pid, err := u.handOver()
	if err != nil {
		sdNotify(u.log, "READY=1")
		return res, err
	}
	sdNotify(u.log, fmt.Sprintf("MAINPID=%d\nREADY=1", pid))
	return res, nil
}

// handOver starts the new process and hands the sessions over; it returns
// the new process's pid.
func (u *upgrader) handOver() (proxy.HandOverResult, int, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return proxy.HandOverResult{}, 0, fmt.Errorf("socketpair: %w", err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "handoff"), os.NewFile(uintptr(fds[1]), "handoff-new")
	defer theirs.Close()
	c, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		return proxy.HandOverResult{}, 0, fmt.Errorf("handoff socket: %w", err)
	}
	conn := c.(*net.UnixConn)
	defer conn.Close()

	cmd := exec.Command(exePath, u.args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	var names []string
	for _, name := range []string{"client", "admin"} {
		if f := u.files[name]; f != nil {
			cmd.ExtraFiles = append(cmd.ExtraFiles, f)
			names = append(names, fmt.Sprintf("%s=%d", name, 2+len(cmd.ExtraFiles)))
		}
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, theirs)
	cmd.Env = append(childEnv(), envListenFDs+"="+strings.Join(names, ","),
		fmt.Sprintf("%s=%d", envHandoffFD, 2+len(cmd.ExtraFiles)))
	if err := cmd.Start(); err != nil {
		return proxy.HandOverResult{}, 0, fmt.Errorf("starting %s: %w", exePath, err)
	}
	theirs.Close() // its exit must reach us as the end of the socket
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		u.log.Info("new process exited", "pid", cmd.Process.Pid, "status", err)
		close(exited)
	}()
	var abortOnce sync.Once
	abort := func() {
		abortOnce.Do(func() {
			cmd.Process.Kill()
			<-exited
		})
	}
	res, err := u.p.HandOver(context.Background(), conn, proxy.HandOverOptions{
		Batch: u.batch, ReadyTimeout: u.timeout, AckTimeout: u.timeout, Abort: abort,
	})
	if err != nil {
		abort()
		if u.p.ListenersReleased() {
			u.p.ResumeAccepting()
			ln, lerr := u.relisten()
			if lerr != nil {
				return res, 0, fmt.Errorf("%w; and listening again failed: %v", err, lerr)
			}
			u.resumed <- ln
		}
		return res, 0, err
	}
	// Sessions kept to the end (busy past the drain bound) reconnect to the
	// new process: this one is about to exit.
	if res.Remaining() > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), u.timeout)
		u.p.Shutdown(ctx)
		cancel()
	}
	return res, cmd.Process.Pid, nil
}

// relisten makes a client listener from the kept socket.
func (u *upgrader) relisten() (net.Listener, error) {
	f := u.files["client"]
	if f == nil {
		return nil, errors.New("no client listening socket kept")
	}
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, err
	}
	if u.tls != nil {
		ln = u.tls(ln)
	}
	return ln, nil
}

// childEnv is this process's environment without the variables of its own
// start by an upgrade.
func childEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, envListenFDs+"=") || strings.HasPrefix(kv, envHandoffFD+"=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// registerUpgrade adds POST /upgrade (start one; token required) and GET
// /upgrade (status of the current or last one).
func registerUpgrade(h *admin.Handler, u *upgrader) {
	h.HandleMutating("POST /upgrade", func(w http.ResponseWriter, _ *http.Request) {
		if err := u.Start("admin API"); err != nil {
			admin.WriteError(w, http.StatusConflict, err.Error())
			return
		}
		admin.WriteJSON(w, http.StatusAccepted, u.Status())
	})
	h.Handle("GET /upgrade", func(w http.ResponseWriter, _ *http.Request) {
		admin.WriteJSON(w, http.StatusOK, u.Status())
	})
}

// sdNotify sends state to systemd when it started this process with
// Type=notify (NOTIFY_SOCKET set); otherwise it does nothing.
func sdNotify(log *slog.Logger, state string) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return
	}
	if strings.HasPrefix(addr, "@") {
		addr = "\x00" + addr[1:] // abstract namespace
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		log.Warn("sd_notify", "state", state, "err", err)
		return
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		log.Warn("sd_notify", "state", state, "err", err)
	}
}

func newUpgradeCommand() *cobra.Command {
	c := &adminClient{}
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "upgrade",
		Short: "Upgrade the running zkproxy in place: it starts the binary at its path and hands every session over (docs/upgrade.md)",
		Long: `Ask the running zkproxy (its admin API) to upgrade: it starts the binary found at
its own path now, with the same arguments, and hands its listening sockets and
live client connections over; clients see no disconnect. Without --wait it
prints the upgrade's status once started. --status only prints the status
of the current or last upgrade.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if status, _ := cmd.Flags().GetBool("status"); status {
				var st upgradeStatus
				if _, err := c.call(ctx, "GET", "/upgrade", &st); err != nil {
					return err
				}
				return c.printJSON(cmd.OutOrStdout(), st)
			}
			var st upgradeStatus
			if _, err := c.call(ctx, "POST", "/upgrade", &st); err != nil {
				return err
			}
			// The old process answers until it exits, the new one from
			// then on (both share the admin socket meanwhile): done once
			// the new one says what it took over, or the old one failed.
			orig := st.PID
			for deadline := time.Now().Add(wait); time.Now().Before(deadline); {
				if st.State == "failed" || st.PID != orig && st.TakenOver != nil {
					break
				}
				select {
				case <-time.After(200 * time.Millisecond):
				case <-ctx.Done():
					return ctx.Err()
				}
				var next upgradeStatus
				if _, err := c.call(ctx, "GET", "/upgrade", &next); err == nil {
					st = next
				}
			}
			if err := c.printJSON(cmd.OutOrStdout(), st); err != nil {
				return err
			}
			if st.State == "failed" {
				return fmt.Errorf("upgrade failed: %s", st.Error)
			}
			return nil
		},
	}
	c.bind(cmd)
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait up to this long for the upgrade to finish")
	cmd.Flags().Bool("status", false, "only print the status of the current or last upgrade")
	return cmd
}

// keep adds a listener whose socket an upgrade passes on.
func (u *upgrader) keep(name string, ln net.Listener) error {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil
	}
	f, err := tl.File()
	if err != nil {
		return fmt.Errorf("keeping the %s listener for upgrades: %w", name, err)
	}
	u.files[name] = f
	return nil
}

// serveClients serves client connections on ln, and again on the listener
// a failed upgrade hands back after it had released them.
func serveClients(p *proxy.Server, ln net.Listener, u *upgrader) error {
	for {
		err := p.Serve(ln)
		if !errors.Is(err, proxy.ErrListenerReleased) {
			return err
		}
		select {
		case ln = <-u.resumed:
		case <-u.done:
			return proxy.ErrServerClosed
		}
	}
}
