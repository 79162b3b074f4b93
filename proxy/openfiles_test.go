package proxy

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestDefaultMaxClientConns(t *testing.T) {
	for _, c := range []struct {
		nofile uint64
		ok     bool
		want   int
	}{
		{65536, true, 32640}, // the systemd unit's LimitNOFILE
		{1024, true, 384},    // a common soft limit
		{524288, true, 262016},
		{16, true, 6}, // reserve a quarter when the limit is tiny
		{0, true, 1},
		{^uint64(0), true, (1<<22 - 256) / 2}, // RLIM_INFINITY
		{0, false, 8192},
	} {
		if got := DefaultMaxClientConns(c.nofile, c.ok); got != c.want {
			t.Errorf("DefaultMaxClientConns(%d, %v) = %d, want %d", c.nofile, c.ok, got, c.want)
		}
	}
}

// TestMaxClientConnsDefaultLogged: with max-client-conns unset, New applies
// the limit derived from this process's open-files limit and says so.
func TestMaxClientConnsDefaultLogged(t *testing.T) {
	var logs strings.Builder
	srv, err := New(Config{Source: []string{"127.0.0.1:2181"}}, slog.New(slog.NewTextHandler(&logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultMaxClientConns(openFilesLimit())
	if srv.cfg.MaxClientConns != want {
		t.Errorf("MaxClientConns = %d, want %d", srv.cfg.MaxClientConns, want)
	}
	if !strings.Contains(logs.String(), fmt.Sprintf("max_client_conns=%d", want)) {
		t.Errorf("no start-up line with the derived limit %d:\n%s", want, logs.String())
	}
}
