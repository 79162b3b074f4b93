package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cast"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/zkproxy/zkproxy/admin"
	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/internal/certfile"
	"github.com/zkproxy/zkproxy/internal/fourlw"
	"github.com/zkproxy/zkproxy/internal/membertls"
	"github.com/zkproxy/zkproxy/internal/zksession"
	"github.com/zkproxy/zkproxy/proxy"
)

// envPrefix is the prefix of every environment key: --max-frame-size is
// ZKPROXY_MAX_FRAME_SIZE.
const envPrefix = "ZKPROXY"

// Keys of the serve configuration, as spelled in the config file, on the
// command line (--key) and, upper-cased with '-' → '_', in the environment.
const (
	keyConfig             = "config"
	keyListen             = "listen"
	keySource             = "source"
	keyDestination        = "destination"
	keyAdminListen        = "admin-listen"
	keyAdminToken         = "admin-token"
	keyAdminTLSCert       = "admin-tls-cert"
	keyAdminTLSKey        = "admin-tls-key"
	keyDataDir            = "data-dir"
	keyLogFormat          = "log-format"
	keyLogLevel           = "log-level"
	keyPprof              = "pprof"
	keyMaxClientConns     = "max-client-conns"
	keyMaxFrameSize       = "max-frame-size"
	keyMaxOutstanding     = "max-outstanding"
	keyMaxBufferedBytes   = "max-buffered-bytes"
	keyHandshakeTimeout   = "handshake-timeout"
	keyLocalAddrs         = "local-addrs"
	keyShutdownTimeout    = "shutdown-timeout"
	keyUpgradeTimeout     = "upgrade-timeout"
	keyUpgradeBatch       = "upgrade-batch"
	keyMaxLag             = "cutover-max-lag"
	keyMoveConcurrency    = "cutover-concurrency"
	keyMoveConcurrencyMax = "cutover-concurrency-max"
	keyMovePauseTarget    = "cutover-pause-target"
	keyMoveTimeout        = "cutover-move-timeout"
	keyBarrierMaxHold     = "cutover-barrier-max-hold"
	keyCheckInterval      = "cutover-check-interval"
	keyPeers              = "peers"
	keyFourLetterWords    = "four-letter-words"
	keyAdvertise          = "advertise"
	keyPassConfig         = "pass-config-through"
	keyAllowReconfig      = "allow-reconfig"
	keyParkIdleAfter      = "park-idle-after"
	keyRuntimePoller      = "runtime-poller"
	keyTLSCert            = "tls-cert"
	keyTLSKey             = "tls-key"
	keyTLSClientCA        = "tls-client-ca"
)

// The keys of TLS towards each ensemble's members: source-tls,
// source-tls-ca, source-tls-cert, source-tls-key, source-tls-server-name,
// and the same for destination.
var (
	sourceTLSKeys      = memberTLSKeysOf(keySource)
	destinationTLSKeys = memberTLSKeysOf(keyDestination)
)

// serveConfig is the validated configuration of `zkproxy serve`.
type serveConfig struct {
	Listen      string
	AdminListen string
	AdminToken  string
	// AdminTLS, when set, makes the admin listener speak HTTPS only.
	AdminTLS        *tls.Config
	DataDir         string
	LogFormat       string
	LogLevel        string
	Pprof           bool
	ShutdownTimeout time.Duration
	// UpgradeTimeout bounds each wait of an upgrade on the new process
	// (its hello, each batch's acks); UpgradeBatch is the sessions handed
	// over at once (upgrade.go).
	UpgradeTimeout time.Duration
	UpgradeBatch   int
	// TLS, when set, makes the client listener speak TLS only.
	TLS *tls.Config
	// Certs are the certificates read from files, by use (listener,
	// admin, source, destination), reloaded when the files change.
	Certs   map[string]*certfile.Reloader
	Proxy   proxy.Config
	Cutover cutover.Config
	// Fleet: the replicas sharing the cutover state (fleet.go).
	Fleet fleetConfig
}

