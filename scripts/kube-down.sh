#!/usr/bin/env bash
# Tear down the cluster scripts/kube-up.sh made: pods, processes, mounts, netns,
# cgroups, iptables chains and files; the kernel settings the kubelet changed
# are put back.
#
#   sudo scripts/kube-down.sh [--dir DIR]   # default DIR: /var/lib/crib-kube
#   sudo scripts/kube-down.sh --kubeadm [--dir DIR]   # `kubeadm reset` and the rest
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--kubeadm" ]; then
  shift
  exec .venv/bin/python -m e2e.kube.kubeadm down "$@"
fi
exec .venv/bin/python -m e2e.kube.cluster down "$@"
