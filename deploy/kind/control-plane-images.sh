#!/usr/bin/env bash
# kubeadm's control-plane images for Kubernetes v1.36.3, built locally, as OCI image
# archives (one per image, loadable with `cribctl load -i FILE`) in OUTDIR:
#
#   deploy/kind/control-plane-images.sh OUTDIR
#
# Names and tags are exactly those of `kubeadm config images list --kubernetes-version
# v1.36.3`: registry.k8s.io/{kube-apiserver,kube-controller-manager,kube-scheduler,
# kube-proxy}:v1.36.3, registry.k8s.io/etcd:3.6.8-0, registry.k8s.io/coredns/coredns:v1.14.2
# and registry.k8s.io/pause:3.10.2. Each is a minimal root filesystem with the static
# binary built from its Go module (e2e/kube/build: build.sh, kubeadm.sh, coredns.sh);
# kube-proxy's also holds this host's iptables-nft. Prints "FILE<TAB>IMAGE" per image.
# Everything is cached under /var/cache/crib/kube: a warm run takes seconds, a cold one
# builds Kubernetes and CoreDNS first (about 15 minutes on 2 cores).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
out=$(mkdir -p "$1" && cd "$1" && pwd)
cd "$(dirname "$0")/../.."
[ -x .venv/bin/python ] || { echo "control-plane-images.sh: run scripts/install.sh first (no .venv)" >&2; exit 1; }
exec .venv/bin/python -m e2e.kube.control_plane_images "$out"
