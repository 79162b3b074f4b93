package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/zkproxy/zkproxy/admin"
	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/fleet"
)

const (
	keyFleet           = "fleet"
	keyFleetPath       = "fleet-path"
	keyFleetAuth       = "fleet-auth"
	keyFleetStaleAfter = "fleet-stale-after"
)

// fleetConfig is the fleet part of serveConfig; Name empty: no fleet.
type fleetConfig struct {
	Name       string
	Path       string
	Auth       string
	StaleAfter time.Duration
}

func bindFleetFlags(fs *pflag.FlagSet) {
	fs.String(keyFleet, "", "fleet name: the replicas of one fleet share the cutover state in a znode of the ensembles (docs/fleet.md); empty: a single zkproxy with its state in data-dir")
	fs.String(keyFleetPath, "", "znode under which the fleet keeps its state and member znodes (default /zkproxy/<fleet>)")
	fs.String(keyFleetAuth, "", "user:password: the fleet's znodes get a digest ACL (world read, this user all) and the replicas authenticate as it; empty: world-writable znodes")
	fs.Duration(keyFleetStaleAfter, 10*time.Second, "a replica that has not read the fleet state for this long reports not ready (/readyz 503); it keeps serving its sessions")
}

// loadFleet reads and checks the fleet keys.
func (l *configLoader) loadFleet(cfg *serveConfig) {
	f := fleetConfig{Name: l.str(keyFleet), Path: l.str(keyFleetPath), Auth: l.str(keyFleetAuth), StaleAfter: l.duration(keyFleetStaleAfter)}
	if f.Name == "" {
		for _, k := range []string{keyFleetPath, keyFleetAuth} {
			if l.str(k) != "" {
				l.bad(k, "has no effect without %s", keyFleet)
			}
		}
		return
	}
	if f.Name == "." || f.Name == ".." || strings.ContainsAny(f.Name, "/ \t") {
		l.bad(keyFleet, "%q is not a znode name (no '/', no spaces, not . or ..)", f.Name)
	}
	if f.Path == "" {
		f.Path = "/zkproxy/" + f.Name
	}
	if !strings.HasPrefix(f.Path, "/") || strings.HasSuffix(f.Path, "/") || strings.Contains(f.Path, "//") ||
		f.Path == "/zookeeper" || strings.HasPrefix(f.Path, "/zookeeper/") {
		l.bad(keyFleetPath, "%q is not an absolute znode path outside /zookeeper", f.Path)
	}
	if f.Auth != "" {
		if user, pass, ok := strings.Cut(f.Auth, ":"); !ok || user == "" || pass == "" {
			l.bad(keyFleetAuth, "must be user:password")
		}
	}
	if f.StaleAfter <= 0 {
		l.bad(keyFleetStaleAfter, "must be positive")
	}
	// Fleet membership (the member znodes) replaces peers: every replica
	// finds the others' admin URLs there (docs/fleet.md).
	if len(l.list(keyPeers)) > 0 {
		l.bad(keyPeers, "not with %s: the replicas of a fleet find each other through their member znodes; remove peers", keyFleet)
	}
	cfg.Fleet = f
}

// replicaID names this replica in the fleet: the client listen address, with
// the host name when it listens on every interface (a pod's name in a
// StatefulSet); unique as long as one host runs each address once.
func replicaID(listen string) string {
	host, port, _ := net.SplitHostPort(listen)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		name, err := os.Hostname()
		if err != nil || name == "" {
			name = "zkproxy"
		}
		host = name
	}
	return net.JoinHostPort(host, port)
}

