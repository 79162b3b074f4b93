// Package proxyadapter presents the proxy's sessions to the cutover
// controller (cutover.Proxy and cutover.Session), so that neither package
// imports the other.
package proxyadapter

import (
	"context"
	"slices"
	"time"

	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/proxy"
)

// New presents srv, whose destination ensemble is destination, to the
// cutover controller.
func New(srv *proxy.Server, destination []string) cutover.Proxy {
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

// EnsembleOf names the ensemble a session's member list
// (proxy.SessionInfo.Ensemble) belongs to, given the destination's members.
func EnsembleOf(destination, members []string) cutover.Ensemble {
	for _, m := range members {
		if slices.Contains(destination, m) {
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
		Ensemble: EnsembleOf(s.p.destination, info.Ensemble), Member: info.Member,
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

// LastMoveAttach feeds the cutover's adaptive concurrency (cutover.MoveTimer).
func (s *session) LastMoveAttach() time.Duration { return s.s.LastMoveAttach() }

// The proxy's move errors carry the reason labels cutover counts.
var _ cutover.MoveError = (*proxy.MoveError)(nil)
