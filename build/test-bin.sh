#!/usr/bin/env bash
# Builds reference binaries that tests and benchmarks compare weft against, once, into a cache:
#
#   build/test-bin.sh flanneld     → ~/.cache/weft-test-bin/flanneld-v0.28.9/flanneld
#
# Idempotent: does nothing when the cached binary exists (prints its path). On a build failure it
# prints the compiler's output and exits non-zero. flanneld is built from the Go module proxy with
# `go install github.com/flannel-io/flannel@<version>` (module flannel-io/flannel, main package at
# the root); on linux/amd64 its udp backend uses cgo, so a C compiler is required (Debian `gcc` +
# `libc6-dev`, installed here with apt-get when missing and running as root). Needs Go ≥ 1.25.9.
# Env: WEFT_TEST_BIN_CACHE overrides the cache root; FLANNELD_VERSION the tag (default v0.28.9).
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
    # proxy.golang.org answers 403 "This module version is not available" for
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

case ${1:-} in
flanneld) build_flanneld ;;
*)
  echo "usage: build/test-bin.sh flanneld" >&2
  exit 2
  ;;
esac
