"""The CRI metrics: cgroup v1/v2 and /proc readers on fake trees, descriptors, and the pods' metrics."""

from __future__ import annotations

import asyncio
import base64
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from crib.config import METRIC_FAMILIES, ConfigError, parse
from crib.container.containers import EXITED, RUNNING, Container
from crib.cri_server import pod_metrics as mr
from crib.cribctl.main import main
from crib.proto.cri import api_pb2
from crib.runtime import cgroup_stats as cs
from crib.runtime import metric_sources as ms
from crib.runtime.cgroup_stats import CgroupDirs
from crib.sandbox.sandboxes import NOTREADY, READY, Sandbox

V1_UNLIMITED = "9223372036854771712"
GiB = 1 << 30


def _write(d: Path, files: dict[str, str]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def _v1_dirs(root: Path, files: dict[str, dict[str, str]]) -> CgroupDirs:
    """One directory per v1 controller (cpu and cpuacct co-mounted, as on most hosts)."""
    cpu = _write(root / "cpu,cpuacct" / "pod" / "ctr", {**files.get("cpu", {}), **files.get("cpuacct", {})})
    memory = _write(root / "memory" / "pod" / "ctr", files.get("memory", {}))
    pids = _write(root / "pids" / "pod" / "ctr", files.get("pids", {}))
    return CgroupDirs(mode="v1", controllers={"cpu": cpu, "cpuacct": cpu, "memory": memory, "pids": pids})


V1_FILES = {
    "cpuacct": {
        "cpuacct.usage": "2500000000\n",
        "cpuacct.stat": f"user {2 * ms._CLK_TCK}\nsystem {ms._CLK_TCK // 2}\n",
    },
    "cpu": {
        "cpu.stat": "nr_periods 10\nnr_throttled 4\nthrottled_time 3500000000\n",
        "cpu.cfs_period_us": "100000\n",
        "cpu.cfs_quota_us": "50000\n",
        "cpu.shares": "512\n",
    },
    "memory": {
        "memory.usage_in_bytes": "10000000\n",
        "memory.max_usage_in_bytes": "12000000\n",
        "memory.kmem.usage_in_bytes": "300000\n",
        "memory.memsw.usage_in_bytes": "10004096\n",
        "memory.failcnt": "5\n",
        "memory.stat": (
            "cache 1\nrss 2\nmapped_file 3\ninactive_file 4\n"
            "total_cache 4000000\ntotal_rss 5000000\ntotal_mapped_file 600000\n"
            "total_inactive_file 3000000\ntotal_pgfault 70\ntotal_pgmajfault 8\n"
        ),
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        "memory.limit_in_bytes": f"{64 << 20}\n",
        "memory.soft_limit_in_bytes": V1_UNLIMITED + "\n",
        "memory.memsw.limit_in_bytes": V1_UNLIMITED + "\n",
    },
    "pids": {"pids.current": "3\n", "pids.max": "max\n", "cgroup.procs": "41\n42\n"},
}


def test_v1_counters(tmp_path: Path) -> None:
    m = ms.read_metrics(_v1_dirs(tmp_path, V1_FILES))
    assert m == ms.CgroupMetrics(
        cpu_usage_ns=2_500_000_000,
        cpu_user_ns=2_000_000_000,
        cpu_system_ns=(ms._CLK_TCK // 2) * 1_000_000_000 // ms._CLK_TCK,
        cfs_periods=10,
        cfs_throttled_periods=4,
        cfs_throttled_ns=3_500_000_000,
        memory_usage=10_000_000,
        memory_max_usage=12_000_000,
        memory_working_set=7_000_000,  # usage - total_inactive_file
        memory_cache=4_000_000,  # total_* win over the cgroup's own lines
        memory_rss=5_000_000,
        memory_mapped_file=600_000,
        memory_kernel=300_000,
        memory_swap=4096,  # memsw - usage
        memory_failcnt=5,
        pgfault=70,
        pgmajfault=8,
        oom_kills=2,
        threads=3,
        threads_max=0,
        cpu_period_us=100_000,
        cpu_quota_us=50_000,
        cpu_shares=512,
        memory_limit=64 << 20,
        memory_reservation=0,  # "unlimited" is 0, as cAdvisor reports it
        memory_swap_limit=0,
    )


def test_v1_without_swap_accounting_or_quota(tmp_path: Path) -> None:
    files = {k: dict(v) for k, v in V1_FILES.items()}
    del files["memory"]["memory.memsw.usage_in_bytes"], files["memory"]["memory.memsw.limit_in_bytes"]
    files["cpu"]["cpu.cfs_quota_us"] = "-1\n"
    m = ms.read_metrics(_v1_dirs(tmp_path, files))
    assert m is not None
    assert (m.memory_swap, m.memory_swap_limit, m.cpu_quota_us) == (None, None, None)
    assert m.cpu_period_us == 100_000


def test_gone_cgroups_read_as_none(tmp_path: Path) -> None:
    dirs = CgroupDirs(mode="v1", controllers={"cpu": tmp_path / "gone", "memory": tmp_path / "gone2"})
    assert ms.read_metrics(dirs) is None
    assert ms.read_metrics(CgroupDirs(mode="v2", unified=tmp_path / "gone")) is None
    assert cs.cgroup_pids(dirs) is None


V2_FILES = {
    "cpu.stat": (
        "usage_usec 3000000\nuser_usec 2000000\nsystem_usec 1000000\n"
        "nr_periods 20\nnr_throttled 5\nthrottled_usec 1500000\n"
    ),
    "cpu.max": "max 100000\n",
    "cpu.weight": "100\n",
    "memory.current": "8000000\n",
    "memory.peak": "9000000\n",
    "memory.stat": "anon 5000000\nfile 2000000\nfile_mapped 100000\ninactive_file 1500000\n"
    "kernel_stack 16384\nslab 200000\nsock 0\npgfault 90\npgmajfault 9\n",
    "memory.swap.current": "0\n",
    "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
    "memory.max": "max\n",
    "memory.low": "1048576\n",
    "memory.swap.max": "max\n",
    "pids.current": "4\n",
    "pids.max": "100\n",
    "cgroup.procs": "7\n9\n",
}


def test_v2_counters(tmp_path: Path) -> None:
    d = _write(tmp_path / "pod" / "ctr", V2_FILES)
    m = ms.read_metrics(CgroupDirs(mode="v2", unified=d))
    assert m == ms.CgroupMetrics(
        cpu_usage_ns=3_000_000_000,
        cpu_user_ns=2_000_000_000,
        cpu_system_ns=1_000_000_000,
        cfs_periods=20,
        cfs_throttled_periods=5,
        cfs_throttled_ns=1_500_000_000,
        memory_usage=8_000_000,
        memory_max_usage=9_000_000,
        memory_working_set=6_500_000,
        memory_cache=2_000_000,
        memory_rss=5_000_000,
        memory_mapped_file=100_000,
        memory_kernel=216_384,  # no "kernel" line (before 5.18): its parts
        memory_swap=0,
        memory_failcnt=3,
        pgfault=90,
        pgmajfault=9,
        oom_kills=1,
        threads=4,
        threads_max=100,
        cpu_period_us=100_000,
        cpu_quota_us=None,  # "max"
        cpu_shares=ms.weight_to_shares(100),
        memory_limit=0,
        memory_reservation=1_048_576,
        memory_swap_limit=0,
    )
    assert cs.cgroup_pids(CgroupDirs(mode="v2", unified=d)) == [7, 9]


def test_weight_to_shares_inverts_runcs_mapping_at_the_ends() -> None:
    assert ms.weight_to_shares(1) == 2
    assert ms.weight_to_shares(10000) == 262144


def test_process_counts_from_proc(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    for pid, targets in {7: ["socket:[1]", "/dev/null", "pipe:[2]"], 9: ["socket:[3]"]}.items():
        fd = proc / str(pid) / "fd"
        fd.mkdir(parents=True)
        for i, target in enumerate(targets):
            os.symlink(target, fd / str(i))
    # 11 exited before its fds were read: counted as a process, nothing else.
    counts = ms.process_counts([7, 9, 11], proc)
    assert counts == ms.ProcessCounts(processes=3, file_descriptors=4, sockets=2)


NET_DEV = (
    "Inter-|   Receive                                |  Transmit\n"
    " face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls"
    " carrier compressed\n"
    "    lo: 100 2 0 0 0 0 0 0 100 2 0 0 0 0 0 0\n"
    "  eth0: 5000 40 1 2 0 0 0 0 7000 50 3 4 0 0 0 0\n"
)


def test_net_dev_counters(tmp_path: Path) -> None:
    assert cs.parse_net_dev(NET_DEV) == {
        "eth0": cs.InterfaceCounters(5000, 40, 1, 2, 7000, 50, 3, 4),
    }
    _write(tmp_path / "123" / "net", {"dev": NET_DEV})
    assert set(cs.network_counters(123, tmp_path)) == {"eth0"}
    assert cs.network_counters(456, tmp_path) == {}


def test_filesystem_counters(tmp_path: Path) -> None:
    fs = ms.filesystem_counters(tmp_path)
    assert fs is not None and fs.capacity_bytes > 0 and fs.inodes_total >= fs.inodes_free
    assert ms.filesystem_counters(tmp_path / "missing") is None


# --- descriptors and values ------------------------------------------------------------------------


def test_descriptors_are_unique_and_carry_the_kubelet_labels() -> None:
    descs = mr.descriptors(METRIC_FAMILIES)
    names = [d.name for d in descs]
    assert len(names) == len(set(names))
    for d in descs:
        assert d.name.startswith("container_") and d.help
        assert list(d.label_keys[:6]) == ["container", "id", "image", "name", "namespace", "pod"]
    by_name = {d.name: list(d.label_keys[6:]) for d in descs}
    assert by_name["container_cpu_usage_seconds_total"] == ["cpu"]
    assert by_name["container_network_receive_bytes_total"] == ["interface"]
    assert by_name["container_memory_failures_total"] == ["failure_type", "scope"]
    assert {d.name for d in mr.descriptors(["cpu"])} == {d.name for d in mr.DESCRIPTORS["cpu"]}
    assert mr.descriptors([]) == []


def _sample() -> mr.ContainerSample:
    return mr.ContainerSample(
        cgroup=ms.CgroupMetrics(
            cpu_usage_ns=2_999_999_999,
            cpu_user_ns=1_500_000_000,
            memory_working_set=4096,
            pgfault=3,
            pgmajfault=1,
        ),
        processes=ms.ProcessCounts(processes=2, file_descriptors=5, sockets=1),
        filesystem=ms.FilesystemCounters(
            capacity_bytes=GiB, inodes_total=100, inodes_free=60, device="/dev/vdb"
        ),
        layer_bytes=8192,
    )


def test_values_are_whole_seconds_bytes_and_counts_with_one_value_per_label_key() -> None:
    sample = _sample()
    values = [v for family in mr.CONTAINER_FAMILIES.values() for v in family(sample)]
    metrics = mr.to_metrics(values, ("c", "id", "img", "k8s_c", "ns", "p"))
    descs = {d.name: d for d in mr.descriptors(METRIC_FAMILIES)}
    got = {(m.name, tuple(m.label_values[6:])): m.value.value for m in metrics}
    assert got[("container_cpu_usage_seconds_total", ("total",))] == 2  # truncated, as CRI-O
    assert got[("container_cpu_user_seconds_total", ())] == 1
    assert got[("container_memory_working_set_bytes", ())] == 4096
    assert got[("container_memory_failures_total", ("pgfault", "container"))] == 3
    assert got[("container_memory_failures_total", ("pgmajfault", "hierarchy"))] == 1
    assert got[("container_processes", ())] == 2
    assert got[("container_sockets", ())] == 1
    assert got[("container_fs_usage_bytes", ("/dev/vdb",))] == 8192
    assert got[("container_fs_inodes_free", ("/dev/vdb",))] == 60
    # Unknown values are left out, not sent as 0.
    assert ("container_memory_swap", ()) not in got
    assert ("container_cpu_cfs_periods_total", ()) not in got
    for m in metrics:
        assert len(m.label_values) == len(descs[m.name].label_keys), m.name
        assert m.timestamp == 0
    types = {m.name: m.metric_type for m in metrics}
    assert types["container_cpu_usage_seconds_total"] == api_pb2.COUNTER
    assert types["container_memory_working_set_bytes"] == api_pb2.GAUGE


def test_network_values_per_interface() -> None:
    values = mr.network_values(
        {"net1": cs.InterfaceCounters(1, 2, 3, 4, 5, 6, 7, 8), "eth0": cs.InterfaceCounters(*range(10, 18))}
    )
    assert len(values) == 16
    assert [extra for _, _, extra in values[:8]] == [("eth0",)] * 8  # sorted by interface
    as_dict = {(d.name, extra): v for d, v, extra in values}
    assert as_dict[("container_network_receive_bytes_total", ("net1",))] == 1
    assert as_dict[("container_network_receive_packets_dropped_total", ("net1",))] == 4
    assert as_dict[("container_network_transmit_errors_total", ("net1",))] == 7


# --- collecting from pods --------------------------------------------------------------------------


def _sandbox(sid: str, state: str = READY, host_network: bool = False) -> Sandbox:
    config = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name=f"pod-{sid}", namespace="ns", uid=f"uid-{sid}", attempt=1)
    )
    if host_network:
        config.linux.security_context.namespace_options.network = api_pb2.NODE
    return Sandbox(
        id=sid,
        config_b64=base64.b64encode(config.SerializeToString()).decode(),
        handler="runc",
        created_at=1,
        state=state,
        netns="" if host_network else f"/run/netns/{sid}",
        pid=1000,
    )


def _container(cid: str, sid: str, state: str = RUNNING) -> Container:
    config = api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(name=f"ctr-{cid}", attempt=2),
        image=api_pb2.ImageSpec(image="example.com/app:1"),
    )
    return Container(
        id=cid,
        sandbox_id=sid,
        config_b64=base64.b64encode(config.SerializeToString()).decode(),
        image_id="sha256:abc",
        image_ref="example.com/app@sha256:abc",
        chain_ids=[],
        handler="runc",
        created_at=1,
        state=state,
    )


