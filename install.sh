#!/bin/sh
# weft installer:
#
#   curl -fsSL <base>/install.sh | sh
#   curl -fsSL <base>/install.sh | sh -s -- --store=consul --store-endpoints=http://10.0.0.5:8500
#   sh install.sh --uninstall [--purge]
#
# Installs /usr/local/bin/weft, /etc/systemd/system/weft.service and (only if absent) the environment
# file /etc/weft/weft.env whose WEFT_ARGS holds the agent flags given here (every "--flag" or
# "--flag=value" that is not one of the installer's own options below). Safe to run again: what is
# already equal is left alone, an existing env file is never overwritten.
#
# Options:  --uninstall   stop and remove the binary and the unit (the env file stays)
#           --purge       with --uninstall: remove /etc/weft/weft.env too
#           --help        this text
# Environment:
#   WEFT_BASE_URL  where releases live; files are fetched from $WEFT_BASE_URL/$WEFT_VERSION/
#                  (weft-linux-x64, weft-linux-arm64, SHA256SUMS, as written by build/compile.ts)
#   WEFT_VERSION   release to install (default: latest)
#   WEFT_ROOT      install under this directory instead of / (tests, images); systemd is then not touched
#
# Nothing is installed before the downloaded binary matched its SHA256SUMS entry; every error stops
# the installer with a message on stderr and a non-zero exit status.
set -eu

# There is no public release site yet: this placeholder (the .invalid TLD never resolves) makes a
# default install fail with a clear download error until WEFT_BASE_URL is given.
DEFAULT_BASE_URL="https://weft.example.invalid/releases"

BASE_URL="${WEFT_BASE_URL:-$DEFAULT_BASE_URL}"
BASE_URL="${BASE_URL%/}"
VERSION="${WEFT_VERSION:-latest}"
ROOT="${WEFT_ROOT:-}"
ROOT="${ROOT%/}"

BIN_PATH="/usr/local/bin/weft"
UNIT_PATH="/etc/systemd/system/weft.service"
ENV_PATH="/etc/weft/weft.env"

TMP_DIR=""

log() {
  printf 'weft-install: %s\n' "$*" >&2
}

die() {
  log "error: $*"
  exit 1
}

cleanup() {
  if [ -n "$TMP_DIR" ] && [ -d "$TMP_DIR" ]; then
    rm -rf "$TMP_DIR"
  fi
  if [ -f "$ROOT/usr/local/bin/.weft.tmp" ]; then
    rm -f "$ROOT/usr/local/bin/.weft.tmp"
  fi
  if [ -f "$ROOT/etc/systemd/system/.weft.service.tmp" ]; then
    rm -f "$ROOT/etc/systemd/system/.weft.service.tmp"
  fi
  if [ -f "$ROOT/etc/weft/.weft.env.tmp" ]; then
    rm -f "$ROOT/etc/weft/.weft.env.tmp"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

usage() {
  cat >&2 <<'EOF_USAGE'
usage: install.sh [--uninstall [--purge]] [--AGENT-FLAG[=VALUE] ...]
  curl -fsSL <base>/install.sh | sh -s -- --store=consul --store-endpoints=http://10.0.0.5:8500
  --uninstall   stop and remove /usr/local/bin/weft and weft.service (the env file stays)
  --purge       with --uninstall: remove /etc/weft/weft.env too
  other --flags are agent flags, written to WEFT_ARGS in /etc/weft/weft.env (only when it is created)
environment: WEFT_BASE_URL, WEFT_VERSION (default latest), WEFT_ROOT (install under a directory)
EOF_USAGE
}

# ---- arguments -----------------------------------------------------------------------------------
UNINSTALL=0
PURGE=0
AGENT_ARGS=""
for arg in "$@"; do
  case "$arg" in
  --uninstall) UNINSTALL=1 ;;
  --purge) PURGE=1 ;;
  --help | -h)
    usage
    exit 0
    ;;
  --?*)
    # The value ends up in WEFT_ARGS="..." (systemd EnvironmentFile, split at whitespace by
    # ExecStart=... $WEFT_ARGS): refuse what could not be written there unambiguously.
    case "$arg" in
    *[[:space:]]* | *\"* | *\'* | *\\* | *\$* | *\`*)
      die "option '$arg' contains whitespace, a quote, a backslash, \$ or \`; edit $ENV_PATH by hand for such values"
      ;;
    esac
    AGENT_ARGS="${AGENT_ARGS:+$AGENT_ARGS }$arg"
    ;;
  *) die "unknown argument '$arg' (agent flags start with --; see --help)" ;;
  esac
done
if [ "$PURGE" = 1 ] && [ "$UNINSTALL" = 0 ]; then
  die "--purge only goes with --uninstall"
fi

if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
  die "run as root (or set WEFT_ROOT=<dir> to install into a directory)"
