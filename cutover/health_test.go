package cutover

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
)

// TestDestinationHealth: the after-split check passes on a healthy
// ensemble and names a member that stops serving.
func TestDestinationHealth(t *testing.T) {
	zktest.RequireIntegration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e := zktest.NewEnsemble(t, 3)
	var addrs []string
	for _, s := range e.Members {
		addrs = append(addrs, s.ClientAddr())
	}
	rep := DestinationHealth(ctx, CheckConfig{Destination: addrs})
	if !rep.Ready {
		t.Fatalf("healthy ensemble: %s", rep.Reason())
	}
	if len(rep.Items) != 3 {
		t.Errorf("items %+v, want serving, quorum and source unreachable", rep.Items)
	}
	leader, err := e.Leader()
	if err != nil {
		t.Fatal(err)
	}
	var follower *zktest.Server
	for _, s := range e.Members {
		if s != leader {
			follower = s
			break
		}
	}
	if err := follower.Stop(); err != nil {
		t.Fatal(err)
	}
	rep = DestinationHealth(ctx, CheckConfig{Destination: addrs})
	if rep.Ready || !strings.Contains(rep.Reason(), "destination serving: not serving: "+follower.ClientAddr()) {
		t.Fatalf("a member stopped: ready %t, %s", rep.Ready, rep.Reason())
	}
}
