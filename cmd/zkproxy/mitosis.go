package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/spf13/cobra"

	"github.com/zkproxy/zkproxy/admin"
	"github.com/zkproxy/zkproxy/internal/fourlw"
	"github.com/zkproxy/zkproxy/mitosis"
)

// Exit statuses of `zkproxy mitosis verify` (and every command: main exits
// with exitStatus(err)).
const (
	exitOK = 0
	// exitFailed: the command ran and found the stage not reached (a
	// verify check failed).
	exitFailed = 1
	// exitCannotCheck: the command could not check at all (bad
	// arguments, no plan).
	exitCannotCheck = 2
)

// exitError carries an exit status other than 1 through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitStatus is the process exit status for err from run.
func exitStatus(err error) int {
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	if err != nil {
		return exitFailed
	}
	return exitOK
}

func newMitosisCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "mitosis",
		Short: "Plan a ZooKeeper mitosis from the live source and verify each stage of it",
	}
	root.AddCommand(newMitosisPlanCommand(), newMitosisVerifyCommand(), newMitosisLeftoversCommand())
	return root
}

func newMitosisPlanCommand() *cobra.Command {
	var (
		source, destination []string
		dormant             []int
		out, zooCfg, dstDir string
		spec                mitosis.Spec
	)
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Write every zoo.cfg, the firewall scripts and RUNBOOK.md for a mitosis, reading the source live",
		Long: `plan asks every source member conf and srvr, and writes into --out:
  joint/zoo.cfg.N         the joint configuration of every source and joining destination member
  destination/zoo.cfg.N   the final destination configuration (dormant members included)
  source/zoo.cfg.N        the source's own configuration, restored at the clean-up
  firewall/*.sh           iptables and nftables split rules per destination member, apply and remove
  RUNBOOK.md, plan.json   the numbered steps with their exact commands and checks
It refuses, with the reason, what it cannot plan.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if len(source) == 0 || len(destination) == 0 || out == "" {
				return &exitError{exitCannotCheck, errors.New("--source, --destination and --out are required")}
			}
			for _, d := range destination {
				m, err := mitosis.ParseMember(d)
				if err != nil {
					return &exitError{exitCannotCheck, err}
				}
				spec.Destination = append(spec.Destination, m)
			}
			if zooCfg != "" {
				b, err := os.ReadFile(zooCfg)
				if err != nil {
					return &exitError{exitCannotCheck, fmt.Errorf("--source-zoo-cfg: %w", err)}
				}
				t, err := mitosis.ParseZooCfg(string(b))
				if err != nil {
					return &exitError{exitCannotCheck, fmt.Errorf("--source-zoo-cfg %s: %w", zooCfg, err)}
				}
				spec.Template = &t
			}
			qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			src, err := mitosis.ReadSource(qctx, fourlw.Members{}, source)
			cancel()
			if err != nil {
				return err
			}
			spec.Source, spec.Dormant, spec.DestinationDataDir = src, dormant, dstDir
			if spec.Dir == "" {
				spec.Dir = out
			}
			p, err := mitosis.Build(spec)
			if err != nil {
				return err
			}
			if err := mitosis.WriteFiles(out, p.Files); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "plan written to %s: %d files; follow %s\n", out, len(p.Files), filepath.Join(out, "RUNBOOK.md"))
			fmt.Fprintf(w, "joint ensemble %v, dormant %v, source leader zk%d\n", memberIDsOf(p.Joint()), p.Dormant, p.SourceLeader)
			for _, warn := range p.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", warn)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&source, "source", nil, "source members' client addresses, host:port,... (every member: each is asked conf and srvr)")
	f.StringArrayVar(&destination, "destination", nil, "a destination member as ID=host:quorumPort:electionPort[;clientPort]; repeat for each, dormant ones included")
	f.IntSliceVar(&dormant, "dormant", nil, "destination ids that stay out of the joint ensemble until the split (default: the highest ids, as few as keep the source a majority)")
	f.StringVar(&out, "out", "", "directory to write the plan into")
	f.StringVar(&zooCfg, "source-zoo-cfg", "", "a source member's zoo.cfg: settings conf does not show (TLS, 4lw whitelist, auth) are copied from it")
	f.StringVar(&dstDir, "destination-data-dir", "", `destination members' dataDir ("{id}" becomes the server id; default: the source's)`)
	f.StringVar(&spec.Dir, "plan-dir", "", "the plan directory as the runbook names it on the member hosts (default: --out)")
	f.StringVar(&spec.ConfigPath, "config-path", "/etc/zookeeper/conf/zoo.cfg", "where zoo.cfg lives on the members")
	f.StringVar(&spec.Service, "service", "zookeeper", "the members' systemd service")
	f.StringVar(&spec.Chain, "firewall-chain", "ZK-MITOSIS", "prefix of the firewall chain (iptables) and table (nftables) names")
	f.StringVar(&spec.Zkproxy, "zkproxy-command", "zkproxy", "how the runbook invokes zkproxy")
	f.StringSliceVar(&spec.Chroots, "chroot", nil, "the chroot(s) that move to the destination, e.g. /kafka (mitosis leftovers uses them)")
	return cmd
}

func memberIDsOf(ms []mitosis.Member) []int {
	var out []int
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

func readPlan(dir string) (*mitosis.Plan, error) {
	b, err := os.ReadFile(filepath.Join(dir, "plan.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, mitosis.ErrNoPlan)
	}
	if err != nil {
		return nil, err
	}
	return mitosis.ParsePlan(b)
}

// adminSessions lists a zkproxy's sessions through its admin API.
type adminSessions struct{ c *adminClient }

func (a adminSessions) ProxiedSessions(ctx context.Context) ([]mitosis.ProxiedSession, error) {
	var ans struct {
		Sessions []admin.SessionRow `json:"sessions"`
	}
	if _, err := a.c.call(ctx, "GET", "/sessions", &ans); err != nil {
		return nil, err
	}
	out := make([]mitosis.ProxiedSession, 0, len(ans.Sessions))
	for _, s := range ans.Sessions {
		out = append(out, mitosis.ProxiedSession{ID: s.ID, Member: s.Member})
	}
	return out, nil
}

func newMitosisVerifyCommand() *cobra.Command {
	c := &adminClient{}
	var (
		planDir    string
		maxLag     int64
		localAddrs int
		noAdmin    bool
	)
	cmd := &cobra.Command{
		Use:   "verify STAGE",
		Short: "Check the live members at a mitosis stage: pre-join, joined, pre-split, split or cleaned",
		Long: `verify asks every member of the plan srvr, conf and mntr (and zkproxy its sessions) and checks
