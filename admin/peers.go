package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// peerTimeout bounds one peer's GET /sessions.
const peerTimeout = 3 * time.Second

// PeerSessions asks the admin API of each peer zkproxy (base URLs) for its
// sessions (GET /sessions), for the sync check's
// cutover.CheckConfig.PeerSessions: an HA pair's partner carries sessions of
// the same tenants, and they are not clients left out of the proxy. token,
// when not empty, is sent as the bearer token: the peers of an HA pair share
// one, since /sessions needs it. client nil: a client with a 3 s timeout.
func PeerSessions(peers []string, token string, client *http.Client) func(ctx context.Context) ([]int64, []string) {
	if client == nil {
		client = &http.Client{Timeout: peerTimeout}
	}
	return func(ctx context.Context) ([]int64, []string) {
		ids := make([][]int64, len(peers))
		errs := make([]error, len(peers))
		var wg sync.WaitGroup
		for i, peer := range peers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ids[i], errs[i] = peerSessions(ctx, client, peer, token)
			}()
		}
		wg.Wait()
		var all []int64
		var problems []string
		for i := range peers {
			all = append(all, ids[i]...)
			if errs[i] != nil {
				problems = append(problems, fmt.Sprintf("peer %s: %v", peers[i], errs[i]))
			}
		}
		return all, problems
	}
}

func peerSessions(ctx context.Context, client *http.Client, peer, token string) ([]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(peer, "/")+"/sessions", nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading /sessions: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/sessions answered %s", resp.Status)
	}
	var ans struct {
		Sessions []SessionRow `json:"sessions"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return nil, fmt.Errorf("/sessions: %w", err)
	}
	ids := make([]int64, 0, len(ans.Sessions))
	for _, s := range ans.Sessions {
		id, err := strconv.ParseUint(strings.TrimPrefix(s.ID, "0x"), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("/sessions: session id %q: %w", s.ID, err)
		}
		ids = append(ids, int64(id))
	}
	return ids, nil
}
