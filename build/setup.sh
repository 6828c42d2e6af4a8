#!/usr/bin/env bash
# Installs what weft's tests, benchmarks and demo need on a fresh Debian machine, and nothing twice:
# Debian packages (store servers, iproute2, iptables, nftables, ping/traceroute, tcpdump, iperf3, wget,
# curl, openssl), then Bun and the npm packages pinned in package.json/bun.lock, then the Go-built test
# binaries. Safe to run again; prints what it installs.
# `--demo`: only what `weft demo` uses (iproute2, iptables, ping, traceroute, Bun): no store servers,
# no Go builds, so a newcomer's first command is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
demo=false
[[ ${1:-} == --demo ]] && demo=true

if $demo; then
  debs=(iproute2 iptables nftables iputils-ping traceroute procps)
else
  debs=(etcd-server etcd-client nats-server iproute2 iptables nftables iputils-ping traceroute procps shellcheck systemd tcpdump iperf3 curl wget openssl)
fi
missing=()
for pkg in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]} > 0)); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages: ${missing[*]} (run as root, or: apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "setup: installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts etcd and nats-server as services on their default ports; the tests run their own
  # servers on random loopback ports and need no system instance.
  for svc in etcd nats-server; do
    systemctl disable --now "$svc" >/dev/null 2>&1 || true
  done
fi

bun_version=$(node -p 'require("./package.json").devDependencies.bun')
if [[ ! -x node_modules/.bin/bun ]] || [[ $(node_modules/.bin/bun --version 2>/dev/null) != "$bun_version" ]] ||
  [[ bun.lock -nt node_modules/.installed ]] || [[ package.json -nt node_modules/.installed ]]; then
  echo "setup: installing bun $bun_version and the npm packages from bun.lock"
  npx --yes "bun@$bun_version" install --frozen-lockfile
  touch node_modules/.installed
fi

# Store servers that Debian does not package (Consul) or packages too old (NATS with per-key TTL),
# and flanneld v0.28.9 for the interop tests, built once from the Go module proxy into
# ~/.cache/weft-test-bin. A failed build fails the setup.
$demo && exit 0
for bin in nats-server consul flanneld; do
  bash build/test-bin.sh "$bin" >/dev/null
done
