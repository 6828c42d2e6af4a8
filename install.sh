#!/bin/sh
# weft installer:
#
#   curl -fsSL <base>/install.sh | sh
#   curl -fsSL <base>/install.sh | sh -s -- --store=consul --store-endpoints=http://10.0.0.5:8500
#   sh install.sh --uninstall [--purge]
#
# Installs /usr/local/bin/weft, /etc/systemd/system/weft.service and (only if absent) the environment
# file /etc/weft/weft.env (mode 0600) whose WEFT_ARGS holds the agent flags given here (every "--flag"
# or "--flag=value" that is not one of the installer's own options below). Passwords and tokens
# (--etcd-password, --consul-token) never go into WEFT_ARGS, the unit's command line or the output:
# they are written to the env file as the variables the agent reads (FLANNELD_ETCD_PASSWORD,
# WEFT_CONSUL_TOKEN), which may also be set in the installer's environment instead of given as flags.
# Safe to run again: what is already equal is left alone, an existing env file is never overwritten.
#
# Options:  --uninstall   stop and remove the binary and the unit (the env file stays)
#           --purge       with --uninstall: remove /etc/weft/weft.env too
#           --help        this text
# Environment:
#   WEFT_BASE_URL  where releases live; files are fetched from $WEFT_BASE_URL/$WEFT_VERSION/
#                  (weft-linux-x64, weft-linux-arm64, SHA256SUMS, as written by build/compile.ts).
#                  https:// only, redirects included (curl --proto =https); the checksum comes over
#                  the same connection as the binary, so plain http:// would protect nothing
#   WEFT_ALLOW_HTTP=1  allow an http:// WEFT_BASE_URL anyway (a test server on 127.0.0.1)
#   WEFT_VERSION   release to install (default: latest)
#   WEFT_ROOT      install under this directory instead of / (tests, images); systemd is then not touched
#   FLANNELD_ETCD_PASSWORD, WEFT_CONSUL_TOKEN  secrets for the env file, kept out of every command line
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
  --etcd-password=... and --consul-token=... go into the env file as FLANNELD_ETCD_PASSWORD and
                WEFT_CONSUL_TOKEN (mode 0600), never into WEFT_ARGS; or set those variables instead
environment: WEFT_BASE_URL (https:// only unless WEFT_ALLOW_HTTP=1), WEFT_VERSION (default latest),
  WEFT_ROOT (install under a directory), FLANNELD_ETCD_PASSWORD, WEFT_CONSUL_TOKEN
EOF_USAGE
}

# ---- arguments -----------------------------------------------------------------------------------
UNINSTALL=0
PURGE=0
AGENT_ARGS=""
# Secrets, from the environment or from their flags below; never printed, never in WEFT_ARGS.
ETCD_PASSWORD="${FLANNELD_ETCD_PASSWORD:-}"
CONSUL_TOKEN="${WEFT_CONSUL_TOKEN:-}"
# The secret flag whose value is the next argument (`--etcd-password VALUE`), if any.
PENDING=""

# set_secret FLAG VALUE: keeps VALUE for the env file, where it is written between single quotes.
set_secret() {
  case "$2" in
  *\'* | *"
"*)
    die "the value of $1 contains a single quote or a newline; write it into $ENV_PATH by hand (the value is not shown)"
    ;;
  esac
  case "$1" in
  --etcd-password) ETCD_PASSWORD="$2" ;;
  --consul-token) CONSUL_TOKEN="$2" ;;
  esac
}

for arg in "$@"; do
  if [ -n "$PENDING" ]; then
    set_secret "$PENDING" "$arg"
    PENDING=""
    continue
  fi
  case "$arg" in
  # Go's flag package takes -name as --name: both forms of a secret are caught, with = or a space.
  --etcd-password=* | -etcd-password=*) set_secret --etcd-password "${arg#*=}" ;;
  --consul-token=* | -consul-token=*) set_secret --consul-token "${arg#*=}" ;;
  --etcd-password | -etcd-password) PENDING=--etcd-password ;;
  --consul-token | -consul-token) PENDING=--consul-token ;;
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
[ -z "$PENDING" ] || die "$PENDING needs a value"
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

