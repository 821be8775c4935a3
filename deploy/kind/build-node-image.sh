#!/usr/bin/env bash
# Build a kind node image with crib as its container runtime, without Docker:
# a Debian root filesystem from Debian's packages (mmdebstrap), crib installed by
# its own scripts/install.sh (--node), kind's node files (taken at build time from
# the Go module sigs.k8s.io/kind at $KIND_VERSION, with crib's few changes made
# below), kubelet/kubeadm/kubectl and the control-plane images loaded into crib's
# store; written as an image archive that `docker load` and `podman load` read
# (deploy/kind/image_archive.py).
#
#   deploy/kind/build-node-image.sh [--images DIR] [--tag NAME:TAG] OUT.tar
#   deploy/kind/build-node-image.sh --print-kind-dir   (the kind module's directory)
#
# --images DIR   image archives (*.tar, as `cribctl load` reads) to put in the
#                node's crib store; default: deploy/kind/control-plane-images.sh's
#                output (the control-plane images of KUBE_VERSION).
# --tag NAME:TAG the loaded image's name (default crib.local/kind-node:$KUBE_VERSION).
#
# Needs root (chroot, mounts), mmdebstrap, the Debian mirror, go and the Go module
# proxy (for sigs.k8s.io/kind), and the Kubernetes programs in
# /var/cache/crib/kube/$KUBE_VERSION/bin (e2e/kube/build/build.sh and kubeadm.sh).
# The finished archive is cached in /var/cache/crib/kind/<key>/, keyed by every
# input (this script, deploy/kind/, crib's sources and install.sh, the kind module's
# version and checksum, the Debian suite and package list, the Kubernetes binaries,
# the image archives); a warm run only copies it. The Debian root alone is cached too (base-<key>.tar),
# keyed by suite, mirror and package list: packages updated on the mirror under
# the same list are picked up only when that list changes (or CRIB_KIND_FRESH=1).
#
# Environment: KUBE_VERSION (v1.36.3), CRIB_KIND_CACHE (/var/cache/crib/kind),
# CRIB_KUBE_CACHE (/var/cache/crib/kube), DEBIAN_MIRROR (http://deb.debian.org/debian),
# CRIB_PYTHON (a python with crib's dependencies; default <repo>/.venv/bin/python),
# CRIB_KIND_FRESH=1 (ignore the caches).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
KUBE_VERSION=${KUBE_VERSION:-v1.36.3}
cache=${CRIB_KIND_CACHE:-/var/cache/crib/kind}
kube_bin=${CRIB_KUBE_CACHE:-/var/cache/crib/kube}/$KUBE_VERSION/bin
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
python=${CRIB_PYTHON:-$repo/.venv/bin/python}
fresh=${CRIB_KIND_FRESH:-0}
suite=bookworm
# kind's node files come from this release of kind's Go module (its images/base/files
# are those of kind's commit fed268827e21 the image was first made against); the
# checksum is the module's go.sum line, so a different or altered download is refused.
KIND_VERSION=v0.33.0
KIND_SUM=h1:AjvDv3vOygb/VKLVQW87lfktIBzkxR8Ump9DjxC8+Lk=
tag=crib.local/kind-node:$KUBE_VERSION
images=""
out=""

usage() { echo "usage: $0 [--images DIR] [--tag NAME:TAG] OUT.tar | --print-kind-dir" >&2; exit 2; }
say() { echo "kind-node-image: $*"; }
die() { echo "kind-node-image: $*" >&2; exit 1; }

