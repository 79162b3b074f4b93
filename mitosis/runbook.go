package mitosis

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Stages verify knows, in migration order.
const (
	StagePreJoin  = "pre-join"
	StageJoined   = "joined"
	StagePreSplit = "pre-split"
	StageSplit    = "split"
	StageCleaned  = "cleaned"
)

// Stages lists every stage in order.
var Stages = []string{StagePreJoin, StageJoined, StagePreSplit, StageSplit, StageCleaned}

// stepBuilder accumulates the runbook's steps.
type stepBuilder struct {
	spec  Spec
	p     *Plan
	steps []Step
}

func (b *stepBuilder) on(m Member, cmd string) string { return fmt.Sprintf("on %s: %s", m.Host, cmd) }

func (b *stepBuilder) file(f string) string { return path.Join(b.spec.Dir, f) }

func (b *stepBuilder) install(m Member, f string) Action {
	return Action{Kind: Install, Node: m.ID, File: f,
		Command: b.on(m, fmt.Sprintf("sudo install -m 0644 %s %s", b.file(f), b.spec.ConfigPath))}
}

func (b *stepBuilder) service(kind ActionKind, m Member) Action {
	return Action{Kind: kind, Node: m.ID, Command: b.on(m, fmt.Sprintf("sudo systemctl %s %s", kind, b.spec.Service))}
}

func (b *stepBuilder) wait(m Member) Action {
	host, port := m.Host, strconv.Itoa(m.ClientPort)
	return Action{Kind: WaitServing, Node: m.ID,
		Command: fmt.Sprintf("until echo srvr | nc %s %s | grep -qE 'Mode: (leader|follower)'; do sleep 1; done", host, port)}
}

// leaderIn waits until one of ms says it leads. After the split firewall a
// source member still says "follower" of a destination leader until its
// read from that leader times out (Learner: syncLimit ticks), so waiting
// for each to serve can pass before the source side has even noticed;
// it has re-formed only once one of its own members leads.
func (b *stepBuilder) leaderIn(ms []Member) Action {
	var polls []string
	for _, m := range ms {
		polls = append(polls, fmt.Sprintf("echo srvr | nc %s %d;", m.Host, m.ClientPort))
	}
	return Action{Kind: WaitLeaderIn, Nodes: ids(ms),
		Command: fmt.Sprintf("until { %s } | grep -q 'Mode: leader'; do sleep 1; done", strings.Join(polls, " "))}
}

// released waits until every held session re-attached and was released
// (or the barrier came down by itself).
func (b *stepBuilder) released() Action {
	return Action{Kind: WaitReleased, Command: fmt.Sprintf(`until %s cutover status -o json | grep -q '"held": 0'; do sleep 1; done`, b.spec.Zkproxy)}
}

func (b *stepBuilder) zkproxy(args ...string) Action {
	return Action{Kind: Zkproxy, Args: args, Command: b.spec.Zkproxy + " " + strings.Join(args, " ")}
}

func (b *stepBuilder) verify(stage string) Check {
	args := []string{"mitosis", "verify", stage, "--plan", b.spec.Dir}
	return Check{Args: args, Stage: stage, MustPass: true, Command: b.spec.Zkproxy + " " + strings.Join(args, " ")}
}

func (b *stepBuilder) show(args ...string) Check {
	return Check{Args: args, Command: b.spec.Zkproxy + " " + strings.Join(args, " ")}
}

func (b *stepBuilder) add(title, note string, check Check, actions ...Action) {
	b.steps = append(b.steps, Step{N: len(b.steps) + 1, Title: title, Note: note, Actions: actions, Check: check})
}

// restartOrder is the source members, followers first and the leader last:
// a follower's restart costs only its own clients, the leader's an election.
func (p *Plan) restartOrder() []Member {
	out := slices.Clone(p.Source)
	slices.SortStableFunc(out, func(a, b Member) int {
		switch {
		case a.ID == p.SourceLeader:
			return 1
		case b.ID == p.SourceLeader:
			return -1
		}
		return a.ID - b.ID
	})
	return out
}

