#!/usr/bin/env bash
# Bring up a one-node Kubernetes 1.36 cluster whose kubelet runs its pods on crib.
#
#   sudo scripts/kube-up.sh [--dir DIR]     # default DIR: /var/lib/crib-kube
#   sudo scripts/kube-up.sh --kubeadm [--dir DIR]   # default DIR: /var/lib/crib-kubeadm
#
# On a fresh machine it first runs scripts/install.sh --no-start (Debian
# packages, .venv) and builds Kubernetes from its Go modules into
# /var/cache/crib/kube (about 8 minutes on 2 cores the first time, seconds after).
# Then it starts a registry with the test images, etcd, the control plane, a
# cribd of the cluster's own and a kubelet, waits for the node to be Ready and
# prints the lines your shell needs (KUBECONFIG, PATH, CONTAINER_RUNTIME_ENDPOINT).
# scripts/kube-down.sh removes all of it.
#
# --kubeadm: `kubeadm init --config deploy/kind/kubeadm.yaml` instead (e2e/kube/kubeadm.py):
# the control plane runs as static pods on a cribd of the cluster's own, from images
# built here (deploy/kind/control-plane-images.sh) and loaded with `cribctl load`, then
# kube-proxy, CoreDNS and crib's bridge CNI. It writes /etc/kubernetes, /var/lib/kubelet
# and /var/lib/etcd (kubeadm's fixed paths), so it refuses to start over another one;
# `scripts/kube-down.sh --kubeadm` runs `kubeadm reset` and removes the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "kube-up.sh: run as root (the kubelet and crib manage cgroups, mounts and namespaces)" >&2
  exit 1
fi
[ -x .venv/bin/python ] || scripts/install.sh --no-start
e2e/kube/build/build.sh >&2
if [ "${1:-}" = "--kubeadm" ]; then
  shift
  e2e/kube/build/kubeadm.sh >&2
  e2e/kube/build/coredns.sh >&2
  exec .venv/bin/python -m e2e.kube.kubeadm up "$@"
fi
exec .venv/bin/python -m e2e.kube.cluster up "$@"
