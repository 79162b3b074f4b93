package zktest

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Fixed ports: every server has its own loopback address, so the well-known
// ZooKeeper ports never collide.
const (
	ClientPort = 2181
	// SecureClientPort serves TLS when the server has WithSecureClientPort.
	SecureClientPort = 2281
	QuorumPort       = 2888
	ElectionPort     = 3888
)

// DefaultServingTimeout bounds how long Standalone and NewEnsemble wait for
// servers to serve.
const DefaultServingTimeout = 90 * time.Second

type options struct {
	tickTime          int // ms
	initLimit         int // ticks
	syncLimit         int // ticks
	minSessionTimeout int // ms; 0 = ZooKeeper default (2 ticks)
	maxSessionTimeout int // ms
	heapMB            int
	extra             []string // extra zoo.cfg lines
	jvmFlags          []string
	tlsCA             *CA // non-nil: serve TLS on SecureClientPort too
	clientInServers   bool
	dataDirPattern    string // non-empty: the dataDir, "{id}" replaced (WithDataDirPattern)
}

func defaultOptions() options {
	return options{
		// A short tick makes elections and session expiry fast. initLimit and
		// syncLimit leave room for a slow, shared machine: 6 s to sync, 2 s
		// of silence before a follower is dropped.
		tickTime:  200,
		initLimit: 30,
		syncLimit: 10,
		// Without this the short tick caps timeouts at 20 ticks = 4 s
		// (ZooKeeperServer.processConnectRequest clamps), below Kafka's 18 s.
		maxSessionTimeout: 60000,
		heapMB:            64,
	}
}

// Option changes a server's configuration.
type Option func(*options)

// WithClientAddrInServerLines writes each member's client address into its
// server line (server.N=ip:2888:3888;ip:2181, the official Docker image's
// format), so /zookeeper/config names every member's client address.
func WithClientAddrInServerLines() Option { return func(o *options) { o.clientInServers = true } }

// WithTickTime sets tickTime in milliseconds (default 200).
func WithTickTime(ms int) Option { return func(o *options) { o.tickTime = ms } }

// WithLimits sets initLimit and syncLimit in ticks (defaults 30 and 10).
func WithLimits(initLimit, syncLimit int) Option {
	return func(o *options) { o.initLimit, o.syncLimit = initLimit, syncLimit }
}

// WithSessionTimeouts sets minSessionTimeout and maxSessionTimeout in ms
// (defaults: 2 ticks and 60000). A zero leaves that bound at its default.
func WithSessionTimeouts(minMS, maxMS int) Option {
	return func(o *options) {
		if minMS > 0 {
			o.minSessionTimeout = minMS
		}
		if maxMS > 0 {
			o.maxSessionTimeout = maxMS
		}
	}
}

// WithHeapMB sets the JVM's -Xmx in MiB (default 64).
func WithHeapMB(mb int) Option { return func(o *options) { o.heapMB = mb } }

// WithConfig adds a raw zoo.cfg line such as "maxClientCnxns=10" or
// "localSessionsEnabled=true". Later lines override earlier ones.
func WithConfig(line string) Option { return func(o *options) { o.extra = append(o.extra, line) } }

// WithSecureClientPort makes the server serve TLS on SecureClientPort as
// well as plain TCP on ClientPort (which the harness keeps using), with a
// certificate for its IP issued by ca. The secure port requires a client
// certificate from ca: ZooKeeper's default ssl.clientAuth is need. TLS
// needs ZooKeeper's Netty server (NettyServerCnxnFactory), which then
// serves the plain port too.
func WithSecureClientPort(ca *CA) Option { return func(o *options) { o.tlsCA = ca } }

// WithJVMFlags adds JVM flags, e.g. "-Dreadonlymode.enabled=true".
func WithJVMFlags(flags ...string) Option {
	return func(o *options) { o.jvmFlags = append(o.jvmFlags, flags...) }
}