func steps(spec Spec, p *Plan) []Step {
	b := &stepBuilder{spec: spec, p: p}
	dst := func(ids []int) []Member {
		var out []Member
		for _, id := range ids {
			m, _ := byID(p.Destination, id)
			out = append(out, m)
		}
		return out
	}
	joined, dormant := dst(p.Joined), dst(p.Dormant)

	b.add("Check both ensembles before the join", "The destination must hold nothing but /zookeeper and must not be ahead of the source: a destination member that wins the joint election would overwrite the source's data.", b.verify(StagePreJoin))
	if len(dormant) > 0 {
		var acts []Action
		for _, m := range dormant {
			acts = append(acts, b.service(Stop, m))
		}
		b.add("Stop the dormant destination member(s) "+joinInts(p.Dormant), "They stay out of the joint ensemble and first start at the split, so the source stays a majority of the joint ensemble.", b.verify(StagePreJoin), acts...)
	}
	var acts []Action
	for _, m := range joined {
		acts = append(acts, b.install(m, JointFile(m.ID)), b.service(Restart, m))
	}
	for _, m := range joined {
		acts = append(acts, b.wait(m))
	}
	b.add("Start destination members "+joinInts(p.Joined)+" with the joint configuration",
		"They sync the source's data from its leader and follow it. Their dataDir must be empty.", b.show("cutover", "check"), acts...)
	for _, m := range p.restartOrder() {
		hold := b.zkproxy("cutover", "hold", "--member", m.ClientAddr())
		note := "zkproxy holds the sessions on this member until nothing is in flight; each re-attaches after the restart."
		if m.ID == p.SourceLeader {
			hold = b.zkproxy("cutover", "hold")
			note = "The leader last (as planned; if another member leads now, restart that one last instead): its restart makes every member drop its clients for the election, so zkproxy holds every session."
		}
		acts := []Action{hold, b.install(m, JointFile(m.ID)), b.service(Restart, m), b.wait(m)}
		if m.ID == p.SourceLeader {
			// The leader's restart is an election for every joint member:
			// each drops its clients and re-syncs with the new leader, so
			// wait for all of them, not only the restarted one, before
			// releasing the sessions or verifying the joint ensemble.
			for _, o := range append(append([]Member(nil), p.Source...), joined...) {
				if o.ID != m.ID {
					acts = append(acts, b.wait(o))
				}
			}
		}
		acts = append(acts, b.released(), b.zkproxy("cutover", "release"))
		b.add(fmt.Sprintf("Restart source member %s onto the joint configuration", m), note, b.show("cutover", "status"), acts...)
	}
	b.add("Confirm the joint ensemble", "One quorum of every joint member, one config everywhere, the destination caught up.", b.verify(StageJoined))
	b.add("Wait for mitosis sync", "", b.verify(StageJoined), b.zkproxy("cutover", "check", "--wait", "10m"))
	b.add("Move every session to the destination", "", b.verify(StagePreSplit), b.zkproxy("cutover", "start"))
	b.add("Raise the split barrier", "zkproxy holds every client request from here until each session re-attaches to the split destination.", b.show("cutover", "status"), b.zkproxy("cutover", "split", "--prepare"))
	acts = nil
	for _, m := range p.Destination {
		acts = append(acts, b.install(m, DestinationFile(m.ID)))
	}
	for _, m := range p.Source {
		acts = append(acts, b.install(m, SourceFile(m.ID)))
	}
	b.add("Install the final configurations (no restart)", "Each takes effect at that member's next restart.", b.show("cutover", "status"), acts...)
	acts = nil
	for _, m := range p.Destination {
		acts = append(acts, Action{Kind: FirewallApply, Node: m.ID, File: FirewallFile("iptables", "apply", m.ID),
			Command: b.on(m, "sudo sh "+b.file(FirewallFile("iptables", "apply", m.ID))+"   # or "+FirewallFile("nftables", "apply", m.ID))})
	}
	// The source members keep a majority of the joint ensemble; if the
	// joint leader was a destination member (split --prepare refuses that
	// when clients are connected to source members directly, unless
	// forced) they elect a new one first: wait for a source leader, then
	// for each member to serve, before the split is verified.
	acts = append(acts, b.leaderIn(p.Source))
	for _, m := range p.Source {
		acts = append(acts, b.wait(m))
	}
	b.add("Apply the split firewall on every destination member", "The joined destination members lose the joint quorum; the source keeps it (a majority) and serves on (after an election if the joint leader was a destination member).", b.show("cutover", "status"), acts...)
	restartAll := Action{Kind: StartAll, Nodes: ids(p.Destination), Command: "on every destination host at once: sudo systemctl restart " + spec.Service}
	acts = []Action{restartAll}
	for _, m := range p.Destination {
		acts = append(acts, b.wait(m))
	}
	acts = append(acts, b.released())
	b.add("Restart every destination member at once, dormant included", "They elect their own leader with the copied data; zkproxy re-attaches each held session and releases it.", b.show("cutover", "status"), acts...)
	b.add("Record the split", "Rollback is refused from here on.", b.verify(StageSplit), b.zkproxy("cutover", "split"))
	acts = nil
	for _, m := range p.restartOrder() {
		acts = append(acts, b.service(Restart, m), b.wait(m))
	}
	b.add("Restart the source members onto their own configuration", "One at a time, the leader last. The source serves its remaining tenants on its own membership again.", b.verify(StageCleaned), acts...)
	acts = nil
	for _, m := range p.Destination {
		acts = append(acts, Action{Kind: FirewallRemove, Node: m.ID, File: FirewallFile("iptables", "remove", m.ID),
			Command: b.on(m, "sudo sh "+b.file(FirewallFile("iptables", "remove", m.ID))+"   # or "+FirewallFile("nftables", "remove", m.ID))})
	}
	b.add("Remove the split firewall", "Neither side lists the other any more, so they stay apart.", b.verify(StageCleaned), acts...)
	b.add("List what each side still holds for the other", "It never deletes: review, then run the delete commands it prints.",
		b.show("mitosis", "leftovers", "--plan", spec.Dir))
	return b.steps
}