fi

# systemd is only touched on the real root of a machine that runs it.
use_systemd() {
  [ -z "$ROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

# ---- uninstall -----------------------------------------------------------------------------------
if [ "$UNINSTALL" = 1 ]; then
  if use_systemd; then
    systemctl disable --now weft.service >/dev/null 2>&1 || true
  fi
  for f in "$BIN_PATH" "$UNIT_PATH"; do
    if [ -e "$ROOT$f" ]; then
      rm -f "$ROOT$f"
      log "removed $ROOT$f"
    else
      log "not present: $ROOT$f"
    fi
  done
  if use_systemd; then
    systemctl daemon-reload || true
  fi
  if [ -e "$ROOT$ENV_PATH" ]; then
    if [ "$PURGE" = 1 ]; then
      rm -f "$ROOT$ENV_PATH"
      rmdir "$ROOT/etc/weft" 2>/dev/null || true
      log "removed $ROOT$ENV_PATH"
    else
      log "kept $ROOT$ENV_PATH (remove it with --uninstall --purge)"
    fi
  fi
  log "weft uninstalled"
  exit 0
fi

# ---- platform ------------------------------------------------------------------------------------
machine="$(uname -m)"
case "$machine" in
x86_64 | amd64) ARCH=x64 ;;
aarch64 | arm64) ARCH=arm64 ;;
*) die "unsupported architecture '$machine' (weft is built for x86_64 and aarch64)" ;;
esac
[ "$(uname -s)" = Linux ] || die "unsupported operating system '$(uname -s)' (weft runs on Linux)"

if command -v curl >/dev/null 2>&1; then
  fetch() { curl -fsSL --retry 2 -o "$2" "$1"; }
elif command -v wget >/dev/null 2>&1; then
  fetch() { wget -q -O "$2" "$1"; }
else
  die "neither curl nor wget is installed; install one of them and run again"
fi

if command -v sha256sum >/dev/null 2>&1; then
  sha256() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
  sha256() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
  die "neither sha256sum nor shasum is installed; cannot verify the download"
fi

# ---- download and verify (into a temporary directory; nothing is installed yet) ------------------
TMP_DIR="$(mktemp -d "${TMPDIR:-/tmp}/weft-install.XXXXXX")" || die "cannot create a temporary directory"
FILE="weft-linux-$ARCH"
URL="$BASE_URL/$VERSION"

log "downloading $URL/$FILE"
fetch "$URL/SHA256SUMS" "$TMP_DIR/SHA256SUMS" ||
  die "download of $URL/SHA256SUMS failed (wrong WEFT_BASE_URL or WEFT_VERSION '$VERSION'?); nothing installed"
fetch "$URL/$FILE" "$TMP_DIR/$FILE" ||
  die "download of $URL/$FILE failed (wrong WEFT_BASE_URL or WEFT_VERSION '$VERSION'?); nothing installed"

expected="$(awk -v f="$FILE" '($2 == f || $2 == "*" f) { print $1; exit }' "$TMP_DIR/SHA256SUMS")"
[ -n "$expected" ] || die "SHA256SUMS at $URL has no entry for $FILE; nothing installed"
actual="$(sha256 "$TMP_DIR/$FILE")"
if [ "$actual" != "$expected" ]; then
  die "checksum mismatch for $FILE: expected $expected, got $actual; refusing to install (nothing installed)"
fi
log "checksum verified: $FILE sha256 $actual"
chmod 0755 "$TMP_DIR/$FILE"
# A sanity check only: a temporary directory mounted noexec must not stop the install.
if ! "$TMP_DIR/$FILE" version >/dev/null 2>&1; then
  log "warning: could not run the downloaded $FILE from $TMP_DIR (noexec mount?); installing it anyway"
fi

# ---- unit and env file (written to the temporary directory first) --------------------------------
cat >"$TMP_DIR/weft.service" <<'EOF'
# Installed by weft's install.sh; a re-run of the installer rewrites this file.
# Agent flags live in /etc/weft/weft.env (WEFT_ARGS=...), which the installer never overwrites.
[Unit]
Description=weft network agent (flannel-compatible subnet leases, routes and firewall rules)
Documentation=https://weft.example.invalid
Wants=network-online.target
After=network-online.target
# Like flanneld's unit: docker starts after the agent has written /run/flannel/subnet.env.
Before=docker.service

