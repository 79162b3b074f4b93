#!/bin/sh
# zkproxy mitosis plan: split firewall for zk5 (10.0.2.5). Run on that host as root.
# Rejects every TCP connection between it and the source members 1,2,3, both ways.
set -eu
TABLE=zk_mitosis_5
nft -f - <<EOF
table inet $TABLE
delete table inet $TABLE
table inet $TABLE {
	chain input {
		type filter hook input priority filter; policy accept;
		meta l4proto tcp ip saddr { 10.0.1.1, 10.0.1.2, 10.0.1.3 } ip daddr 10.0.2.5 reject
	}
	chain output {
		type filter hook output priority filter; policy accept;
		meta l4proto tcp ip saddr 10.0.2.5 ip daddr { 10.0.1.1, 10.0.1.2, 10.0.1.3 } reject
	}
}
EOF