// adminURL is how the other replicas reach this one's admin API.
func adminURL(cfg serveConfig) string {
	if cfg.AdminListen == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(cfg.AdminListen)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host, _ = os.Hostname()
	}
	scheme := "http"
	if cfg.AdminTLS != nil {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// openFleet joins the fleet. Its connections to the members use the same
// TLS as sessions do.
func openFleet(cfg serveConfig, sessions func() fleet.SessionCounts, reg prometheus.Registerer, log *slog.Logger) (*fleet.Fleet, error) {
	var dial func(network, address string, timeout time.Duration) (net.Conn, error)
	if policy := cfg.Proxy.MemberTLS; policy.Enabled() {
		dial = func(network, address string, timeout time.Duration) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			return policy.DialContext(ctx, network, address)
		}
	}
	return fleet.Open(fleet.Config{
		Name: cfg.Fleet.Name, ReplicaID: replicaID(cfg.Listen), AdminURL: adminURL(cfg), Version: version,
		StaleAfter: cfg.Fleet.StaleAfter, Sessions: sessions, Metrics: fleet.NewMetrics(reg),
		Store: fleet.StoreConfig{Path: cfg.Fleet.Path, Source: cfg.Proxy.Source, Destination: cfg.Proxy.Destination, Auth: cfg.Fleet.Auth, Dial: dial},
	}, log)
}

// fleetPeerSessions asks the other live replicas (their admin URLs from the
// member znodes) for their sessions, as peers did.
func fleetPeerSessions(f **fleet.Fleet, self, token string) func(context.Context) ([]int64, []string) {
	return func(ctx context.Context) ([]int64, []string) {
		if *f == nil {
			return nil, nil
		}
		var urls []string
		for _, m := range (*f).Status(ctx).Live {
			if m.AdminURL != "" && m.AdminURL != self {
				urls = append(urls, m.AdminURL)
			}
		}
		if len(urls) == 0 {
			return nil, nil
		}
		return admin.PeerSessions(urls, token, nil)(ctx)
	}
}

// bootstrapFleet reads the fleet state before the replica accepts any
// client (fleet.Bootstrap). While no ensemble answers and the data-dir has
// no state, it accepts nobody and says why: in the log and on /readyz of a
// stand-in admin listener (503 with the reason), until a read succeeds or
// ctx ends.
func bootstrapFleet(ctx context.Context, cfg serveConfig, f *fleet.Fleet, log *slog.Logger) error {
	first, cancel := context.WithTimeout(ctx, cfg.Fleet.StaleAfter)
	err := f.Bootstrap(first, cutover.Store{Dir: cfg.DataDir})
	cancel()
	if err == nil {
		return nil
	}
	log.Error("fleet: accepting no client until the fleet state is read", "znode", f.Store().StatePath(), "err", err)
	var standIn *http.Server
	if cfg.AdminListen != "" {
		if ln, lerr := net.Listen("tcp", cfg.AdminListen); lerr == nil {
			h := admin.NewHandler(admin.Options{Ready: func(context.Context) error {
				return fmt.Errorf("accepting no client until the fleet state is read: %w", err)
			}, Token: cfg.AdminToken, Logger: log})
			standIn = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
			go func() { _ = standIn.Serve(ln) }()
		}
	}
	defer func() {
		if standIn != nil {
			_ = standIn.Close()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("fleet: %w", err)
		case <-time.After(time.Second):
		}
		attempt, cancel := context.WithTimeout(ctx, cfg.Fleet.StaleAfter)
		err = f.Bootstrap(attempt, cutover.Store{Dir: cfg.DataDir})
		cancel()
		if err == nil {
			log.Info("fleet: state read; accepting clients")
			return nil
		}
		var fe *fleet.FormatError
		if !errors.As(err, &fe) && !errors.Is(err, fleet.ErrNoAnswer) {
			log.Warn("fleet: reading the state", "err", err)
		}
	}
}

