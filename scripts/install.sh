#!/usr/bin/env bash
# Set up crib on a fresh Debian 12 machine and start cribd.
#
#   sudo scripts/install.sh             # install everything, start cribd on /run/crib/crib.sock
#   sudo scripts/install.sh --no-start  # install only (CI)
#   scripts/install.sh --node           # inside a node image's root (deploy/kind/build-node-image.sh)
#
# Installs the Debian packages crib runs with (runc, crun, conmon, catatonit,
# criu for CheckpointContainer, CNI plugins, iptables, iproute2) and those its
# tests use (docker-registry, busybox-static, containerd, mmdebstrap for the kind
# node image), makes a virtualenv in .venv with crib and its test tools, builds
# crictl and critest 1.36 from their Go module (Go 1.26 and the module proxy;
# cached outside the checkout), links cribd, cribctl, crictl and critest into
# /usr/local/bin, and writes /etc/crib/crib.toml if there is none. Safe to run again.
#
# --node installs what a node runs and nothing for the tests: the runtime
# packages, crib without its test extras (not editable), cribd.service enabled
# but not started (systemd is not running in an image build's chroot).
set -euo pipefail

# What cribd runs with, and what only crib's tests use.
runtime_packages=(python3 python3-venv python3-pip ca-certificates openssl
  runc crun conmon catatonit criu containernetworking-plugins iptables iproute2)
test_packages=(docker-registry busybox-static bash-static containerd mmdebstrap)

start=1
node=0
for arg in "$@"; do
  case "$arg" in
    --no-start) start=0 ;;
    --node) node=1 start=0 test_packages=() ;;
    # For an image build that installs the packages itself (mmdebstrap --include).
    --print-runtime-packages) echo "${runtime_packages[*]}"; exit 0 ;;
    *) echo "usage: $0 [--no-start | --node | --print-runtime-packages]" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (crib manages containers, mounts and network namespaces)" >&2
  exit 1
fi

cd "$(dirname "$0")/.."
repo=$(pwd)

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${runtime_packages[@]}" "${test_packages[@]}" >/dev/null

# The docker-registry package starts a registry on :5000 and the containerd
# package a containerd on /run/containerd where systemd runs; crib's tests start
# their own (free loopback ports, temp dirs), so turn those off.
if [ -d /run/systemd/system ]; then
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
  systemctl disable --now containerd >/dev/null 2>&1 || true
fi

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "install.sh: crib needs Python 3.11 or newer (python3 is $(python3 --version))" >&2
  exit 1
}
[ -x .venv/bin/python ] || python3 -m venv .venv
if [ "$node" -eq 1 ]; then
  .venv/bin/pip install -q --disable-pip-version-check .
else
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
fi

ln -sf "$repo/.venv/bin/cribd" /usr/local/bin/cribd
ln -sf "$repo/.venv/bin/cribctl" /usr/local/bin/cribctl
if [ "$node" -eq 0 ]; then
  # crictl and critest (cri-tools, built from their Go module into /var/cache/crib/cri-tools):
  # the tests compare cribctl with crictl and run critest against cribd.
  e2e/critools/build.sh
  critools=$(e2e/critools/build.sh --print-dir)
  ln -sf "$critools/crictl" /usr/local/bin/crictl
  ln -sf "$critools/critest" /usr/local/bin/critest
fi
install -d -m 0755 /etc/crib
[ -e /etc/crib/crib.toml ] || install -m 0644 deploy/crib.toml /etc/crib/crib.toml
# A fresh node gets a bridge network (crib0, 10.88.0.0/16) so it is NetworkReady;
# a conf dir that already holds a network (a CNI add-on's) is left alone.
install -d -m 0755 /etc/cni/net.d
if ! ls /etc/cni/net.d/*.conf /etc/cni/net.d/*.conflist /etc/cni/net.d/*.json >/dev/null 2>&1; then
  install -m 0644 deploy/cni/10-crib-bridge.conflist /etc/cni/net.d/10-crib-bridge.conflist
fi

if [ "$node" -eq 1 ]; then
  install -m 0644 deploy/cribd.service /etc/systemd/system/cribd.service
  systemctl enable cribd
fi
[ "$start" -eq 1 ] || exit 0

if [ -d /run/systemd/system ]; then
  install -m 0644 deploy/cribd.service /etc/systemd/system/cribd.service
  systemctl daemon-reload
  systemctl enable --now cribd
  systemctl restart cribd
else
  # No systemd (containers, CI sandboxes): run it detached with its log in /var/log/crib.
  install -d -m 0755 /var/log/crib
  if cribctl --timeout 2s version >/dev/null 2>&1; then
    echo "cribd is already running on /run/crib/crib.sock"
    exit 0
  fi
  setsid /usr/local/bin/cribd >>/var/log/crib/cribd.log 2>&1 </dev/null &
fi

# Wait (bounded) until cribd answers on its socket.
for _ in $(seq 100); do
  if cribctl --timeout 1s version >/dev/null 2>&1; then
    cribctl version
    echo "cribd is serving unix:///run/crib/crib.sock"
    exit 0
  fi
  sleep 0.1
done
echo "install.sh: cribd did not come up; see /var/log/crib/cribd.log or journalctl -u cribd" >&2
exit 1