// Server is one ZooKeeper 3.8 server process on its own loopback address.
// Its data directory lives under t.TempDir() and survives restarts. Methods
// are safe for concurrent use. The process is killed in t.Cleanup.
type Server struct {
	// ID is the server's myid (1 for a standalone server).
	ID int
	// IP is the loopback address reserved for this server.
	IP string

	t    TB
	opts options
	dir  string // holds zoo.cfg, server.log and data/

	mu      sync.Mutex
	peers   []*Server // membership written to zoo.cfg; nil = standalone
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	waitErr error
	starts  int
	// cfgFile, when set (UseConfigFile), is written as zoo.cfg instead of
	// the generated configuration.
	cfgFile []byte
}

func newServer(t TB, id int, opts []Option) *Server {
	t.Helper()
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	s := &Server{ID: id, IP: LoopbackIP(t), t: t, opts: o, dir: t.TempDir()}
	if err := os.MkdirAll(s.dataDir(), 0o755); err != nil {
		t.Fatalf("zktest: %v", err)
	}
	if err := os.WriteFile(filepath.Join(s.dataDir(), "myid"), []byte(strconv.Itoa(id)+"\n"), 0o644); err != nil {
		t.Fatalf("zktest: %v", err)
	}
	if o.tlsCA != nil {
		// ZooKeeper's PEM key store holds the private key and the
		// certificate chain in one file (PEMFileLoader).
		certFile, keyFile := o.tlsCA.Issue(t, fmt.Sprintf("zk%d-%s", id, s.IP), s.IP)
		var store []byte
		for _, f := range []string{keyFile, certFile} {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatalf("zktest: %v", err)
			}
			store = append(store, b...)
		}
		if err := os.WriteFile(s.keyStorePath(), store, 0o600); err != nil {
			t.Fatalf("zktest: %v", err)
		}
	}
	// Registered after t.TempDir, so it runs before the directory is removed.
	t.Cleanup(func() {
		if err := s.Kill(); err != nil {
			t.Errorf("zktest: server %d: %v", s.ID, err)
		}
		if t.Failed() {
			t.Logf("zktest: server %d (%s) %s", s.ID, s.IP, s.keepLog())
		}
	})
	return s
}

// Standalone starts a standalone server and waits until it serves.
func Standalone(t TB, opts ...Option) *Server {
	t.Helper()
	RequireIntegration(t)
	s := newServer(t, 1, opts)
	if err := s.Start(); err != nil {
		t.Fatalf("zktest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultServingTimeout)
	defer cancel()
	if err := s.WaitServing(ctx); err != nil {
		t.Fatalf("zktest: %v", err)
	}
	return s
}

func (s *Server) keyStorePath() string { return filepath.Join(s.dir, "keystore.pem") }

func (s *Server) dataDir() string {
	if p := s.opts.dataDirPattern; p != "" {
		return strings.ReplaceAll(p, "{id}", strconv.Itoa(s.ID))
	}
	return filepath.Join(s.dir, "data")
}

// LogPath is the server's log file (stdout and stderr of every run, appended).
func (s *Server) LogPath() string { return filepath.Join(s.dir, "server.log") }

// ClientAddr returns "ip:2181".
func (s *Server) ClientAddr() string {
	return net.JoinHostPort(s.IP, strconv.Itoa(ClientPort))
}

// SecureClientAddr returns "ip:2281", the TLS port of a server started
// WithSecureClientPort.
func (s *Server) SecureClientAddr() string {
	return net.JoinHostPort(s.IP, strconv.Itoa(SecureClientPort))
}

// String names the server for logs: "zk4(127.a.b.c)".
func (s *Server) String() string { return fmt.Sprintf("zk%d(%s)", s.ID, s.IP) }

// Peers returns the membership the server's zoo.cfg currently lists (nil for
// a standalone server).
func (s *Server) Peers() []*Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.peers)
}

// SetPeers rewrites the membership (server.N lines) used at the next start;
// it does not restart the server. A nil or empty list means standalone. The
// list must include s itself.
func (s *Server) SetPeers(peers []*Server) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.peers = slices.Clone(peers)
}

