#!/bin/sh
# zkproxy mitosis plan: remove the split firewall for zk4 (10.0.2.4). Run on that host as root.
# Rejects every TCP connection between it and the source members 1,2,3, both ways.
set -eu
TABLE=zk_mitosis_4
nft delete table inet "$TABLE" 2>/dev/null || true
