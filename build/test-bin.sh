#!/usr/bin/env bash
# Builds reference binaries that tests and benchmarks compare weft against, once, into a cache:
#
#   build/test-bin.sh flanneld     → ~/.cache/weft-test-bin/flanneld-v0.28.9/flanneld
#   build/test-bin.sh nats-server  → ~/.cache/weft-test-bin/nats-server-v2.15.2/nats-server
#   build/test-bin.sh consul       → ~/.cache/weft-test-bin/consul-v1.22.5/consul
#
# Idempotent: does nothing when the cached binary exists (prints its path). On a build failure it
# prints the compiler's output and exits non-zero. flanneld is built from the Go module proxy with
# `go install github.com/flannel-io/flannel@<version>` (module flannel-io/flannel, main package at
# the root); on linux/amd64 its udp backend uses cgo, so a C compiler is required (Debian `gcc` +
# `libc6-dev`, installed here with apt-get when missing and running as root). Needs Go ≥ 1.25.9.
# Env: WEFT_TEST_BIN_CACHE overrides the cache root; FLANNELD_VERSION the tag (default v0.28.9).
# nats-server (JetStream with per-message TTL, ≥ 2.11) is `go install github.com/nats-io/nats-server/v2@<version>`,
# pure Go (CGO_ENABLED=0); NATS_SERVER_VERSION overrides the tag (default v2.15.2).
# consul: `go install` refuses github.com/hashicorp/consul (its go.mod has replace directives), so the
# module is fetched with `go mod download -json`, copied, its replace directives dropped with
# `go mod edit -dropreplace`, and built with CGO_ENABLED=0; CONSUL_VERSION overrides the tag (default v1.22.5).
# v1.22.5 is the newest release that builds that way: v1.22.6 requires nested-module versions the
# checksum database lacks, v1.22.7 an api version older than its own source, later tags are refused (403).
set -euo pipefail

cache_root=${WEFT_TEST_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft-test-bin}
# The build happens in a temporary directory next to the cache entry, removed however the script ends.
tmp=""
trap '[[ -z $tmp ]] || rm -rf "$tmp"' EXIT

need_cc() {
  if command -v gcc >/dev/null 2>&1 || command -v cc >/dev/null 2>&1; then
    if [[ -e /usr/include/stdlib.h ]]; then return 0; fi
  fi
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "test-bin: flanneld needs cgo: install a C compiler and libc headers (Debian: apt-get install gcc libc6-dev)" >&2
    exit 1
  fi
  echo "test-bin: installing gcc and libc6-dev (cgo is needed for flanneld's udp backend on amd64)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null
}

need_go() {
  local min=$1
  if ! command -v go >/dev/null 2>&1; then
    echo "test-bin: no Go toolchain on PATH (need go >= $min; https://go.dev/dl/)" >&2
    exit 1
  fi
  local have
  have=$(go env GOVERSION 2>/dev/null | sed 's/^go//')
  # sort -V puts the smaller version first; the toolchain is new enough when $min sorts first.
  if [[ $(printf '%s\n%s\n' "$min" "$have" | sort -V | head -n1) != "$min" ]] && [[ $(go env GOTOOLCHAIN) == local ]]; then
    echo "test-bin: go $have is older than $min and GOTOOLCHAIN=local forbids a download" >&2
    exit 1
  fi
}

build_flanneld() {
  local version=${FLANNELD_VERSION:-v0.28.9}
  local dir="$cache_root/flanneld-$version"
  local bin="$dir/flanneld"
  if [[ -x $bin ]]; then
    echo "$bin"
    return 0
  fi
  need_go 1.25.9
  need_cc
  mkdir -p "$dir"
  tmp=$(mktemp -d "$dir/.build.XXXXXX")
  local log="$tmp/build.log"
  echo "test-bin: building flanneld $version (go install github.com/flannel-io/flannel@$version)" >&2
  local ldflags="-s -w -X github.com/flannel-io/flannel/pkg/version.Version=$version"
  local note="go install github.com/flannel-io/flannel@$version (unmodified)"
  if GOBIN="$tmp" CGO_ENABLED=1 GOFLAGS=-buildvcs=false go install -trimpath -ldflags "$ldflags" \
    "github.com/flannel-io/flannel@$version" >"$log" 2>&1; then
    # `go install` names the binary after the module's last element (flannel); the project calls
    # it flanneld.
    mv "$tmp/flannel" "$tmp/flanneld"
  elif grep -q 'tencentcloud-sdk-go/tencentcloud/vpc' "$log"; then
    # The Go module proxy answers 403 "This module version is not available" for
    # github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/vpc@v1.3.149, which only the
    # Tencent-Cloud VPC backend imports. Build the same source (already in the module cache from
    # the attempt above) without that one backend: drop its blank import from main.go and its
    # requirement from go.mod. host-gw, vxlan, the etcd subnet manager, iptables and nftables are
    # untouched.
    echo "test-bin: the Go proxy refuses tencentcloud/vpc@v1.3.149; building flanneld $version without the tencent-vpc backend" >&2
    local modsrc
    modsrc="$(go env GOMODCACHE)/github.com/flannel-io/flannel@$version"
    if [[ ! -f $modsrc/main.go ]]; then
      echo "test-bin: building flanneld $version failed (module source not downloaded):" >&2
      cat "$log" >&2
      exit 1
    fi
    cp -r "$modsrc" "$tmp/src"
    chmod -R u+w "$tmp/src"
    if ! (
      cd "$tmp/src" &&
        sed -i '\#"github.com/flannel-io/flannel/pkg/backend/tencentvpc"#d' main.go &&
        go mod edit -droprequire github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/vpc &&
        CGO_ENABLED=1 GOFLAGS=-buildvcs=false go build -trimpath -o "$tmp/flanneld" -ldflags "$ldflags" .
    ) >"$log" 2>&1; then
      echo "test-bin: building flanneld $version (without tencent-vpc) failed:" >&2
      cat "$log" >&2
      exit 1
    fi
    note="flannel-io/flannel@$version from the Go module proxy, built without pkg/backend/tencentvpc (its dependency tencentcloud-sdk-go/tencentcloud/vpc@v1.3.149 is not served by the proxy)"
  else
    echo "test-bin: building flanneld $version failed:" >&2
    cat "$log" >&2
    exit 1
  fi
  echo "$note" >"$dir/BUILD-NOTE"
  # Move the binary into place last, so a half-finished build never looks cached.
  mv "$tmp/flanneld" "$bin"
  echo "$bin"
}

