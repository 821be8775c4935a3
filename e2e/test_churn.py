"""Churn: pod lifecycles run back to back leave cribd's memory, fds and threads where they were.

Each cycle is one pod as the kubelet drives it: RunPodSandbox, CreateContainer and
StartContainer of a busybox pulled from the test registry, one ExecSync, then (once ten
newer pods run) StopContainer, RemoveContainer, StopPodSandbox and RemovePodSandbox. Ten
pods run at a time, a rolling window. Between them come the calls the kubelet repeats
(ListContainers, ListPodSandbox, ListContainerStats, ListPodSandboxStats).

cribd's RSS, PSS, fd count and thread count are sampled with the window full at two
points: after the first 10% of the cycles (at least two windows, so every path, teardown
included, has run and Python's caches and the default executor's threads exist) and at
the end. The end must be within 10% of the first in RSS, and flat in fds and threads.
Then everything is removed, and the state store, the layer and rootfs dirs, the CNI
result cache, the IPAM reservations, the pods' cgroups and the rest of `machine_state`
hold nothing from the removed pods.

`CRIB_CHURN_CYCLES` sets the number of cycles (60 by default, about a minute;
scripts/reliability.sh runs 1000).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import statistics
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from crib.proto.cri import api_pb2
from e2e.harness.cribd import Cribd
from e2e.harness.machine import machine_state
from e2e.harness.network import PodNetwork
from e2e.harness.registry import Registry
from e2e.harness.wait import wait_until
from e2e.images import builder
from e2e.images.registry_client import RegistryClient
from e2e.kube import host
from e2e.pods import POD_TIMEOUT, create_container, exec_sync, pod_config, run_pod, start_container

CYCLES = int(os.environ.get("CRIB_CHURN_CYCLES", "60"))
WINDOW = 10
# RSS may drift this much between the two samples: the bound. A leak of even a
# few KiB a pod crosses it over 1000 cycles; allocator noise does not.
RSS_GROWTH = 0.10
# fds and threads must come back to the same count, give or take a little. fds: the samples
# are taken between calls, but an ended container's conmon pipe closes and the
# trash-emptying thread (RemoveContainer's deferred delete) runs just after the reply, so
# one of either may still be open at an instant. Threads: pools that grow on demand and
# keep their threads, up to a cap, and are not leaks: asyncio's default executor (at most
# 6 threads on 2 cores) starts one more when two blocking calls overlap, and gRPC's
# event-engine pool grows under load and retires idle threads later. A leak of one fd or
# thread a pod is 40 over the CI run and 900 over the long one.
FD_SLACK = 2
THREAD_SLACK = 2
SAMPLES = 5
RESULTS = os.environ.get("CRIB_CHURN_RESULTS")
# Warnings this host earns whatever the pods do: cribd lacks CAP_SYS_RESOURCE here.
HOST_WARNINGS = {"oom_score_adj.clamped"}


@dataclass(frozen=True)
class Sample:
    rss_kib: int
    pss_kib: int
    fds: int
    threads: int


def _status_field(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise AssertionError(f"{name} not in /proc/{pid}/status")


def _pss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise AssertionError(f"no Pss in /proc/{pid}/smaps_rollup")


def measure(pid: int) -> Sample:
    """The median of a few samples a moment apart: one caught mid-collection or mid-reply
    does not decide the comparison."""
    taken = []
    for _ in range(SAMPLES):
        taken.append(
            Sample(
                _status_field(pid, "VmRSS"),
                _pss(pid),
                len(os.listdir(f"/proc/{pid}/fd")),
                _status_field(pid, "Threads"),
            )
        )
        time.sleep(0.2)
    return Sample(
        *(int(statistics.median(getattr(s, f) for s in taken)) for f in Sample.__dataclass_fields__)
    )


def thread_names(pid: int) -> dict[str, int]:
    """cribd's threads by name (gRPC names its own; Python's are all "python")."""
    names: dict[str, int] = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
            name = Path(f"/proc/{pid}/task/{task}/comm").read_text().strip()
            names[name] = names.get(name, 0) + 1
    return names


def store_records(daemon: Cribd) -> dict[str, list[str]]:
    """What the state store holds, by kind (read-only: cribd keeps writing it)."""
    db = sqlite3.connect(f"file:{daemon.root / 'state.db'}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT kind, id FROM records ORDER BY kind, id").fetchall()
    finally:
        db.close()
    kinds: dict[str, list[str]] = {}
    for kind, id_ in rows:
        kinds.setdefault(kind, []).append(id_)
    return kinds


def warnings_logged(daemon: Cribd) -> dict[str, int]:
    """cribd's warning and error events by name: each should mean something went wrong."""
    events: dict[str, int] = {}
    for line in daemon.log_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") in ("warning", "error", "critical") and entry.get("event") not in HOST_WARNINGS:
            events[entry["event"]] = events.get(entry["event"], 0) + 1
    return events