// bindServeFlags declares the serve flags. Defaults live here only, so
// `zkproxy serve --help` documents them; the proxy's own limits default to
// zero, which proxy.Config documents as "ZooKeeper-like default".
func bindServeFlags(fs *pflag.FlagSet) {
	fs.String(keyConfig, "", "configuration file (yaml, toml or json); flags and ZKPROXY_* env override it")
	markFlagOnly(fs, keyConfig)
	fs.String(keyListen, ":2181", "address ZooKeeper clients connect to")
	fs.StringSlice(keySource, nil, "source ensemble members, host:port, comma-separated (required)")
	fs.StringSlice(keyDestination, nil, "destination ensemble members, host:port, comma-separated")
	fs.String(keyAdminListen, "127.0.0.1:9181", "admin HTTP address (/metrics, /healthz, /readyz); empty disables it")
	fs.String(keyAdminToken, "", "bearer token required by every admin call but /healthz, /readyz, /metrics and GET /cutover (session ids are credentials); mandatory when the admin address is not loopback")
	fs.String(keyAdminTLSCert, "", "PEM certificate (chain) the admin listener presents; with admin-tls-key it serves HTTPS only")
	fs.String(keyAdminTLSKey, "", "PEM private key of admin-tls-cert")
	fs.String(keyDataDir, "/var/lib/zkproxy", "directory for persistent state (the cutover phase)")
	fs.String(keyLogFormat, "text", "log format: text or json")
	fs.String(keyLogLevel, "info", "log level: debug, info, warn or error")
	fs.Bool(keyPprof, false, "serve /debug/pprof on the admin listener")
	fs.Int(keyMaxClientConns, 0, "maximum client connections (0: default)")
	fs.Int(keyMaxFrameSize, 0, "maximum client frame size in bytes (0: default, jute.maxbuffer plus header room); replies may be up to 4 MiB")
	fs.Int(keyMaxOutstanding, 0, "maximum outstanding requests per session before reading from the client pauses (0: default)")
	fs.Int(keyMaxBufferedBytes, 0, "maximum bytes buffered per session before reading pauses (0: default)")
	fs.Duration(keyHandshakeTimeout, 0, "time a new client has to send its ConnectRequest (0: default)")
	fs.StringSlice(keyFourLetterWords, proxy.DefaultFourLetterWords, "four-letter words allowed on the client port: the proxy's own (ruok, isro, srvr, stat, mntr, cons, conf) and member words relayed only when listed (dump, envi, wchc, wchp, crst, srst, stmk), or *; cons, dump, wchc and wchp list session ids, from which passwords derive: keep them off on reachable ports")
	fs.StringSlice(keyAdvertise, nil, "client addresses (host:port) of every zkproxy replica, shown to clients as the ensemble's members in /zookeeper/config, getConfig and conf (default: the listen address, the host name when listening on every interface)")
	fs.Bool(keyPassConfig, false, "show clients the members' real /zookeeper/config and conf; clients that follow it (Curator) then connect to members directly")
	fs.Bool(keyAllowReconfig, false, "forward reconfig requests to the members instead of answering ReconfigDisabled")
	fs.String(keyParkIdleAfter, proxy.DefaultParkIdleAfter.String(), "idle time after which a session's two pumps give up their goroutines and wait on one shared poller (Linux); off keeps a goroutine per direction")
	fs.Bool(keyRuntimePoller, false, "keep client and member connections registered in the Go runtime's poller for their whole life (about 2 KiB more per idle session), instead of only while they are busy (Linux): a way back, should that misbehave")
	fs.StringSlice(keyLocalAddrs, nil, "local IP addresses upstream connections are spread over (to stay under maxClientCnxns per source IP)")
	fs.Duration(keyShutdownTimeout, 30*time.Second, "how long SIGTERM waits for sessions to finish in-flight requests")
	fs.Duration(keyUpgradeTimeout, 30*time.Second, "upgrade (SIGUSR2, POST /upgrade): how long the new process may take to say it is ready, and to take each batch of sessions, before the upgrade aborts and this process keeps serving")
	fs.Int(keyUpgradeBatch, 100, "upgrade: sessions drained and handed to the new process at once")
	fs.Int(keyMaxLag, 100, "sync check: transactions a destination member may trail the joint leader (and a session's last zxid) by; a trailing member catches up in milliseconds under load")
	fs.Int(keyMoveConcurrency, 8, "cutover: sessions moved at once at the start; the number adapts up to cutover-concurrency-max")
	fs.Int(keyMoveConcurrencyMax, 128, "cutover: most sessions moved at once (set it to cutover-concurrency for a fixed number)")
	fs.Duration(keyMovePauseTarget, 20*time.Millisecond, "cutover: move duration (a busy session's pause) the adaptive concurrency keeps under")
	fs.Duration(keyMoveTimeout, 10*time.Second, "cutover: bound on one session's move, drain included; keep it well under the session timeout (Kafka: 18s)")
	fs.Duration(keyBarrierMaxHold, 10*time.Second, "split barrier: longest time client requests are held before the barrier releases by itself")
	fs.StringSlice(keyPeers, nil, "admin URLs of the other zkproxies in front of the same ensembles (e.g. http://zkproxy-b:9181): the sync check counts their sessions as proxied, not as clients left out")
	fs.Duration(keyCheckInterval, time.Minute, "run the sync check this often while a destination is configured and no split is recorded, for its metrics (zkproxy_cutover_sync_ready, ...); 0 runs it only on demand")
	bindFleetFlags(fs)
	fs.String(keyTLSCert, "", "PEM certificate (chain) the client listener presents; with tls-key, clients must connect with TLS (zookeeper.client.secure)")
	fs.String(keyTLSKey, "", "PEM private key of tls-cert")
	fs.String(keyTLSClientCA, "", "PEM CA certificates client certificates must chain to; set, every client must present one")
	for _, e := range []struct {
		name string
		k    memberTLSKeys
	}{{"source", sourceTLSKeys}, {"destination", destinationTLSKeys}} {
		fs.Bool(e.k.on, false, "reach the "+e.name+" members over TLS: their addresses are their secureClientPort (ZooKeeper's Netty server)")
		fs.String(e.k.ca, "", "PEM CA certificates the "+e.name+" members' certificates must chain to (default: the system's roots)")
		fs.String(e.k.cert, "", "PEM client certificate (chain) presented to the "+e.name+" members; ZooKeeper requires one unless ssl.clientAuth=none")
		fs.String(e.k.key, "", "PEM private key of "+e.k.cert)
		fs.String(e.k.serverName, "", "name the "+e.name+" members' certificates are verified against (default: each member's host)")
	}
}

