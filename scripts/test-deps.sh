#!/usr/bin/env bash
# Installs what zkproxy's tests need, and only what is missing: the ZooKeeper 3.8
# server and Java client (Debian "zookeeper"), a JDK so tests can compile small Java
# client programs, the C client (tools, and its library and header for the C test
# programs), kazoo, Apache Curator 5 (the config-rewrite tests), iptables for the
# mitosis split, HAProxy for the relay benchmark, and promtool (Debian "prometheus")
# for the alert rules' tests. Idempotent, quiet, near-instant when all is there.
set -euo pipefail

packages=(zookeeper default-jdk-headless zookeeper-bin libzookeeper-mt-dev python3-kazoo iptables haproxy gcc libcurator-framework-java prometheus)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "test-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
