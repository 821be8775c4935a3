#!/usr/bin/env bash
# Run the whole test suite: lint, unit tests (tests/), e2e tests (e2e/, as root)
# and the cluster tests (e2e/kube/: a real kubelet 1.36 on crib).
#
#   sudo scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
[ -x "$py" ] || { echo "test.sh: run scripts/install.sh first (no .venv)" >&2; exit 1; }

.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Kubernetes from its Go modules, cached in /var/cache/crib/kube (seconds when warm).
# An unreachable module proxy fails here, with a message saying so.
e2e/kube/build/build.sh
# kubeadm, kube-proxy and CoreDNS for the kubeadm test (e2e/kube/test_kubeadm.py), the same way.
e2e/kube/build/kubeadm.sh
e2e/kube/build/coredns.sh
# containerd 2.x for the benchmarks' harness test (e2e/test_bench_containerd2.py), the same
# way (about 2 minutes cold). Not a crib dependency: when it cannot be built, that test
# skips saying so and the rest runs.
bench/containerd2/build.sh >/dev/null || echo "test.sh: containerd 2.x not built; its harness test will skip" >&2
# Unit and e2e tests in parallel on every core; each e2e test has its own cribd,
# socket and dirs, and each worker its own registries. The cluster tests share one
# cluster, so they run together on one worker (xdist group "kube"). -rfEs lists
# every failure, error and skip (with its reason) at the end.
exec "$py" -m pytest -n "${CRIB_TEST_WORKERS:-auto}" --dist loadgroup -q -rfEs "$@"