@dataclass
class _Env:
    root: Path
    systemd: bool = False

    def read_spec(self, container_id: str) -> dict[str, Any] | None:
        return {"linux": {"cgroupsPath": f"/crib/{container_id}"}}

    def layer_dir(self, container_id: str) -> Path:
        return self.root / container_id


@dataclass
class _Sandboxes:
    items: list[Sandbox]

    def list(self) -> list[Sandbox]:
        return list(self.items)


@dataclass
class _Containers:
    env: _Env
    items: list[Container] = field(default_factory=list)

    def in_pod(self, sandbox_id: str) -> list[Container]:
        return [c for c in self.items if c.sandbox_id == sandbox_id]


@pytest.fixture
def fake_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[_Sandboxes, _Containers]:
    dirs = _v1_dirs(tmp_path / "cgroup", V1_FILES)
    monkeypatch.setattr(mr, "cgroup_dirs", lambda path, systemd: dirs)
    monkeypatch.setattr(
        mr,
        "network_counters",
        lambda pid: {"eth0": cs.InterfaceCounters(*range(1, 9))} if pid == 1000 else {},
    )
    # Every process in the fake cgroup is this test's own, so /proc/<pid>/fd exists.
    (dirs.controllers["pids"] / "cgroup.procs").write_text(f"{os.getpid()}\n")
    env = _Env(root=tmp_path / "layers")
    (env.root / "c1" / "upper").mkdir(parents=True)
    (env.root / "c1" / "upper" / "file").write_bytes(b"x" * 10000)
    sandboxes = _Sandboxes(
        [_sandbox("p1"), _sandbox("p0", state=NOTREADY), _sandbox("p2", host_network=True)]
    )
    containers = _Containers(
        env, [_container("c1", "p1"), _container("c2", "p1", state=EXITED), _container("c3", "p2")]
    )
    return sandboxes, containers


