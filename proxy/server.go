package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("proxy: server closed")

// Server accepts ZooKeeper clients and proxies their sessions. Create it
// with New; its methods are safe for concurrent use.
type Server struct {
	cfg      Config
	log      *slog.Logger
	warnings *logLimiter // repeated warnings (warnRepeated)
	m        *metrics

	target     atomic.Pointer[[]string]
	advertised atomic.Pointer[[]string] // see advertise
	members    memberHealth
	dialSeq    atomic.Uint64

	// released: HandOver closed the listeners for the new process; Serve
	// returns ErrListenerReleased.
	released atomic.Bool

	mu        sync.Mutex
	closing   bool
	listeners map[net.Listener]struct{}
	conns     map[*Session]struct{} // every accepted client connection
	byID      map[int64]*Session    // established sessions by session id
	wg        sync.WaitGroup        // pumps of connections, parked or running
	done      chan struct{}         // closed when closing starts

	parkerOnce sync.Once
	parker     atomic.Pointer[parker] // set by the first park
	idle       idleSweep              // tells idle running pumps to park
}

// New returns a Server for cfg. log receives structured logs (nil discards)
// and reg the metrics (nil registers nothing).
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if cfg.MaxClientConns == 0 {
		nofile, ok := openFilesLimit()
		log.Info("max-client-conns derived from the open-files limit",
			"max_client_conns", DefaultMaxClientConns(nofile, ok), "open_files_limit", nofile, "limit_known", ok,
			"formula", "(limit - min(256, limit/4)) / 2")
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:       cfg,
		log:       log,
		warnings:  newLogLimiter(repeatedWarningInterval),
		m:         newMetrics(reg),
		listeners: map[net.Listener]struct{}{},
		conns:     map[*Session]struct{}{},
		byID:      map[int64]*Session{},
		done:      make(chan struct{}),
	}
	s.members.backoff = cfg.MemberBackoff
	s.SetTarget(cfg.Source)
	return s, nil
}

// SetTarget makes members (host:port) the ensemble new client connections
// are forwarded to. Established sessions stay where they are until moved
// (Session.Move); a session that fails over re-attaches inside the
// ensemble it is on. Cutover calls this when it starts moving sessions.
func (s *Server) SetTarget(members []string) {
	m := slices.Clone(members)
	s.target.Store(&m)
}

// Target returns the members new client connections are forwarded to.
func (s *Server) Target() []string {
	return slices.Clone(*s.target.Load())
}

// Serve accepts client connections on ln until Shutdown or Close, which
// make it return ErrServerClosed. Serve closes ln when it returns.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	s.deriveAdvertise(ln.Addr())
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()

	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return ErrServerClosed
			default:
			}
			if s.released.Load() {
				return ErrListenerReleased
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTooManyFiles) {
				// Out of file descriptors or a transient error: back off
				// like net/http.Server instead of spinning.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.warnRepeated("accept_failed", "accept failed; retrying", "err", err, "backoff", backoff)
				select {
				case <-time.After(backoff):
				case <-s.done:
					return ErrServerClosed
				}
				continue
			}
			return fmt.Errorf("proxy: accept on %s: %w", ln.Addr(), err)
		}
		backoff = 0
		s.m.connectionsAccepted.Inc()
		s.accept(conn)
	}
}

// accept registers conn and starts its session goroutine, or rejects it.
func (s *Server) accept(conn net.Conn) {
	conn = s.ownConn(conn)
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		s.m.connectionsRejected.WithLabelValues("shutting_down").Inc()
		conn.Close()
		return
	}
	if len(s.conns) >= s.cfg.MaxClientConns {
		s.mu.Unlock()
		// ZooKeeper rejects a connection over maxClientCnxns by closing it
		// (NIOServerCnxnFactory.AcceptThread.doAccept); do the same.
		s.m.connectionsRejected.WithLabelValues("max_client_conns").Inc()
		s.warnRepeated("max_client_conns", "client connection rejected: max-client-conns reached",
			"client", conn.RemoteAddr().String(), "limit", s.cfg.MaxClientConns)
		conn.Close()
		return
	}
	sess := newSession(s, conn)
	s.conns[sess] = struct{}{}
	s.m.connections.Add(1)
	s.m.clientConnections.Inc()
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		if !sess.handshakeOrClose() {
			s.forget(sess)
			s.wg.Done()
			return
		}
		// The client loop gets a fresh goroutine: the handshake (dialing,
		// decoding) grows a stack that an idle session would otherwise
		// keep for its lifetime.
		go sess.pumpClient(time.Now())
	}()
}

