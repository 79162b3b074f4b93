package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/zkproxy/zkproxy/admin"
	"github.com/zkproxy/zkproxy/cutover"
)

// checkRetry is how often `cutover check --wait` asks again.
const checkRetry = 2 * time.Second

// adminClient talks to a running zkproxy's admin API.
type adminClient struct {
	base   string
	token  string
	caFile string
	output string
	http   *http.Client
}

func (c *adminClient) bind(cmd *cobra.Command) {
	def := os.Getenv("ZKPROXY_ADMIN_URL")
	if def == "" {
		def = "http://127.0.0.1:9181"
	}
	cmd.PersistentFlags().StringVar(&c.base, "admin", def, "admin API base URL (env ZKPROXY_ADMIN_URL)")
	cmd.PersistentFlags().StringVar(&c.token, "token", os.Getenv("ZKPROXY_ADMIN_TOKEN"), "bearer token: the proxy's admin-token (env ZKPROXY_ADMIN_TOKEN)")
	cmd.PersistentFlags().StringVar(&c.caFile, "admin-ca", os.Getenv("ZKPROXY_ADMIN_CA"), "PEM CA certificates an https admin URL's certificate must chain to (default: the system's roots; env ZKPROXY_ADMIN_CA)")
	cmd.PersistentFlags().StringVarP(&c.output, "output", "o", "table", "output: table or json")
}

// call sends a request and decodes the JSON answer into out. Non-2xx
// answers are returned as errors carrying the server's "error" text, except
// that out is still filled so callers can show the details (e.g. a check).
func (c *adminClient) call(ctx context.Context, method, path string, out any) (int, error) {
	if c.output != "table" && c.output != "json" {
		return 0, fmt.Errorf("--output must be table or json, got %q", c.output)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.base, "/")+path, nil)
	if err != nil {
		return 0, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.http == nil {
		c.http = &http.Client{Timeout: 30 * time.Second}
		if c.caFile != "" {
			pool, err := loadCertPool(c.caFile)
			if err != nil {
				return 0, fmt.Errorf("--admin-ca: %w", err)
			}
			c.http.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("admin API %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("admin API %s %s: %w", method, path, err)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil && resp.StatusCode < 300 {
			return resp.StatusCode, fmt.Errorf("admin API %s %s: bad JSON: %w", method, path, err)
		}
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(string(body))
		}
		return resp.StatusCode, fmt.Errorf("%s %s: %s (HTTP %d)", method, path, e.Error, resp.StatusCode)
	}
	return resp.StatusCode, nil
}

func (c *adminClient) printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newCutoverCommand() *cobra.Command {
	c := &adminClient{}
	root := &cobra.Command{
		Use:   "cutover",
		Short: "Check mitosis sync and move every session to the destination ensemble",
	}
	c.bind(root)
	root.AddCommand(
		newCheckCommand(c),
		newStartCommand(c),
		newStatusCommand(c),
		newPostCommand(c, "abort", "Stop a running cutover or rollback (moved sessions stay moved)", "/cutover/abort", returnAtOnce),
		newPostCommand(c, "rollback", "Move every session back to the source (refused after the split)", "/cutover/rollback", cutover.PhaseRollingBack),
		newSplitCommand(c),
		newHoldCommand(c),
		newPostCommand(c, "release", "Lower the split barrier or a hold (without recording the split)", "/cutover/barrier/release", returnAtOnce),
	)
	return root
}

func newCheckCommand(c *adminClient) *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Is mitosis sync confirmed? Exits 1 when not (--wait: keeps asking until it is)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			deadline := time.Now().Add(wait)
			for {
				var rep cutover.Report
				if _, err := c.call(ctx, "GET", "/cutover/check", &rep); err != nil {
					return err
				}
				if rep.Ready || !time.Now().Add(checkRetry).Before(deadline) {
					if err := c.show(cmd.OutOrStdout(), &rep, printReport); err != nil {
						return err
					}
					if !rep.Ready {
						return fmt.Errorf("mitosis sync not confirmed: %s", rep.Reason())
					}
					return nil
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "not yet: %s\n", rep.Reason())
				select {
				case <-time.After(checkRetry):
				case <-ctx.Done():
					return context.Cause(ctx)
				}
			}
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", 0, "ask again every 2s until the check passes or this much time has gone by (e.g. 10m, while the destination catches up after the join)")
	return cmd
}

