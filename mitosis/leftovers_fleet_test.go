package mitosis

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// mapTree is a Tree over a map of paths to data, for FindLeftovers.
type mapTree map[string]string

func (m mapTree) Children(_ context.Context, p string) ([]string, error) {
	if _, ok := m[p]; !ok && p != "/" {
		return nil, fmt.Errorf("%s: %w", p, ErrNoNode)
	}
	var out []string
	prefix := strings.TrimSuffix(p, "/") + "/"
	for k := range m {
		if rest, ok := strings.CutPrefix(k, prefix); ok && rest != "" && !strings.Contains(rest, "/") {
			out = append(out, rest)
		}
	}
	return out, nil
}

func (m mapTree) DataLength(_ context.Context, p string) (int, error) {
	d, ok := m[p]
	if !ok {
		return 0, fmt.Errorf("%s: %w", p, ErrNoNode)
	}
	return len(d), nil
}

// TestLeftoversKeepFleetState: the fleet's state is live on the destination
// after the split (never a leftover there); the source's frozen copy is one.
func TestLeftoversKeepFleetState(t *testing.T) {
	both := func() mapTree {
		return mapTree{"/zookeeper": "", "/kafka": "", "/kafka/brokers": "x", "/zkproxy": "", "/zkproxy/f": "", "/zkproxy/f/state": "{}", "/other": "y"}
	}
	ls, err := FindLeftovers(context.Background(), LeftoverConfig{Chroots: []string{"/kafka"}, Source: both(), Destination: both(),
		SourceServer: "src", DestinationServer: "dst", Fleet: []string{"/zkproxy"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range ls {
		got = append(got, l.Side+" "+l.Path)
	}
	want := "source /kafka,source /zkproxy,destination /other"
	if strings.Join(got, ",") != want {
		t.Fatalf("leftovers %v, want %s", got, want)
	}
}