# The module sigs.k8s.io/kind@$KIND_VERSION from the Go module proxy (or go's module
# cache), checked against KIND_SUM; prints its directory (read-only files).
kind_module() {
  local json dir sum
  [ -x /usr/local/go/bin/go ] && ! command -v go >/dev/null && PATH=/usr/local/go/bin:$PATH
  command -v go >/dev/null || die "no 'go' on PATH (needed to fetch sigs.k8s.io/kind)"
  # From / : outside any Go module, so no go.mod of the caller's is read or changed.
  json=$(cd / && GOTOOLCHAIN=local timeout 600 go mod download -json "sigs.k8s.io/kind@$KIND_VERSION") ||
    die "go mod download sigs.k8s.io/kind@$KIND_VERSION failed (GOPROXY $(go env GOPROXY)): $json"
  read -r dir sum < <(printf '%s' "$json" | python3 -c 'import json, sys; m = json.load(sys.stdin); print(m["Dir"], m["Sum"])')
  [ "$sum" = "$KIND_SUM" ] || die "sigs.k8s.io/kind@$KIND_VERSION has checksum '$sum', expected $KIND_SUM"
  [ -f "$dir/images/base/files/usr/local/bin/entrypoint" ] || die "no kind module at '$dir'"
  printf '%s\n' "$dir"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --print-kind-dir) kind_module; exit 0 ;;
    --images) [ $# -ge 2 ] || usage; images=$2; shift 2 ;;
    --tag) [ $# -ge 2 ] || usage; tag=$2; shift 2 ;;
    -*) usage ;;
    *) [ -z "$out" ] || usage; out=$1; shift ;;
  esac
done
[ -n "$out" ] || usage

[ "$(id -u)" -eq 0 ] || die "run as root (chroot and mounts into the node's root)"
command -v mmdebstrap >/dev/null || die "no mmdebstrap (apt-get install mmdebstrap)"
[ -x "$python" ] || die "no python with crib's dependencies at $python (set CRIB_PYTHON)"
# kubeadm is built beside the others by e2e/kube/build/kubeadm.sh (when the checkout has it).
if [ ! -x "$kube_bin/kubeadm" ] && [ -x "$repo/e2e/kube/build/kubeadm.sh" ]; then
  KUBE_VERSION=$KUBE_VERSION "$repo/e2e/kube/build/kubeadm.sh"
fi
for p in kubelet kubeadm kubectl; do
  [ -x "$kube_bin/$p" ] || die "no $kube_bin/$p (build it: e2e/kube/build/build.sh and e2e/kube/build/kubeadm.sh)"
done
"$kube_bin/kubelet" --version | grep -qx "Kubernetes $KUBE_VERSION" ||
  die "$kube_bin/kubelet is not $KUBE_VERSION"

if [ -z "$images" ]; then
  [ -x "$here/control-plane-images.sh" ] ||
    die "no control-plane images: pass --images DIR (deploy/kind/control-plane-images.sh is not there yet)"
  images=$cache/control-plane-images/$KUBE_VERSION
  "$here/control-plane-images.sh" "$images"
fi
images=$(cd "$images" && pwd)
mapfile -t archives < <(find "$images" -maxdepth 1 -name '*.tar' | sort)
[ "${#archives[@]}" -gt 0 ] || die "no *.tar image archives in $images"

# The Debian packages: what kind's base image installs for a node (systemd and
# the tools kubeadm and the kubelet call; images/base/Dockerfile), minus the
# storage e2e extras (nfs-common, open-iscsi, fuse-overlayfs), plus crib's
# runtime packages as scripts/install.sh lists them.
kind_packages=(systemd dbus conntrack iptables nftables iproute2 ethtool util-linux mount kmod
  libseccomp2 pigz e2fsprogs bash ca-certificates curl jq procps)
