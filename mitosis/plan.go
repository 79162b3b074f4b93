// Package mitosis plans and verifies a Yelp-style ZooKeeper mitosis: two
// destination members join the source ensemble, replicate its data, and a
// firewall splits the joint ensemble into the source and the destination.
//
// Build turns the source (read live with conf and srvr, see ReadSource) and
// a destination spec into every file the operator needs (Plan.Files) and a
// numbered runbook (Plan.Steps, rendered as RUNBOOK.md); it does no I/O.
// Verify checks the live members at each stage through the small
// interfaces this package declares (FourLetter, Sessions, Prober).
package mitosis

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Spec is what the operator decides; Build derives the rest.
type Spec struct {
	Source Source
	// Template is a source member's zoo.cfg, for the settings conf does not
	// show (TLS, whitelist, auth); nil plans from conf alone, which Build
	// refuses for a source with a secure client port.
	Template *ZooCfg
	// Destination lists every destination member, dormant ones included.
	// A zero ClientPort takes the source's clientPort.
	Destination []Member
	// Dormant lists the destination ids that stay out of the joint
	// ensemble and first start at the split. Zero: Build picks the
	// highest ids, as few as keep the source a majority of the joint
	// ensemble.
	Dormant []int
	// DestinationDataDir is the destination members' dataDir ("{id}" is
	// replaced by the server id); empty: the source's (lowest id's) dataDir.
	DestinationDataDir string
	// Dir is the plan directory as the runbook's commands name it.
	Dir string
	// Zkproxy is the zkproxy command in the runbook; empty: "zkproxy".
	Zkproxy string
	// ConfigPath is where zoo.cfg lives on the members; empty:
	// /etc/zookeeper/conf/zoo.cfg.
	ConfigPath string
	// Service is the members' service name for systemctl; empty: zookeeper.
	Service string
	// Chroots are the chroots that move (e.g. /kafka), for leftovers.
	Chroots []string
	// Chain prefixes the firewall's chain (iptables) and table (nftables)
	// names; empty: ZK-MITOSIS.
	Chain string
}

// Plan is everything the migration needs: Files (path under the plan
// directory → content) and the Steps the runbook lists.
type Plan struct {
	Source      []Member `json:"source"`
	Destination []Member `json:"destination"`
	// Joined are the destination members in the joint ensemble.
	Joined  []int `json:"joined"`
	Dormant []int `json:"dormant"`
	// SourceLeader is the source's leader when the plan was made: its
	// restarts come last.
	SourceLeader int    `json:"source_leader"`
	Chain        string `json:"chain"`
	// Chroots are the chroots that move (mitosis leftovers' default).
	Chroots []string `json:"chroots,omitempty"`
	Steps   []Step   `json:"steps"`
	// Warnings are things the plan could not check or carry over.
	Warnings []string `json:"warnings,omitempty"`

	Files map[string][]byte `json:"-"`
}

// Step is one numbered runbook step.
type Step struct {
	N       int      `json:"n"`
	Title   string   `json:"title"`
	Note    string   `json:"note,omitempty"`
	Actions []Action `json:"actions"`
	// Check is what to run after the step to see it worked.
	Check Check `json:"check"`
}

// ActionKind says what an Action does, so a driver (the demo) can run a
// plan without parsing shell.
type ActionKind string

// The action kinds.
const (
	Install        ActionKind = "install"     // copy File to the node's zoo.cfg
	Start          ActionKind = "start"       // start the node's ZooKeeper
	Stop           ActionKind = "stop"        // stop it
	Restart        ActionKind = "restart"     // restart it
	WaitServing    ActionKind = "wait"        // wait until srvr says leader/follower
	WaitLeaderIn   ActionKind = "wait-leader" // wait until one of Nodes says leader
	FirewallApply  ActionKind = "fw-apply"    // run File (iptables) on the node
	FirewallRemove ActionKind = "fw-remove"   // run File (iptables) on the node
	Zkproxy        ActionKind = "zkproxy"     // run zkproxy Args
	StartAll       ActionKind = "start-all"   // (re)start Nodes together
	WaitReleased   ActionKind = "released"    // wait until zkproxy holds no session
)

