#!/usr/bin/env bash
# Build crictl, critest (and the ginkgo CLI it runs in parallel) from sigs.k8s.io/cri-tools (the version in go.mod) into a
# cache outside the checkout, keyed by version; a warm run returns at once.
#
#   e2e/critools/build.sh               # -> /var/cache/crib/cri-tools/<version>/bin
#   e2e/critools/build.sh --print-dir
#
# The Go module proxy is the only source: when it cannot be reached the script
# says so and exits 3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(awk '$1 == "require" && $2 == "sigs.k8s.io/cri-tools" {print $3}' "$here/go.mod")
out=${CRIB_CRITOOLS_CACHE:-/var/cache/crib/cri-tools}/$version
bin=$out/bin
if [ "${1:-}" = "--print-dir" ]; then
  echo "$bin"
  exit 0
fi
stamp_want=$(cat "$0" "$here/go.mod" | sha256sum | cut -c1-16)
if [ -x "$bin/crictl" ] && [ -x "$bin/critest" ] && [ -x "$bin/ginkgo" ] && [ "$(cat "$out/STAMP" 2>/dev/null)" = "$stamp_want" ]; then
  echo "cri-tools-build: $version is cached in $bin"
  exit 0
fi
[ -x /usr/local/go/bin/go ] && ! command -v go >/dev/null && PATH=/usr/local/go/bin:$PATH
command -v go >/dev/null || { echo "cri-tools-build: no 'go' on PATH" >&2; exit 1; }

work=$out/src
rm -rf "$work"
mkdir -p "$work" "$bin"
cp "$here/go.mod" "$work/go.mod"
cd "$work"
echo "cri-tools-build: fetching sigs.k8s.io/cri-tools@$version from $(go env GOPROXY)"
if ! timeout 600 go mod download sigs.k8s.io/cri-tools@"$version" 2>dl.err; then
  echo "cri-tools-build: the Go module proxy ($(go env GOPROXY)) could not be reached or refused sigs.k8s.io/cri-tools@$version:" >&2
  cat dl.err >&2
  exit 3
fi
ldflags="-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=${version#v}"
export CGO_ENABLED=0
t0=$(date +%s)
echo "cri-tools-build: building crictl and critest $version"
go build -mod=mod -trimpath -ldflags "$ldflags" -o "$bin/crictl" sigs.k8s.io/cri-tools/cmd/crictl
go test -c -mod=mod -trimpath -ldflags "$ldflags" -o "$bin/critest" sigs.k8s.io/cri-tools/cmd/critest
# critest -parallel runs the ginkgo CLI of the version it was built with.
go build -mod=mod -trimpath -o "$bin/ginkgo" github.com/onsi/ginkgo/v2/ginkgo
echo "$stamp_want" >"$out/STAMP"
echo "cri-tools-build: built in $(($(date +%s) - t0)) s: $("$bin/crictl" --version)"
