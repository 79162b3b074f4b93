package mitosis

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/zkproxy/zkproxy/internal/fourlw"
)

// FourLetter asks one member a four-letter word and returns the whole answer
// (fourlw.Query's contract: ErrNotWhitelisted, ErrNotServing, ErrEmptyAnswer).
// fourlw.Members implements it.
type FourLetter interface {
	Query(ctx context.Context, addr, cmd string) (string, error)
}

// Setting is one zoo.cfg key=value line.
type Setting struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Source is the source ensemble as its members describe themselves.
type Source struct {
	Members []Member `json:"members"`
	// Leader is the id of the member that answered srvr with Mode: leader.
	Leader int `json:"leader"`
	// Settings holds, per member id, the zoo.cfg settings its conf answer
	// shows (tickTime, limits, dataDir, ports, maxClientCnxns, session
	// timeouts), already translated back to zoo.cfg keys.
	Settings map[int][]Setting `json:"settings"`
}

// Answer is what one source member said to conf and srvr.
type Answer struct {
	Addr       string
	Conf, Srvr string
	Err        error
}

// ReadSource asks every address conf and srvr (concurrently) and builds the
// Source from the answers (see SourceFromAnswers).
func ReadSource(ctx context.Context, q FourLetter, addrs []string) (Source, error) {
	answers := make([]Answer, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Go(func() {
			answers[i].Addr = a
			conf, err := q.Query(ctx, a, "conf")
			if err != nil {
				answers[i].Err = err
				return
			}
			srvr, err := q.Query(ctx, a, "srvr")
			answers[i].Conf, answers[i].Srvr, answers[i].Err = conf, srvr, err
		})
	}
	wg.Wait()
	return SourceFromAnswers(answers)
}

// SourceFromAnswers checks that the answers describe one healthy quorum
// with a static configuration and returns it. It refuses, with the reason,
// a member that did not answer or does not serve, members that disagree on
// the membership, a membership member nobody asked, no leader or two, and a
// config version other than 0: conf prints version=0 for a static
// configuration, and a non-zero version means a reconfig has run (dynamic
// reconfiguration, QuorumPeerConfig's dynamic config file), which a
// restart with a rewritten static zoo.cfg would fight.
func SourceFromAnswers(answers []Answer) (Source, error) {
	if len(answers) == 0 {
		return Source{}, errors.New("no source members given")
	}
	src := Source{Settings: map[int][]Setting{}}
	var problems []string
	var membership map[int]string
	var membershipFrom string
	asked := map[int]string{}
	var leaders []int
	for _, a := range answers {
		if a.Err != nil {
			problems = append(problems, fmt.Sprintf("%s did not answer: %v", a.Addr, a.Err))
			continue
		}
		conf, err := fourlw.ParseConf(a.Conf)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", a.Addr, err))
			continue
		}
		srvr, err := fourlw.ParseSrvr(a.Srvr)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", a.Addr, err))
			continue
		}
		switch srvr.Mode {
		case "leader":
			leaders = append(leaders, conf.ServerID)
		case "follower":
		default:
			problems = append(problems, fmt.Sprintf("%s is in mode %q: the source must be one quorum of serving participants", a.Addr, srvr.Mode))
			continue
		}
		if conf.Version != "0" && conf.Version != "" {
			problems = append(problems, fmt.Sprintf("%s: config version %s: dynamic reconfiguration has changed this ensemble's membership; mitosis plans static zoo.cfg files only", a.Addr, conf.Version))
		}
		if prev, dup := asked[conf.ServerID]; dup {
			problems = append(problems, fmt.Sprintf("%s and %s both answer as server id %d", prev, a.Addr, conf.ServerID))
			continue
		}
		asked[conf.ServerID] = a.Addr
		if membership == nil {
			membership, membershipFrom = conf.Members, a.Addr
		} else if !maps.Equal(membership, conf.Members) {
			problems = append(problems, fmt.Sprintf("%s and %s list different members (%s vs %s): not one ensemble", membershipFrom, a.Addr, memberIDs(membership), memberIDs(conf.Members)))
		}
		settings, clientPort, err := settingsFromConf(a.Conf)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", a.Addr, err))
			continue
		}
		src.Settings[conf.ServerID] = settings
		line, ok := conf.Members[conf.ServerID]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s answers as server id %d, which its own membership does not list", a.Addr, conf.ServerID))
			continue
		}
		m, err := parseServerValue(conf.ServerID, line)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: server.%d: %v", a.Addr, conf.ServerID, err))
			continue
		}
		m.ClientPort = clientPort
		if m.ClientAddr() != a.Addr {
			m.Client = a.Addr
		}
		src.Members = append(src.Members, m)
	}
	for id := range membership {
		if _, ok := asked[id]; !ok {
			problems = append(problems, fmt.Sprintf("server.%d=%s is a member but was not given as a source address: list every member", id, membership[id]))
		}
	}
	if len(problems) == 0 {
		switch len(leaders) {
		case 1:
			src.Leader = leaders[0]
		case 0:
			problems = append(problems, "no member is leading: the source must be one healthy quorum")
		default:
			problems = append(problems, fmt.Sprintf("members %v all say they lead: not one quorum", leaders))
		}
	}
	if len(problems) > 0 {
		return Source{}, fmt.Errorf("cannot plan from this source:\n  %s", strings.Join(problems, "\n  "))
	}
	slices.SortFunc(src.Members, func(a, b Member) int { return a.ID - b.ID })
	return src, nil
}