read -r -a crib_packages < <("$repo/scripts/install.sh" --print-runtime-packages)
packages=$(printf '%s\n' "${kind_packages[@]}" "${crib_packages[@]}" | sort -u | paste -sd, -)
dpkg_opts=(--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*')

# crib as installed: its package, install.sh and the deploy files it copies.
crib_files() {
  (cd "$repo" && find crib scripts/install.sh deploy pyproject.toml README.md \
    -name __pycache__ -prune -o -type f -print | LC_ALL=C sort)
}
hash_files() { # hash of names (as given, relative) and contents
  local f
  for f in "$@"; do printf '%s\0' "$f"; sha256sum <"$f"; done | sha256sum | cut -c1-16
}
base_key=$(printf '%s\n' "$suite" "$mirror" "$packages" "${dpkg_opts[@]}" | sha256sum | cut -c1-16)
# crictl: kind runs it on nodes (`crictl inspecti` before `kind load`, `crictl images`
# in `kind export logs`); crib's build of cri-tools (e2e/critools, cached).
crictl=$("$repo/e2e/critools/build.sh" --print-dir)/crictl
[ -x "$crictl" ] || "$repo/e2e/critools/build.sh" >&2
[ -x "$crictl" ] || die "no crictl at $crictl (e2e/critools/build.sh)"
mapfile -t crib_list < <(crib_files)
key=$(
  {
    echo "$KUBE_VERSION $tag $base_key sigs.k8s.io/kind@$KIND_VERSION $KIND_SUM"
    (cd "$repo" && hash_files "${crib_list[@]}")
    (cd "$here" && hash_files $(find . -path ./__pycache__ -prune -o -type f -print | LC_ALL=C sort))
    (cd "$kube_bin" && hash_files kubelet kubeadm kubectl)
    (cd "$(dirname "$crictl")" && hash_files crictl)
    # By name in the directory: where the directory is does not matter.
    (cd "$images" && hash_files "${archives[@]##*/}")
  } | sha256sum | cut -c1-16
)
final=$cache/$key/node-image.tar
mkdir -p "$cache"
# One build at a time per cache: a second waits, then finds the first one's result.
exec 9>"$cache/.lock"
flock --wait 3600 9 || die "another build holds $cache/.lock for an hour"
if [ "$fresh" != 1 ] && [ -f "$final" ]; then
  say "cached: $final (key $key)"
  cp --reflink=auto "$final" "$out"
  say "wrote $out ($tag)"
  exit 0
fi

t0=$(date +%s)
# kind's node files, fetched before the long steps so a missing module fails early.
say "sigs.k8s.io/kind@$KIND_VERSION from the Go module proxy"
kind_dir=$(kind_module)
kind_files=$kind_dir/images/base/files
work=$(mktemp -d /var/tmp/crib-kind-node.XXXXXX)
rootfs=$work/rootfs
cribd_pid=""
mounts=()
cleanup() {
  local m
  if [ -n "$cribd_pid" ] && kill -0 "$cribd_pid" 2>/dev/null; then
    kill "$cribd_pid" 2>/dev/null || true
    timeout 20 tail --pid="$cribd_pid" -f /dev/null || kill -9 "$cribd_pid" 2>/dev/null || true
  fi
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
  # Never delete through a mount still held.
  if ! grep -q " $work/" /proc/self/mountinfo; then rm -rf "$work"; fi
}
trap cleanup EXIT

# 1. The Debian root, from the cache or mmdebstrap.
base=$cache/base-$base_key.tar
if [ "$fresh" = 1 ] || [ ! -f "$base" ]; then
  say "mmdebstrap $suite from $mirror (packages: $packages)"
  mmdebstrap --quiet --variant=apt --mode=root --format=tar --include="$packages" \
    "${dpkg_opts[@]}" "$suite" "$base.partial" "$mirror"
  mv "$base.partial" "$base"
  say "Debian root built in $(($(date +%s) - t0)) s"
fi
mkdir "$rootfs"
tar --extract --file="$base" --directory="$rootfs" --numeric-owner --xattrs --xattrs-include='*'

# 2. As kind's base image does (images/base/Dockerfile): no services but those
# enabled below, no kmsg in journald, /sbin/init is systemd, and (as kind's node
# image builder does) the kubeadm manifests dir.
rm -f "$rootfs"/lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service \
  "$rootfs"/lib/systemd/system/multi-user.target.wants/* \
  "$rootfs"/etc/systemd/system/*.wants/* \
  "$rootfs"/lib/systemd/system/local-fs.target.wants/* \
  "$rootfs"/lib/systemd/system/sockets.target.wants/*udev* \
  "$rootfs"/lib/systemd/system/sockets.target.wants/*initctl* \
  "$rootfs"/lib/systemd/system/basic.target.wants/*
echo "ReadKMsg=no" >>"$rootfs/etc/systemd/journald.conf"
ln -sfn /usr/lib/systemd/systemd "$rootfs/sbin/init"
mkdir -p "$rootfs/etc/kubernetes/manifests"

# 3. crib, by its own install.sh inside the root. pip gets crib's dependencies as
# wheels made here (the chroot reaches no package index), apt the Debian mirror.
in_root() {
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive PIP_NO_INDEX=1 PIP_FIND_LINKS=/tmp/crib-wheels \
    PIP_DISABLE_PIP_VERSION_CHECK=1 chroot "$rootfs" "$@"
}
mkdir -p "$rootfs/opt/crib"
(cd "$repo" && tar --create --owner=0 --group=0 "${crib_list[@]}") | tar --extract --directory="$rootfs/opt/crib"
say "making wheels of crib and its dependencies"
# From the copy, not the checkout: a wheel build leaves build/ and *.egg-info in its source.
"$python" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$rootfs/tmp/crib-wheels" \
  "$rootfs/opt/crib" setuptools wheel
for m in proc dev sys; do
  case $m in
    proc) mount -t proc proc "$rootfs/proc" ;;
    *) mount --bind "/$m" "$rootfs/$m" ;;
  esac
  mounts+=("$rootfs/$m")
done
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
say "scripts/install.sh --node in the node's root"
in_root /opt/crib/scripts/install.sh --node
rm -rf "$rootfs/opt/crib/build" "$rootfs"/opt/crib/*.egg-info
# The node runs under systemd: crib makes pod cgroups as systemd units, as the
# kubelet config kind writes expects (cgroupDriver: systemd, kubeadm/config.go).
sed -i 's/^cgroup_driver = "cgroupfs"/cgroup_driver = "systemd"/' "$rootfs/etc/crib/crib.toml"
grep -q '^cgroup_driver = "systemd"' "$rootfs/etc/crib/crib.toml" || die "crib.toml: cgroup_driver not set"

# 4. kind's node files, from kind's module as its base image copies them
# (images/base/Dockerfile COPY: scripts 0755, the rest 0644): the entrypoint, the
# kubelet unit, its drop-ins and slice, undo-mount-hacks, the sysctls. Not taken:
# containerd's config and units, crictl.yaml (crib's own below) and
# mount-product-files.sh (a containerd hook).
for f in usr/local/bin/entrypoint kind/bin/create-kubelet-cgroup-v2.sh kind/bin/undo-mount-hacks.sh; do
  install -D -m 0755 "$kind_files/$f" "$rootfs/$f"
done
for f in etc/default/kubelet etc/sysctl.d/10-network-magic.conf etc/sysctl.d/10-network-security.conf \
  etc/systemd/system/kubelet.service etc/systemd/system/kubelet.slice \
  etc/systemd/system/kubelet.service.d/10-kubeadm.conf etc/systemd/system/kubelet.service.d/11-kind.conf \
  etc/systemd/system/undo-mount-hacks.service kind/README.txt; do
  install -D -m 0644 "$kind_files/$f" "$rootfs/$f"
done
chmod 0755 "$rootfs/kind" "$rootfs/kind/bin"
# kind's files are Apache-2.0: its license goes with them.
install -D -m 0644 "$kind_dir/LICENSE" "$rootfs/LICENSES/sigs.k8s.io/kind/LICENSE"

# crib's changes to kind's files, each checked so a kind version that moves the
# text fails the build instead of shipping kind's unchanged.
# (a) The entrypoint's configure_containerd edits /etc/containerd/config.toml (for
# rootless nodes, ZFS or FUSE filesystems) and enables containerd-fuse-overlayfs; a
# crib node has neither, so the function returns first when the file is absent
# (without this a rootless node's entrypoint stops at sed's missing-file error).
sed -i 's|^configure_containerd() {$|&\n  [[ -f /etc/containerd/config.toml ]] \|\| return 0 # crib: no containerd in this node|' \
  "$rootfs/usr/local/bin/entrypoint"
[ "$(grep -c '|| return 0 # crib: no containerd' "$rootfs/usr/local/bin/entrypoint")" = 1 ] ||
  die "kind@$KIND_VERSION's entrypoint has no configure_containerd() to guard"
# (b) The kubelet's --runtime-cgroups names the runtime's unit: cribd's, not containerd's.
sed -i 's|--runtime-cgroups=/system.slice/containerd.service|--runtime-cgroups=/system.slice/cribd.service|' \
  "$rootfs/etc/default/kubelet"
grep -q -- '--runtime-cgroups=/system.slice/cribd.service' "$rootfs/etc/default/kubelet" ||
  die "kind@$KIND_VERSION's /etc/default/kubelet has no --runtime-cgroups to point at cribd"
# (c) crib's own files (deploy/kind/files): /etc/crictl.yaml on crib's socket, drop-ins
# ordering cribd before the kubelet and after undo-mount-hacks, /kind/manifests/default-cni.yaml.
(cd "$here/files" && tar --create --owner=0 --group=0 .) | tar --extract --directory="$rootfs"

# The Kubernetes programs where kind's units expect them, crictl.
for p in kubelet kubeadm kubectl; do install -m 0755 "$kube_bin/$p" "$rootfs/usr/bin/$p"; done
install -m 0755 "$crictl" "$rootfs/usr/local/bin/crictl"
printf '%s\n' "$KUBE_VERSION" >"$rootfs/kind/version"
in_root systemctl enable kubelet.service undo-mount-hacks.service
in_root systemctl mask systemd-binfmt.service
in_root systemctl is-enabled cribd.service kubelet.service >/dev/null

# 5. The images, into the node's crib store: a cribd of these sources on this
# host whose root is the node's /var/lib/crib (the store keeps no absolute paths).
state=$work/state
mkdir -p "$state"
cp "$repo/deploy/crib.toml" "$work/crib.toml"
PYTHONPATH=$repo "$python" -c 'from crib.cri_server.daemon import main; main()' \
  --config "$work/crib.toml" --root "$rootfs/var/lib/crib" --state "$state" \
  --listen "$state/crib.sock" >"$work/cribd.log" 2>&1 &
cribd_pid=$!
cribctl() { PYTHONPATH=$repo "$python" -c 'from crib.cribctl.main import main; main()' \
  --runtime-endpoint "unix://$state/crib.sock" --timeout 300s "$@"; }
for _ in $(seq 300); do
  [ -S "$state/crib.sock" ] && cribctl version >/dev/null 2>&1 && break
  kill -0 "$cribd_pid" 2>/dev/null || { cat "$work/cribd.log" >&2; die "cribd exited"; }
  sleep 0.1
done
cribctl version >/dev/null || { cat "$work/cribd.log" >&2; die "cribd did not serve in 30 s"; }
for a in "${archives[@]}"; do
  say "loading $(basename "$a")"
  cribctl load -i "$a"
done
cribctl images -o json | "$python" -c '
import json, sys
for image in json.load(sys.stdin)["images"]:
    for tag in image.get("repoTags", []):
        print(tag)' | LC_ALL=C sort >"$rootfs/kind/crib-images"
kill "$cribd_pid"
timeout 20 tail --pid="$cribd_pid" -f /dev/null || die "cribd did not stop in 20 s"
cribd_pid=""
rm -rf "$rootfs/var/lib/crib/tmp/"* "$rootfs/var/lib/crib/trash/"*

# 6. Tidy: nothing of the build host stays in the image.
for m in "${mounts[@]}"; do umount "$m"; done
mounts=()
rm -rf "$rootfs/tmp/"* "$rootfs/var/lib/apt/lists/"* "$rootfs/var/cache/apt/"*.bin \
  "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/log/"*.log "$rootfs/root/.cache"
: >"$rootfs/etc/resolv.conf"
: >"$rootfs/etc/hostname"
: >"$rootfs/etc/machine-id"

# 7. The archive, with the image config kind's base image sets (Dockerfile's last
# lines and the node image builder's `docker commit --change`).
cat >"$work/config.json" <<'EOF'
{
  "Entrypoint": ["/usr/local/bin/entrypoint", "/sbin/init"],
  "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "container=docker"],
  "StopSignal": "SIGRTMIN+3"
}
EOF
mkdir -p "$cache/$key"
say "writing the image archive"
python3 "$here/image_archive.py" --rootfs "$rootfs" --tag "$tag" --config "$work/config.json" \
  --created "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$final.partial" >"$cache/$key/image-id"
mv "$final.partial" "$final"
elapsed=$(($(date +%s) - t0))
printf 'key %s\ntag %s\nbuilt %s in %s s\n' "$key" "$tag" "$(date -u +%FT%TZ)" "$elapsed" >"$cache/$key/BUILD"
# Keep the newest three builds.
ls -1dt "$cache"/*/ 2>/dev/null | grep -v '/control-plane-images/$' | tail -n +4 | xargs -r rm -rf
cp --reflink=auto "$final" "$out"
say "built in $elapsed s: $out ($tag, $(du -h "$out" | cut -f1))"
