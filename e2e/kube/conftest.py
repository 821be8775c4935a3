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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(KUBE_DIR):
            item.add_marker(pytest.mark.xdist_group("kube"))
            item.add_marker(pytest.mark.kube)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    bin_dir = ensure_built()
    c = Cluster(Path(tempfile.mkdtemp(prefix="crib-kube-")), bin_dir)
    try:
        c.up()
    except BaseException:
        c.down()
        raise
    yield c
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
