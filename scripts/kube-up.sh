#!/usr/bin/env bash
# Bring up a one-node Kubernetes 1.36 cluster whose kubelet runs its pods on crib.
#
#   sudo scripts/kube-up.sh [--dir DIR]     # default DIR: /var/lib/crib-kube
#
# On a fresh machine it first runs scripts/install.sh --no-start (Debian
# packages, .venv) and builds Kubernetes from its Go modules into
# /var/cache/crib/kube (about 8 minutes on 2 cores the first time, seconds after).
# Then it starts a registry with the test images, etcd, the control plane, a
# cribd of the cluster's own and a kubelet, waits for the node to be Ready and
# prints the lines your shell needs (KUBECONFIG, PATH, CONTAINER_RUNTIME_ENDPOINT).
# scripts/kube-down.sh removes all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "kube-up.sh: run as root (the kubelet and crib manage cgroups, mounts and namespaces)" >&2
  exit 1
fi
[ -x .venv/bin/python ] || scripts/install.sh --no-start
e2e/kube/build/build.sh >&2
exec .venv/bin/python -m e2e.kube.cluster up "$@"