func (s *Server) config() string {
	var b strings.Builder
	o := s.opts
	fmt.Fprintf(&b, "tickTime=%d\ninitLimit=%d\nsyncLimit=%d\n", o.tickTime, o.initLimit, o.syncLimit)
	fmt.Fprintf(&b, "dataDir=%s\nclientPort=%d\nclientPortAddress=%s\n", s.dataDir(), ClientPort, s.IP)
	if o.minSessionTimeout > 0 {
		fmt.Fprintf(&b, "minSessionTimeout=%d\n", o.minSessionTimeout)
	}
	fmt.Fprintf(&b, "maxSessionTimeout=%d\n", o.maxSessionTimeout)
	// The Debian AdminServer lacks its servlet jars and would fail to start.
	b.WriteString("admin.enableServer=false\n4lw.commands.whitelist=*\n")
	// Every test client connects from 127.0.0.1, so the per-address limit
	// (default 60) would count all of them together.
	b.WriteString("maxClientCnxns=0\n")
	for _, p := range s.peers {
		fmt.Fprintf(&b, "server.%d=%s:%d:%d", p.ID, p.IP, QuorumPort, ElectionPort)
		if o.clientInServers {
			fmt.Fprintf(&b, ";%s:%d", p.IP, ClientPort)
		}
		b.WriteString("\n")
	}
	if o.tlsCA != nil {
		// zoo.cfg keys QuorumPeerConfig does not know become zookeeper.*
		// system properties, which is where X509Util reads ssl.* from.
		fmt.Fprintf(&b, "secureClientPort=%d\nsecureClientPortAddress=%s\n", SecureClientPort, s.IP)
		b.WriteString("serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n")
		fmt.Fprintf(&b, "ssl.keyStore.location=%s\nssl.keyStore.type=PEM\n", s.keyStorePath())
		fmt.Fprintf(&b, "ssl.trustStore.location=%s\nssl.trustStore.type=PEM\n", o.tlsCA.CertFile)
	}
	for _, l := range o.extra {
		b.WriteString(l + "\n")
	}
	return b.String()
}

// Start starts the server process with its current configuration. It does
// not wait for the server to serve (see WaitServing).
func (s *Server) Start() error {
	shim, err := bindShim()
	if err != nil {
		return fmt.Errorf("start %v: %w", s, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		select {
		case <-s.exited: // it died on its own; start afresh
		default:
			return fmt.Errorf("start %v: already running (pid %d)", s, s.cmd.Process.Pid)
		}
	}
	cfgPath := filepath.Join(s.dir, "zoo.cfg")
	cfg := []byte(s.config())
	if s.cfgFile != nil {
		cfg = s.cfgFile
	}
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		return fmt.Errorf("start %v: %w", s, err)
	}
	logf, err := os.OpenFile(s.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start %v: %w", s, err)
	}
	defer logf.Close() // the child holds its own copy
	s.starts++
	fmt.Fprintf(logf, "==== zktest: start #%d of %v at %s ====\n", s.starts, s, time.Now().Format(time.TimeOnly+".000"))
	args := []string{fmt.Sprintf("-Xmx%dm", s.opts.heapMB)}
	args = append(args, jvmFlags...)
	args = append(args,
		"-Dorg.slf4j.simpleLogger.showDateTime=true",
		"-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
	)
	args = append(args, s.opts.jvmFlags...)
	classpath := ZooKeeperJar + ":" + SLF4JSimpleJar
	if s.opts.tlsCA != nil {
		classpath += ":" + strings.Join(nettyExtraJars, ":")
	}
	args = append(args, "-cp", classpath,
		"org.apache.zookeeper.server.quorum.QuorumPeerMain", cfgPath)
	cmd := exec.Command("java", args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "LD_PRELOAD="+shim, "ZKTEST_BIND_IP="+s.IP)
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %v: %w", s, err)
	}
	exited := make(chan struct{})
	s.cmd, s.exited = cmd, exited
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.waitErr = err
		s.mu.Unlock()
		close(exited)
	}()
	return nil
}