def _collect(node: tuple[_Sandboxes, _Containers], families: list[str]) -> list[api_pb2.PodSandboxMetrics]:
    collector = mr.Collector(node[0], node[1], families)  # type: ignore[arg-type]
    return asyncio.run(collector.collect(collector.targets()))


def test_collector_reports_ready_pods_and_running_containers(
    fake_node: tuple[_Sandboxes, _Containers], tmp_path: Path
) -> None:
    tmp_root = tmp_path / "layers"
    pods = _collect(fake_node, list(METRIC_FAMILIES))
    assert [p.pod_sandbox_id for p in pods] == ["p1", "p2"]  # sorted; the NOTREADY pod is left out
    p1, p2 = pods
    assert [c.container_id for c in p1.container_metrics] == ["c1"]  # not the exited c2
    descs = {d.name: d for d in mr.descriptors(METRIC_FAMILIES)}
    for m in [*p1.metrics, *p1.container_metrics[0].metrics, *p2.metrics]:
        assert m.name in descs and len(m.label_values) == len(descs[m.name].label_keys)

    labels = dict(
        zip(
            descs["container_memory_rss"].label_keys,
            _one(p1.container_metrics[0].metrics, "container_memory_rss").label_values,
            strict=True,
        )
    )
    assert labels == {
        "container": "ctr-c1",
        "id": "c1",
        "image": "example.com/app:1",
        "name": "k8s_ctr-c1_pod-p1_ns_uid-p1_2",
        "namespace": "ns",
        "pod": "pod-p1",
    }
    rx = _one(p1.metrics, "container_network_receive_bytes_total")
    assert rx.value.value == 1
    assert list(rx.label_values) == ["POD", "p1", "", "k8s_POD_pod-p1_ns_uid-p1_1", "ns", "pod-p1", "eth0"]

    c1 = {m.name: m.value.value for m in p1.container_metrics[0].metrics if len(m.label_values) == 6}
    fs = {m.name: m for m in p1.container_metrics[0].metrics if m.name.startswith("container_fs_")}
    assert c1["container_spec_memory_limit_bytes"] == 64 << 20
    assert c1["container_oom_events_total"] == 2
    assert c1["container_processes"] == 1 and c1["container_file_descriptors"] >= 3
    usage = fs["container_fs_usage_bytes"]
    assert usage.value.value >= 10000
    # Labelled with the device of the file system the layer is on, as cAdvisor does.
    assert usage.label_values[6] == ms.mount_source(os.stat(tmp_root).st_dev) != ""
    # The host-network pod has no network of its own to report.
    assert list(p2.metrics) == []