def cgroups_under(parent: str) -> list[str]:
    found = []
    # Every mounted hierarchy: runc makes the parent in each (cpu and cpuacct are two here).
    for hierarchy in host.cgroup_hierarchies():
        d = hierarchy / parent.strip("/")
        if d.is_dir():
            found += [f"{hierarchy.name}/{p.name}" for p in d.iterdir() if p.is_dir()]
    return sorted(found)


@pytest.fixture
def cgroup_parent() -> Iterator[str]:
    """A cgroup parent of this test's own, as the kubelet gives each pod: what runc leaves
    under it is this test's, whatever else runs in parallel. The test asks for it first, so
    it is removed last, after cribd_factory's teardown has removed the pods."""
    parent = f"/crib-churn-{uuid.uuid4().hex[:8]}"
    yield parent
    for hierarchy in host.cgroup_hierarchies():
        d = hierarchy / parent.strip("/")
        for child in [*(p for p in d.iterdir() if p.is_dir()), d] if d.is_dir() else []:
            # A cgroup with a process still in it stays rather than fail the teardown.
            with contextlib.suppress(OSError):
                child.rmdir()


@dataclass
class Pod:
    id: str
    container: str


class Churn:
    def __init__(self, daemon: Cribd, image: str, cgroup_parent: str) -> None:
        self.daemon = daemon
        self.image = image
        self.cgroup_parent = cgroup_parent
        self.running: deque[Pod] = deque()
        self.made: list[Pod] = []

    def start_one(self, i: int) -> None:
        name = f"churn{i}"
        config = pod_config(name)
        config.linux.cgroup_parent = self.cgroup_parent
        pod_id = run_pod(self.daemon, config)
        container = api_pb2.ContainerConfig(
            metadata=api_pb2.ContainerMetadata(name="main"),
            image=api_pb2.ImageSpec(image=self.image),
            # Ends on SIGTERM, so StopContainer is the graceful path, not its kill timeout.
            command=["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
            log_path="main/0.log",
        )
        cid = create_container(self.daemon, pod_id, container)
        start_container(self.daemon, cid)
        pod = Pod(pod_id, cid)
        self.running.append(pod)
        self.made.append(pod)
        assert exec_sync(self.daemon, cid, ["cat", "/etc/hostname"]).stdout == f"{name}\n".encode()

    def end_oldest(self) -> None:
        pod = self.running.popleft()
        rt = self.daemon.runtime
        rt.StopContainer(
            api_pb2.StopContainerRequest(container_id=pod.container, timeout=10), timeout=POD_TIMEOUT
        )
        rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=pod.container), timeout=POD_TIMEOUT)
        rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=POD_TIMEOUT)
        rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=POD_TIMEOUT)

    def poll(self) -> None:
        """What the kubelet asks between lifecycle calls (PLEG's lists, the stats it serves):
        per-container state cribd keeps for them (CPU rate samples) must go with the pods."""
        rt = self.daemon.runtime
        listed = rt.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers
        assert len(listed) == len(self.running)
        rt.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10)
        rt.ListContainerStats(api_pb2.ListContainerStatsRequest(), timeout=10)
        rt.ListPodSandboxStats(api_pb2.ListPodSandboxStatsRequest(), timeout=10)

    def cycle(self, i: int) -> None:
        self.start_one(i)
        self.poll()
        if len(self.running) > WINDOW:
            self.end_oldest()