// annotationFlagOnly marks a flag that is no configuration key (--config
// itself, serve --check): a config file naming one fails like a typo.
const annotationFlagOnly = "zkproxy/flag-only"

// markFlagOnly marks the flag name of flags as no configuration key.
func markFlagOnly(flags *pflag.FlagSet, name string) {
	if err := flags.SetAnnotation(name, annotationFlagOnly, []string{"true"}); err != nil {
		panic(fmt.Sprintf("marking flag %s: %v", name, err)) // a programming error: the flag is not declared
	}
}

// configKeys returns the keys a config file may contain: every flag of
// flags not marked flag-only, so a new flag is a known key without a second list
// to keep in step; anything else in a file is a typo and fails the start
// rather than being silently ignored.
func configKeys(flags *pflag.FlagSet) map[string]bool {
	keys := map[string]bool{}
	flags.VisitAll(func(f *pflag.Flag) {
		if _, flagOnly := f.Annotations[annotationFlagOnly]; !flagOnly {
			keys[f.Name] = true
		}
	})
	return keys
}

// newViper returns a viper (never the global one) reading flags, ZKPROXY_*
// env keys and, when --config or ZKPROXY_CONFIG names one, a config file.
func newViper(fs *pflag.FlagSet) (*viper.Viper, error) {
	v := viper.New()
	v.SetEnvPrefix(envPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_", ".", "_"))
	v.AutomaticEnv()
	if err := v.BindPFlags(fs); err != nil {
		return nil, fmt.Errorf("binding flags: %w", err)
	}
	file := v.GetString(keyConfig)
	if file == "" {
		return v, nil
	}
	v.SetConfigFile(file)
	if err := v.ReadInConfig(); err != nil {
		return nil, fmt.Errorf("reading config file %s: %w", file, err)
	}
	return v, nil
}

// loadServeConfig converts and validates every key, returning all problems
// at once, each naming its key, so a bad deployment fails at start with the
// whole list instead of one error per restart. flags is the serve flag set:
// its flags are the keys a config file may contain. Validation only reads; serve
// creates the data directory when it starts (prepareDataDir).
func loadServeConfig(v *viper.Viper, flags *pflag.FlagSet) (serveConfig, error) {
	l := &configLoader{v: v}
	l.checkFileKeys(configKeys(flags))
	cfg := l.convert()
	l.checkMembers(cfg)
	l.checkAdmin(cfg)
	l.checkLogging(cfg)
	if cfg.DataDir == "" {
		l.bad(keyDataDir, "required: where the cutover phase is persisted")
	} else if err := checkDataDir(cfg.DataDir); err != nil {
		l.bad(keyDataDir, "%v", err)
	}
	if peers := l.list(keyPeers); len(peers) > 0 {
		l.checkPeers(peers)
		cfg.Cutover.PeerSessions = admin.PeerSessions(peers, cfg.AdminToken, nil)
	}
	l.loadTLS(&cfg)
	l.loadFleet(&cfg)
	if err := cfg.Proxy.Validate(); err != nil {
		l.problems = append(l.problems, err.Error())
	}
	if len(l.problems) > 0 {
		sort.Strings(l.problems)
		return cfg, &configError{problems: l.problems}
	}
	return cfg, nil
}

// configLoader reads keys off a viper and collects every problem, each
// prefixed with its key, instead of stopping at the first.
type configLoader struct {
	v        *viper.Viper
	problems []string
}

func (l *configLoader) bad(key, format string, args ...any) {
	l.problems = append(l.problems, fmt.Sprintf("%s: %s", key, fmt.Sprintf(format, args...)))
}

// checkFileKeys reports every key of the config file that is not in known.
func (l *configLoader) checkFileKeys(known map[string]bool) {
	file := l.v.ConfigFileUsed()
	if file == "" {
		return
	}
	for _, k := range l.v.AllKeys() {
		if !known[k] && l.v.InConfig(k) {
			l.bad(k, "unknown key in %s", file)
		}
	}
}

// convert reads every plain key into its field; the checks that look at
// several keys together follow in loadServeConfig.
func (l *configLoader) convert() serveConfig {
	cfg := serveConfig{
		Listen:          l.str(keyListen),
		AdminListen:     l.str(keyAdminListen),
		AdminToken:      l.str(keyAdminToken),
		DataDir:         l.str(keyDataDir),
		LogFormat:       l.str(keyLogFormat),
		LogLevel:        l.str(keyLogLevel),
		Pprof:           l.boolean(keyPprof),
		ShutdownTimeout: l.duration(keyShutdownTimeout),
		UpgradeTimeout:  l.duration(keyUpgradeTimeout),
		UpgradeBatch:    l.nonNegInt(keyUpgradeBatch),
		Proxy: proxy.Config{
			Source:                     l.list(keySource),
			Destination:                l.list(keyDestination),
			MaxClientConns:             l.nonNegInt(keyMaxClientConns),
			MaxFrameSize:               l.nonNegInt(keyMaxFrameSize),
			MaxOutstandingPerSession:   l.nonNegInt(keyMaxOutstanding),
			MaxBufferedBytesPerSession: l.nonNegInt(keyMaxBufferedBytes),
			HandshakeTimeout:           l.duration(keyHandshakeTimeout),
			LocalAddrs:                 l.list(keyLocalAddrs),
			FourLetterWords:            l.list(keyFourLetterWords),
			Advertise:                  l.list(keyAdvertise),
			PassConfigThrough:          l.boolean(keyPassConfig),
			AllowReconfig:              l.boolean(keyAllowReconfig),
			ParkIdleAfter:              parkIdleAfter(l.v.Get(keyParkIdleAfter), l.bad),
			RuntimePoller:              l.boolean(keyRuntimePoller),
		},
	}
	cfg.Cutover = cutover.Config{
		Source:             cfg.Proxy.Source,
		Destination:        cfg.Proxy.Destination,
		MaxLag:             int64(l.nonNegInt(keyMaxLag)),
		MoveConcurrency:    l.nonNegInt(keyMoveConcurrency),
		MoveConcurrencyMax: l.nonNegInt(keyMoveConcurrencyMax),
		MovePauseTarget:    l.duration(keyMovePauseTarget),
		MoveTimeout:        l.duration(keyMoveTimeout),
		BarrierMaxHold:     l.duration(keyBarrierMaxHold),
		CheckInterval:      l.duration(keyCheckInterval),
		Store:              cutover.Store{Dir: cfg.DataDir},
	}
	return cfg
}

// checkMembers checks the client listener, the members of both ensembles
// and the local addresses upstream connections leave from.
func (l *configLoader) checkMembers(cfg serveConfig) {
	p := cfg.Proxy
	if err := checkListenAddr(cfg.Listen); err != nil {
		l.bad(keyListen, "%v", err)
	}
	if len(p.Source) == 0 {
		l.bad(keySource, "required: the members of the source ensemble, host:port, comma-separated")
	}
	for key, members := range map[string][]string{keySource: p.Source, keyDestination: p.Destination} {
		for _, m := range members {
			if err := checkMemberAddr(m); err != nil {
				l.bad(key, "%v", err)
			}
		}
	}
	if overlap := intersect(p.Source, p.Destination); len(overlap) > 0 {
		l.bad(keyDestination, "members also in source: %s (the destination must be a different ensemble)", strings.Join(overlap, ", "))
	}
	for _, a := range p.LocalAddrs {
		if _, err := netip.ParseAddr(a); err != nil {
			l.bad(keyLocalAddrs, "%q is not an IP address", a)
		}
	}
}

func (l *configLoader) checkPeers(peers []string) {
	for _, p := range peers {
		if u, err := url.Parse(p); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			l.bad(keyPeers, "%q is not an admin URL (http://host:port)", p)
		}
	}
}

