#!/usr/bin/env bash
# Build the Kubernetes programs the cluster tests run, from Go modules, into a
# cache outside the checkout keyed by version. A warm run checks the stamp and
# returns in seconds.
#
#   e2e/kube/build/build.sh            # builds into /var/cache/crib/kube/<version>/bin
#   e2e/kube/build/build.sh --print-dir
#
# Programs: kubelet, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl (k8s.io/kubernetes), etcd (go.etcd.io/etcd/server/v3 at the version
# kubernetes pins), agnhost and nonewprivs (test images), ginkgo and
# e2e_node.test (the node conformance suite).
#
# The module proxy is the only source: when it cannot be reached the script
# says so and exits 3 (CI fails on it; it is never a skip).
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.36.3}
CACHE_ROOT=${CRIB_KUBE_CACHE:-/var/cache/crib/kube}
here=$(cd "$(dirname "$0")" && pwd)

minor_patch=${KUBE_VERSION#v1.}            # 36.3
staging_version=v0.${minor_patch}           # k8s.io/api etc. are tagged v0.36.3
major=1
minor=${minor_patch%%.*}
out=$CACHE_ROOT/$KUBE_VERSION
bin=$out/bin

if [ "${1:-}" = "--print-dir" ]; then
  echo "$bin"
  exit 0
fi

programs=(kubelet kube-apiserver kube-controller-manager kube-scheduler kubectl etcd agnhost nonewprivs ginkgo)
# A change to this script or go.mod invalidates the cache.
stamp_want=$(cat "$0" "$here/go.mod" | sha256sum | cut -c1-16)
stamp_file=$out/STAMP
all_there() {
  for p in "${programs[@]}" e2e_node.test; do [ -x "$bin/$p" ] || return 1; done
  [ -f "$out/agnhost/localhost.crt" ] && [ -f "$out/agnhost/localhost.key" ]
}
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp_want" ] && all_there; then
  echo "kube-build: $KUBE_VERSION is cached in $bin"
  exit 0
fi

say() { echo "kube-build: $*"; }
[ -x /usr/local/go/bin/go ] && ! command -v go >/dev/null && PATH=/usr/local/go/bin:$PATH
command -v go >/dev/null || { echo "kube-build: no 'go' on PATH (Go 1.26 builds Kubernetes $KUBE_VERSION)" >&2; exit 1; }

work=$out/src
rm -rf "$work"
mkdir -p "$work" "$bin"
cp "$here/go.mod" "$work/go.mod"
cd "$work"

say "fetching k8s.io/kubernetes@$KUBE_VERSION from $(go env GOPROXY)"
if ! info=$(timeout 600 go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" 2>&1); then
  echo "kube-build: the Go module proxy ($(go env GOPROXY)) could not be reached or refused k8s.io/kubernetes@$KUBE_VERSION:" >&2
  echo "$info" >&2
  exit 3
fi
kube_dir=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
build_date=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$KUBE_VERSION.info")

# Kubernetes requires its staging modules (k8s.io/api, k8s.io/client-go, ...)
# at v0.0.0 and replaces them with ./staging; outside its tree each must point
# at the published v0.<minor>.<patch> instead. The list comes from its go.mod.
mapfile -t staging < <(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$kube_dir/go.mod" | sort -u)
[ "${#staging[@]}" -gt 20 ] || { echo "kube-build: found only ${#staging[@]} staging modules in $kube_dir/go.mod" >&2; exit 1; }
say "replacing ${#staging[@]} staging modules with $staging_version"
edits=(-require="k8s.io/kubernetes@$KUBE_VERSION")
for m in "${staging[@]}"; do edits+=(-replace="$m=$m@$staging_version"); done
for t in k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/test/images/agnhost \
  k8s.io/kubernetes/test/images/nonewprivs \
  go.etcd.io/etcd/server/v3 github.com/onsi/ginkgo/v2/ginkgo; do
  edits+=(-tool="$t")
done
go mod edit "${edits[@]}"
# etcd and ginkgo at exactly the versions kubernetes itself pins.
for m in go.etcd.io/etcd/server/v3 github.com/onsi/ginkgo/v2; do
  v=$(awk -v m="$m" '$1 == m {print $2; exit}' "$kube_dir/go.mod")
  [ -n "$v" ] || { echo "kube-build: $m is not in kubernetes' go.mod" >&2; exit 1; }
  go mod edit -require="$m@$v"
done
say "resolving the module graph (go mod tidy)"
if ! timeout 1200 go mod tidy 2>tidy.err; then
  echo "kube-build: go mod tidy failed (is the module proxy reachable?):" >&2
  tail -20 tidy.err >&2
  exit 3
fi

ldflags="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
  ldflags+=" -X $pkg.gitCommit=module-$KUBE_VERSION"
done
export CGO_ENABLED=0

t0=$(date +%s)
say "building ${programs[*]} into $bin ($(nproc) cores)"
# One go build for all programs: their shared packages compile once.
go build -trimpath -ldflags "$ldflags" -o "$bin/" \
  k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/test/images/agnhost \
  k8s.io/kubernetes/test/images/nonewprivs \
  go.etcd.io/etcd/server/v3 github.com/onsi/ginkgo/v2/ginkgo
# go names the etcd server binary after its module's directory.
mv -f "$bin/server" "$bin/etcd"
say "programs built in $(($(date +%s) - t0)) s"

t1=$(date +%s)
say "building e2e_node.test (go test -c k8s.io/kubernetes/test/e2e_node)"
go test -c -trimpath -mod=mod -ldflags "$ldflags" -o "$bin/e2e_node.test" k8s.io/kubernetes/test/e2e_node
say "e2e_node.test built in $(($(date +%s) - t1)) s"

# agnhost's image carries the porter's key pair from the same source tree.
mkdir -p "$out/agnhost"
cp "$kube_dir/test/images/agnhost/porter/localhost.crt" "$kube_dir/test/images/agnhost/porter/localhost.key" "$out/agnhost/"
chmod 0644 "$out/agnhost/"*
all_there || { echo "kube-build: a program is missing from $bin" >&2; ls -l "$bin" >&2; exit 1; }
echo "$stamp_want" >"$stamp_file"
"$bin/kubectl" version --client
say "done: $bin"
