package mitosis

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
)

// Tree reads znodes (a ZooKeeper client session on one side).
type Tree interface {
	Children(ctx context.Context, path string) ([]string, error)
	// DataLength is the length of the znode's data (Stat.dataLength).
	DataLength(ctx context.Context, path string) (int, error)
}

// Leftover is a znode tree one side still holds for the other.
type Leftover struct {
	Side string `json:"side"` // where it is: source or destination
	Path string `json:"path"`
	// Nodes and Bytes count the tree (the root included) and its data.
	Nodes int `json:"nodes"`
	Bytes int `json:"bytes"`
	// Truncated: the walk stopped at the node limit; the counts are lower
	// bounds.
	Truncated bool   `json:"truncated,omitempty"`
	Why       string `json:"why"`
	Delete    string `json:"delete"`
}

// LeftoverConfig says what moved.
type LeftoverConfig struct {
	// Chroots are the trees that moved to the destination (e.g. /kafka).
	Chroots []string
	// Source and Destination read each side; SourceServer and
	// DestinationServer are the connect strings the delete commands name.
	Source, Destination             Tree
	SourceServer, DestinationServer string
	// MaxNodes bounds each tree's walk; zero means 1,000,000.
	MaxNodes int
	// Fleet are the znodes of zkproxy fleets (docs/fleet.md, e.g.
	// /zkproxy): live on the destination after the split, so never listed
	// there; the source's frozen copy is listed.
	Fleet []string
}

// inFleet reports whether top-level tree p holds (or is under) a fleet path.
func (cfg LeftoverConfig) inFleet(p string) bool {
	return slices.ContainsFunc(cfg.Fleet, func(f string) bool {
		f = path.Clean("/" + f)
		return f == p || strings.HasPrefix(f, p+"/") || strings.HasPrefix(p, f+"/")
	})
}

// FindLeftovers lists, after the split, the moved chroots still on the
// source and every other top-level tree on the destination (the other
// tenants' data, copied by the joint ensemble). It never deletes: each
// entry carries the zkCli command an operator would run.
func FindLeftovers(ctx context.Context, cfg LeftoverConfig) ([]Leftover, error) {
	if cfg.MaxNodes == 0 {
		cfg.MaxNodes = 1_000_000
	}
	if len(cfg.Chroots) == 0 {
		return nil, fmt.Errorf("leftovers: name the chroots that moved (e.g. /kafka)")
	}
	var out []Leftover
	for _, c := range cfg.Chroots {
		c = path.Clean("/" + c)
		if c == "/" || c == "/zookeeper" || strings.HasPrefix(c, "/zookeeper/") {
			return nil, fmt.Errorf("leftovers: %q cannot be a migrated chroot", c)
		}
		l := Leftover{Side: "source", Path: c, Why: "moved to the destination"}
		found, err := walk(ctx, cfg.Source, c, &l, cfg.MaxNodes)
		if err != nil {
			return nil, fmt.Errorf("leftovers: source %s: %w", c, err)
		}
		if found {
			l.Delete = fmt.Sprintf("zkCli.sh -server %s deleteall %s", cfg.SourceServer, c)
			out = append(out, l)
		}
	}
	for _, f := range cfg.Fleet {
		f = path.Clean("/" + f)
		l := Leftover{Side: "source", Path: f, Why: "zkproxy fleet state, frozen at the split (the destination's copy is the live one)"}
		found, err := walk(ctx, cfg.Source, f, &l, cfg.MaxNodes)
		if err != nil {
			return nil, fmt.Errorf("leftovers: source %s: %w", f, err)
		}
		if found {
			l.Delete = fmt.Sprintf("zkCli.sh -server %s deleteall %s", cfg.SourceServer, f)
			out = append(out, l)
		}
	}
	top, err := cfg.Destination.Children(ctx, "/")
	if err != nil {
		return nil, fmt.Errorf("leftovers: destination /: %w", err)
	}
	slices.Sort(top)
	for _, name := range top {
		p := "/" + name
		if name == "zookeeper" || cfg.inFleet(p) || slices.ContainsFunc(cfg.Chroots, func(c string) bool {
			c = path.Clean("/" + c)
			return c == p || strings.HasPrefix(c, p+"/")
		}) {
			continue
		}
		l := Leftover{Side: "destination", Path: p, Why: "another tenant's data, copied while joined"}
		if _, err := walk(ctx, cfg.Destination, p, &l, cfg.MaxNodes); err != nil {
			return nil, fmt.Errorf("leftovers: destination %s: %w", p, err)
		}
		l.Delete = fmt.Sprintf("zkCli.sh -server %s deleteall %s", cfg.DestinationServer, p)
		out = append(out, l)
	}
	return out, nil
}

// ErrNoNode is what a Tree returns (wrapped) for a missing znode; walk
// treats a node that vanished mid-walk as gone.
var ErrNoNode = errors.New("mitosis: no such znode")

// walk counts the tree at p breadth-first; found is false when p does not
// exist.
func walk(ctx context.Context, t Tree, p string, l *Leftover, limit int) (found bool, err error) {
	queue := []string{p}
	for len(queue) > 0 {
		if l.Nodes >= limit {
			l.Truncated = true
			return true, nil
		}
		cur := queue[0]
		queue = queue[1:]
		n, err := t.DataLength(ctx, cur)
		if isNoNode(err) {
			if cur == p {
				return false, nil
			}
			continue
		}
		if err != nil {
			return false, err
		}
		kids, err := t.Children(ctx, cur)
		if isNoNode(err) {
			continue
		}
		if err != nil {
			return false, err
		}
		l.Nodes++
		l.Bytes += n
		for _, k := range kids {
			if len(queue) < limit {
				queue = append(queue, path.Join(cur, k))
			}
		}
	}
	return true, nil
}

func isNoNode(err error) bool { return errors.Is(err, ErrNoNode) }
