package admin

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/zkproxy/zkproxy/cutover/proxyadapter"
	"github.com/zkproxy/zkproxy/proxy"
)

// SessionRow is one line of GET /sessions.
type SessionRow struct {
	ID          string  `json:"id"`
	ClientAddr  string  `json:"client_addr"`
	Member      string  `json:"member"`
	Ensemble    string  `json:"ensemble"`
	State       string  `json:"state"`
	Watches     int     `json:"watches"`
	Outstanding int     `json:"outstanding"`
	Held        int     `json:"held"`
	LastZxid    string  `json:"last_zxid"`
	TimeoutMS   int64   `json:"timeout_ms"`
	SASL        bool    `json:"sasl,omitempty"`
	AgeSeconds  float64 `json:"age_seconds"`
}

// Rows lists srv's sessions, oldest first.
func Rows(srv *proxy.Server, destination []string) []SessionRow {
	now := time.Now()
	var rows []SessionRow
	for _, s := range srv.Sessions() {
		info := s.Info()
		rows = append(rows, SessionRow{
			ID: fmt.Sprintf("0x%016x", uint64(info.ID)), ClientAddr: info.ClientAddr, Member: info.Member,
			Ensemble: string(proxyadapter.EnsembleOf(destination, info.Ensemble)), State: info.State.String(), Watches: info.Watches,
			Outstanding: info.Outstanding, Held: info.Held, LastZxid: fmt.Sprintf("0x%x", int64(info.LastZxid)),
			TimeoutMS: info.Timeout.Milliseconds(), SASL: info.UsedSASL, AgeSeconds: now.Sub(info.Created).Seconds(),
		})
	}
	slices.SortStableFunc(rows, func(a, b SessionRow) int { return cmp.Compare(b.AgeSeconds, a.AgeSeconds) })
	return rows
}

// RegisterSessions serves GET /sessions on h, behind the token: each row's
// id is the session's credential (see the package comment).
func RegisterSessions(h *Handler, srv *proxy.Server, destination []string) {
	h.Handle("GET /sessions", func(w http.ResponseWriter, _ *http.Request) {
		rows := Rows(srv, destination)
		if rows == nil {
			rows = []SessionRow{}
		}
		WriteJSON(w, http.StatusOK, map[string]any{"sessions": rows, "count": len(rows)})
	})
}
