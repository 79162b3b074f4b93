#!/bin/sh
# zkproxy mitosis plan: remove the split firewall for zk4 (10.0.2.4). Run on that host as root.
# Rejects every TCP connection between it and the source members 1,2,3, both ways.
set -eu
CHAIN=ZK-SPLIT-4
iptables -w -D INPUT -j "$CHAIN" 2>/dev/null || true
iptables -w -D OUTPUT -j "$CHAIN" 2>/dev/null || true
iptables -w -F "$CHAIN" 2>/dev/null || true
iptables -w -X "$CHAIN" 2>/dev/null || true