func newStartCommand(c *adminClient) *cobra.Command {
	var force, dryRun, noWait bool
	cmd := &cobra.Command{
		Use:   "start",
		Short: "Start the cutover (runs the sync check first) and wait for it to finish",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ans struct {
				Status cutover.Status  `json:"status"`
				Check  *cutover.Report `json:"check"`
				Error  string          `json:"error"`
			}
			path := fmt.Sprintf("/cutover/start?force=%t&dry_run=%t", force, dryRun)
			_, err := c.call(cmd.Context(), "POST", path, &ans)
			out := cmd.OutOrStdout()
			if err != nil {
				if ans.Check != nil && c.output == "table" {
					printReport(out, ans.Check)
				}
				return err
			}
			if dryRun {
				if c.output == "json" {
					return c.printJSON(out, ans.Check)
				}
				printReport(out, ans.Check)
				return nil
			}
			if noWait {
				return c.show(out, &ans.Status, printStatus)
			}
			return c.waitMoves(cmd.Context(), out, cutover.PhaseCuttingOver)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "start even if the sync check fails")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "only run the sync check")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return at once instead of showing progress")
	return cmd
}

func newStatusCommand(c *adminClient) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the cutover phase and session move progress",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st admin.FleetStatus
			if _, err := c.call(cmd.Context(), "GET", "/cutover", &st); err != nil {
				return err
			}
			if st.Fleet.Name == "" {
				return c.show(cmd.OutOrStdout(), &st.Status, printStatus)
			}
			return c.show(cmd.OutOrStdout(), &st, printFleetStatus)
		},
	}
}

// returnAtOnce is the waitPhase of a newPostCommand whose call starts nothing
// that runs on.
const returnAtOnce cutover.Phase = -1

// newPostCommand is a subcommand that POSTs to path and shows the status it
// answers with; when the call starts moves (rollback), it shows their
// progress until the phase leaves waitPhase, unless --no-wait.
func newPostCommand(c *adminClient, use, short, path string, waitPhase cutover.Phase) *cobra.Command {
	var noWait bool
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st cutover.Status
			if _, err := c.call(cmd.Context(), "POST", path, &st); err != nil {
				return err
			}
			if waitPhase != returnAtOnce && !noWait {
				return c.waitMoves(cmd.Context(), cmd.OutOrStdout(), waitPhase)
			}
			return c.show(cmd.OutOrStdout(), &st, printStatus)
		},
	}
	if waitPhase != returnAtOnce {
		cmd.Flags().BoolVar(&noWait, "no-wait", false, "return at once instead of showing progress")
	}
	return cmd
}

