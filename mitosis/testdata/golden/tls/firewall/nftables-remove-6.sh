#!/bin/sh
# zkproxy mitosis plan: remove the split firewall for zk6 (10.0.2.6). Run on that host as root.
# Rejects every TCP connection between it and the source members 1,2,3, both ways.
set -eu
TABLE=zk_split_6
nft delete table inet "$TABLE" 2>/dev/null || true