what the stage needs; each failed item names the member and the fix.

pre-join   the source is one healthy quorum; each destination member holds nothing but /zookeeper, has
           no transactions of its own and is not at a later epoch; every member runs its planned myid
           and answers the four-letter words zkproxy uses; maxClientCnxns fits the proxied sessions
joined     one quorum of every joint member on the joint membership, one config version, the joining
           destination members caught up (--max-lag), the dormant ones stopped
pre-split  still joined; every proxied session on a destination member; where the joint leader is
split      the destination is its own quorum (dormant included); the source serves; epochs diverged;
           neither side reaches the other (leaders' follower counts; a TCP probe from each member
           address on this machine); no proxied session on a source member
cleaned    the source back on its own membership; the destination its own quorum

Exit status: 0 every check passed (warnings allowed), 1 a check failed, 2 verify could not run.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if c.output != "table" && c.output != "json" {
				return &exitError{exitCannotCheck, fmt.Errorf("--output must be table or json, got %q", c.output)}
			}
			p, err := readPlan(planDir)
			if err != nil {
				return &exitError{exitCannotCheck, err}
			}
			cfg := mitosis.VerifyConfig{Plan: p, FourLetter: fourlw.Members{}, Probe: mitosis.LocalProber{}, MaxLag: maxLag, LocalAddrs: localAddrs}
			if !noAdmin {
				cfg.Sessions = adminSessions{c}
			}
			res, err := mitosis.Verify(cmd.Context(), args[0], cfg)
			if err != nil {
				return &exitError{exitCannotCheck, err}
			}
			w := cmd.OutOrStdout()
			if c.output == "json" {
				if err := c.printJSON(w, res); err != nil {
					return err
				}
			} else {
				printVerify(w, res)
			}
			if !res.OK {
				return &exitError{exitFailed, fmt.Errorf("stage %s not reached", res.Stage)}
			}
			return nil
		},
	}
	c.bind(cmd)
	cmd.Flags().StringVar(&planDir, "plan", ".", "the plan directory (mitosis plan --out)")
	cmd.Flags().Int64Var(&maxLag, "max-lag", 1000, "transactions a joining destination member may trail the joint leader by (joined)")
	cmd.Flags().IntVar(&localAddrs, "local-addrs", 1, "how many local-addrs zkproxy spreads its connections over (pre-join's maxClientCnxns check)")
	cmd.Flags().BoolVar(&noAdmin, "no-admin", false, "do not ask zkproxy for its sessions (the session checks then fail or warn)")
	return cmd
}

