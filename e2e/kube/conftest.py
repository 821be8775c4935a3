"""The one-node cluster for the tests in e2e/kube.

`cluster` is started once per test session (all tests here run on one xdist
worker, grouped as "kube") and torn down at the end, where anything it had to
force away (a container, a mount, a process left in a pod cgroup) fails the
session. `kube` gives each test a namespace of its own, deleted afterwards;
when a test fails, the tails of the kubelet's and cribd's logs join its report.
"""

from __future__ import annotations

import re
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.kube.cluster import Cluster, ensure_built
from e2e.kube.kube import Kube

KUBE_DIR = Path(__file__).resolve().parent


GROUP = "kube"


def _join_group(item: pytest.Item) -> None:
    """Put the item in xdist's group GROUP, as xdist's own hook does for an xdist_group mark:
    by the `@GROUP` suffix of its node id, which --dist loadgroup schedules by. That hook sets
    `item._nodeid`, which pytest 9 no longer reads (the id is `item._id`), so no test was
    grouped and the kube tests ran on every worker, each with a cluster of its own."""
    nodeid = f"{item.nodeid}@{GROUP}"
    if hasattr(item, "_id"):
        from _pytest.nodeid import coerce_node_id  # noqa: PLC0415 (pytest >= 9 only; pytest 8 is allowed)

        item._id = coerce_node_id(nodeid)
    else:
        item._nodeid = nodeid


# trylast: after xdist's hook, whose suffix (where it works) is then already there.
@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    loadgroup = bool(config.getvalue("loadgroup")) if hasattr(config.option, "loadgroup") else False
    for item in items:
        if Path(str(item.fspath)).is_relative_to(KUBE_DIR):
            item.add_marker(pytest.mark.xdist_group(GROUP))
            item.add_marker(pytest.mark.kube)
            if loadgroup and not item.nodeid.endswith(f"@{GROUP}"):
                _join_group(item)
    # The kubeadm cluster (fixed paths: /etc/kubernetes, /var/lib/kubelet) and the shared
    # cluster below never run together: its module runs, and tears down, before the first
    # test that starts the shared one (which then lives to the end of the session).
    kubeadm = [i for i in items if Path(str(i.fspath)) == KUBE_DIR / "test_kubeadm.py"]
    if kubeadm:
        rest = [i for i in items if i not in kubeadm]
        first_kube = next((n for n, i in enumerate(rest) if Path(str(i.fspath)).is_relative_to(KUBE_DIR)), 0)
        items[:] = rest[:first_kube] + kubeadm + rest[first_kube:]


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    # test_kubeadm.py checks this: its cluster must never run beside this one.
    request.config._crib_kube_cluster_up = True  # type: ignore[attr-defined]
    bin_dir = ensure_built()
    c = Cluster(Path(tempfile.mkdtemp(prefix="crib-kube-")), bin_dir)
    yield c.up_or_down()
    # Namespaces first, so the kubelet unmounts volumes and crib removes pods as on a node.
    k = Kube(c)
    k.kubectl("delete", "namespaces", "-l", "crib-e2e=1", "--wait=true", "--timeout=180s", check=False)
    k.close()
    report = c.down()
    leaks = {key: report[key] for key in ("crib_forced", "cgroups_with_processes") if report.get(key)}
    assert not leaks, f"the cluster left these behind: {leaks}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    c: Cluster | None = getattr(item, "_kube_cluster", None)
    if report.failed and c is not None:
        for name in ("kubelet", "cribd"):
            report.sections.append((f"{name} log (tail)", c.log_tail(name, 80)))


@pytest.fixture
def kube(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[Kube]:
    request.node._kube_cluster = cluster
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    ns = f"{base}-{uuid.uuid4().hex[:5]}"
    k = Kube(cluster, ns)
    k.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"crib-e2e": "1"}}})
    cluster.wait_service_account(ns)
    yield k
    k.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    k.close()