build_nats_server() {
  local version=${NATS_SERVER_VERSION:-v2.15.2}
  local dir="$cache_root/nats-server-$version"
  local bin="$dir/nats-server"
  if [[ -x $bin ]]; then
    echo "$bin"
    return 0
  fi
  need_go 1.24
  mkdir -p "$dir"
  tmp=$(mktemp -d "$dir/.build.XXXXXX")
  local log="$tmp/build.log"
  echo "test-bin: building nats-server $version (go install github.com/nats-io/nats-server/v2@$version)" >&2
  if ! GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS=-buildvcs=false go install -trimpath -ldflags "-s -w" \
    "github.com/nats-io/nats-server/v2@$version" >"$log" 2>&1; then
    echo "test-bin: building nats-server $version failed:" >&2
    cat "$log" >&2
    exit 1
  fi
  echo "go install github.com/nats-io/nats-server/v2@$version (unmodified)" >"$dir/BUILD-NOTE"
  # Move the binary into place last, so a half-finished build never looks cached.
  mv "$tmp/nats-server" "$bin"
  echo "$bin"
}

build_consul() {
  local version=${CONSUL_VERSION:-v1.22.5}
  local dir="$cache_root/consul-$version"
  local bin="$dir/consul"
  if [[ -x $bin ]]; then
    echo "$bin"
    return 0
  fi
  need_go 1.25.9
  mkdir -p "$dir"
  tmp=$(mktemp -d "$dir/.build.XXXXXX")
  local log="$tmp/build.log"
  echo "test-bin: building consul $version from the Go module proxy (replace directives dropped; a few minutes, once)" >&2
  local modsrc=""
  if go mod download -json "github.com/hashicorp/consul@$version" >"$tmp/module.json" 2>"$log"; then
    modsrc=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' "$tmp/module.json")
  fi
  if [[ -z $modsrc || ! -f $modsrc/go.mod ]]; then
    echo "test-bin: downloading github.com/hashicorp/consul@$version failed:" >&2
    cat "$tmp/module.json" "$log" >&2
    exit 1
  fi
  cp -r "$modsrc" "$tmp/src"
  chmod -R u+w "$tmp/src"
  # go.mod replaces its nested modules (api, sdk, proto-public, envoyextensions, troubleshoot) with
  # ./dirs that the module zip leaves out (which is why `go install` refuses it); without the
  # replace directives they come from the proxy at the versions go.mod requires.
  local dropped
  dropped=$(awk '$1 == "replace" && $2 != "(" { print $2 } /^replace \(/ { f = 1; next } f && /^\)/ { f = 0 } f && NF { print $1 }' "$tmp/src/go.mod")
  if ! (
    cd "$tmp/src" &&
      for module in $dropped; do go mod edit -dropreplace="$module"; done &&
      CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=mod" go build -trimpath -ldflags "-s -w" -o "$tmp/consul" .
  ) >"$log" 2>&1; then
    echo "test-bin: building consul $version failed:" >&2
    cat "$log" >&2
    exit 1
  fi
  echo "github.com/hashicorp/consul@$version from the Go module proxy, built with CGO_ENABLED=0 after dropping its replace directives for: ${dropped//$'\n'/ }" >"$dir/BUILD-NOTE"
  # Move the binary into place last, so a half-finished build never looks cached.
  mv "$tmp/consul" "$bin"
  echo "$bin"
}

case ${1:-} in
flanneld) build_flanneld ;;
consul) build_consul ;;
nats-server) build_nats_server ;;
*)
  echo "usage: build/test-bin.sh flanneld|nats-server|consul" >&2
  exit 2
  ;;
esac
