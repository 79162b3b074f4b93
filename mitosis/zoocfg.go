package mitosis

import (
	"bufio"
	"fmt"
	"slices"
	"strings"
)

// ZooCfg is a zoo.cfg file as its lines, comments and blank lines dropped.
// conf shows only some settings (see confKeys): TLS (ssl.*,
// serverCnxnFactory), 4lw.commands.whitelist, auth providers, autopurge,
// admin server and the like exist only in the file, so the plan copies them
// from a source member's zoo.cfg.
type ZooCfg struct {
	Lines []Setting
}

// ParseZooCfg parses zoo.cfg text (java.util.Properties syntax as
// QuorumPeerConfig reads it, restricted to key=value lines).
func ParseZooCfg(text string) (ZooCfg, error) {
	var c ZooCfg
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return ZooCfg{}, fmt.Errorf("zoo.cfg line %d: %q is not key=value", n, line)
		}
		c.Lines = append(c.Lines, Setting{strings.TrimSpace(k), strings.TrimSpace(v)})
	}
	if err := sc.Err(); err != nil {
		return ZooCfg{}, fmt.Errorf("zoo.cfg: %w", err)
	}
	return c, nil
}

// Get returns the last value of key (a later line wins, as in Properties).
func (c ZooCfg) Get(key string) (string, bool) {
	for i := len(c.Lines) - 1; i >= 0; i-- {
		if c.Lines[i].Key == key {
			return c.Lines[i].Value, true
		}
	}
	return "", false
}

// membershipKey: the lines every generated file writes itself.
func membershipKey(k string) bool {
	return strings.HasPrefix(k, "server.") || strings.HasPrefix(k, "group.") || strings.HasPrefix(k, "weight.") ||
		k == "dynamicConfigFile"
}

// perHostKey: settings naming the member's own address, rewritten for each
// node when the source's file names a source member there.
func perHostKey(k string) bool {
	return k == "clientPortAddress" || k == "secureClientPortAddress"
}

// extras returns the template's settings that conf does not show, for the
// node on host: membership lines are dropped, keys conf shows are taken
// from conf (what runs, not what the file says), and a per-host address
// that names a source member is replaced by host.
func (c ZooCfg) extras(host string, sourceHosts []string) []Setting {
	var out []Setting
	for _, s := range c.Lines {
		switch {
		case membershipKey(s.Key), slices.Contains(confKeys, s.Key):
			continue
		case perHostKey(s.Key) && slices.Contains(sourceHosts, s.Value):
			s.Value = host
		}
		out = append(out, s)
	}
	return out
}

// render writes one zoo.cfg: a header, the settings, the membership.
func render(header []string, settings []Setting, members []Member) []byte {
	var b strings.Builder
	for _, h := range header {
		fmt.Fprintf(&b, "# %s\n", h)
	}
	for _, s := range settings {
		fmt.Fprintf(&b, "%s=%s\n", s.Key, s.Value)
	}
	for _, m := range members {
		b.WriteString(m.ServerLine() + "\n")
	}
	return []byte(b.String())
}
