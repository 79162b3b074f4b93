package cutover

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zkproxy/zkproxy/internal/fourlw"
)

// DestinationHealth is what the background check does once the split is
// recorded: the source is gone for good, so instead of comparing the
// ensembles it checks that the destination stands on its own. Its items:
// every destination member serves; one leader and every member's
// configuration lists exactly the destination (the quorum size); and the
// source is unreachable from it: the leader has no more learners than the
// other destination members (a source member still on the joint
// configuration that reached the destination leader would follow it as an
// extra learner, LearnerHandler). The report is published like a sync check
// (Controller.LastCheck, the check metrics and so the dashboard's "Mitosis
// sync" row), with Ready meaning "destination healthy".
func DestinationHealth(ctx context.Context, cfg CheckConfig) *Report {
	if cfg.Members == nil {
		cfg.Members = fourlw.Members{}
	}
	rep := &Report{CheckedAt: time.Now(), Members: make([]MemberStatus, len(cfg.Destination))}
	var wg sync.WaitGroup
	for i, addr := range cfg.Destination {
		wg.Go(func() { rep.Members[i] = probe(ctx, cfg.Members, addr, Destination) })
	}
	wg.Wait()
	var notServing, wrongSize, leaders []string
	for _, m := range rep.Members {
		switch {
		case m.Mode != "leader" && m.Mode != "follower":
			why := m.Error
			if why == "" {
				why = "mode " + m.Mode
			}
			notServing = append(notServing, m.Addr+" ("+why+")")
			continue
		case m.Mode == "leader":
			leaders = append(leaders, m.Addr)
			rep.Leader = m.Addr
		}
		if m.Members != len(cfg.Destination) {
			wrongSize = append(wrongSize, fmt.Sprintf("%s lists %d members", m.Addr, m.Members))
		}
	}
	item := func(name string, ok bool, detail string) {
		rep.Items = append(rep.Items, Item{Name: name, OK: ok, Detail: detail})
	}
	item("destination serving", len(notServing) == 0, detailOr(notServing, fmt.Sprintf("all %d members serve", len(cfg.Destination))))
	switch {
	case len(leaders) != 1:
		item("destination quorum", false, fmt.Sprintf("%d leaders (%s)", len(leaders), strings.Join(leaders, ", ")))
	case len(wrongSize) > 0:
		item("destination quorum", false, strings.Join(wrongSize, "; ")+fmt.Sprintf(", want %d", len(cfg.Destination)))
	default:
		item("destination quorum", true, fmt.Sprintf("leader %s, %d members", leaders[0], len(cfg.Destination)))
	}
	if len(leaders) == 1 {
		ans, err := cfg.Members.Query(ctx, leaders[0], "mntr")
		var kv map[string]string
		if err == nil {
			kv, err = fourlw.ParseMntr(ans)
		}
		learners, convErr := strconv.Atoi(kv["zk_learners"])
		switch {
		case err != nil:
			item("source unreachable", false, "mntr on the leader: "+err.Error())
		case convErr != nil:
			item("source unreachable", false, "the leader's mntr has no zk_learners")
		case learners > len(cfg.Destination)-1:
			item("source unreachable", false, fmt.Sprintf("the leader has %d learners, more than the %d other destination members: a member outside the destination follows it", learners, len(cfg.Destination)-1))
		default:
			item("source unreachable", true, fmt.Sprintf("the leader has %d learners", learners))
		}
	}
	rep.Ready = true
	for _, it := range rep.Items {
		rep.Ready = rep.Ready && it.OK
	}
	return rep
}

func detailOr(problems []string, ok string) string {
	if len(problems) > 0 {
		return "not serving: " + strings.Join(problems, "; ")
	}
	return ok
}

// checkHealth is the background check after the split (watchSync).
func (c *Controller) checkHealth(ctx context.Context) {
	rep := DestinationHealth(ctx, CheckConfig{Destination: c.cfg.Destination, Members: c.cfg.Members})
	c.m.observeCheck(rep)
	c.mu.Lock()
	c.lastCheck = rep
	c.mu.Unlock()
}
