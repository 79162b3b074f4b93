// Package admin is zkproxy's operator HTTP API, all of it: Prometheus
// metrics, liveness and readiness, optional pprof, the cutover routes
// (RegisterCutover), the session list (RegisterSessions), the status report
// (RegisterStatus), and the client that asks peer zkproxies for their
// sessions (PeerSessions).
//
// A session id is a credential: ZooKeeper derives a session's password from
// its id and a constant (ZooKeeperServer.generatePasswd seeds
// java.util.Random with id ^ 0xB3415C00; docs/protocol.md §2.4), so
// whoever reads an id can connect to a member as that session. Every route that shows one — and
// every route that changes zkproxy's state — requires the bearer token when
// one is configured; only health, readiness, metrics and the phase are
// open (HandlePublic). Without a token the listener must be loopback, which
// cmd/zkproxy enforces.
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options configures a Handler. The zero value serves /healthz only.
type Options struct {
	// Gatherer is scraped by /metrics; nil disables the route.
	Gatherer prometheus.Gatherer
	// Ready reports whether zkproxy can reach a member of its target
	// ensemble; nil makes /readyz always ready.
	Ready func(ctx context.Context) error
	// ReadyTimeout bounds one readiness probe; zero means 2s.
	ReadyTimeout time.Duration
	// Pprof serves /debug/pprof/ when true.
	Pprof bool
	// Token, when not empty, must be presented as "Authorization: Bearer
	// <Token>" on every route but the public ones (HandlePublic).
	Token string
	// Logger receives one audit line per mutating call; nil discards.
	Logger *slog.Logger
}

// Handler is the admin HTTP handler. Routes are registered with Handle,
// HandleMutating and HandlePublic before the handler serves its first
// request.
type Handler struct {
	mux  *http.ServeMux
	opts Options
}

// NewHandler returns a Handler with /healthz, /readyz, and, as configured,
// /metrics and /debug/pprof/ (behind the token: its command line shows
// every flag).
func NewHandler(opts Options) *Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 2 * time.Second
	}
	h := &Handler{mux: http.NewServeMux(), opts: opts}
	h.HandlePublic("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	h.HandlePublic("GET /readyz", h.readyz)
	if opts.Gatherer != nil {
		// Metrics never carry a session id or a znode path as a label.
		h.mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	}
	if opts.Pprof {
		h.Handle("/debug/pprof/", pprof.Index)
		h.Handle("/debug/pprof/cmdline", pprof.Cmdline)
		h.Handle("/debug/pprof/profile", pprof.Profile)
		h.Handle("/debug/pprof/symbol", pprof.Symbol)
		h.Handle("/debug/pprof/trace", pprof.Trace)
	}
	return h
}

// Handle registers a read-only route that needs the token when one is
// configured: the default, for anything that shows a session id (GET
// /sessions, /status, /cutover/check) or could.
func (h *Handler) Handle(pattern string, fn http.HandlerFunc) {
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if h.refuse(w, r) {
			return
		}
		fn(w, r)
	})
}

// HandlePublic registers a read-only route anyone who reaches the listener
// may call, for probes and dashboards: it must show no session id.
func (h *Handler) HandlePublic(pattern string, fn http.HandlerFunc) {
	h.mux.HandleFunc(pattern, fn)
}

// HandleMutating registers a route that changes zkproxy's state: it checks
// the bearer token (when one is configured) and writes an audit log line.
func (h *Handler) HandleMutating(pattern string, fn http.HandlerFunc) {
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if h.refuse(w, r) {
			return
		}
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		fn(rec, r)
		h.opts.Logger.Info("admin call", "audit", true, "method", r.Method, "path", r.URL.Path,
			"query", r.URL.RawQuery, "remote", r.RemoteAddr, "status", rec.status)
	})
}

// refuse answers 401 and writes an audit line when r lacks the token.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request) bool {
	if h.authorized(r) {
		return false
	}
	h.opts.Logger.Warn("admin call refused", "audit", true, "method", r.Method, "path", r.URL.Path,
		"query", r.URL.RawQuery, "remote", r.RemoteAddr, "reason", "missing or wrong bearer token")
	w.Header().Set("WWW-Authenticate", `Bearer realm="zkproxy"`)
	WriteError(w, http.StatusUnauthorized, "missing or wrong bearer token")
	return true
}

func (h *Handler) authorized(r *http.Request) bool {
	if h.opts.Token == "" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(h.opts.Token)) == 1
}

func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	if h.opts.Ready == nil {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.ReadyTimeout)
	defer cancel()
	if err := h.opts.Ready(ctx); err != nil {
		WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "error": err.Error()})
		return
	}
	WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// WriteJSON writes v as indented JSON with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client hung up; nothing useful to do
}

// WriteError writes {"error": msg} with the given status.
func WriteError(w http.ResponseWriter, status int, msg string) {
	WriteJSON(w, status, map[string]string{"error": msg})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}