[Service]
# The agent sends READY=1 once its lease is held and the first apply succeeded, then WATCHDOG=1.
Type=notify
NotifyAccess=main
# The agent sends WATCHDOG=1 every WatchdogSec/2 while its event loop runs and no route or
# firewall apply has been stuck for longer than that; systemd restarts it otherwise.
WatchdogSec=30s
EnvironmentFile=-/etc/weft/weft.env
ExecStart=/usr/local/bin/weft $WEFT_ARGS
# As flannel's mk-docker-opts.sh: docker.service can use EnvironmentFile=/run/docker_opts.env.
ExecStartPost=/usr/local/bin/weft mk-docker-opts -d /run/docker_opts.env
Restart=always
RestartSec=2
TimeoutStopSec=10
# SIGTERM goes to the agent only (it leaves routes and firewall rules in place so that containers
# keep their networking); a short-lived iptables-restore child may finish its transaction; whatever
# is left after TimeoutStopSec is killed.
KillMode=mixed
# /var/lib/weft for the sqlite store.
StateDirectory=weft
StateDirectoryMode=0700

# Hardening that keeps what the agent needs: netlink (routes, links, neighbours), iptables-restore
# and nft (CAP_NET_ADMIN + CAP_NET_RAW), reading sysctls under /proc/sys, writing /run/flannel,
# /run/docker_opts.env and /var/lib/weft (root-owned; ProtectSystem=full keeps /run and /var writable).
# Not used: MemoryDenyWriteExecute (Bun's JIT needs writable+executable memory), ProtectKernelTunables
# and ProtectKernelModules (vxlan and netfilter modules are loaded on demand, sysctls may be set).
CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE
AmbientCapabilities=
NoNewPrivileges=yes
ProtectSystem=full
ProtectHome=yes
PrivateTmp=yes
ProtectControlGroups=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
EOF

{
  echo "# weft agent flags, read by weft.service (EnvironmentFile). Written once by install.sh;"
  echo "# a re-run of the installer never overwrites it. Edit, then: systemctl restart weft"
  echo "# Example: WEFT_ARGS=\"--store=consul --store-endpoints=http://10.0.0.5:8500 --iface=eth0\""
  echo "WEFT_ARGS=\"$AGENT_ARGS\""
} >"$TMP_DIR/weft.env"

# ---- install -------------------------------------------------------------------------------------
mkdir -p "$ROOT/usr/local/bin" "$ROOT/etc/systemd/system" "$ROOT/etc/weft" ||
  die "cannot create directories under '${ROOT:-/}'"

changed=0
# install_file SRC DEST MODE: atomic (temporary file next to DEST, then mv); untouched if equal.
install_file() {
  if [ -f "$2" ] && cmp -s "$1" "$2"; then
    log "unchanged: $2"
    return 0
  fi
  tmp="$(dirname "$2")/.$(basename "$2").tmp"
  if ! { cp "$1" "$tmp" && chmod "$3" "$tmp" && mv -f "$tmp" "$2"; }; then
    die "could not install $2"
  fi
  log "installed $2"
  changed=1
}

install_file "$TMP_DIR/$FILE" "$ROOT$BIN_PATH" 0755
install_file "$TMP_DIR/weft.service" "$ROOT$UNIT_PATH" 0644

if [ -e "$ROOT$ENV_PATH" ]; then
  if [ -n "$AGENT_ARGS" ] && ! grep -qxF "WEFT_ARGS=\"$AGENT_ARGS\"" "$ROOT$ENV_PATH"; then
    log "kept existing $ROOT$ENV_PATH (not overwritten); the flags given here are NOT in it: $AGENT_ARGS"
  else
    log "unchanged: $ROOT$ENV_PATH (existing env file kept, never overwritten)"
  fi
else
  tmp="$ROOT/etc/weft/.weft.env.tmp"
  if ! { (umask 077 && cp "$TMP_DIR/weft.env" "$tmp") && mv -f "$tmp" "$ROOT$ENV_PATH"; }; then
    die "could not write $ROOT$ENV_PATH"
  fi
  log "created $ROOT$ENV_PATH with WEFT_ARGS=\"$AGENT_ARGS\""
  changed=1
fi

# ---- systemd -------------------------------------------------------------------------------------
if use_systemd; then
  systemctl daemon-reload || die "systemctl daemon-reload failed"
  systemctl enable weft.service >/dev/null 2>&1 || die "systemctl enable weft.service failed"
  if [ "$changed" = 1 ]; then
    systemctl restart weft.service || die "weft.service did not start; see: journalctl -u weft.service"
    log "weft.service enabled and (re)started"
  else
    systemctl start weft.service || die "weft.service did not start; see: journalctl -u weft.service"
    log "weft.service enabled and running"
  fi
elif [ -z "$ROOT" ]; then
  log "systemd is not running here: start the agent with /usr/local/bin/weft (flags as in $ENV_PATH)"
else
  log "installed under $ROOT; systemd not touched"
fi

if [ "$changed" = 1 ]; then
  log "weft installed: $("$ROOT$BIN_PATH" version 2>/dev/null || echo "$FILE")"
else
  log "nothing changed: weft is already installed and up to date"
fi