// printVerify prints a verify result like `cutover check`: the items, then
// the members.
func printVerify(w io.Writer, res *mitosis.Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tMEMBER\tRESULT\tDETAIL")
	for _, it := range res.Items {
		result := "ok"
		switch {
		case !it.OK:
			result = "FAIL"
		case it.Warning:
			result = "WARN"
		}
		member := it.Member
		if member == "" {
			member = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", it.Name, member, result, it.Detail)
		if !it.OK || it.Warning {
			fmt.Fprintf(tw, "\t\t\tfix: %s\n", it.Fix)
		}
	}
	fmt.Fprintln(tw, "\nMEMBER\tSIDE\tMODE\tZXID\tZNODES\tMYID\tMEMBERS")
	for _, m := range res.Members {
		mode := m.Mode
		if !m.Reachable {
			mode = "unreachable"
		} else if mode == "" {
			mode = "not serving"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%v\n", m.Addr, m.Side, mode, m.Zxid, m.NodeCount, m.ServerID, m.Members)
	}
	tw.Flush()
	if res.OK {
		fmt.Fprintf(w, "PASS: stage %s reached\n", res.Stage)
	} else {
		fmt.Fprintf(w, "FAIL: stage %s not reached\n", res.Stage)
	}
}

// zkTree reads znodes over a go-zookeeper session.
type zkTree struct{ conn *zk.Conn }

func (t zkTree) Children(_ context.Context, path string) ([]string, error) {
	kids, _, err := t.conn.Children(path)
	if errors.Is(err, zk.ErrNoNode) {
		return nil, fmt.Errorf("%s: %w", path, mitosis.ErrNoNode)
	}
	return kids, err
}

func (t zkTree) DataLength(_ context.Context, path string) (int, error) {
	ok, st, err := t.conn.Exists(path)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("%s: %w", path, mitosis.ErrNoNode)
	}
	return int(st.DataLength), nil
}

type quietZKLogger struct{}

func (quietZKLogger) Printf(string, ...any) {}

func connectTree(ms []mitosis.Member) (zkTree, string, func(), error) {
	var addrs []string
	for _, m := range ms {
		addrs = append(addrs, m.ClientAddr())
	}
	conn, events, err := zk.Connect(addrs, 10*time.Second, zk.WithLogger(quietZKLogger{}), zk.WithLogInfo(false))
	if err != nil {
		return zkTree{}, "", nil, err
	}
	deadline := time.After(15 * time.Second)
	for conn.State() != zk.StateHasSession {
		select {
		case <-events:
		case <-deadline:
			conn.Close()
			return zkTree{}, "", nil, fmt.Errorf("no session with %s within 15s", strings.Join(addrs, ","))
		}
	}
	return zkTree{conn}, strings.Join(addrs, ","), conn.Close, nil
}

func newMitosisLeftoversCommand() *cobra.Command {
	var (
		planDir, output string
		chroots         []string
		fleetPaths      []string
	)
	cmd := &cobra.Command{
		Use:   "leftovers",
		Short: "After the split: list the znode trees each side still holds for the other, with sizes and delete commands (never deletes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return &exitError{exitCannotCheck, fmt.Errorf("--output must be table or json, got %q", output)}
			}
			p, err := readPlan(planDir)
			if err != nil {
				return &exitError{exitCannotCheck, err}
			}
			if len(chroots) == 0 {
				chroots = p.Chroots
			}
			if len(chroots) == 0 {
				return &exitError{exitCannotCheck, errors.New("name the chroot(s) that moved: --chroot here or at mitosis plan")}
			}
			src, srcServer, closeSrc, err := connectTree(p.Source)
			if err != nil {
				return fmt.Errorf("source: %w", err)
			}
			defer closeSrc()
			dst, dstServer, closeDst, err := connectTree(p.Destination)
			if err != nil {
				return fmt.Errorf("destination: %w", err)
			}
			defer closeDst()
			ls, err := mitosis.FindLeftovers(cmd.Context(), mitosis.LeftoverConfig{Chroots: chroots, Source: src, Destination: dst, SourceServer: srcServer, DestinationServer: dstServer, Fleet: fleetPaths})
			if err != nil {
				return &exitError{exitCannotCheck, err}
			}
			w := cmd.OutOrStdout()
			if output == "json" {
				return (&adminClient{}).printJSON(w, ls)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SIDE\tPATH\tZNODES\tBYTES\tWHY\tDELETE WITH")
			for _, l := range ls {
				nodes := fmt.Sprint(l.Nodes)
				if l.Truncated {
					nodes = "≥" + nodes
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", l.Side, l.Path, nodes, l.Bytes, l.Why, l.Delete)
			}
			tw.Flush()
			fmt.Fprintf(w, "%d leftover tree(s); nothing was deleted\n", len(ls))
			return nil
		},
	}
	cmd.Flags().StringVar(&planDir, "plan", ".", "the plan directory (mitosis plan --out)")
	cmd.Flags().StringSliceVar(&chroots, "chroot", nil, "the chroot(s) that moved to the destination, e.g. /kafka (default: the plan's --chroot)")
	cmd.Flags().StringSliceVar(&fleetPaths, "fleet-path", []string{"/zkproxy"}, "znodes of zkproxy fleets: live on the destination (never listed there), frozen on the source (listed)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output: table or json")
	return cmd
}
