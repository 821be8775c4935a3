#!/usr/bin/env bash
# Build containerd 2.x (`containerd` and `containerd-shim-runc-v2`) from the Go module proxy
# into a cache outside the checkout; prints the bin dir. A warm run takes a moment; a cold
# one several minutes. DESIGN.md §7: the benchmarks run it beside Debian's containerd 1.6.
#
#   bench/containerd2/build.sh          (prints the bin dir)
set -euo pipefail
CONTAINERD2_VERSION=${CONTAINERD2_VERSION:-v2.4.2}
pkg=github.com/containerd/containerd/v2
stamp=$( (cat "$0" && echo "$CONTAINERD2_VERSION") | sha256sum | cut -c1-16)
out=${CRIB_BENCH_CACHE:-/var/cache/crib/bench}/containerd-$CONTAINERD2_VERSION-$stamp
if [ -x "$out/bin/containerd" ] && [ -x "$out/bin/containerd-shim-runc-v2" ] &&
  [ "$(cat "$out/STAMP" 2>/dev/null)" = "$stamp" ]; then
  echo "$out/bin"
  exit 0
fi
# CONTAINERD2_NO_BUILD=1: the cached build or nothing (exit 3), for tests that must stay short.
if [ -n "${CONTAINERD2_NO_BUILD:-}" ]; then
  echo "containerd $CONTAINERD2_VERSION is not built in $out (run $0)" >&2
  exit 3
fi
[ -x /usr/local/go/bin/go ] && ! command -v go >/dev/null && PATH=/usr/local/go/bin:$PATH
rm -rf "$out"
mkdir -p "$out"
# The module has no replace directives, so `go install pkg@version` builds it with exactly
# the dependencies its go.mod pins. Tags and flags follow containerd's Makefile: no_btrfs
# (btrfs needs cgo headers absent here), urfave_cli_no_docs, the shim without cgo and with
# no_grpc (it speaks ttrpc only); -X fills in what `containerd --version` and Version report.
ldflags="-s -w -X $pkg/version.Version=$CONTAINERD2_VERSION -X $pkg/version.Package=$pkg"
export GOBIN=$out/bin GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
{
  timeout 1200 go install -trimpath -tags "urfave_cli_no_docs no_btrfs" -ldflags "$ldflags" \
    "$pkg/cmd/containerd@$CONTAINERD2_VERSION"
  CGO_ENABLED=0 timeout 600 go install -trimpath -tags "urfave_cli_no_docs no_btrfs no_grpc" \
    -ldflags "$ldflags" "$pkg/cmd/containerd-shim-runc-v2@$CONTAINERD2_VERSION"
} >&2
echo "$stamp" >"$out/STAMP"
echo "$out/bin"