def _one(metrics: Any, name: str) -> api_pb2.Metric:
    (found,) = [m for m in metrics if m.name == name]
    return found


def test_collector_reports_only_the_included_families(fake_node: tuple[_Sandboxes, _Containers]) -> None:
    (p1, _) = _collect(fake_node, ["cpu"])
    assert list(p1.metrics) == []  # no network
    names = {m.name for m in p1.container_metrics[0].metrics}
    assert names == {d.name for d in mr.DESCRIPTORS["cpu"]}
    (p1, _) = _collect(fake_node, ["network"])
    assert {m.name for m in p1.metrics} == {d.name for d in mr.DESCRIPTORS["network"]}
    assert list(p1.container_metrics[0].metrics) == []


# --- config ----------------------------------------------------------------------------------------


def test_included_pod_metrics_config() -> None:
    assert parse("").stats.included_pod_metrics == list(METRIC_FAMILIES)
    assert parse('[stats]\nincluded_pod_metrics = ["cpu", "network"]\n').stats.included_pod_metrics == [
        "cpu",
        "network",
    ]
    assert parse("[stats]\nincluded_pod_metrics = []\n").stats.included_pod_metrics == []
    with pytest.raises(ConfigError) as info:
        parse('[stats]\nincluded_pod_metrics = ["cpu", "hugetlb"]\n')
    assert info.value.key == "stats.included_pod_metrics[1]"
    with pytest.raises(ConfigError) as info:
        parse('[stats]\nincluded_pod_metrics = ["cpu", "cpu"]\n')
    assert info.value.key == "stats.included_pod_metrics[1]" and "twice" in info.value.reason
    with pytest.raises(ConfigError) as info:
        parse('[stats]\nincluded_pod_metrics = "cpu"\n')
    assert info.value.key == "stats.included_pod_metrics"


# --- cribctl ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["metricsp", "extra"], ["metricsp", "-o", "table"], ["metricdescs", "x"], ["metricdescs", "-o", "wide"]],
)
def test_cribctl_shows_help_for_arguments_or_unknown_formats(
    args: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # As crictl: the help, successfully, before any connection is tried.
    assert main(["--config", "/dev/null", "-r", f"unix://{tmp_path}/none.sock", *args]) == 0
    out = capsys.readouterr().out
    assert args[0] in out and "--output" in out


def test_cribctl_reports_an_unreachable_runtime(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--config", "/dev/null", "-t", "1s", "-r", f"unix://{tmp_path}/none.sock", "metricsp"]) == 1
    assert "validate service connection" in capsys.readouterr().err