// Running reports whether the server process is running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// PID returns the process id, or 0 when not running.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Stop stops the server with SIGTERM (the JVM exits through its shutdown
// hooks), escalating to SIGKILL after 10 s. Stopping a stopped server is a
// no-op.
func (s *Server) Stop() error { return s.signal(syscall.SIGTERM, 10*time.Second) }

// Kill kills the server with SIGKILL (kill -9) and waits for it to exit.
// Killing a stopped server is a no-op.
func (s *Server) Kill() error { return s.signal(syscall.SIGKILL, 0) }

func (s *Server) signal(sig syscall.Signal, grace time.Duration) error {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig) // fails only if it has already exited
	if grace > 0 {
		select {
		case <-exited:
		case <-time.After(grace):
			_ = cmd.Process.Kill()
		}
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		return fmt.Errorf("stop %v: pid %d did not exit after SIGKILL", s, cmd.Process.Pid)
	}
	s.mu.Lock()
	if s.cmd == cmd {
		s.cmd, s.exited = nil, nil
	}
	s.mu.Unlock()
	return nil
}

// Restart stops the server (SIGTERM) and starts it again with its current
// configuration. It does not wait for the server to serve.
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Start()
}

// RestartWith sets a new membership (see SetPeers) and restarts the server.
func (s *Server) RestartWith(peers []*Server) error {
	if err := s.Stop(); err != nil {
		return err
	}
	s.SetPeers(peers)
	return s.Start()
}

// WaitServing polls srvr until the server serves clients (mode standalone,
// leader, follower or observer). A follower serves only after it has synced
// with its leader (Learner.syncWithLeader starts the ZooKeeperServer on
// UPTODATE), so this also means "synced". It fails early if the process
// exits.
func (s *Server) WaitServing(ctx context.Context) error {
	var last error
	for {
		s.mu.Lock()
		exited := s.exited
		s.mu.Unlock()
		if exited == nil {
			return fmt.Errorf("wait for %v to serve: not started", s)
		}
		select {
		case <-exited:
			s.mu.Lock()
			err := s.waitErr
			s.mu.Unlock()
			return fmt.Errorf("wait for %v to serve: process exited: %v", s, err)
		default:
		}
		st, err := s.Srvr()
		if err == nil && st.Serving() {
			return nil
		}
		if err != nil {
			last = err
		} else {
			last = fmt.Errorf("mode %q", st.Mode)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %v to serve: %w (last: %v)", s, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// keepLog copies the server's log out of the test's temporary directory
// (removed when the test ends) and describes where it went, with its last
// few lines. A failed test prints this for every server: whole log tails
// would bury the failure message itself, which is what a CI summary shows.
func (s *Server) keepLog() string {
	dir := os.Getenv("ZKTEST_LOG_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "zktest-logs")
	}
	last := lastLines(s.LogTail(4<<10), 4)
	name := fmt.Sprintf("%s-server%d-%d.log", time.Now().Format("150405.000"), s.ID, os.Getpid())
	dst := filepath.Join(dir, name)
	b, err := os.ReadFile(s.LogPath())
	if err == nil {
		if err = os.MkdirAll(dir, 0o755); err == nil {
			err = os.WriteFile(dst, b, 0o644)
		}
	}
	if err != nil {
		return fmt.Sprintf("log not kept (%v); its last lines:\n%s", err, last)
	}
	return fmt.Sprintf("log kept in %s; its last lines:\n%s", dst, last)
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			n--
			if n == 0 {
				return s[i+1:]
			}
		}
	}
	return s
}

// LogTail returns up to the last n bytes of the server's log.
func (s *Server) LogTail(n int64) string {
	f, err := os.Open(s.LogPath())
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		_, _ = f.Seek(fi.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}
