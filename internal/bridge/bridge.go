// Package bridge connects the proxy to the packages that drive it without
// those packages importing each other: it presents proxy sessions as
// cutover.Session and serves the session listing of the admin API.
package bridge

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/zkproxy/zkproxy/admin"
	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/proxy"
)

// Cutover presents srv to the cutover controller.
func Cutover(srv *proxy.Server, destination []string) cutover.Proxy {
	return &cutoverProxy{srv: srv, destination: destination}
}

type cutoverProxy struct {
	srv         *proxy.Server
	destination []string
}

func (p *cutoverProxy) SetTarget(members []string) { p.srv.SetTarget(members) }

func (p *cutoverProxy) Sessions() []cutover.Session {
	all := p.srv.Sessions()
	out := make([]cutover.Session, 0, len(all))
	for _, s := range all {
		out = append(out, &session{s: s, p: p})
	}
	return out
}

// ensembleOf names the ensemble a session's member list belongs to.
func (p *cutoverProxy) ensembleOf(members []string) cutover.Ensemble {
	for _, m := range members {
		if slices.Contains(p.destination, m) {
			return cutover.Destination
		}
	}
	return cutover.Source
}

type session struct {
	s *proxy.Session
	p *cutoverProxy
}

func (s *session) View() cutover.SessionView {
	info := s.s.Info()
	return cutover.SessionView{
		ID: int64(info.ID), LastZxidSeen: int64(info.LastZxid), SASL: info.UsedSASL,
		Ensemble: s.p.ensembleOf(info.Ensemble), Member: info.Member,
		Attaches: info.Attaches, Active: info.State == proxy.StateActive,
	}
}

func (s *session) Hold(ctx context.Context) error { return s.s.Hold(ctx) }
func (s *session) Release()                       { s.s.Release() }

// Move returns the proxy's *proxy.MoveError as is: it implements
// cutover.MoveError with a bounded reason label.
func (s *session) Move(ctx context.Context, members []string) error {
	return s.s.Move(ctx, members)
}

func (s *session) Disconnect(ctx context.Context, reason string) { s.s.Disconnect(ctx, reason) }

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
	p := &cutoverProxy{srv: srv, destination: destination}
	now := time.Now()
	var rows []SessionRow
	for _, s := range srv.Sessions() {
		info := s.Info()
		rows = append(rows, SessionRow{
			ID: fmt.Sprintf("0x%016x", uint64(info.ID)), ClientAddr: info.ClientAddr, Member: info.Member,
			Ensemble: string(p.ensembleOf(info.Ensemble)), State: info.State.String(), Watches: info.Watches,
			Outstanding: info.Outstanding, Held: info.Held, LastZxid: fmt.Sprintf("0x%x", int64(info.LastZxid)),
			TimeoutMS: info.Timeout.Milliseconds(), SASL: info.UsedSASL, AgeSeconds: now.Sub(info.Created).Seconds(),
		})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].AgeSeconds > rows[j].AgeSeconds })
	return rows
}

// RegisterSessions serves GET /sessions on h.
func RegisterSessions(h *admin.Handler, srv *proxy.Server, destination []string) {
	h.Handle("GET /sessions", func(w http.ResponseWriter, _ *http.Request) {
		rows := Rows(srv, destination)
		if rows == nil {
			rows = []SessionRow{}
		}
		admin.WriteJSON(w, http.StatusOK, map[string]any{"sessions": rows, "count": len(rows)})
	})
}

// The proxy's move errors carry the reason labels cutover counts.
var _ cutover.MoveError = (*proxy.MoveError)(nil)