// Action is one command of a step.
type Action struct {
	Kind  ActionKind `json:"kind"`
	Node  int        `json:"node,omitempty"`
	Nodes []int      `json:"nodes,omitempty"`
	File  string     `json:"file,omitempty"`
	Args  []string   `json:"args,omitempty"`
	// Command is the exact shell line the runbook shows ("on HOST: ..."
	// for member hosts).
	Command string `json:"command"`
}

// Check is the command that confirms a step: a zkproxy command (Args),
// with Stage set when it is `mitosis verify STAGE`. MustPass: the step is
// not done until it exits 0.
type Check struct {
	Args     []string `json:"args"`
	Stage    string   `json:"stage,omitempty"`
	MustPass bool     `json:"must_pass"`
	Command  string   `json:"command"`
}

// Build plans the migration. It refuses, naming each reason, what it cannot
// plan: id or address clashes, a destination that would let the source
// lose its majority at the split or let empty members outvote the ones
// holding the data, dynamic reconfiguration, and TLS settings it cannot see.
func Build(spec Spec) (*Plan, error) {
	spec = withDefaults(spec)
	src := spec.Source
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if len(src.Members) == 0 {
		bad("the source has no members")
	}
	if len(spec.Destination) == 0 {
		bad("no destination members given")
	}
	base := src.Settings[firstID(src.Members)]
	clientPort, _ := strconv.Atoi(get(base, "clientPort"))
	if clientPort == 0 {
		clientPort, _ = strconv.Atoi(get(base, "secureClientPort"))
	}
	dst := slices.Clone(spec.Destination)
	for i := range dst {
		if dst[i].ClientPort == 0 {
			dst[i].ClientPort = clientPort
		}
	}
	// Clashes: ids, and every address a member listens on.
	seenID := map[int]string{}
	seenAddr := map[string]string{}
	for _, side := range []struct {
		name string
		ms   []Member
	}{{"source", src.Members}, {"destination", dst}} {
		for _, m := range side.ms {
			who := fmt.Sprintf("%s member %s", side.name, m)
			if prev, ok := seenID[m.ID]; ok {
				bad("server id %d is both %s and %s: give the destination member an unused id (its dataDir/myid too)", m.ID, prev, who)
			}
			seenID[m.ID] = who
			for _, a := range []string{
				net.JoinHostPort(m.Host, strconv.Itoa(m.QuorumPort)),
				net.JoinHostPort(m.Host, strconv.Itoa(m.ElectionPort)),
				m.ClientAddr(),
			} {
				if prev, ok := seenAddr[a]; ok && prev != who {
					bad("address %s is used by both %s and %s", a, prev, who)
				}
				seenAddr[a] = who
			}
		}
	}
	dormant := slices.Clone(spec.Dormant)
	if len(dormant) == 0 && len(dst) >= len(src.Members) {
		// The source must stay a majority of the joint ensemble: when the
		// firewall goes up it keeps serving on its own (a quorum of the
		// joint membership), which is what lets zkproxy hold sessions
		// instead of dropping them.
		for _, m := range slices.Backward(sortedByID(dst)) {
			if len(dst)-len(dormant) < len(src.Members) {
				break
			}
			dormant = append(dormant, m.ID)
		}
	}
	var joined []int
	for _, m := range dst {
		if !slices.Contains(dormant, m.ID) {
			joined = append(joined, m.ID)
		}
	}
	for _, id := range dormant {
		if _, ok := byID(dst, id); !ok {
			bad("dormant member %d is not a destination member", id)
		}
	}
	slices.Sort(joined)
	slices.Sort(dormant)
	if len(src.Members) > 0 && len(dst) > 0 {
		if len(joined) == 0 {
			bad("no destination member joins: at least one must, to copy the data")
		}
		if len(joined) >= len(src.Members) {
			bad("%d destination members would join %d source members: the source must stay a majority of the joint ensemble to keep serving when the firewall splits it; mark more destination members --dormant", len(joined), len(src.Members))
		}
		if 2*len(joined) <= len(dst) {
			bad("only %d of %d destination members join: they must be a majority of the destination, or the empty dormant members could elect an empty leader at the split and wipe the copied data; mark fewer members --dormant", len(joined), len(dst))
		}
	}
	if spec.Template != nil {
		if v, _ := spec.Template.Get("reconfigEnabled"); strings.EqualFold(v, "true") {
			bad("the source's zoo.cfg has reconfigEnabled=true: with dynamic reconfiguration the membership lives in the dynamic config file and a restart does not take the planned server lines; disable it first (plans are static)")
		}
		if v, ok := spec.Template.Get("dynamicConfigFile"); ok {
			bad("the source's zoo.cfg uses dynamicConfigFile=%s: dynamic reconfiguration is not planned", v)
		}
	} else if get(base, "secureClientPort") != "" {
		bad("the source serves TLS (secureClientPort=%s) and conf does not show its ssl.* settings: pass the source's zoo.cfg (--source-zoo-cfg)", get(base, "secureClientPort"))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("cannot plan this mitosis:\n  %s", strings.Join(problems, "\n  "))
	}

	p := &Plan{
		Source: src.Members, Destination: sortedByID(dst), Joined: joined, Dormant: dormant,
		SourceLeader: src.Leader, Chain: spec.Chain, Chroots: spec.Chroots, Files: map[string][]byte{},
	}
	if spec.Template == nil {
		p.Warnings = append(p.Warnings, "planned from conf alone: settings conf does not show (4lw.commands.whitelist, ssl.*, authProvider.*, autopurge.*, admin.*) are not in the generated files; pass --source-zoo-cfg to carry them")
	}
	p.writeConfigs(spec)
	p.writeFirewall()
	p.Steps = steps(spec, p)
	p.Files["RUNBOOK.md"] = runbook(spec, p)
	js, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("plan.json: %w", err)
	}
	p.Files["plan.json"] = append(js, '\n')
	return p, nil
}

