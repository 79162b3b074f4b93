// Package planrun runs a `zkproxy mitosis plan` on zktest servers: each
// step's actions with the plan's own files (zoo.cfg, firewall scripts),
// then its check. The demo (cmd/zkdemo) and the mitosis package's tests
// drive migrations with it, so the plan is what gets exercised.
package planrun

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/mitosis"
)

// Runner runs plan steps.
type Runner struct {
	Plan *mitosis.Plan
	// Dir is where the plan's files are.
	Dir string
	// Servers maps server id to the zktest server playing that member.
	Servers map[int]*zktest.Server
	// Zkproxy runs a zkproxy command (Action.Args); nil skips them.
	Zkproxy func(ctx context.Context, args []string) error
	// Released waits until zkproxy holds no session (WaitReleased); nil
	// skips it.
	Released func(ctx context.Context) error
	// Check runs after each step's actions (nil: none). A returned error
	// stops the run.
	Check func(ctx context.Context, step mitosis.Step) error
	// Logf narrates (nil: quiet).
	Logf func(format string, args ...any)
}

// Run runs steps from..to (1-based, inclusive).
func (r *Runner) Run(ctx context.Context, from, to int) error {
	for _, s := range r.Plan.Steps {
		if s.N < from || s.N > to {
			continue
		}
		if err := r.Step(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// StepTitled finds the step whose title starts with prefix.
func (r *Runner) StepTitled(prefix string) (mitosis.Step, error) {
	for _, s := range r.Plan.Steps {
		if strings.HasPrefix(s.Title, prefix) {
			return s, nil
		}
	}
	return mitosis.Step{}, fmt.Errorf("planrun: no step titled %q...", prefix)
}

// Step runs one step's actions and its check.
func (r *Runner) Step(ctx context.Context, s mitosis.Step) error {
	r.logf("step %d: %s", s.N, s.Title)
	for _, a := range s.Actions {
		start := time.Now()
		if err := r.Do(ctx, a); err != nil {
			return fmt.Errorf("step %d (%s): %s: %w", s.N, s.Title, a.Command, err)
		}
		r.logf("  %s: %s", a.Command, time.Since(start).Round(time.Millisecond))
	}
	if r.Check != nil {
		if err := r.Check(ctx, s); err != nil {
			return fmt.Errorf("step %d (%s): check %s: %w", s.N, s.Title, s.Check.Command, err)
		}
	}
	return nil
}

func (r *Runner) logf(format string, args ...any) {
	if r.Logf != nil {
		r.Logf(format, args...)
	}
}

func (r *Runner) server(id int) (*zktest.Server, error) {
	s, ok := r.Servers[id]
	if !ok {
		return nil, fmt.Errorf("planrun: no server for member %d", id)
	}
	return s, nil
}

// Do runs one action.
func (r *Runner) Do(ctx context.Context, a mitosis.Action) error {
	if a.Kind == mitosis.Zkproxy {
		if r.Zkproxy == nil {
			return nil
		}
		return r.Zkproxy(ctx, a.Args)
	}
	if a.Kind == mitosis.WaitReleased {
		if r.Released == nil {
			return nil
		}
		return r.Released(ctx)
	}
	if a.Kind == mitosis.WaitLeaderIn {
		return r.waitLeaderIn(ctx, a.Nodes)
	}
	if a.Kind == mitosis.StartAll {
		// Stop every member at once, then start them together, as
		// "restart every destination member at once" means.
		for _, id := range a.Nodes {
			if _, err := r.server(id); err != nil {
				return err
			}
		}
		if err := r.each(a.Nodes, (*zktest.Server).Stop); err != nil {
			return err
		}
		return r.each(a.Nodes, (*zktest.Server).Start)
	}
	s, err := r.server(a.Node)
	if err != nil {
		return err
	}
	switch a.Kind {
	case mitosis.Install:
		b, err := os.ReadFile(filepath.Join(r.Dir, a.File))
		if err != nil {
			return err
		}
		s.UseConfigFile(b)
		return nil
	case mitosis.Start:
		return s.Start()
	case mitosis.Stop:
		return s.Stop()
	case mitosis.Restart:
		return s.Restart()
	case mitosis.WaitServing:
		return s.WaitServing(ctx)
	case mitosis.FirewallApply, mitosis.FirewallRemove:
		return RunScript(ctx, filepath.Join(r.Dir, a.File))
	}
	return fmt.Errorf("planrun: unknown action kind %q", a.Kind)
}

// waitLeaderIn polls the members until one of them says it leads.
func (r *Runner) waitLeaderIn(ctx context.Context, nodes []int) error {
	for {
		var modes []string
		for _, id := range nodes {
			s, err := r.server(id)
			if err != nil {
				return err
			}
			st, err := s.Srvr()
			switch {
			case err != nil:
				modes = append(modes, fmt.Sprintf("zk%d: %v", id, err))
			case st.Mode == "leader":
				return nil
			default:
				modes = append(modes, fmt.Sprintf("zk%d: %s", id, st.Mode))
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("planrun: no leader among members %v (%s): %w", nodes, strings.Join(modes, "; "), ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (r *Runner) each(nodes []int, f func(*zktest.Server) error) error {
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, id := range nodes {
		wg.Go(func() { errs[i] = f(r.Servers[id]) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// RunScript runs a plan's shell script (a firewall script) with sh.
func RunScript(ctx context.Context, path string) error {
	out, err := exec.CommandContext(ctx, "sh", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("sh %s: %w: %s", path, err, strings.TrimSpace(string(out)))
	}
	return nil
}
