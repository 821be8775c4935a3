#!/usr/bin/env bash
# Build kubeadm and kube-proxy (k8s.io/kubernetes/cmd/...) beside build.sh's
# programs, at the same version and from the same module graph: build.sh runs
# first, its resolved go.mod is copied and the two commands are added to it.
# Its own stamp, so build.sh's cache (shared by the cluster tests) is untouched.
# A warm run checks the stamp and returns in seconds.
#
#   e2e/kube/build/kubeadm.sh            # builds <cache>/<version>/bin/{kubeadm,kube-proxy}
#
# The module proxy is the only source: when it cannot be reached the script
# says so and exits 3 (CI fails on it; it is never a skip).
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.36.3}
CACHE_ROOT=${CRIB_KUBE_CACHE:-/var/cache/crib/kube}
here=$(cd "$(dirname "$0")" && pwd)
out=$CACHE_ROOT/$KUBE_VERSION
bin=$out/bin
programs=(kubeadm kube-proxy)

"$here/build.sh"
stamp_want=$(cat "$0" "$out/STAMP" | sha256sum | cut -c1-16)
stamp_file=$out/kubeadm.STAMP
all_there() { for p in "${programs[@]}"; do [ -x "$bin/$p" ] || return 1; done; }
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp_want" ] && all_there; then
  echo "kubeadm-build: ${programs[*]} $KUBE_VERSION cached in $bin"
  exit 0
fi

say() { echo "kubeadm-build: $*"; }
[ -x /usr/local/go/bin/go ] && ! command -v go >/dev/null && PATH=/usr/local/go/bin:$PATH

work=$out/src-kubeadm
rm -rf "$work"
mkdir -p "$work"
cp "$out/src/go.mod" "$out/src/go.sum" "$work/"
cd "$work"
go mod edit -tool=k8s.io/kubernetes/cmd/kubeadm -tool=k8s.io/kubernetes/cmd/kube-proxy
say "resolving the module graph (go mod tidy)"
if ! timeout 1200 go mod tidy 2>tidy.err; then
  echo "kubeadm-build: go mod tidy failed (is the module proxy reachable?):" >&2
  tail -20 tidy.err >&2
  exit 3
fi

# The version stamps build.sh sets, so `kubeadm version` says $KUBE_VERSION and
# kubeadm picks that version's images.
minor_patch=${KUBE_VERSION#v1.}
build_date=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$KUBE_VERSION.info")
ldflags="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor_patch%%.*}"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date -X $pkg.gitCommit=module-$KUBE_VERSION"
done
export CGO_ENABLED=0
t0=$(date +%s)
say "building ${programs[*]} into $bin"
go build -trimpath -ldflags "$ldflags" -o "$bin/" k8s.io/kubernetes/cmd/kubeadm k8s.io/kubernetes/cmd/kube-proxy
all_there || { echo "kubeadm-build: a program is missing from $bin" >&2; exit 1; }
"$bin/kubeadm" version -o short
echo "$stamp_want" >"$stamp_file"
say "built in $(($(date +%s) - t0)) s"