func withDefaults(s Spec) Spec {
	if s.Zkproxy == "" {
		s.Zkproxy = "zkproxy"
	}
	if s.ConfigPath == "" {
		s.ConfigPath = "/etc/zookeeper/conf/zoo.cfg"
	}
	if s.Service == "" {
		s.Service = "zookeeper"
	}
	if s.Chain == "" {
		s.Chain = "ZK-MITOSIS"
	}
	if s.Dir == "" {
		s.Dir = "."
	}
	return s
}

// ErrNoPlan is returned by ReadPlan for a directory without plan.json.
var ErrNoPlan = errors.New("mitosis: no plan.json (run `zkproxy mitosis plan` first)")

// ParsePlan reads a plan.json.
func ParsePlan(b []byte) (*Plan, error) {
	var p Plan
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("plan.json: %w", err)
	}
	if len(p.Source) == 0 || len(p.Destination) == 0 {
		return nil, errors.New("plan.json: no source or destination members")
	}
	return &p, nil
}

func firstID(ms []Member) int {
	if len(ms) == 0 {
		return 0
	}
	return slices.Min(ids(ms))
}

func sortedByID(ms []Member) []Member {
	out := slices.Clone(ms)
	slices.SortFunc(out, func(a, b Member) int { return a.ID - b.ID })
	return out
}

func get(ss []Setting, key string) string {
	for _, s := range ss {
		if s.Key == key {
			return s.Value
		}
	}
	return ""
}

func set(ss []Setting, key, value string) []Setting {
	out := slices.Clone(ss)
	for i := range out {
		if out[i].Key == key {
			out[i].Value = value
			return out
		}
	}
	return append(out, Setting{key, value})
}

