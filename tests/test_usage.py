"""The CRI usage messages built from cgroup stats (crib.cri_server.usage), and the pod stats
that carry them: what the kubelet's /stats/summary reads with PodAndContainerStatsFromCRI."""

from __future__ import annotations

import base64

import pytest

from crib.container.containers import Container
from crib.cri_server import usage
from crib.cri_server.container import stats_message
from crib.cri_server.sandbox import pod_stats_message
from crib.cri_server.usage import CpuRates, fill_cpu, fill_io, fill_memory, fill_psi
from crib.proto.cri import api_pb2
from crib.runtime.cgroup_stats import CgroupStats, parse_pressure
from crib.sandbox.sandboxes import Sandbox

SECOND = 1_000_000_000
CPU_PRESSURE = (
    "some avg10=1.50 avg60=0.25 avg300=0.05 total=123456\nfull avg10=0.50 avg60=0.10 avg300=0.00 total=6789\n"
)
IO_PRESSURE = (
    "some avg10=0.00 avg60=0.00 avg300=0.00 total=42\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n"
)


def _cg(**kw: object) -> CgroupStats:
    fields: dict = {
        "timestamp_ns": 100 * SECOND,
        "cpu_usage_ns": 5 * SECOND,
        "memory_usage_bytes": 30_000_000,
        "memory_working_set_bytes": 20_000_000,
        "memory_rss_bytes": 15_000_000,
        "memory_page_faults": 900,
        "memory_major_page_faults": 3,
        "memory_limit_bytes": 80 * 1024 * 1024,
        "psi": {"cpu": parse_pressure(CPU_PRESSURE), "memory": parse_pressure(CPU_PRESSURE)},
    }
    fields.update(kw)
    return CgroupStats(**fields)