func newHoldCommand(c *adminClient) *cobra.Command {
	var members []string
	cmd := &cobra.Command{
		Use:   "hold",
		Short: "Hold the sessions on a member about to restart (all sessions for the leader)",
		Long: `Before restarting a ZooKeeper member (the rolling restarts of the join and of the
source), hold the sessions attached to it — or, for the leader, whose restart
makes every member drop its clients, all sessions. Once none has a request in
flight, restart the member: each held session re-attaches and is released, so
clients see a short pause instead of ConnectionLoss. Then run
'zkproxy cutover release'. The hold releases by itself after
cutover-barrier-max-hold.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ans struct {
				Barrier cutover.BarrierStatus `json:"barrier"`
				Message string                `json:"message"`
			}
			path := "/hold"
			if len(members) > 0 {
				path += "?member=" + url.QueryEscape(strings.Join(members, ","))
			}
			if _, err := c.call(cmd.Context(), "POST", path, &ans); err != nil {
				return err
			}
			if c.output == "json" {
				return c.printJSON(cmd.OutOrStdout(), ans)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "holding %d sessions (%d could not be drained); releases by itself at %s\n%s\n",
				ans.Barrier.Held, ans.Barrier.NotHeld, ans.Barrier.Deadline.Format(time.RFC3339), ans.Message)
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&members, "member", nil, "member(s) about to restart, host:port; none: every session (the leader)")
	return cmd
}

func newSplitCommand(c *adminClient) *cobra.Command {
	var prepare, force bool
	cmd := &cobra.Command{
		Use:   "split",
		Short: "Raise the split barrier (--prepare), or record that the joint ensemble has been split",
		Long: `With --prepare: check where the joint leader is and that every destination member
has the leader's zxid and tree digest, then hold every client request (pings are
answered) until the sessions re-attach to the restarted destination, the split is
recorded, or the barrier's maximum hold time passes. Apply the firewall once it
says "barrier up".

Without --prepare: record the split. Rollback is refused from then on.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if !prepare {
				var st cutover.Status
				if _, err := c.call(cmd.Context(), "POST", "/cutover/split", &st); err != nil {
					return err
				}
				return c.show(out, &st, printStatus)
			}
			var ans struct {
				Plan   *cutover.SplitPlan `json:"plan"`
				Status cutover.Status     `json:"status"`
			}
			_, err := c.call(cmd.Context(), "POST", fmt.Sprintf("/cutover/split?prepare=true&force=%t", force), &ans)
			if c.output == "json" {
				if perr := c.printJSON(out, ans); perr != nil {
					return perr
				}
				return err
			}
			if ans.Plan != nil {
				printPlan(out, ans.Plan)
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&prepare, "prepare", false, "raise the split barrier")
	cmd.Flags().BoolVar(&force, "force", false, "with --prepare: go on although the joint leader is a destination member or digests differ")
	return cmd
}

