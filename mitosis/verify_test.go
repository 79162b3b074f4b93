package mitosis_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkproxy/zkproxy/internal/fourlw"
	"github.com/zkproxy/zkproxy/internal/testkit/planrun"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/mitosis"
)

// movingSessions stands in for zkproxy's /sessions: sessions on one member
// until `cutover start` moves them (the demo runs a real zkproxy).
type movingSessions struct {
	mu     sync.Mutex
	member string
}

func (s *movingSessions) ProxiedSessions(context.Context) ([]mitosis.ProxiedSession, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return []mitosis.ProxiedSession{{ID: "0x1", Member: s.member}, {ID: "0x2", Member: s.member}}, nil
}

func (s *movingSessions) moveTo(member string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.member = member
}

func uniqueChain(t *testing.T) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "ZKMT-" + strings.ToUpper(hex.EncodeToString(b[:]))
}

func addrsOf(e *zktest.Ensemble) []string {
	var out []string
	for _, s := range e.Members {
		out = append(out, s.ClientAddr())
	}
	return out
}

// create writes znodes through a real client.
func create(t *testing.T, connect string, paths ...string) {
	t.Helper()
	conn, _, err := zk.Connect(strings.Split(connect, ","), 10*time.Second, zk.WithLogger(zktest.QuietLogger{}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, p := range paths {
		if _, err := conn.Create(p, []byte("data of "+p), 0, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatalf("create %s: %v", p, err)
		}
	}
}

// planFor plans a migration from the live source onto dst (ids 4..), with
// the source's first zoo.cfg as the template, and writes it to a temporary
// directory.
func planFor(t *testing.T, ctx context.Context, src, dst *zktest.Ensemble, firstDstID int, dormant []int, dataDir string) (*mitosis.Plan, string) {
	t.Helper()
	source, err := mitosis.ReadSource(ctx, fourlw.Members{}, addrsOf(src))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := mitosis.ParseZooCfg(string(src.Members[0].ConfigFile()))
	if err != nil {
		t.Fatal(err)
	}
	var members []mitosis.Member
	for i, s := range dst.Members {
		m, err := mitosis.ParseMember(fmt.Sprintf("%d=%s:%d:%d", firstDstID+i, s.IP, zktest.QuorumPort, zktest.ElectionPort))
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, m)
	}
	dir := t.TempDir()
	p, err := mitosis.Build(mitosis.Spec{Source: source, Template: &tmpl, Destination: members, Dormant: dormant,
		DestinationDataDir: dataDir, Dir: dir, Chain: uniqueChain(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := mitosis.WriteFiles(dir, p.Files); err != nil {
		t.Fatal(err)
	}
	return p, dir
}

func verify(t *testing.T, ctx context.Context, stage string, p *mitosis.Plan, sessions mitosis.Sessions) *mitosis.Result {
	t.Helper()
	res, err := mitosis.Verify(ctx, stage, mitosis.VerifyConfig{Plan: p, FourLetter: fourlw.Members{}, Sessions: sessions,
		Probe: mitosis.LocalProber{}, MaxLag: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// failedItem returns the failed item naming member, or fails the test.
func failedItem(t *testing.T, res *mitosis.Result, name, member string) mitosis.Item {
	t.Helper()
	for _, it := range res.Items {
		if !it.OK && it.Name == name && strings.HasPrefix(it.Member, member) {
			return it
		}
	}
	t.Fatalf("verify %s: no failed %q item for %s; failures:\n%s", res.Stage, name, member, res.Failed())
	return mitosis.Item{}
}

// TestPlanDrivesMitosis runs a whole mitosis on real servers with the
// plan's own files and steps, verifying every stage the runbook checks, and
// breaks it twice on the way: a destination member's firewall missing after
// the split, and a source member back on the joint configuration after the
// clean-up. Each is refused naming the member and the fix.
func TestPlanDrivesMitosis(t *testing.T) {
	zktest.RequireIntegration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	base := t.TempDir()
	m := zktest.NewMitosis(t, zktest.WithDataDirPattern(filepath.Join(base, "zk{id}")))
	create(t, m.Source.ConnectString(), "/kafka", "/kafka/brokers", "/other")
	p, dir := planFor(t, ctx, m.Source, m.Destination, 4, []int{6}, filepath.Join(base, "zk{id}"))
	t.Cleanup(func() {
		for _, d := range p.Destination {
			if err := planrun.RunScript(context.Background(), filepath.Join(dir, mitosis.FirewallFile("iptables", "remove", d.ID))); err != nil {
				t.Errorf("removing the firewall: %v", err)
			}
		}
	})
	servers := map[int]*zktest.Server{}
	for _, s := range append(m.Source.Members, m.Destination.Members...) {
		servers[s.ID] = s
	}
	sessions := &movingSessions{member: m.Source.Members[0].ClientAddr()}
	var verified []string
	r := &planrun.Runner{Plan: p, Dir: dir, Servers: servers, Logf: t.Logf,
		Zkproxy: func(_ context.Context, args []string) error {
			if strings.Join(args, " ") == "cutover start" {
				sessions.moveTo(m.Destination.Members[0].ClientAddr())
			}
			return nil
		},
		Check: func(ctx context.Context, s mitosis.Step) error {
			if s.Check.Stage == "" {
				return nil
			}
			res := verify(t, ctx, s.Check.Stage, p, sessions)
			if !res.OK {
				return fmt.Errorf("verify %s failed:\n%s", s.Check.Stage, res.Failed())
			}
			verified = append(verified, s.Check.Stage)
			return nil
		}}
	split, err := r.StepTitled("Record the split")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(ctx, 1, split.N); err != nil {
		t.Fatal(err)
	}

	// A destination member whose firewall rules are missing.
	if err := planrun.RunScript(ctx, filepath.Join(dir, mitosis.FirewallFile("iptables", "remove", 4))); err != nil {
		t.Fatal(err)
	}
	res := verify(t, ctx, mitosis.StageSplit, p, sessions)
	it := failedItem(t, res, "firewall", "zk4")
	if !strings.Contains(it.Fix, "iptables-apply-4.sh") {
		t.Errorf("firewall fix %q does not name zk4's script", it.Fix)
	}
	if err := planrun.RunScript(ctx, filepath.Join(dir, mitosis.FirewallFile("iptables", "apply", 4))); err != nil {
		t.Fatal(err)
	}
	// Re-applying the rules cuts connections zk4 had made meanwhile; the
	// source may re-elect for a moment, so verify as an operator would:
	// again until it passes.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		res := verify(t, ctx, mitosis.StageSplit, p, sessions)
		if res.OK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("split after re-applying zk4's firewall:\n%s", res.Failed())
		}
	}

	clean, err := r.StepTitled("Restart the source members")
	if err != nil {
		t.Fatal(err)
	}
	// The clean-up restart, except that zk1 is forgotten: it still runs the
	// joint configuration it loaded at the join.
	for _, a := range clean.Actions {
		if a.Node == 1 {
			continue
		}
		if err := r.Do(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	// zk1 still serves with the joint membership if it led the joint
	// ensemble; otherwise its leader's restart left it unable to elect.
	// Either way it is named, with the file to install.
	res = verify(t, ctx, mitosis.StageCleaned, p, sessions)
	it = failedItem(t, res, "source quorum", "zk1")
	if !strings.Contains(it.Detail, "joint configuration") || !strings.Contains(it.Fix, "install "+mitosis.SourceFile(1)) {
		t.Errorf("zk1 on the joint config: %+v, want the detail to say so and the fix to name %s", it, mitosis.SourceFile(1))
	}
	for _, a := range clean.Actions {
		if a.Node == 1 {
			if err := r.Do(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := r.Check(ctx, clean); err != nil {
		t.Fatal(err)
	}
	if err := r.Run(ctx, clean.N+1, len(p.Steps)); err != nil {
		t.Fatal(err)
	}
	t.Logf("verified stages in runbook order: %v", verified)
	for _, stage := range mitosis.Stages {
		if !strings.Contains(strings.Join(verified, " "), stage) {
			t.Errorf("the runbook never verified stage %s", stage)
		}
	}
}

// TestVerifyPreJoinRefuses: a destination that holds data, is at a later
// epoch, runs with the source's server ids and hides four-letter words is
// refused before the join, each problem naming the member and the fix.
func TestVerifyPreJoinRefuses(t *testing.T) {
	zktest.RequireIntegration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	src := zktest.NewEnsemble(t, 3)
	create(t, src.ConnectString(), "/kafka")
	// Ids 1-3 again: the plan makes them 4-6.
	dst := zktest.NewEnsemble(t, 3, zktest.WithConfig("4lw.commands.whitelist=srvr,conf,mntr"))
	p, _ := planFor(t, ctx, src, dst, 4, []int{6}, "")
	if res := verify(t, ctx, mitosis.StagePreJoin, p, nil); res.OK {
		t.Fatal("pre-join passed with a destination running the source's ids")
	}

	create(t, dst.ConnectString(), "/tenant")
	// A full restart elects again: the destination moves to epoch 2 while
	// the source stays at 1.
	if err := dst.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := dst.Start(ctx); err != nil {
		t.Fatal(err)
	}
	leader, err := dst.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res := verify(t, ctx, mitosis.StagePreJoin, p, nil)
	t.Logf("pre-join:\n%s", res.Failed())

	it := failedItem(t, res, "server id", "zk4")
	if !strings.Contains(it.Detail, "runs as myid 1") || !strings.Contains(it.Detail, "zk1") || !strings.Contains(it.Fix, "write 4 into myid") {
		t.Errorf("id clash item %+v", it)
	}
	it = failedItem(t, res, "destination empty", "zk4")
	if !strings.Contains(it.Detail, "znodes") || !strings.Contains(it.Fix, "version-2") {
		t.Errorf("non-empty item %+v", it)
	}
	leaderName := fmt.Sprintf("zk%d", leader.ID+3)
	it = failedItem(t, res, "destination epoch", leaderName)
	if !strings.Contains(it.Detail, "ahead of the source's") {
		t.Errorf("epoch item %+v", it)
	}
	it = failedItem(t, res, "4lw whitelist", "zk5")
	if !strings.Contains(it.Detail, "cons, dump, hash") || !strings.Contains(it.Fix, "4lw.commands.whitelist") {
		t.Errorf("whitelist item %+v", it)
	}
	for _, it := range res.Items {
		if strings.HasPrefix(it.Member, "zk1") || strings.HasPrefix(it.Member, "zk2") || strings.HasPrefix(it.Member, "zk3") {
			if !it.OK {
				t.Errorf("source member refused: %+v", it)
			}
		}
	}
}
