"""containerd 2.x as the benchmarks run it (bench/containerd2, bench/pod_lifecycle.py).

Its own dir, socket, bridge and subnet; the built 2.x shim; the local registry's pause as its
sandbox image, pulled over plain HTTP through a hosts.toml. On this cgroup v1 host it runs a
pod with a container under a kubelet-style pod cgroup, and answers ListPodSandboxStats (which
the benchmarks time) with real figures. When it dies midway, the benchmarks' cleanup starts
it again to remove its pods, so nothing is left: no process, mount, netns, iptables rule,
CNI cache entry, shim socket or bridge.

Runs on the cached build only (a cold Go build takes minutes): skipped, saying so, until
bench/containerd2/build.sh has run, or with CRIB_E2E_BUILD_CONTAINERD2=1 it builds.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import containerd2
from bench.daemon_idle import Daemon
from bench.pod_lifecycle import BRIDGES, BUSYBOX, Client, push_images, start_containerd2, stop_daemons
from crib.proto.cri import api_pb2
from e2e.harness.cgroup_parents import remove_tree
from e2e.harness.cleanup import mounts_under, processes_referencing
from e2e.harness.registry import Registry

BRIDGE = BRIDGES[2]
SUBNET = "10.233."
CGROUP_V1 = Path("/sys/fs/cgroup")
CNI_CACHE = "/var/lib/cni/results"
SHIM_SOCKETS = "/run/containerd/s"


@pytest.fixture(scope="module")
def bin_dir() -> Path:
    built = containerd2.build(cached_only=not os.environ.get("CRIB_E2E_BUILD_CONTAINERD2"))
    if built is None:
        pytest.skip("containerd 2.x is not built (bench/containerd2/build.sh)")
    return built


@pytest.fixture
def registry() -> Iterator[Registry]:
    reg = Registry().start()
    try:
        push_images(reg)
        yield reg
    finally:
        reg.stop()


def _names(d: str) -> set[str]:
    return {p.name for p in Path(d).iterdir()} if Path(d).is_dir() else set()


def _iptables_mentions(text: str) -> list[str]:
    out = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, timeout=30).stdout
    return [line for line in out.splitlines() if text in line]


def _remove_cgroup(path: str) -> None:
    for hierarchy in [CGROUP_V1 / "unified", *CGROUP_V1.iterdir()]:
        remove_tree(hierarchy / path.strip("/"))


def test_containerd2_runs_a_pod_answers_its_stats_and_leaves_nothing_when_killed(
    bin_dir: Path, registry: Registry
) -> None:
    # The CNI cache and the shims' sockets are the host's (/var/lib/cni, /run/containerd/s).
    cache_before, sockets_before = _names(CNI_CACHE), _names(SHIM_SOCKETS)
    top = f"crib-e2e-ctrd2-{uuid.uuid4().hex[:8]}"
    daemons: list[Daemon] = []
    try:
        d = start_containerd2(registry, bin_dir)
        daemons.append(d)
        c = Client(d)
        version = c.rt.Version(api_pb2.VersionRequest(), timeout=10)
        assert (version.runtime_name, version.runtime_version) == ("containerd", "v2.4.2")
        image = f"{registry.host}/{BUSYBOX}"
        c.pull(image)
        cfg = c.pod_config()
        cfg.linux.cgroup_parent = f"/{top}/pod{cfg.metadata.uid}"
        pod = c.runp(cfg)
        cid = c.create(pod, cfg, image)
        c.start(cid)

        # The built 2.x shim runs the pod, not Debian's 1.6 one from PATH.
        shims = [
            Path(f"/proc/{pid}/exe").resolve()
            for pid in processes_referencing(d.dir)
            if Path(f"/proc/{pid}/comm").read_text().startswith("containerd-shim")
        ]
        assert shims and set(shims) == {bin_dir / "containerd-shim-runc-v2"}
        # cgroup v1: the container's memory cgroup is under the pod's.
        request = api_pb2.ContainerStatusRequest(container_id=cid)
        status = c.rt.ContainerStatus(request, timeout=10)
        assert status.status.state == api_pb2.CONTAINER_RUNNING
        assert (CGROUP_V1 / "memory" / top / f"pod{cfg.metadata.uid}" / cid).is_dir()
        # The pod's netns under the daemon's dir, where the cleanup unmounts it.
        assert [m for m in mounts_under(d.dir) if "/netns/" in m]
        assert _iptables_mentions(SUBNET)

        stats = c.rt.ListPodSandboxStats(api_pb2.ListPodSandboxStatsRequest(), timeout=30).stats
        assert [s.attributes.id for s in stats] == [pod]
        linux = stats[0].linux
        assert linux.cpu.usage_core_nano_seconds.value > 0
        assert linux.memory.working_set_bytes.value > 0
        assert linux.network.default_interface.name == "eth0"
        assert [s.attributes.id for s in linux.containers] == [cid]

        # Killed midway: the cleanup starts it again, and its CNI DEL takes the network.
        d.proc.kill()
        d.proc.wait(10)
    finally:
        stop_daemons(daemons)
        _remove_cgroup(top)
    assert processes_referencing(d.dir) == []
    assert mounts_under(d.dir) == []
    assert not d.dir.exists()
    assert _iptables_mentions(SUBNET) == []
    assert _names(CNI_CACHE) - cache_before == set()
    assert _names(SHIM_SOCKETS) - sockets_before == set()
    assert not Path(f"/sys/class/net/{BRIDGE}").exists()