func memberIDs(m map[int]string) string {
	keys := slices.Sorted(maps.Keys(m))
	var s []string
	for _, k := range keys {
		s = append(s, strconv.Itoa(k))
	}
	return "{" + strings.Join(s, ",") + "}"
}

// confKeys maps the lines of a conf answer that are zoo.cfg settings, in the
// order the plan writes them. conf prints ZooKeeperServer.dumpConf then
// QuorumZooKeeperServer.dumpConf: besides these it shows sizes
// (dataDirSize, dataLogSize), serverId, electionAlg (always 3 since 3.6),
// electionPort/quorumPort (this member's own, repeated in its server line),
// peerType and the membership, none of which is a setting to copy.
var confKeys = []string{"tickTime", "initLimit", "syncLimit", "dataDir", "dataLogDir", "clientPort", "secureClientPort",
	"maxClientCnxns", "minSessionTimeout", "maxSessionTimeout", "clientPortListenBacklog"}

// settingsFromConf returns the settings a conf answer shows as zoo.cfg
// lines, and the member's client port.
func settingsFromConf(answer string) ([]Setting, int, error) {
	kv := map[string]string{}
	for _, line := range strings.Split(answer, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			kv[k] = v
		}
	}
	// conf prints the snapshot and log directories (FileTxnSnapLog's
	// snapDir/dataDir), which are the configured ones plus "version-2".
	for _, k := range []string{"dataDir", "dataLogDir"} {
		kv[k] = strings.TrimSuffix(strings.TrimSuffix(kv[k], "/version-2"), "\\version-2")
	}
	if kv["dataLogDir"] == kv["dataDir"] {
		delete(kv, "dataLogDir")
	}
	if kv["clientPortListenBacklog"] == "-1" { // the default: the OS's backlog
		delete(kv, "clientPortListenBacklog")
	}
	// A port that is not configured prints as -1 (ServerCnxnFactory absent).
	for _, k := range []string{"clientPort", "secureClientPort"} {
		if n, err := strconv.Atoi(kv[k]); err == nil && n <= 0 {
			delete(kv, k)
		}
	}
	var out []Setting
	for _, k := range confKeys {
		if v, ok := kv[k]; ok && v != "" {
			out = append(out, Setting{k, v})
		}
	}
	cp, err := strconv.Atoi(kv["clientPort"])
	if err != nil {
		// A member serving only its secure port.
		if cp, err = strconv.Atoi(kv["secureClientPort"]); err != nil {
			return nil, 0, fmt.Errorf("conf shows neither clientPort nor secureClientPort")
		}
	}
	return out, cp, nil
}