func printPlan(w io.Writer, p *cutover.SplitPlan) {
	fmt.Fprintf(w, "joint leader: %s (%s)\n", p.Leader, p.LeaderEnsemble)
	for _, warn := range p.Warnings {
		fmt.Fprintf(w, "WARNING: %s\n", warn)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, it := range p.Items {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", it.Name, itemResult(it), it.Detail)
	}
	tw.Flush()
	if p.Barrier.Up {
		fmt.Fprintf(w, "barrier up since %s, holding %d sessions (%d could not be held); releases by itself at %s\n",
			p.Barrier.Since.Format(time.RFC3339), p.Barrier.Held, p.Barrier.NotHeld, p.Barrier.Deadline.Format(time.RFC3339))
	}
	if p.Message != "" {
		fmt.Fprintln(w, p.Message)
	}
}

// waitMoves polls the status and draws a progress bar until the phase
// leaves running.
func (c *adminClient) waitMoves(ctx context.Context, out io.Writer, running cutover.Phase) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		var fs admin.FleetStatus
		if _, err := c.call(ctx, "GET", "/cutover", &fs); err != nil {
			return err
		}
		st := fs.Status
		// In a fleet: the whole fleet's progress, until every replica
		// finished (the fleet's phase moves on).
		inFleet := fs.Fleet.Name != ""
		progress := st.Sessions
		if inFleet {
			t := fs.Fleet.Totals
			progress = cutover.Progress{Total: t.Moved + t.Failed + t.Pending, Moved: t.Moved, Failed: t.Failed, Pending: t.Pending}
		}
		if c.output == "table" {
			fmt.Fprintf(out, "\r%s", progressBar(progress, 40))
		}
		if st.Phase != running && (!inFleet || fs.Fleet.State.Phase != running) {
			if c.output == "table" {
				fmt.Fprintln(out)
			}
			if inFleet {
				return c.show(out, &fs, printFleetStatus)
			}
			return c.show(out, &st, printStatus)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

func progressBar(p cutover.Progress, width int) string {
	done := p.Moved + p.Failed
	frac := 1.0
	if p.Total > 0 {
		frac = float64(done) / float64(p.Total)
	}
	n := int(frac * float64(width))
	return fmt.Sprintf("[%s%s] %d/%d moved %d, fell back %d, pending %d ", strings.Repeat("#", n),
		strings.Repeat(".", width-n), done, p.Total, p.Moved, p.Failed, p.Pending)
}

func (c *adminClient) show(w io.Writer, v any, table func(io.Writer, any)) error {
	if c.output == "json" {
		return c.printJSON(w, v)
	}
	table(w, v)
	return nil
}

func printStatus(w io.Writer, v any) {
	st := v.(*cutover.Status)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "phase\t%s\n", st.Phase)
	fmt.Fprintf(tw, "new connections go to\t%s\n", st.Target)
	fmt.Fprintf(tw, "split recorded\t%t\n", st.Split)
	fmt.Fprintf(tw, "sessions\ttotal %d, moved %d, fell back %d, pending %d\n", st.Sessions.Total, st.Sessions.Moved, st.Sessions.Failed, st.Sessions.Pending)
	for reason, n := range st.Reasons {
		fmt.Fprintf(tw, "  fallback: %s\t%d\n", reason, n)
	}
	if b := st.Barrier; b.Up {
		fmt.Fprintf(tw, "split barrier\tUP since %s: %d held, %d released, releases by itself at %s\n",
			b.Since.Format(time.RFC3339), b.Held, b.Released, b.Deadline.Format(time.RFC3339))
	} else if b.LastEnd != "" {
		fmt.Fprintf(tw, "last split barrier\t%s; longest hold %s\n", b.LastEnd, b.LongestHold)
	}
	for _, t := range []struct {
		name string
		at   time.Time
	}{{"started", st.StartedAt}, {"finished", st.FinishedAt}, {"split at", st.SplitAt}} {
		if !t.at.IsZero() {
			fmt.Fprintf(tw, "%s\t%s\n", t.name, t.at.Format(time.RFC3339))
		}
	}
	tw.Flush()
}

// itemResult is a check item's verdict column.
func itemResult(it cutover.Item) string {
	switch {
	case !it.OK:
		return "FAIL"
	case it.Warning:
		return "WARN"
	}
	return "ok"
}

func printReport(w io.Writer, v any) {
	rep := v.(*cutover.Report)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tRESULT\tDETAIL")
	for _, it := range rep.Items {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", it.Name, itemResult(it), it.Detail)
	}
	fmt.Fprintln(tw, "\nMEMBER\tENSEMBLE\tMODE\tZXID\tZNODES\tSERVER ID")
	for _, m := range rep.Members {
		mode := m.Mode
		if !m.Reachable {
			mode = "unreachable"
		} else if mode == "" {
			mode = "not serving"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\n", m.Addr, m.Ensemble, mode, m.Zxid, m.NodeCount, m.ServerID)
	}
	tw.Flush()
	for _, u := range rep.Unmovable {
		fmt.Fprintf(w, "will reconnect instead of moving: %s (%s)\n", u.ID, u.Reason)
	}
	verdict := "READY: mitosis sync confirmed"
	if !rep.Ready {
		verdict = "NOT READY: " + rep.Reason()
	}
	fmt.Fprintln(w, verdict)
}

func newSessionsCommand() *cobra.Command {
	c := &adminClient{}
	cmd := &cobra.Command{
		Use:   "sessions",
		Short: "List the sessions a running zkproxy carries",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ans struct {
				Sessions []admin.SessionRow `json:"sessions"`
				Fleet    *fleetSessions     `json:"fleet"`
			}
			if _, err := c.call(cmd.Context(), "GET", "/sessions", &ans); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if c.output == "json" {
				return c.printJSON(out, ans.Sessions)
			}
			var buf bytes.Buffer
			tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SESSION\tCLIENT\tMEMBER\tENSEMBLE\tSTATE\tWATCHES\tOUTSTANDING\tAGE")
			for _, s := range ans.Sessions {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", s.ID, s.ClientAddr, s.Member, s.Ensemble, s.State,
					s.Watches, s.Outstanding, (time.Duration(s.AgeSeconds) * time.Second).String())
			}
			tw.Flush()
			if ans.Fleet != nil {
				printFleetSessions(&buf, ans.Fleet)
			}
			_, err := out.Write(buf.Bytes())
			return err
		},
	}
	c.bind(cmd)
	return cmd
}