func (l *configLoader) checkAdmin(cfg serveConfig) {
	if cfg.AdminListen == "" {
		return
	}
	if err := checkListenAddr(cfg.AdminListen); err != nil {
		l.bad(keyAdminListen, "%v", err)
	} else if !isLoopbackListen(cfg.AdminListen) && cfg.AdminToken == "" {
		l.bad(keyAdminToken, "required when %s (%s) is not a loopback address: the admin API can move every session", keyAdminListen, cfg.AdminListen)
	}
}

func (l *configLoader) checkLogging(cfg serveConfig) {
	switch cfg.LogFormat {
	case "text", "json":
	default:
		l.bad(keyLogFormat, "must be text or json, got %q", cfg.LogFormat)
	}
	switch strings.ToLower(cfg.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		l.bad(keyLogLevel, "must be debug, info, warn or error, got %q", cfg.LogLevel)
	}
}

// loadTLS reads the certificates of the client and admin listeners and of
// the connections to each ensemble's members, and puts the member policy into
// the proxy's and the cutover checks' configuration.
func (l *configLoader) loadTLS(cfg *serveConfig) {
	var listenerCert, adminCert, sourceCert, destinationCert *certfile.Reloader
	cfg.TLS = listenerTLS(l.str(keyTLSCert), l.str(keyTLSKey), l.str(keyTLSClientCA), &listenerCert, l.bad)
	cfg.AdminTLS = adminTLS(cfg.AdminListen, l.str(keyAdminTLSCert), l.str(keyAdminTLSKey), &adminCert, l.bad)
	src := l.memberTLS(sourceTLSKeys, cfg.Proxy.Source, &sourceCert)
	dst := l.memberTLS(destinationTLSKeys, cfg.Proxy.Destination, &destinationCert)
	cfg.Certs = map[string]*certfile.Reloader{}
	for use, r := range map[string]*certfile.Reloader{"listener": listenerCert, "admin": adminCert, "source": sourceCert, "destination": destinationCert} {
		if r != nil {
			cfg.Certs[use] = r
		}
	}
	if src == nil && dst == nil {
		return
	}
	policy := &membertls.Policy{}
	policy.Add(cfg.Proxy.Source, src)
	policy.Add(cfg.Proxy.Destination, dst)
	cfg.Proxy.MemberTLS = policy
	// The sync checks and the split barrier ask the members four-letter
	// words over the same connections as sessions.
	cfg.Cutover.Members = fourlw.Members{Dial: policy.DialContext}
	cfg.Cutover.Nudge = func(ctx context.Context, addr string) (int64, error) {
		return zksession.OpenClose(ctx, policy.DialContext, addr)
	}
}