// runbook renders RUNBOOK.md from the steps.
func runbook(spec Spec, p *Plan) []byte {
	var w strings.Builder
	fmt.Fprintf(&w, "# Mitosis runbook\n\n")
	fmt.Fprintf(&w, "Generated by `zkproxy mitosis plan`. Source members %s (leader %d when planned); destination members %s, joining %s",
		idList(p.Source), p.SourceLeader, idList(p.Destination), joinInts(p.Joined))
	if len(p.Dormant) > 0 {
		fmt.Fprintf(&w, ", dormant %s", joinInts(p.Dormant))
	}
	fmt.Fprintf(&w, ".\n\nCopy this directory to every member host at %s. zkproxy commands reach the proxy at `$ZKPROXY_ADMIN_URL`.\n", spec.Dir)
	fmt.Fprintf(&w, "Each step ends with its check; do not go on until it passes.\n")
	for _, warn := range p.Warnings {
		fmt.Fprintf(&w, "\n> **Warning:** %s\n", warn)
	}
	fmt.Fprintf(&w, "\n| member | side | client address | joint | final |\n|---|---|---|---|---|\n")
	for _, m := range p.Source {
		fmt.Fprintf(&w, "| %s | source | %s | %s | %s |\n", m, m.ClientAddr(), JointFile(m.ID), SourceFile(m.ID))
	}
	for _, m := range p.Destination {
		joint := JointFile(m.ID)
		if slices.Contains(p.Dormant, m.ID) {
			joint = "(dormant)"
		}
		fmt.Fprintf(&w, "| %s | destination | %s | %s | %s |\n", m, m.ClientAddr(), joint, DestinationFile(m.ID))
	}
	for _, s := range p.Steps {
		fmt.Fprintf(&w, "\n## %d. %s\n\n", s.N, s.Title)
		if s.Note != "" {
			fmt.Fprintf(&w, "%s\n\n", s.Note)
		}
		if len(s.Actions) > 0 {
			fmt.Fprintf(&w, "```sh\n")
			for _, a := range s.Actions {
				fmt.Fprintf(&w, "%s\n", a.Command)
			}
			fmt.Fprintf(&w, "```\n\n")
		}
		verdict := "shows the state"
		if s.Check.MustPass {
			verdict = "must exit 0"
		}
		fmt.Fprintf(&w, "Check (%s): `%s`\n", verdict, s.Check.Command)
	}
	return []byte(w.String())
}