def test_cpu_rate_is_the_usage_between_two_samples_over_their_wall_time() -> None:
    rates = CpuRates()
    assert rates.nano_cores("a", 100 * SECOND, 5 * SECOND) == 0  # nothing to compare with yet
    # 0.5 s of CPU in 2 s: half a core.
    assert rates.nano_cores("a", 102 * SECOND, 5 * SECOND + SECOND // 2) == SECOND // 4
    # The same sample again (two callers, one cgroup read): the same rate, not 0 or a division by 0.
    assert rates.nano_cores("a", 102 * SECOND, 5 * SECOND + SECOND // 2) == SECOND // 4
    assert rates.nano_cores("a", 104 * SECOND, 9 * SECOND + SECOND // 2) == 2 * SECOND  # two cores
    # A counter that goes back is a new cgroup under the same ID: start again.
    assert rates.nano_cores("a", 105 * SECOND, SECOND) == 0
    assert rates.nano_cores("b", 105 * SECOND, SECOND) == 0  # each ID on its own


def test_cpu_rates_forget_what_is_gone() -> None:
    rates = CpuRates()
    rates.nano_cores("gone", SECOND, SECOND)
    rates.nano_cores("kept", SECOND, SECOND)
    rates.keep_only(["kept"])
    assert rates.nano_cores("kept", 2 * SECOND, 2 * SECOND) == SECOND
    assert rates.nano_cores("gone", 2 * SECOND, 2 * SECOND) == 0  # a first sample again


def test_psi_keeps_both_lines_and_the_kernels_microseconds() -> None:
    psi = api_pb2.PsiStats()
    assert fill_psi(psi, parse_pressure(CPU_PRESSURE))
    assert (psi.Some.Total, psi.Some.Avg10, psi.Some.Avg60, psi.Some.Avg300) == (123456, 1.5, 0.25, 0.05)
    assert (psi.Full.Total, psi.Full.Avg10) == (6789, 0.5)
    # Only "some" (cpu.pressure of the root cgroup on older kernels): full is zero, not missing.
    only_some = api_pb2.PsiStats()
    assert fill_psi(only_some, parse_pressure("some avg10=2.00 avg60=0.00 avg300=0.00 total=5\n"))
    assert only_some.HasField("Full") and only_some.Full.Total == 0
    # None: nothing set, so a parent's psi field stays unset.
    cpu = api_pb2.CpuUsage()
    assert not fill_psi(cpu.psi, None) and not fill_psi(cpu.psi, {})
    assert not cpu.HasField("psi")


def test_psi_made_before_for_the_same_parsed_value_is_the_same_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second fill from a parsed value merges the bytes the first made: the same message,
    "full" present when the file had only "some", and another value makes its own."""
    monkeypatch.setattr(usage, "_PSI_MADE", {})
    monkeypatch.setattr(usage, "PSI_MADE_MAX", 2)
    cpu, only_some, idle = (
        parse_pressure(CPU_PRESSURE),
        parse_pressure("some avg10=2.00 avg60=0.00 avg300=0.00 total=5\n"),
        parse_pressure(IO_PRESSURE.replace("=7", "=0").replace("=42", "=0")),
    )
    for pressure in (cpu, only_some, idle, cpu, only_some, idle):
        built, again = api_pb2.PsiStats(), api_pb2.PsiStats()
        assert fill_psi(built, pressure) and fill_psi(again, pressure)
        assert again == built and again.HasField("Some") and again.HasField("Full")
        assert again.Some.Total == pressure["some"]["total"]  # type: ignore[index]
        assert again.Some.Avg10 == pressure["some"]["avg10"]  # type: ignore[index]
        assert len(usage._PSI_MADE) <= 2
    # All zeros still says "there was PSI": both lines present, as the kernel wrote them.
    zeros = api_pb2.MemoryUsage()
    fill_psi(zeros.psi, idle)
    assert zeros.HasField("psi") and zeros.psi.HasField("Some") and zeros.psi.Some.Total == 0


def test_usage_messages_carry_every_figure_the_summary_api_reads() -> None:
    cg = _cg()
    cpu, memory, io = api_pb2.CpuUsage(), api_pb2.MemoryUsage(), api_pb2.IoUsage()
    fill_cpu(cpu, cg, 250_000_000)
    fill_memory(memory, cg)
    fill_io(io, cg)
    assert (cpu.timestamp, cpu.usage_core_nano_seconds.value, cpu.usage_nano_cores.value) == (
        100 * SECOND,
        5 * SECOND,
        250_000_000,
    )
    assert cpu.psi.Some.Total == 123456
    assert memory.working_set_bytes.value == 20_000_000
    assert memory.available_bytes.value == 80 * 1024 * 1024 - 20_000_000
    assert (memory.page_faults.value, memory.major_page_faults.value) == (900, 3)
    assert memory.HasField("psi")
    assert not io.HasField("psi") and io.timestamp == 0  # no io.pressure read: no IO figure
    fill_io(io, _cg(psi={"io": parse_pressure(IO_PRESSURE)}))
    assert io.psi.Some.Total == 42 and io.timestamp == 100 * SECOND


def test_unknown_figures_stay_unset() -> None:
    cpu, memory = api_pb2.CpuUsage(), api_pb2.MemoryUsage()
    fill_cpu(cpu, _cg(cpu_usage_ns=None), 0)
    fill_memory(memory, _cg(memory_limit_bytes=None, psi=None, memory_page_faults=None))
    assert not cpu.HasField("usage_core_nano_seconds") and not cpu.HasField("usage_nano_cores")
    # Unlimited: no available_bytes (the kubelet then has none either, as with cAdvisor).
    assert not memory.HasField("available_bytes") and not memory.HasField("psi")
    assert not memory.HasField("page_faults") and memory.major_page_faults.value == 3


def test_pod_stats_from_the_pod_cgroup_have_the_rate_the_faults_and_psi() -> None:
    config = api_pb2.PodSandboxConfig(metadata=api_pb2.PodSandboxMetadata(name="p"))
    sandbox = Sandbox(
        id="p" * 64,
        config_b64=base64.b64encode(config.SerializeToString()).decode(),
        handler="",
        created_at=1,
    )
    rates = CpuRates()
    first = pod_stats_message(sandbox, _cg(), [], {}, None, rates)
    later = pod_stats_message(
        sandbox, _cg(timestamp_ns=110 * SECOND, cpu_usage_ns=6 * SECOND), [], {}, None, rates
    )
    assert first.linux.cpu.HasField("usage_nano_cores") and first.linux.cpu.usage_nano_cores.value == 0
    assert later.linux.cpu.usage_nano_cores.value == SECOND // 10  # 1 s of CPU in 10 s
    memory = later.linux.memory
    assert memory.available_bytes.value == 80 * 1024 * 1024 - 20_000_000
    assert (memory.page_faults.value, memory.major_page_faults.value) == (900, 3)
    assert later.linux.cpu.psi.Full.Total == 6789 and memory.psi.Some.Avg10 == 1.5


def test_stats_built_in_place_carry_attributes_that_later_replies_do_not_share() -> None:
    config = api_pb2.ContainerConfig(metadata=api_pb2.ContainerMetadata(name="c"), labels={"app": "x"})
    container = Container(
        id="c" * 64,
        sandbox_id="p" * 64,
        config_b64=base64.b64encode(config.SerializeToString()).decode(),
        image_id="i",
        image_ref="i",
        chain_ids=[],
        handler="",
        created_at=1,
    )
    pod_meta = api_pb2.PodSandboxMetadata(name="p")
    pod_config = api_pb2.PodSandboxConfig(metadata=pod_meta, annotations={"a": "b"})
    sandbox = Sandbox(
        id="p" * 64,
        config_b64=base64.b64encode(pod_config.SerializeToString()).decode(),
        handler="",
        created_at=1,
    )
    pod = api_pb2.PodSandboxStats()
    stats_message(container, _cg(), (4096, 2), "/upper", 7, pod.linux.containers.add())
    pod_stats_message(sandbox, _cg(), [], {}, 1, None, pod)
    inner = pod.linux.containers[0]
    assert (inner.attributes.id, dict(inner.attributes.labels)) == ("c" * 64, {"app": "x"})
    assert inner.writable_layer.used_bytes.value == 4096 and inner.writable_layer.fs_id.mountpoint == "/upper"
    assert inner.cpu.usage_nano_cores.value == 7
    assert pod.attributes.metadata.name == "p" and dict(pod.attributes.annotations) == {"a": "b"}
    # A reply changed after it was sent (as the gRPC layer may) leaves the next one as it was.
    inner.attributes.labels["app"] = "changed"
    pod.attributes.annotations["a"] = "changed"
    again = stats_message(container, None, (0, 0), "/upper")
    assert dict(again.attributes.labels) == {"app": "x"} and not again.HasField("cpu")
    assert dict(pod_stats_message(sandbox, None, [], {}, None).attributes.annotations) == {"a": "b"}
