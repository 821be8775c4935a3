"""The CRI's usage messages (CpuUsage, MemoryUsage, IoUsage) from a cgroup's stats.

ContainerStats and PodSandboxStats fill them alike. With the kubelet's
PodAndContainerStatsFromCRI gate, /stats/summary takes every figure from here:
usage_nano_cores, available_bytes, the page faults and PSI included.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, TypeVar

from crib.proto.cri import api_pb2
from crib.runtime.cgroup_stats import CgroupStats

Pressure = Mapping[str, Mapping[str, float | int]]
A = TypeVar("A", api_pb2.ContainerAttributes, api_pb2.PodSandboxAttributes)


class _Described(Protocol):
    """A container or pod record: its ID, its config, and its stats attributes once made."""

    id: str
    _attributes: Any

    @property
    def config(self) -> Any: ...


def attributes_of(record: _Described, kind: type[A]) -> A:
    """The record's stats attributes, made once (its config never changes); copied into each
    reply, which is cheaper than building the labels and annotations maps again."""
    attributes = record._attributes
    if attributes is None:
        config = record.config
        attributes = record._attributes = kind(
            id=record.id, metadata=config.metadata, labels=config.labels, annotations=config.annotations
        )
    return attributes


class CpuRates:
    """usage_nano_cores as containerd computes it: the CPU time a container or pod used since
    the previous stats call for it, over the wall time between the two samples; 0 the first
    time. A repeated sample (same timestamp) gives the rate computed before."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, int, int]] = {}  # id -> (timestamp ns, usage ns, rate)
        # Stats calls sample in worker threads, two at once when the kubelet overlaps them.
        self._lock = threading.Lock()

    def nano_cores(self, key: str, timestamp_ns: int, usage_ns: int) -> int:
        with self._lock:
            return self._nano_cores(key, timestamp_ns, usage_ns)

    def _nano_cores(self, key: str, timestamp_ns: int, usage_ns: int) -> int:
        last = self._last.get(key)
        if last is not None and timestamp_ns <= last[0]:
            return last[2]
        if last is None or usage_ns < last[1]:
            rate = 0  # the first sample, or the counter went back (a new cgroup under the same ID)
        else:
            rate = (usage_ns - last[1]) * 1_000_000_000 // (timestamp_ns - last[0])
        self._last[key] = (timestamp_ns, usage_ns, rate)
        return rate

    def keep_only(self, keys: Iterable[str]) -> None:
        """Forget the samples of containers or pods that are gone."""
        live = set(keys)
        with self._lock:
            for key in [k for k in self._last if k not in live]:
                del self._last[key]


# The PsiStats made for a parsed PSI file, serialized, by the parsed value's identity (the
# value is kept with it, so no other object can take its id while it is here): the parsed
# values repeat (cgroup_stats.pressure_of), and merging 10 bytes into a new PsiStats takes
# 0.8 µs where setting its eight fields took 3.4, six times a pod in every stats call.
_PSI_MADE: dict[int, tuple[Pressure, bytes]] = {}
PSI_MADE_MAX = 1024


def fill_psi(stats: api_pb2.PsiStats, pressure: Pressure | None) -> bool:
    """A PSI file's "some" and "full" lines into `stats`, a PsiStats with nothing set yet, in
    place (a message built apart and copied in cost twice, 3 a cgroup a stats call); whether
    there were any. Nothing is set when there were none, so the field stays unset. Total stays
    in microseconds, as the kernel and containerd give it (the kubelet's readers divide by 1e6)."""
    if not pressure or "some" not in pressure:
        return False
    made = _PSI_MADE.get(id(pressure))
    if made is not None and made[0] is pressure:
        stats.MergeFromString(made[1])
        return True
    for kind, data in (("some", stats.Some), ("full", stats.Full)):
        line = pressure.get(kind, _NONE)
        data.Total = int(line.get("total", 0))
        data.Avg10 = float(line.get("avg10", 0.0))
        data.Avg60 = float(line.get("avg60", 0.0))
        data.Avg300 = float(line.get("avg300", 0.0))
    if len(_PSI_MADE) >= PSI_MADE_MAX:
        _PSI_MADE.clear()
    _PSI_MADE[id(pressure)] = (pressure, stats.SerializeToString())
    return True


_NONE: Mapping[str, float | int] = {}


def _fill_psi_of(stats: api_pb2.PsiStats, cg: CgroupStats, resource: str) -> bool:
    return fill_psi(stats, cg.psi.get(resource)) if cg.psi else False


def fill_cpu(cpu: api_pb2.CpuUsage, cg: CgroupStats, nano_cores: int | None) -> None:
    if cg.cpu_usage_ns is None:
        return
    cpu.timestamp = cg.timestamp_ns
    cpu.usage_core_nano_seconds.value = cg.cpu_usage_ns
    if nano_cores is not None:
        cpu.usage_nano_cores.value = nano_cores
    _fill_psi_of(cpu.psi, cg, "cpu")


def fill_memory(memory: api_pb2.MemoryUsage, cg: CgroupStats) -> None:
    memory.timestamp = cg.timestamp_ns
    if cg.memory_working_set_bytes is not None:
        memory.working_set_bytes.value = cg.memory_working_set_bytes
    if cg.memory_usage_bytes is not None:
        memory.usage_bytes.value = cg.memory_usage_bytes
    if cg.memory_limit_bytes is not None and cg.memory_working_set_bytes is not None:
        memory.available_bytes.value = max(0, cg.memory_limit_bytes - cg.memory_working_set_bytes)
    if cg.memory_rss_bytes is not None:
        memory.rss_bytes.value = cg.memory_rss_bytes
    if cg.memory_page_faults is not None:
        memory.page_faults.value = cg.memory_page_faults
    if cg.memory_major_page_faults is not None:
        memory.major_page_faults.value = cg.memory_major_page_faults
    _fill_psi_of(memory.psi, cg, "memory")


def fill_io(io: api_pb2.IoUsage, cg: CgroupStats) -> None:
    """IoUsage carries only PSI; without PSI it stays unset (the kubelet then reports no IO)."""
    if _fill_psi_of(io.psi, cg, "io"):
        io.timestamp = cg.timestamp_ns