def _pull_busybox(daemon: Cribd, registry: Registry) -> str:
    with RegistryClient(registry.url) as client:
        client.push_image("e2e/churn", "1", builder.busybox_image())
    ref = f"{registry.host}/e2e/churn:1"
    daemon.images.PullImage(api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=ref)), timeout=60)
    return ref


def _trash_empty(daemon: Cribd) -> bool:
    trash = [daemon.state / "containers.trash", daemon.root / "containers.trash"]
    return not any(d.is_dir() and any(d.iterdir()) for d in trash)


# A cycle takes about half a second here; the long run would outlast the suite's 300 s.
@pytest.mark.timeout(120 + 3 * CYCLES)
def test_churn_leaks_nothing(
    cgroup_parent: str, net_cribd: Cribd, pod_network: PodNetwork, registry: Registry
) -> None:
    daemon = net_cribd
    assert daemon.proc is not None
    pid = daemon.proc.pid
    image = _pull_busybox(daemon, registry)
    churn = Churn(daemon, image, cgroup_parent)
    # One pod first: the pause image it brings stays, and is not the churn's doing.
    churn.start_one(-1)
    churn.end_oldest()
    wait_until(lambda: _trash_empty(daemon), 30, "the warm-up container's trash to be emptied")
    before = machine_state(daemon, pod_network)
    first_at = max(CYCLES // 10, 2 * WINDOW)
    assert first_at < CYCLES, f"CRIB_CHURN_CYCLES must exceed {first_at}"
    started = time.monotonic()
    first = last = None
    for i in range(CYCLES):
        churn.cycle(i)
        if i + 1 == first_at:
            first = measure(pid)
            print(f"after {first_at} cycles: {first}")
    assert len(churn.running) == WINDOW
    last = measure(pid)
    elapsed = time.monotonic() - started
    print(f"after {CYCLES} cycles ({elapsed:.0f}s): {last}")
    assert first is not None
    records = store_records(daemon)
    # The store holds the running window and nothing of the pods removed before it.
    assert sorted(records.get("sandbox", [])) == sorted(p.id for p in churn.running)
    assert sorted(records.get("container", [])) == sorted(p.container for p in churn.running)

    while churn.running:
        churn.end_oldest()
    wait_until(lambda: _trash_empty(daemon), 30, "the removed containers' trash to be emptied")
    after = machine_state(daemon, pod_network)
    records = store_records(daemon)
    leftovers = {
        "store": {k: v for k, v in records.items() if k in ("sandbox", "container")},
        "cgroups": cgroups_under(cgroup_parent),
        "machine": {k: v for k, v in after.items() if v != before[k]},
    }
    if RESULTS:
        Path(RESULTS).write_text(
            json.dumps(
                {
                    "cycles": CYCLES,
                    "seconds": round(elapsed, 1),
                    "first_at": first_at,
                    "first": first.__dict__,
                    "last": last.__dict__,
                    "leftovers": leftovers,
                },
                indent=2,
            )
        )
    assert leftovers == {"store": {}, "cgroups": [], "machine": {}}
    # Lifecycles as the kubelet drives them are no cause for a warning.
    assert warnings_logged(daemon) == {}
    assert last.rss_kib <= first.rss_kib * (1 + RSS_GROWTH), (first, last)
    assert last.fds <= first.fds + FD_SLACK, (first, last)
    assert last.threads <= first.threads + THREAD_SLACK, (first, last, thread_names(pid))
