#!/bin/sh
# zkproxy mitosis plan: split firewall for zk5 (10.0.2.5). Run on that host as root.
# Rejects every TCP connection between it and the source members 1,2,3, both ways.
set -eu
CHAIN=ZK-MITOSIS-5
iptables -w -N "$CHAIN" 2>/dev/null || iptables -w -F "$CHAIN"
iptables -w -A "$CHAIN" -p tcp -s 10.0.2.5 -d 10.0.1.1 -j REJECT
iptables -w -A "$CHAIN" -p tcp -s 10.0.1.1 -d 10.0.2.5 -j REJECT
iptables -w -A "$CHAIN" -p tcp -s 10.0.2.5 -d 10.0.1.2 -j REJECT
iptables -w -A "$CHAIN" -p tcp -s 10.0.1.2 -d 10.0.2.5 -j REJECT
iptables -w -A "$CHAIN" -p tcp -s 10.0.2.5 -d 10.0.1.3 -j REJECT
iptables -w -A "$CHAIN" -p tcp -s 10.0.1.3 -d 10.0.2.5 -j REJECT
iptables -w -C INPUT -j "$CHAIN" 2>/dev/null || iptables -w -I INPUT 1 -j "$CHAIN"
iptables -w -C OUTPUT -j "$CHAIN" 2>/dev/null || iptables -w -I OUTPUT 1 -j "$CHAIN"
