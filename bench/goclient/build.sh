#!/usr/bin/env bash
# Build criclient (a Go CRI client, as the kubelet is) from the Go module proxy into a
# cache outside the checkout; prints the binary's path. A warm run takes a moment.
#
#   bench/goclient/build.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CRI_API_VERSION=${CRI_API_VERSION:-v0.36.3}
stamp=$(cat "$here/main.go" "$0" | sha256sum | cut -c1-16)
# One dir per version of main.go: checkouts with different clients do not rebuild each other's.
out=${CRIB_BENCH_CACHE:-/var/cache/crib/bench}/criclient-$CRI_API_VERSION-$stamp
if [ -x "$out/criclient" ] && [ "$(cat "$out/STAMP" 2>/dev/null)" = "$stamp" ]; then
  echo "$out/criclient"
  exit 0
fi
[ -x /usr/local/go/bin/go ] && ! command -v go >/dev/null && PATH=/usr/local/go/bin:$PATH
rm -rf "$out/src"
mkdir -p "$out/src"
cp "$here/main.go" "$out/src/"
cd "$out/src"
{
  go mod init crib.local/criclient
  go mod edit -require="k8s.io/cri-api@$CRI_API_VERSION"
  timeout 600 go mod tidy
  CGO_ENABLED=0 go build -trimpath -o "$out/criclient" .
} >&2
echo "$stamp" >"$out/STAMP"
echo "$out/criclient"
