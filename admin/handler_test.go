package admin

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMutatingRoutesNeedTheToken(t *testing.T) {
	var logs bytes.Buffer
	h := NewHandler(Options{Token: "s3cret", Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	calls := 0
	h.HandleMutating("POST /cutover/start", func(w http.ResponseWriter, _ *http.Request) {
		calls++
		WriteJSON(w, http.StatusAccepted, map[string]string{"phase": "cutting_over"})
	})

	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"no header", "", http.StatusUnauthorized},
		{"wrong token", "Bearer nope", http.StatusUnauthorized},
		{"not bearer", "Basic czNjcmV0", http.StatusUnauthorized},
		{"right token", "Bearer s3cret", http.StatusAccepted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", "/cutover/start?force=true", nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d (body %s)", rec.Code, tc.want, rec.Body)
			}
		})
	}
	if calls != 1 {
		t.Fatalf("handler ran %d times, want 1", calls)
	}
	// One audit line per call, refused ones included, each naming the route.
	if n := strings.Count(logs.String(), `"audit":true`); n != 4 {
		t.Fatalf("audit lines = %d, want 4:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), `"status":202`) || !strings.Contains(logs.String(), `"query":"force=true"`) {
		t.Fatalf("audit log lacks status or query:\n%s", logs.String())
	}
}

func TestNoTokenMeansOpen(t *testing.T) {
	h := NewHandler(Options{})
	h.HandleMutating("POST /x", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/x", nil))
	if rec.Code != http.StatusNoContent {
		t.Fatalf("status %d, want 204", rec.Code)
	}
}

func TestReadyz(t *testing.T) {
	var readyErr error
	h := NewHandler(Options{Ready: func(ctx context.Context) error { return readyErr }})
	get := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec
	}
	if rec := get(); rec.Code != http.StatusOK {
		t.Fatalf("ready: status %d", rec.Code)
	}
	readyErr = errors.New("no member of source reachable")
	rec := get()
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "no member of source reachable") {
		t.Fatalf("not ready: status %d body %s", rec.Code, rec.Body)
	}
}

func TestMetricsAndPprofAreOptIn(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "zkproxy_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Inc()

	for _, tc := range []struct {
		opts           Options
		metrics, pprof int
	}{
		{Options{}, http.StatusNotFound, http.StatusNotFound},
		{Options{Gatherer: reg, Pprof: true}, http.StatusOK, http.StatusOK},
	} {
		h := NewHandler(tc.opts)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if rec.Code != tc.metrics {
			t.Fatalf("/metrics status %d, want %d", rec.Code, tc.metrics)
		}
		if tc.metrics == http.StatusOK && !strings.Contains(rec.Body.String(), "zkproxy_test_total 1") {
			t.Fatalf("/metrics lacks the counter:\n%s", rec.Body)
		}
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/", nil))
		if rec.Code != tc.pprof {
			t.Fatalf("/debug/pprof/ status %d, want %d", rec.Code, tc.pprof)
		}
	}
}