func without(ss []Setting, key string) []Setting {
	return slices.DeleteFunc(slices.Clone(ss), func(s Setting) bool { return s.Key == key })
}

// Joint is the joint membership: the source and the joined destination
// members.
func (p *Plan) Joint() []Member {
	out := slices.Clone(p.Source)
	for _, id := range p.Joined {
		m, _ := byID(p.Destination, id)
		out = append(out, m)
	}
	return out
}

// Member returns the member with id on either side.
func (p *Plan) Member(id int) (Member, bool) {
	if m, ok := byID(p.Source, id); ok {
		return m, true
	}
	return byID(p.Destination, id)
}

func (p *Plan) isSource(id int) bool {
	_, ok := byID(p.Source, id)
	return ok
}

// JointFile, DestinationFile, SourceFile name the generated zoo.cfg files.
func JointFile(id int) string       { return fmt.Sprintf("joint/zoo.cfg.%d", id) }
func DestinationFile(id int) string { return fmt.Sprintf("destination/zoo.cfg.%d", id) }
func SourceFile(id int) string      { return fmt.Sprintf("source/zoo.cfg.%d", id) }

// FirewallFile names a destination node's firewall script: kind is
// "iptables" or "nftables", op "apply" or "remove".
func FirewallFile(kind, op string, id int) string {
	return fmt.Sprintf("firewall/%s-%s-%d.sh", kind, op, id)
}

func (p *Plan) writeConfigs(spec Spec) {
	src := spec.Source
	var sourceHosts []string
	for _, m := range src.Members {
		sourceHosts = append(sourceHosts, m.Host)
	}
	settingsFor := func(m Member) []Setting {
		ss, ok := src.Settings[m.ID]
		if !ok { // a destination member: the lowest source member's settings
			ss = src.Settings[firstID(src.Members)]
			if spec.DestinationDataDir != "" {
				ss = set(without(ss, "dataLogDir"), "dataDir", strings.ReplaceAll(spec.DestinationDataDir, "{id}", strconv.Itoa(m.ID)))
			}
			if get(ss, "clientPort") != "" {
				ss = set(ss, "clientPort", strconv.Itoa(m.ClientPort))
			}
		}
		if spec.Template != nil {
			ss = append(slices.Clone(ss), spec.Template.extras(m.Host, sourceHosts)...)
		}
		return ss
	}
	joint := p.Joint()
	for _, m := range joint {
		p.Files[JointFile(m.ID)] = render([]string{
			fmt.Sprintf("zkproxy mitosis plan: JOINT configuration for %s.", m),
			fmt.Sprintf("Source members %s and destination members %s in one ensemble (stage one).", idList(p.Source), joinInts(p.Joined)),
		}, settingsFor(m), joint)
	}
	for _, m := range p.Destination {
		p.Files[DestinationFile(m.ID)] = render([]string{
			fmt.Sprintf("zkproxy mitosis plan: final DESTINATION configuration for %s.", m),
			"Installed before the split; takes effect when the destination restarts behind the firewall.",
		}, settingsFor(m), p.Destination)
	}
	for _, m := range p.Source {
		p.Files[SourceFile(m.ID)] = render([]string{
			fmt.Sprintf("zkproxy mitosis plan: restored SOURCE configuration for %s.", m),
			"The source's own membership again; takes effect at the clean-up restart.",
		}, settingsFor(m), p.Source)
	}
}

func joinInts(xs []int) string {
	var s []string
	for _, x := range xs {
		s = append(s, strconv.Itoa(x))
	}
	return strings.Join(s, ",")
}

// WriteFiles writes a plan's files under dir (scripts executable),
// replacing earlier plan files there.
func WriteFiles(dir string, files map[string][]byte) error {
	for _, name := range slices.Sorted(maps.Keys(files)) {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("writing the plan: %w", err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(path, files[name], mode); err != nil {
			return fmt.Errorf("writing the plan: %w", err)
		}
	}
	return nil
}