# ---- download source -----------------------------------------------------------------------------
# SHA256SUMS comes from the same place as the binary: over plain http both could be swapped together.
case "$BASE_URL" in
https://*) PROTOCOLS=https ;;
http://*)
  if [ "${WEFT_ALLOW_HTTP:-}" != 1 ]; then
    die "WEFT_BASE_URL=$BASE_URL is plain http://, which anyone on the way can alter (the checksum comes over the same connection): use https://, or set WEFT_ALLOW_HTTP=1 to allow it (a test server on 127.0.0.1); nothing installed"
  fi
  log "warning: downloading over plain http:// because WEFT_ALLOW_HTTP=1"
  PROTOCOLS=http,https
  ;;
*) die "WEFT_BASE_URL=$BASE_URL must start with https://; nothing installed" ;;
esac

# ---- platform ------------------------------------------------------------------------------------
machine="$(uname -m)"
case "$machine" in
x86_64 | amd64) ARCH=x64 ;;
aarch64 | arm64) ARCH=arm64 ;;
*) die "unsupported architecture '$machine' (weft is built for x86_64 and aarch64)" ;;
esac
[ "$(uname -s)" = Linux ] || die "unsupported operating system '$(uname -s)' (weft runs on Linux)"

# Redirects may not leave https:// either. curl's --proto covers them; wget's --https-only does not
# (it is for recursive downloads), so its response headers are checked for a Location to http://.
if command -v curl >/dev/null 2>&1; then
  fetch() { curl --proto "=$PROTOCOLS" -fsSL --retry 2 -o "$2" "$1"; }
elif command -v wget >/dev/null 2>&1; then
  fetch() {
    if [ "$PROTOCOLS" = https ]; then
      wget -q -S --https-only -O "$2" "$1" 2>"$TMP_DIR/wget.log" || return 1
      if grep -qi '^ *location: *http:' "$TMP_DIR/wget.log"; then
        rm -f "$2"
        log "$1 redirected to plain http://; refused"
        return 1
      fi
    else
      wget -q -O "$2" "$1"
    fi
  }
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
# Agent flags live in /etc/weft/weft.env (WEFT_ARGS=...), which the installer never overwrites;
# passwords and tokens live there too, as variables (FLANNELD_ETCD_PASSWORD, WEFT_CONSUL_TOKEN) that
# the agent reads from its environment: never on this command line, where ps would show them.
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

# The secrets are written into the temporary file with umask 077 (never shown, never in WEFT_ARGS).
SECRET_NAMES=""
(
  umask 077
  {
    echo "# weft agent flags, read by weft.service (EnvironmentFile). Written once by install.sh;"
    echo "# a re-run of the installer never overwrites it. Edit, then: systemctl restart weft"
    echo "# Example: WEFT_ARGS=\"--store=consul --store-endpoints=http://10.0.0.5:8500 --iface=eth0\""
    echo "# Passwords and tokens go here as variables, not into WEFT_ARGS (the unit's command line):"
    echo "# FLANNELD_ETCD_PASSWORD='...' (etcd, etcd2, NATS), WEFT_CONSUL_TOKEN='...', NATS_TOKEN='...'"
    echo "WEFT_ARGS=\"$AGENT_ARGS\""
    if [ -n "$ETCD_PASSWORD" ]; then printf "FLANNELD_ETCD_PASSWORD='%s'\n" "$ETCD_PASSWORD"; fi
    if [ -n "$CONSUL_TOKEN" ]; then printf "WEFT_CONSUL_TOKEN='%s'\n" "$CONSUL_TOKEN"; fi
  } >"$TMP_DIR/weft.env"
) || die "cannot write $TMP_DIR/weft.env"
if [ -n "$ETCD_PASSWORD" ]; then SECRET_NAMES="FLANNELD_ETCD_PASSWORD"; fi
if [ -n "$CONSUL_TOKEN" ]; then SECRET_NAMES="${SECRET_NAMES:+$SECRET_NAMES }WEFT_CONSUL_TOKEN"; fi

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
  if [ -n "$SECRET_NAMES" ]; then
    log "the secrets given here are NOT in the kept $ROOT$ENV_PATH: set $SECRET_NAMES there by hand"
  fi
else
  tmp="$ROOT/etc/weft/.weft.env.tmp"
  if ! { (umask 077 && cp "$TMP_DIR/weft.env" "$tmp") && mv -f "$tmp" "$ROOT$ENV_PATH"; }; then
    die "could not write $ROOT$ENV_PATH"
  fi
  log "created $ROOT$ENV_PATH (mode 0600) with WEFT_ARGS=\"$AGENT_ARGS\"${SECRET_NAMES:+ and $SECRET_NAMES (not shown)}"
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