// startFleet joins the fleet when one is configured (nil otherwise) and
// bootstraps the data-dir from the fleet state; the sync check then asks
// the other live replicas for their sessions, as peers did.
func startFleet(ctx context.Context, cfg *serveConfig, adapter cutover.Proxy, reg prometheus.Registerer, log *slog.Logger) (*fleet.Fleet, error) {
	if cfg.Fleet.Name == "" {
		return nil, nil
	}
	sessions := func() fleet.SessionCounts {
		var c fleet.SessionCounts
		for _, s := range adapter.Sessions() {
			if s.View().Ensemble == cutover.Destination {
				c.Destination++
			} else {
				c.Source++
			}
		}
		return c
	}
	fl, err := openFleet(*cfg, sessions, reg, log)
	if err != nil {
		return nil, fmt.Errorf("joining fleet %s: %w", cfg.Fleet.Name, err)
	}
	if err := bootstrapFleet(ctx, *cfg, fl, log); err != nil {
		fl.Close()
		return nil, err
	}
	cfg.Cutover.PeerSessions = fleetPeerSessions(&fl, adminURL(*cfg), cfg.AdminToken)
	cfg.Cutover.IgnoreSessions = fl.IgnoredSessions
	log.Info("fleet: joined", "fleet", cfg.Fleet.Name, "path", cfg.Fleet.Path, "replica", replicaID(cfg.Listen), "acl", cfg.Fleet.Auth != "")
	return fl, nil
}

// fleetSessions is the fleet part of GET /sessions.
type fleetSessions struct {
	Replicas []fleet.Member `json:"replicas"`
	Vanished []string       `json:"vanished"`
	Totals   fleet.Totals   `json:"totals"`
}

// printFleetStatus is `zkproxy cutover status` on a replica of a fleet:
// the fleet state, each replica's progress, the totals, then this
// replica's own status.
func printFleetStatus(w io.Writer, v any) {
	st := v.(*admin.FleetStatus)
	f := st.Fleet
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "fleet\t%s (state %s, read from the %s ensemble)\n", f.Name, f.StateZnode, f.Ensemble)
	fmt.Fprintf(tw, "fleet phase\t%s, split %t, epoch %d (%s by %s at %s)\n", f.State.Phase, f.State.Split, f.State.Epoch,
		f.State.Action, f.State.ChangedBy, f.State.ChangedAt.Format(time.RFC3339))
	if f.ReadError != "" {
		fmt.Fprintf(tw, "fleet state read error\t%s\n", f.ReadError)
	}
	tw.Flush()
	printReplicas(w, f.Live, f.Vanished, f.Totals)
	fmt.Fprintf(w, "\nthis replica (%s):\n", f.Replica)
	printStatus(w, &st.Status)
}

func printReplicas(w io.Writer, live []fleet.Member, vanished []string, t fleet.Totals) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPLICA\tPHASE\tEPOCH\tON SOURCE\tON DESTINATION\tMOVED\tFAILED\tPENDING\tBARRIER\tREADY")
	for _, m := range live {
		barrier := "-"
		if m.BarrierUp {
			barrier = fmt.Sprintf("up (%d held)", m.Held)
		}
		ready := "yes"
		if !m.Ready {
			ready = "no: " + m.NotReady
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", m.ID, m.Phase, m.AppliedEpoch, m.Sessions.Source, m.Sessions.Destination,
			m.Moved, m.Failed, m.Pending, barrier, ready)
	}
	for _, id := range vanished {
		fmt.Fprintf(tw, "%s\tVANISHED (registered, no live member znode)\t\t\t\t\t\t\t\t\n", id)
	}
	barrier := "down"
	if t.BarrierUp {
		barrier = "up on every replica"
	}
	fmt.Fprintf(tw, "TOTAL (%d)\t\t\t%d\t%d\t%d\t%d\t%d\t%s\t\n", t.Replicas, t.Sessions.Source, t.Sessions.Destination, t.Moved, t.Failed, t.Pending, barrier)
	tw.Flush()
}

func printFleetSessions(w io.Writer, f *fleetSessions) {
	fmt.Fprintln(w, "\nfleet:")
	printReplicas(w, f.Replicas, f.Vanished, f.Totals)
}