// forget drops a finished connection from the server's tables.
func (s *Server) forget(sess *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[sess]; ok {
		s.m.connections.Add(-1)
		s.m.clientConnections.Dec()
	}
	delete(s.conns, sess)
	if sess.id != 0 && s.byID[int64(sess.id)] == sess {
		delete(s.byID, int64(sess.id))
	}
}

// claim registers sess as the holder of its session id and returns the
// session that held it before, if any. A member closes every other
// connection of a session when a ConnectRequest for it arrives
// (ZooKeeperServer.processConnectRequest → closeSession(CLIENT_RECONNECT));
// the proxy mirrors that, because an old proxy session that later
// re-attached would in turn kill the new client's connection.
func (s *Server) claim(sess *Session) *Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.byID[int64(sess.id)]
	s.byID[int64(sess.id)] = sess
	if old == sess {
		return nil
	}
	return old
}

// ensembleKind classifies members for the zkproxy_sessions ensemble label:
// the configured source or destination ensemble (every member in it), or
// other (a target set through SetTarget that is neither).
func (s *Server) ensembleKind(members []string) uint8 {
	within := func(set []string) bool {
		if len(members) == 0 || len(set) == 0 {
			return false
		}
		for _, m := range members {
			if !slices.Contains(set, m) {
				return false
			}
		}
		return true
	}
	switch {
	case within(s.cfg.Source):
		return 0
	case within(s.cfg.Destination):
		return 1
	}
	return 2
}

// Sessions returns the established sessions, for cutover and the admin API.
func (s *Server) Sessions() []*Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Session, 0, len(s.byID))
	for _, sess := range s.byID {
		out = append(out, sess)
	}
	slices.SortFunc(out, func(a, b *Session) int { return a.created.Compare(b.created) })
	return out
}

// Shutdown stops accepting, lets every session finish its in-flight
// requests (new requests are no longer forwarded), then closes the client
// connections without ending their ZooKeeper sessions, so clients reconnect
// elsewhere and keep them. If ctx ends first, Shutdown closes everything at
// once and returns ctx's error. Calling it again is harmless.
func (s *Server) Shutdown(ctx context.Context) error {
	sessions := s.beginClosing()
	for _, sess := range sessions {
		go sess.drainAndClose(ctx, closeShutdown, "proxy shutting down")
	}
	finished := make(chan struct{})
	go func() {
		s.wg.Wait()
		s.stopParker()
		close(finished)
	}()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		s.Close()
		return fmt.Errorf("proxy: shutdown: %w", ctx.Err())
	}
}

// Close closes the listeners and every connection at once and waits for
// the session goroutines to end. Calling it again is harmless.
func (s *Server) Close() error {
	sessions := s.beginClosing()
	for _, sess := range sessions {
		sess.close(closeShutdown, "proxy closed")
	}
	s.wg.Wait()
	s.stopParker()
	return nil
}

// beginClosing stops accepting and returns the connections open now.
func (s *Server) beginClosing() []*Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closing {
		s.closing = true
		close(s.done)
	}
	for ln := range s.listeners {
		ln.Close()
	}
	out := make([]*Session, 0, len(s.conns))
	for sess := range s.conns {
		out = append(out, sess)
	}
	return out
}

// memberHealth remembers members that recently refused or dropped a
// connection, so they are tried after the others.
type memberHealth struct {
	backoff time.Duration
	mu      sync.Mutex
	failed  map[string]time.Time
}

func (h *memberHealth) markFailed(member string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failed == nil {
		h.failed = map[string]time.Time{}
	}
	h.failed[member] = time.Now()
}

func (h *memberHealth) markOK(member string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.failed, member)
}

// order returns members shuffled, the ones that failed within the backoff
// last (they are still tried: a whole ensemble may have restarted).
func (h *memberHealth) order(members []string) []string {
	out := slices.Clone(members)
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	recent := func(m string) bool {
		t, ok := h.failed[m]
		return ok && now.Sub(t) < h.backoff
	}
	slices.SortStableFunc(out, func(a, b string) int {
		ra, rb := recent(a), recent(b)
		switch {
		case ra == rb:
			return 0
		case rb:
			return -1
		}
		return 1
	})
	return out
}
