package admin

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/cutover/proxyadapter"
	"github.com/zkproxy/zkproxy/proxy"
)

// TestSessionIDRoutesNeedTheToken: with admin-token set, every route that
// shows a session id (or the process's command line) answers 401 without
// it; only probes, metrics and the phase stay open.
func TestSessionIDRoutesNeedTheToken(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	source := []string{"127.0.0.1:1"} // nothing listens: no member is needed
	p, err := proxy.New(proxy.Config{Source: source}, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	ctl, err := cutover.NewController(cutover.Config{Source: source, Store: cutover.Store{Dir: t.TempDir()}},
		proxyadapter.New(p, nil), log, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ctl.Close)
	h := NewHandler(Options{Token: "t0ken", Gatherer: reg, Pprof: true, Logger: log})
	RegisterCutover(h, ctl)
	RegisterSessions(h, p, nil)
	RegisterStatus(h, NewStatus(StatusConfig{Source: source}, p, ctl))

	for _, tc := range []struct {
		method, path string
		open         bool
	}{
		{"GET", "/healthz", true},
		{"GET", "/readyz", true}, // 503 here: no member serves
		{"GET", "/metrics", true},
		{"GET", "/cutover", true},
		{"GET", "/sessions", false},
		{"GET", "/status", false},
		{"GET", "/cutover/check", false},
		{"GET", "/debug/pprof/cmdline", false},
		{"POST", "/cutover/start", false},
		{"POST", "/hold", false},
	} {
		t.Run(tc.method+tc.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			if refused := rec.Code == http.StatusUnauthorized; refused == tc.open {
				t.Fatalf("without the token: %d %s", rec.Code, rec.Body)
			}
			if tc.open || tc.method != "GET" {
				return
			}
			rec = httptest.NewRecorder()
			req := httptest.NewRequest(tc.method, tc.path, nil)
			req.Header.Set("Authorization", "Bearer t0ken")
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				t.Fatalf("with the token: %d %s", rec.Code, rec.Body)
			}
		})
	}
}

// TestRefusalsAnswer409: every refusal the operator resolves is a 409, not
// a 500.
func TestRefusalsAnswer409(t *testing.T) {
	for _, err := range []error{
		&cutover.TransitionError{Event: cutover.EventSplit, Reason: "x"},
		fmt.Errorf("%w: x", cutover.ErrNotReady),
		fmt.Errorf("%w (d5)", cutover.ErrLeaderOnDestination),
		fmt.Errorf("%w: 2 sessions", cutover.ErrPeersOnSource),
		cutover.ErrHoldUp,
		fmt.Errorf("%w (phase cutting_over)", cutover.ErrMoveRunning),
	} {
		if code := conflictOr500(err); code != http.StatusConflict {
			t.Errorf("%v: %d, want 409", err, code)
		}
	}
	if code := conflictOr500(errors.New("cutover: saving state: disk full")); code != http.StatusInternalServerError {
		t.Errorf("a failure of zkproxy's own: %d, want 500", code)
	}
}
