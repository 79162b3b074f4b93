package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/zkproxy/zkproxy/internal/fourlw"
)

// checkTimeout bounds each member's probe in serve --check.
const checkTimeout = 5 * time.Second

// memberCheck is one member as serve --check saw it.
type memberCheck struct {
	ensemble, addr string
	tls            bool
	srvr           fourlw.Srvr
	err            error
}

// preflight is `zkproxy serve --check`: with the configuration already
// validated, it asks every member srvr over the connection the proxy would
// open (TLS included, so a certificate problem shows before the first
// client does) and prints one line per member. It fails when no source
// member serves, since the proxy could not place a single session; a
// destination that does not serve yet is normal before the join and only
// reported.
func preflight(ctx context.Context, cfg serveConfig, w io.Writer) error {
	members := cfg.Cutover.Members
	if members == nil {
		members = fourlw.Members{}
	}
	var checks []*memberCheck
	for _, e := range []struct {
		name    string
		members []string
	}{{"source", cfg.Proxy.Source}, {"destination", cfg.Proxy.Destination}} {
		for _, m := range e.members {
			checks = append(checks, &memberCheck{ensemble: e.name, addr: m, tls: cfg.Proxy.MemberTLS.For(m) != nil})
		}
	}
	var wg sync.WaitGroup
	for _, c := range checks {
		wg.Go(func() {
			qctx, cancel := context.WithTimeout(ctx, checkTimeout)
			defer cancel()
			ans, err := members.Query(qctx, c.addr, "srvr")
			if err == nil {
				c.srvr, err = fourlw.ParseSrvr(ans)
			}
			c.err = err
		})
	}
	wg.Wait()

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENSEMBLE\tMEMBER\tTLS\tRESULT")
	serving := map[string]int{}
	for _, c := range checks {
		tls := "off"
		if c.tls {
			tls = "on"
		}
		result := ""
		if c.err != nil {
			result = "error: " + c.err.Error()
		} else {
			serving[c.ensemble]++
			result = fmt.Sprintf("%s, zxid %#x, %d znodes, %d connections", c.srvr.Mode, c.srvr.Zxid, c.srvr.NodeCount, c.srvr.Connections)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.ensemble, c.addr, tls, result)
	}
	tw.Flush()
	summary := fmt.Sprintf("configuration ok; source: %d of %d members serving", serving["source"], len(cfg.Proxy.Source))
	if n := len(cfg.Proxy.Destination); n > 0 {
		summary += fmt.Sprintf("; destination: %d of %d serving", serving["destination"], n)
		if serving["destination"] < n {
			summary += " (members not started yet are expected before the join)"
		}
	}
	fmt.Fprintln(w, summary)
	if serving["source"] == 0 {
		var errs []string
		for _, c := range checks {
			if c.ensemble == "source" {
				errs = append(errs, c.addr)
			}
		}
		return fmt.Errorf("no source member serves (%s): the proxy could not open a session", strings.Join(errs, ", "))
	}
	return nil
}
