package cutover

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/zkproxy/zkproxy/internal/fourlw"
)

// DirectSession is a session on the joint ensemble that does not come
// through this proxy. zkproxy moves only its own sessions: at the split a
// direct client stays with whichever side its connect string names.
type DirectSession struct {
	ID string `json:"id"`
	// Client and Member are the connection as the member's cons shows it;
	// empty when the session owns ephemeral nodes but no member this check
	// can see lists its connection (disconnected and not yet expired, or on
	// a port the check does not query: cons lists only the connections of
	// the port it is asked on).
	Client string `json:"client,omitempty"`
	Member string `json:"member,omitempty"`
	// Ephemerals are the ephemeral nodes the session owns.
	Ephemerals []string `json:"ephemerals,omitempty"`
	// BesideProxied: one of its ephemeral nodes has the same parent as an
	// ephemeral node of a proxied session — a client of the same tenant,
	// such as a Kafka broker registered in the same /brokers/ids, that was
	// never pointed at zkproxy. After the split it would go on with the
	// source's copy of the tenant's data while the rest of the tenant uses
	// the destination's.
	BesideProxied bool `json:"beside_proxied"`
}

// findDirect lists the sessions on the serving members that are neither
// proxied (this proxy's) nor peers' (the other zkproxies'), and the peers'
// sessions still connected to a source member. It asks cons on every
// serving member (its connections and their session ids) and dump on one
// of them (the owners of ephemeral nodes, DataTree.dumpEphemerals: every
// member holds the whole tree). problems names what could not be asked (a
// word not whitelisted, say), so the caller can say the list may be
// incomplete.
func findDirect(ctx context.Context, cfg CheckConfig, members []MemberStatus, leader string, proxied, peers, ignore map[int64]bool) (direct []DirectSession, peersOnSource []string, problems []string) {
	var serving []string
	for _, m := range members {
		if m.Mode != "" {
			serving = append(serving, m.Addr)
		}
	}
	if len(serving) == 0 {
		return nil, nil, []string{"no serving member to ask"}
	}
	// The leader first for dump: it is the member surely up to date.
	if i := slices.Index(serving, leader); i > 0 {
		serving[0], serving[i] = serving[i], serving[0]
	}

	conns := make([][]fourlw.Conn, len(serving))
	errs := make([]error, len(serving))
	var wg sync.WaitGroup
	for i, addr := range serving {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ans, err := cfg.Members.Query(ctx, addr, "cons")
			if err == nil {
				conns[i], err = fourlw.ParseCons(ans)
			}
			errs[i] = err
		}()
	}
	var owners map[int64][]string
	var dumpErr error
	for _, addr := range serving {
		var ans string
		if ans, dumpErr = cfg.Members.Query(ctx, addr, "dump"); dumpErr == nil {
			if owners, dumpErr = fourlw.ParseEphemerals(ans); dumpErr == nil {
				break
			}
		}
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			problems = append(problems, "cons: "+err.Error())
		}
	}
	if dumpErr != nil {
		problems = append(problems, "dump: "+dumpErr.Error())
	}

	// The parents of the proxied sessions' ephemeral nodes: where this
	// proxy's tenants register themselves.
	parents := map[string]bool{}
	for id, paths := range owners {
		if proxied[id] || peers[id] {
			for _, p := range paths {
				parents[path.Dir(p)] = true
			}
		}
	}
	seen := map[int64]bool{}
	add := func(id int64, client, member string) {
		if id == 0 || proxied[id] || ignore[id] || seen[id] {
			return
		}
		if peers[id] {
			if slices.Contains(cfg.Source, member) {
				seen[id] = true
				peersOnSource = append(peersOnSource, fmt.Sprintf("0x%016x (%s on %s)", uint64(id), client, member))
			}
			return
		}
		seen[id] = true
		d := DirectSession{ID: fmt.Sprintf("0x%016x", uint64(id)), Client: client, Member: member, Ephemerals: owners[id]}
		d.BesideProxied = slices.ContainsFunc(d.Ephemerals, func(p string) bool { return parents[path.Dir(p)] })
		direct = append(direct, d)
	}
	for i, cs := range conns {
		for _, c := range cs {
			add(c.SessionID, c.Remote, serving[i])
		}
	}
	ids := make([]int64, 0, len(owners))
	for id := range owners {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		add(id, "", "")
	}
	return direct, peersOnSource, problems
}

// directItem is the check's line on direct sessions. It warns and does not
// fail: clients of tenants that stay on the source are direct too, and
// normal, and so are the sessions of a second zkproxy not named as a peer.
func directItem(direct []DirectSession, problems []string) Item {
	var beside []string
	for _, d := range direct {
		if d.BesideProxied {
			beside = append(beside, d.describe())
		}
	}
	it := Item{Name: "clients behind zkproxy", OK: true}
	switch {
	case len(beside) > 0:
		it.Warning = true
		it.Detail = fmt.Sprintf("%d of %d sessions not through this proxy own ephemeral nodes beside proxied sessions' (a client of the same tenant never pointed at zkproxy, or a zkproxy not named in peers? at the split it stays with the source): %s",
			len(beside), len(direct), strings.Join(beside, ", "))
	case len(direct) > 0:
		it.Detail = fmt.Sprintf("%d sessions not through this proxy, none with ephemeral nodes beside proxied sessions' (other tenants, or a zkproxy not named in peers)", len(direct))
	default:
		it.Detail = "every session on the members comes through this proxy or its peers"
	}
	if len(problems) > 0 {
		it.Warning = true
		it.Detail += "; could not list every session: " + strings.Join(problems, "; ")
	}
	return it
}

// describe names a direct session for a check line or a warning.
func (d DirectSession) describe() string {
	where := "connection not seen"
	if d.Member != "" {
		where = d.Client + " on " + d.Member
	}
	s := fmt.Sprintf("%s (%s)", d.ID, where)
	if len(d.Ephemerals) > 0 {
		s += " owns " + strings.Join(d.Ephemerals, " ")
	}
	return s
}

// directOnSource names the direct sessions connected to a source member, or
// whose connection no member listed (it may be on one). known is false when
// the look for direct sessions was skipped or incomplete.
func (r *Report) directOnSource(source []string) (names []string, known bool) {
	for _, d := range r.Direct {
		if d.Member == "" || slices.Contains(source, d.Member) {
			names = append(names, d.describe())
		}
	}
	return names, r.directLooked && !r.directIncomplete
}