// memberTLS reads one ensemble's member TLS keys; nil when TLS is off.
func (l *configLoader) memberTLS(k memberTLSKeys, members []string, cert **certfile.Reloader) *tls.Config {
	on, err := cast.ToBoolE(l.v.Get(k.on))
	if err != nil {
		// The other keys' problems wait until this one is fixed: each
		// would only say it has no effect.
		l.bad(k.on, "not a boolean: %q", fmt.Sprint(l.v.Get(k.on)))
		return nil
	}
	ensemble, _ := strings.CutSuffix(k.on, "-tls")
	if on && len(members) == 0 {
		l.bad(k.on, "has no effect without %s members", ensemble)
		return nil
	}
	return memberTLS(k, on, l.str(k.ca), l.str(k.cert), l.str(k.key), l.str(k.serverName), cert, l.bad)
}

func (l *configLoader) str(key string) string {
	s, err := cast.ToStringE(l.v.Get(key))
	if err != nil {
		l.bad(key, "not a string: %v", err)
	}
	return strings.TrimSpace(s)
}

// list reads a comma-separated list: from a file as a list or one string,
// from the environment as one string, from flags as a list.
func (l *configLoader) list(key string) []string {
	raw := l.v.Get(key)
	if s, ok := raw.(string); ok {
		raw = strings.Split(s, ",") // env values arrive as one string
	}
	items, err := cast.ToStringSliceE(raw)
	if err != nil {
		l.bad(key, "not a list: %v", err)
		return nil
	}
	var out []string
	for _, it := range items {
		for _, part := range strings.Split(it, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
	}
	return out
}

func (l *configLoader) nonNegInt(key string) int {
	return nonNegative(l, key, "an integer", cast.ToIntE)
}

func (l *configLoader) duration(key string) time.Duration {
	return nonNegative(l, key, "a duration (e.g. 10s)", cast.ToDurationE)
}

// nonNegative converts key with convert, reporting a value that is not
// what (e.g. "an integer") or is negative.
func nonNegative[T int | time.Duration](l *configLoader, key, what string, convert func(any) (T, error)) T {
	raw := l.v.Get(key)
	x, err := convert(raw)
	if err != nil {
		l.bad(key, "not %s: %q", what, fmt.Sprint(raw))
		return 0
	}
	if x < 0 {
		l.bad(key, "must not be negative, got %v", x)
	}
	return x
}

func (l *configLoader) boolean(key string) bool {
	b, err := cast.ToBoolE(l.v.Get(key))
	if err != nil {
		l.bad(key, "not a boolean: %q", fmt.Sprint(l.v.Get(key)))
	}
	return b
}

// configError lists every configuration problem, one per line.
type configError struct{ problems []string }

func (e *configError) Error() string {
	return "invalid configuration:\n  " + strings.Join(e.problems, "\n  ")
}

func checkListenAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil && !isHostname(host) {
			return fmt.Errorf("%q: bad host %q", addr, host)
		}
	}
	return checkPort(addr, port, true)
}

func checkMemberAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	if host == "" {
		return fmt.Errorf("%q: missing host", addr)
	}
	if _, err := netip.ParseAddr(host); err != nil && !isHostname(host) {
		return fmt.Errorf("%q: bad host %q", addr, host)
	}
	return checkPort(addr, port, false)
}

func checkPort(addr, port string, zeroOK bool) error {
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 || (n == 0 && !zeroOK) {
		return fmt.Errorf("%q: bad port %q", addr, port)
	}
	return nil
}

// isHostname accepts RFC 1123 host names; anything else in a host position is
// more likely a typo than a name a resolver will find.
func isHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func isLoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// checkDataDir checks, reading only, that dir can hold the cutover phase: if
// it exists it must be a directory; if it does not, serve creates it at start
// (prepareDataDir).
func checkDataDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

// prepareDataDir creates the data directory if needed and proves it is
// writable, so a cutover never discovers at its first phase change that it
// cannot persist. serve calls it before anything listens.
func prepareDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("data-dir %s: cannot create: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".write-check-*")
	if err != nil {
		return fmt.Errorf("data-dir %s: not writable: %w", dir, err)
	}
	name := f.Name()
	return errors.Join(f.Close(), os.Remove(filepath.Clean(name)))
}

func intersect(a, b []string) []string {
	in := make(map[string]bool, len(a))
	for _, x := range a {
		in[x] = true
	}
	var out []string
	for _, y := range b {
		if in[y] {
			out = append(out, y)
		}
	}
	return out
}

// parkIdleAfter converts park-idle-after: a positive duration, or off
// (proxy.Config's negative: never park).
func parkIdleAfter(raw any, bad func(key, format string, args ...any)) time.Duration {
	if s, ok := raw.(string); ok && strings.EqualFold(strings.TrimSpace(s), "off") {
		return -1
	}
	d, err := cast.ToDurationE(raw)
	switch {
	case err != nil:
		bad(keyParkIdleAfter, "not a duration or off: %q", fmt.Sprint(raw))
	case d <= 0:
		bad(keyParkIdleAfter, "must be positive (or off), got %s", d)
	}
	return d
}
