package admin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// TestPeerSessions: the peers' /sessions needs their shared admin token.
func TestPeerSessions(t *testing.T) {
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/sessions" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer t0ken" {
			WriteError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		w.Write([]byte(`{"sessions":[{"id":"0x0000000000000200"},{"id":"0x0100000cba5ca0002"}],"count":2}`))
	}))
	defer peer.Close()
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"sessions":[{"id":"zz"}]}`))
	}))
	defer broken.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()

	ids, problems := PeerSessions([]string{peer.URL + "/"}, "t0ken", nil)(context.Background())
	if !slices.Equal(ids, []int64{0x200, 0x100000cba5ca0002}) || len(problems) != 0 {
		t.Fatalf("ids %x, problems %q", ids, problems)
	}
	ids, problems = PeerSessions([]string{peer.URL, broken.URL, down.URL}, "t0ken", nil)(context.Background())
	if len(ids) != 2 || len(problems) != 2 || !strings.Contains(problems[0], `session id "zz"`) || !strings.Contains(problems[1], "peer "+down.URL) {
		t.Fatalf("ids %x, problems %q", ids, problems)
	}
	ids, problems = PeerSessions([]string{peer.URL}, "", nil)(context.Background())
	if len(ids) != 0 || len(problems) != 1 || !strings.Contains(problems[0], "401") {
		t.Fatalf("without the token: ids %x, problems %q", ids, problems)
	}
}
