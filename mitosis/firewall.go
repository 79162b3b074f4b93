package mitosis

import (
	"fmt"
	"net"
	"strings"
)

// FirewallChain is the iptables chain (and, lower-cased, the nftables
// table) holding one destination node's split rules. One per node, so
// several nodes sharing a host (a test machine) never flush each other's.
func FirewallChain(prefix string, id int) string { return fmt.Sprintf("%s-%d", prefix, id) }

// writeFirewall writes, for every destination node, scripts that reject
// every TCP connection between that node and each source member in both
// directions (INPUT and OUTPUT), as Yelp's procedure does, and scripts that
// remove them. TCP only: the ICMP port-unreachable a REJECT answers with
// must pass, so a connect fails at once instead of timing out. The rules
// sit in a chain (table) of their own, so removing them is one delete and
// never touches another rule; applying twice is harmless.
func (p *Plan) writeFirewall() {
	for _, d := range p.Destination {
		chain := FirewallChain(p.Chain, d.ID)
		var rules []string
		for _, s := range p.Source {
			rules = append(rules,
				fmt.Sprintf("iptables -w -A \"$CHAIN\" -p tcp -s %s -d %s -j REJECT", d.Host, s.Host),
				fmt.Sprintf("iptables -w -A \"$CHAIN\" -p tcp -s %s -d %s -j REJECT", s.Host, d.Host))
		}
		head := fmt.Sprintf(`#!/bin/sh
# zkproxy mitosis plan: split firewall for %s. Run on that host as root.
# Rejects every TCP connection between it and the source members %s, both ways.
set -eu
CHAIN=%s
`, d, idList(p.Source), chain)
		p.Files[FirewallFile("iptables", "apply", d.ID)] = []byte(head +
			"iptables -w -N \"$CHAIN\" 2>/dev/null || iptables -w -F \"$CHAIN\"\n" +
			strings.Join(rules, "\n") + "\n" +
			"iptables -w -C INPUT -j \"$CHAIN\" 2>/dev/null || iptables -w -I INPUT 1 -j \"$CHAIN\"\n" +
			"iptables -w -C OUTPUT -j \"$CHAIN\" 2>/dev/null || iptables -w -I OUTPUT 1 -j \"$CHAIN\"\n")
		p.Files[FirewallFile("iptables", "remove", d.ID)] = []byte(strings.Replace(head, "split firewall", "remove the split firewall", 1) +
			"iptables -w -D INPUT -j \"$CHAIN\" 2>/dev/null || true\n" +
			"iptables -w -D OUTPUT -j \"$CHAIN\" 2>/dev/null || true\n" +
			"iptables -w -F \"$CHAIN\" 2>/dev/null || true\n" +
			"iptables -w -X \"$CHAIN\" 2>/dev/null || true\n")

		table := strings.ToLower(strings.ReplaceAll(chain, "-", "_"))
		var srcSet []string
		for _, s := range p.Source {
			srcSet = append(srcSet, s.Host)
		}
		fam := nftFamily(d.Host)
		nhead := strings.Replace(head, "CHAIN="+chain, "TABLE="+table, 1)
		// "table X; delete table X" first: declaring then deleting makes
		// re-applying idempotent without failing on a missing table.
		p.Files[FirewallFile("nftables", "apply", d.ID)] = []byte(nhead + fmt.Sprintf(`nft -f - <<EOF
table inet $TABLE
delete table inet $TABLE
table inet $TABLE {
	chain input {
		type filter hook input priority filter; policy accept;
		meta l4proto tcp %[1]s saddr { %[2]s } %[1]s daddr %[3]s reject
	}
	chain output {
		type filter hook output priority filter; policy accept;
		meta l4proto tcp %[1]s saddr %[3]s %[1]s daddr { %[2]s } reject
	}
}
EOF
`, fam, strings.Join(srcSet, ", "), d.Host))
		p.Files[FirewallFile("nftables", "remove", d.ID)] = []byte(strings.Replace(nhead, "split firewall", "remove the split firewall", 1) +
			"nft delete table inet \"$TABLE\" 2>/dev/null || true\n")
	}
}

func nftFamily(host string) string {
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		return "ip6"
	}
	return "ip"
}
