#!/usr/bin/env bash
# Build CoreDNS, at the version kubeadm pins (CoreDNSVersion in k8s.io/kubernetes'
# cmd/kubeadm/app/constants), from its Go module into the same cache as build.sh.
# CoreDNS's dependencies differ from Kubernetes', so it builds as its own main
# module (`go install module@version` keeps exactly its go.mod's versions).
# A warm run checks the stamp and returns in seconds.
#
#   e2e/kube/build/coredns.sh            # builds <cache>/<kube version>/bin/coredns
#
# The module proxy is the only source: when it cannot be reached the script
# says so and exits 3 (CI fails on it; it is never a skip).
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.36.3}
# kubeadm v1.36.3: CoreDNSVersion = "v1.14.2" (checked by e2e/kube/kubeadm.py against
# `kubeadm config images list`).
COREDNS_VERSION=${COREDNS_VERSION:-v1.14.2}
CACHE_ROOT=${CRIB_KUBE_CACHE:-/var/cache/crib/kube}
out=$CACHE_ROOT/$KUBE_VERSION
bin=$out/bin

stamp_want=$(echo "$COREDNS_VERSION" | cat "$0" - | sha256sum | cut -c1-16)
stamp_file=$out/coredns.STAMP
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp_want" ] && [ -x "$bin/coredns" ]; then
  echo "coredns-build: $COREDNS_VERSION is cached in $bin"
  exit 0
fi

say() { echo "coredns-build: $*"; }
[ -x /usr/local/go/bin/go ] && ! command -v go >/dev/null && PATH=/usr/local/go/bin:$PATH
command -v go >/dev/null || { echo "coredns-build: no 'go' on PATH" >&2; exit 1; }
mkdir -p "$bin"

say "fetching github.com/coredns/coredns@$COREDNS_VERSION from $(go env GOPROXY)"
if ! info=$(timeout 600 go mod download -json "github.com/coredns/coredns@$COREDNS_VERSION" 2>&1); then
  echo "coredns-build: the Go module proxy ($(go env GOPROXY)) could not be reached or refused github.com/coredns/coredns@$COREDNS_VERSION:" >&2
  echo "$info" >&2
  exit 3
fi

t0=$(date +%s)
# As CoreDNS's Makefile builds it: static, stripped, without gRPC's tracing.
export CGO_ENABLED=0
GOBIN=$bin timeout 3000 go install -trimpath -tags grpcnotrace \
  -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=module-$COREDNS_VERSION" \
  "github.com/coredns/coredns@$COREDNS_VERSION"
"$bin/coredns" -version
echo "$stamp_want" >"$stamp_file"
say "built in $(($(date +%s) - t0)) s: $bin/coredns"
