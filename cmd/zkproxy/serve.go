package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/zkproxy/zkproxy/admin"
	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/cutover/proxyadapter"
	"github.com/zkproxy/zkproxy/internal/certfile"
	"github.com/zkproxy/zkproxy/internal/memtrim"
	"github.com/zkproxy/zkproxy/proxy"
)

// flagCheck runs the pre-flight instead of the proxy; a flag only, not a
// configuration key.
const flagCheck = "check"

func newServeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the proxy: accept ZooKeeper clients and forward them to the target ensemble",
		Long: `Run the proxy. Configuration comes from --config (yaml, toml or json), then
ZKPROXY_<KEY> environment variables (KEY upper-cased, '-' as '_'), then flags,
each overriding the one before. Invalid configuration fails at start, naming
every bad key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := newViper(cmd.Flags())
			if err != nil {
				return err
			}
			cfg, err := loadServeConfig(v, cmd.Flags())
			if err != nil {
				return err
			}
			if check, _ := cmd.Flags().GetBool(flagCheck); check {
				return preflight(cmd.Context(), cfg, cmd.OutOrStdout())
			}
			return serve(cmd.Context(), cfg, cmd.ErrOrStderr())
		},
	}
	bindServeFlags(cmd.Flags())
	cmd.Flags().Bool(flagCheck, false, "validate the configuration, ask every member srvr the way the proxy will reach it (TLS included), print the result and exit; fails when no source member serves")
	markFlagOnly(cmd.Flags(), flagCheck)
	return cmd
}

func newLogger(cfg serveConfig, w interface{ Write([]byte) (int, error) }) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(strings.ToUpper(cfg.LogLevel))) // validated in loadServeConfig
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs the proxy until ctx ends or a signal arrives. The first SIGTERM
// or SIGINT stops accepting and lets sessions finish their in-flight requests
// for up to ShutdownTimeout; a second signal closes everything at once.
func serve(ctx context.Context, cfg serveConfig, logw interface{ Write([]byte) (int, error) }) error {
	log := newLogger(cfg, logw)
	// SIGUSR2 upgrades (upgrade.go). Caught from the start: its default
	// action ends the process, and one sent while this process starts is
	// acted on once it serves.
	usr2 := make(chan os.Signal, 1)
	signal.Notify(usr2, syscall.SIGUSR2)
	defer signal.Stop(usr2)
	if err := prepareDataDir(cfg.DataDir); err != nil {
		return err
	}
	gcPercent := applyGCDefault()
	log.Debug("garbage collector target", "gogc", gcPercent)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Give back the free heap a connection storm, cutover or upgrade left
	// once the proxy has gone quiet (internal/memtrim).
	trimCtx, stopTrim := context.WithCancel(ctx)
	defer stopTrim()
	go memtrim.New(reg, log).Run(trimCtx)

	certMetrics := certfile.NewMetrics(reg)
	for use, r := range cfg.Certs {
		r.Observe(use, certMetrics, log)
	}
	if len(cfg.Certs) > 0 {
		// Handshakes pick a rotated certificate up by themselves; this
		// keeps the expiry gauge true when none happen for a while.
		watchCtx, stopWatching := context.WithCancel(ctx)
		defer stopWatching()
		go watchCerts(watchCtx, cfg.Certs)
	}

	p, err := proxy.New(cfg.Proxy, log, reg)
	if err != nil {
		return fmt.Errorf("starting proxy: %w", err)
	}
	// The controller restores the persisted phase and routes new
	// connections before the listener accepts the first client.
	adapter := proxyadapter.New(p, cfg.Proxy.Destination)
	// In a fleet the fleet state, read before any client is accepted,
	// decides the phase the controller restores (fleet.go).
	fl, err := startFleet(ctx, &cfg, adapter, reg, log)
	if err != nil {
		return err
	}
	ctl, err := cutover.NewController(cfg.Cutover, adapter, log, reg)
	if err != nil {
		if fl != nil {
			fl.Close()
		}
		return fmt.Errorf("starting cutover controller: %w", err)
	}
	defer ctl.Close()
	ready := p.Ready
	if fl != nil {
		defer fl.Close() // runs before ctl.Close: stop applying the fleet state first
		fl.Run(ctl)
		ready = func(ctx context.Context) error { return errors.Join(fl.Ready(ctx), p.Ready(ctx)) }
	}
	ln, err := listenTCP("client", cfg.Listen) // inherited during an upgrade
	if err != nil {
		return fmt.Errorf("listening for clients on %s: %w", cfg.Listen, err)
	}
	upg, err := newUpgrader(p, ctl, cfg, log, map[string]net.Listener{"client": ln})
	if err != nil {
		ln.Close()
		return err
	}
	defer upg.close()
	if cfg.TLS != nil {
		upg.tls = func(l net.Listener) net.Listener { return tls.NewListener(l, cfg.TLS) }
		// Sessions over TLS relay through tls.Conn with plain Reads and
		// Writes; their idle pumps park on the socket underneath
		// (proxy's newReadWatch).
		ln = tls.NewListener(ln, cfg.TLS)
	}

	var adminSrv *http.Server
	adminErr := make(chan error, 1)
	if cfg.AdminListen != "" {
		aln, err := listenTCP("admin", cfg.AdminListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listening for admin HTTP on %s: %w", cfg.AdminListen, err)
		}
		if err := upg.keep("admin", aln); err != nil {
			ln.Close()
			aln.Close()
			return err
		}
		if cfg.AdminTLS != nil {
			aln = tls.NewListener(aln, cfg.AdminTLS)
		}
		h := admin.NewHandler(admin.Options{
			Gatherer: reg, Ready: ready, Pprof: cfg.Pprof, Token: cfg.AdminToken, Logger: log,
		})
		if fl != nil {
			admin.RegisterFleetCutover(h, ctl, fl)
			admin.RegisterFleetSessions(h, p, cfg.Proxy.Destination, fl)
		} else {
			admin.RegisterCutover(h, ctl)
			admin.RegisterSessions(h, p, cfg.Proxy.Destination)
		}
		registerUpgrade(h, upg)
		admin.RegisterStatus(h, admin.NewStatus(admin.StatusConfig{
			Version: version, Source: cfg.Proxy.Source, Destination: cfg.Proxy.Destination,
			Members: cfg.Cutover.Members, MemberTLS: cfg.Proxy.MemberTLS, // TLS members are probed over TLS
		}, p, ctl))
		adminSrv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		go func() { adminErr <- adminSrv.Serve(aln) }()
		log.Info("admin listening", "addr", aln.Addr().String(), "tls", describeTLS(cfg.AdminTLS), "token", cfg.AdminToken != "")
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- serveClients(p, ln, upg) }()
	adoptErr := make(chan error, 1)
	if hc, err := handoffConn(); err != nil {
		log.Error("started by an upgrade but cannot take sessions over", "err", err)
		adoptErr <- err
	} else if hc != nil {
		go func() { adoptErr <- adoptSessions(ctx, p, upg, hc, ln.Addr().String(), log) }()
	} else {
		sdNotify(log, "READY=1")
	}
	log.Info("zkproxy serving", "version", version, "listen", ln.Addr().String(), "tls", describeTLS(cfg.TLS),
		"source", strings.Join(cfg.Proxy.Source, ","), "source_tls", describeMemberTLS(cfg.Proxy.MemberTLS, cfg.Proxy.Source),
		"destination", strings.Join(cfg.Proxy.Destination, ","), "destination_tls", describeMemberTLS(cfg.Proxy.MemberTLS, cfg.Proxy.Destination))

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	var runErr error
	for running := true; running; {
		running = false
		select {
		case <-usr2:
			if err := upg.Start("SIGUSR2"); err != nil {
				log.Warn("upgrade not started", "err", err)
			}
			running = true
		case <-upg.done:
			log.Info("handed over to the new process; stopping")
			if fl != nil {
				// The new process is this replica now: it has taken the
				// member znode over; leave it and the registration be.
				fl.HandOff()
			}
		case err := <-adoptErr:
			runErr = err
			if err == nil {
				adoptErr = nil // taken over: a nil channel never fires again
				running = true
			}
		case err := <-serveErr:
			runErr = fmt.Errorf("proxy stopped: %w", err)
		case err := <-adminErr:
			runErr = fmt.Errorf("admin listener stopped: %w", err)
		case sig := <-sigs:
			log.Info("shutting down: finishing in-flight requests", "signal", sig.String(), "timeout", cfg.ShutdownTimeout)
		case <-ctx.Done():
			log.Info("shutting down", "reason", context.Cause(ctx))
		}
	}

	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	go func() {
		select {
		case sig := <-sigs:
			log.Warn("second signal: closing every connection now", "signal", sig.String())
			cancel()
		case <-shutdownCtx.Done():
		}
	}()
	if err := p.Shutdown(shutdownCtx); err != nil {
		log.Warn("graceful shutdown incomplete, closing", "err", err)
		p.Close()
	}
	if adminSrv != nil {
		adminCtx, adminCancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = adminSrv.Shutdown(adminCtx)
		adminCancel()
	}
	if runErr != nil && !errors.Is(runErr, proxy.ErrServerClosed) && !errors.Is(runErr, http.ErrServerClosed) {
		return runErr
	}
	log.Info("zkproxy stopped")
	return nil
}

// watchCerts looks at the certificate files every certfile.CheckInterval
// until ctx ends.
func watchCerts(ctx context.Context, certs map[string]*certfile.Reloader) {
	t := time.NewTicker(certfile.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, r := range certs {
				r.Certificate()
			}
		}
	}
}
