"""What ListMetricDescriptors, ListPodSandboxMetrics and StreamPodSandboxMetrics answer: cAdvisor's metrics.

The service (metrics.py) imports this module at the first of these calls (issue 17).

With the PodAndContainerStatsFromCRI gate the kubelet serves /metrics/cadvisor from these
RPCs (pkg/kubelet/metrics/collectors/cri_metrics.go): it reads the descriptors once, then on
each scrape turns every Metric into a Prometheus sample of the descriptor with that name,
`float64(value)` with the label values in label_keys order. A metric without a descriptor,
or whose label values do not match the keys one for one, is dropped, so every name here
has exactly one descriptor and every metric carries one value per key.

Names, help texts and units follow cAdvisor and CRI-O (internal/lib/stats): CPU times are
whole seconds (the value is a UInt64), bytes are bytes. The label keys are the ones the
kubelet gave cAdvisor's metrics (container, id, image, name, namespace, pod;
pkg/kubelet/server/server.go, containerPrometheusLabelsFunc), so dashboards written for
/metrics/cadvisor keep working; CRI-O sends only id, name and image. Network counters
belong to the pod (its netns); everything else to each running container.

Values are read on demand, so every Metric's timestamp is 0 (the proto: "Timestamp should
be 0 if the metric was gathered live").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from crib.config import METRIC_FAMILIES
from crib.container.containers import RUNNING, Container, Containers
from crib.proto.cri import api_pb2
from crib.runtime.cgroup_stats import (
    InterfaceCounters,
    cgroup_dirs,
    cgroup_pids,
    network_counters,
)
from crib.runtime.layer_usage import usage_of_tree
from crib.runtime.metric_sources import (
    CgroupMetrics,
    FilesystemCounters,
    ProcessCounts,
    filesystem_counters,
    process_counts,
    read_metrics,
)
from crib.sandbox.sandboxes import READY, Sandbox, Sandboxes

BASE_LABEL_KEYS = ("container", "id", "image", "name", "namespace", "pod")
NS_PER_S = 1_000_000_000

COUNTER, GAUGE = api_pb2.COUNTER, api_pb2.GAUGE


@dataclass(frozen=True)
class Desc:
    name: str
    help: str
    metric_type: int
    extra_keys: tuple[str, ...] = ()

    def descriptor(self) -> api_pb2.MetricDescriptor:
        return api_pb2.MetricDescriptor(
            name=self.name, help=self.help, label_keys=[*BASE_LABEL_KEYS, *self.extra_keys]
        )


@dataclass
class ContainerSample:
    """What was read for one container; None where the source was missing or not asked for."""

    cgroup: CgroupMetrics | None = None
    processes: ProcessCounts | None = None
    filesystem: FilesystemCounters | None = None
    layer_bytes: int | None = None


# One value of a metric: (descriptor, value, values of its extra label keys).
Value = tuple[Desc, int, tuple[str, ...]]

# --- descriptors, per family ----------------------------------------------------------------------

CPU_USAGE = Desc(
    "container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", COUNTER, ("cpu",)
)
CPU_USER = Desc("container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.", COUNTER)
CPU_SYSTEM = Desc(
    "container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.", COUNTER
)
CFS_PERIODS = Desc(
    "container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", COUNTER
)
CFS_THROTTLED = Desc(
    "container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", COUNTER
)
CFS_THROTTLED_S = Desc(
    "container_cpu_cfs_throttled_seconds_total",
    "Total time duration the container has been throttled.",
    COUNTER,
)

MEM_CACHE = Desc("container_memory_cache", "Number of bytes of page cache memory.", GAUGE)
MEM_RSS = Desc("container_memory_rss", "Size of RSS in bytes.", GAUGE)
MEM_KERNEL = Desc("container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", GAUGE)
MEM_MAPPED = Desc("container_memory_mapped_file", "Size of memory mapped files in bytes.", GAUGE)
MEM_SWAP = Desc("container_memory_swap", "Container swap usage in bytes.", GAUGE)
MEM_FAILCNT = Desc("container_memory_failcnt", "Number of memory usage hits limits", COUNTER)
MEM_USAGE = Desc(
    "container_memory_usage_bytes",
    "Current memory usage in bytes, including all memory regardless of when it was accessed",
    GAUGE,
)
MEM_MAX_USAGE = Desc("container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes", GAUGE)
MEM_WORKING_SET = Desc("container_memory_working_set_bytes", "Current working set in bytes.", GAUGE)
MEM_FAILURES = Desc(
    "container_memory_failures_total",
    "Cumulative count of memory allocation failures.",
    COUNTER,
    ("failure_type", "scope"),
)

_IF = ("interface",)
NET_RX_BYTES = Desc(
    "container_network_receive_bytes_total", "Cumulative count of bytes received", COUNTER, _IF
)
NET_RX_PACKETS = Desc(
    "container_network_receive_packets_total", "Cumulative count of packets received", COUNTER, _IF
)
NET_RX_DROPPED = Desc(
    "container_network_receive_packets_dropped_total",
    "Cumulative count of packets dropped while receiving",
    COUNTER,
    _IF,
)
NET_RX_ERRORS = Desc(
    "container_network_receive_errors_total",
    "Cumulative count of errors encountered while receiving",
    COUNTER,
    _IF,
)
NET_TX_BYTES = Desc(
    "container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", COUNTER, _IF
)
NET_TX_PACKETS = Desc(
    "container_network_transmit_packets_total", "Cumulative count of packets transmitted", COUNTER, _IF
)
NET_TX_DROPPED = Desc(
    "container_network_transmit_packets_dropped_total",
    "Cumulative count of packets dropped while transmitting",
    COUNTER,
    _IF,
)
NET_TX_ERRORS = Desc(
    "container_network_transmit_errors_total",
    "Cumulative count of errors encountered while transmitting",
    COUNTER,
    _IF,
)

OOM_EVENTS = Desc(
    "container_oom_events_total", "Count of out of memory events observed for the container", COUNTER
)

PROCESSES = Desc("container_processes", "Number of processes running inside the container.", GAUGE)
THREADS = Desc("container_threads", "Number of threads running inside the container", GAUGE)
THREADS_MAX = Desc(
    "container_threads_max",
    "Maximum number of threads allowed inside the container, infinity if value is zero",
    GAUGE,
)
FILE_DESCRIPTORS = Desc(
    "container_file_descriptors", "Number of open file descriptors for the container.", GAUGE
)
SOCKETS = Desc("container_sockets", "Number of open sockets for the container.", GAUGE)

SPEC_CPU_PERIOD = Desc("container_spec_cpu_period", "CPU period of the container.", GAUGE)
SPEC_CPU_QUOTA = Desc("container_spec_cpu_quota", "CPU quota of the container.", GAUGE)
SPEC_CPU_SHARES = Desc("container_spec_cpu_shares", "CPU share of the container.", GAUGE)
SPEC_MEM_LIMIT = Desc("container_spec_memory_limit_bytes", "Memory limit for the container.", GAUGE)
SPEC_MEM_RESERVATION = Desc(
    "container_spec_memory_reservation_limit_bytes", "Memory reservation limit for the container.", GAUGE
)
SPEC_MEM_SWAP = Desc("container_spec_memory_swap_limit_bytes", "Memory swap limit for the container.", GAUGE)

# cAdvisor labels each file system metric with its device.
_DEV = ("device",)
FS_INODES_FREE = Desc("container_fs_inodes_free", "Number of available Inodes", GAUGE, _DEV)
FS_INODES_TOTAL = Desc("container_fs_inodes_total", "Number of Inodes", GAUGE, _DEV)
FS_LIMIT = Desc(
    "container_fs_limit_bytes",
    "Number of bytes that can be consumed by the container on this filesystem.",
    GAUGE,
    _DEV,
)
FS_USAGE = Desc(
    "container_fs_usage_bytes",
    "Number of bytes that are consumed by the container on this filesystem.",
    GAUGE,
    _DEV,
)

DESCRIPTORS: dict[str, tuple[Desc, ...]] = {
    "cpu": (CPU_USAGE, CPU_USER, CPU_SYSTEM, CFS_PERIODS, CFS_THROTTLED, CFS_THROTTLED_S),
    "memory": (
        MEM_CACHE,
        MEM_RSS,
        MEM_KERNEL,
        MEM_MAPPED,
        MEM_SWAP,
        MEM_FAILCNT,
        MEM_USAGE,
        MEM_MAX_USAGE,
        MEM_WORKING_SET,
        MEM_FAILURES,
    ),
    "network": (
        NET_RX_BYTES,
        NET_RX_PACKETS,
        NET_RX_DROPPED,
        NET_RX_ERRORS,
        NET_TX_BYTES,
        NET_TX_PACKETS,
        NET_TX_DROPPED,
        NET_TX_ERRORS,
    ),
    "oom": (OOM_EVENTS,),
    "process": (PROCESSES, THREADS, THREADS_MAX, FILE_DESCRIPTORS, SOCKETS),
    "spec": (
        SPEC_CPU_PERIOD,
        SPEC_CPU_QUOTA,
        SPEC_CPU_SHARES,
        SPEC_MEM_LIMIT,
        SPEC_MEM_RESERVATION,
        SPEC_MEM_SWAP,
    ),
    "disk": (FS_INODES_FREE, FS_INODES_TOTAL, FS_LIMIT, FS_USAGE),
}
assert tuple(DESCRIPTORS) == METRIC_FAMILIES, "config.METRIC_FAMILIES and the descriptor table disagree"


def descriptors(families: Iterable[str]) -> list[api_pb2.MetricDescriptor]:
    """The descriptors of the configured families, in the table's order (stable across calls)."""
    wanted = set(families)
    return [d.descriptor() for family, descs in DESCRIPTORS.items() if family in wanted for d in descs]


# --- values, per family ---------------------------------------------------------------------------


def _present(pairs: Iterable[tuple[Desc, int | None]]) -> list[Value]:
    return [(desc, value, ()) for desc, value in pairs if value is not None]


def _seconds(ns: int | None) -> int | None:
    return None if ns is None else ns // NS_PER_S


def _cpu(s: ContainerSample) -> list[Value]:
    cg = s.cgroup
    if cg is None:
        return []
    out: list[Value] = []
    if cg.cpu_usage_ns is not None:
        # Per-CPU series are off in the kubelet's cAdvisor too: one "total" series.
        out.append((CPU_USAGE, cg.cpu_usage_ns // NS_PER_S, ("total",)))
    return out + _present(
        [
            (CPU_USER, _seconds(cg.cpu_user_ns)),
            (CPU_SYSTEM, _seconds(cg.cpu_system_ns)),
            (CFS_PERIODS, cg.cfs_periods),
            (CFS_THROTTLED, cg.cfs_throttled_periods),
            (CFS_THROTTLED_S, _seconds(cg.cfs_throttled_ns)),
        ]
    )


def _memory(s: ContainerSample) -> list[Value]:
    cg = s.cgroup
    if cg is None:
        return []
    out = _present(
        [
            (MEM_CACHE, cg.memory_cache),
            (MEM_RSS, cg.memory_rss),
            (MEM_KERNEL, cg.memory_kernel),
            (MEM_MAPPED, cg.memory_mapped_file),
            (MEM_SWAP, cg.memory_swap),
            (MEM_FAILCNT, cg.memory_failcnt),
            (MEM_USAGE, cg.memory_usage),
            (MEM_MAX_USAGE, cg.memory_max_usage),
            (MEM_WORKING_SET, cg.memory_working_set),
        ]
    )
    # cAdvisor's pairs: the container's own count and the hierarchy's; a leaf has one number.
    for failure_type, value in (("pgfault", cg.pgfault), ("pgmajfault", cg.pgmajfault)):
        if value is not None:
            out.append((MEM_FAILURES, value, (failure_type, "container")))
            out.append((MEM_FAILURES, value, (failure_type, "hierarchy")))
    return out


def _oom(s: ContainerSample) -> list[Value]:
    return _present([(OOM_EVENTS, s.cgroup.oom_kills if s.cgroup else None)])


def _process(s: ContainerSample) -> list[Value]:
    cg, procs = s.cgroup, s.processes
    return _present(
        [
            (PROCESSES, procs.processes if procs else None),
            (THREADS, cg.threads if cg else None),
            (THREADS_MAX, cg.threads_max if cg else None),
            (FILE_DESCRIPTORS, procs.file_descriptors if procs else None),
            (SOCKETS, procs.sockets if procs else None),
        ]
    )


def _spec(s: ContainerSample) -> list[Value]:
    cg = s.cgroup
    if cg is None:
        return []
    return _present(
        [
            (SPEC_CPU_PERIOD, cg.cpu_period_us),
            (SPEC_CPU_QUOTA, cg.cpu_quota_us),
            (SPEC_CPU_SHARES, cg.cpu_shares),
            (SPEC_MEM_LIMIT, cg.memory_limit),
            (SPEC_MEM_RESERVATION, cg.memory_reservation),
            (SPEC_MEM_SWAP, cg.memory_swap_limit),
        ]
    )


def _disk(s: ContainerSample) -> list[Value]:
    fs = s.filesystem
    if fs is None:
        # Without the file system there is no device to label the usage with.
        return []
    pairs = (
        (FS_INODES_FREE, fs.inodes_free),
        (FS_INODES_TOTAL, fs.inodes_total),
        (FS_LIMIT, fs.capacity_bytes),
        (FS_USAGE, s.layer_bytes),
    )
    return [(desc, value, (fs.device,)) for desc, value in pairs if value is not None]


CONTAINER_FAMILIES: dict[str, Callable[[ContainerSample], list[Value]]] = {
    "cpu": _cpu,
    "memory": _memory,
    "oom": _oom,
    "process": _process,
    "spec": _spec,
    "disk": _disk,
}


def network_values(interfaces: dict[str, InterfaceCounters]) -> list[Value]:
    out: list[Value] = []
    for name in sorted(interfaces):
        c = interfaces[name]
        for desc, value in (
            (NET_RX_BYTES, c.rx_bytes),
            (NET_RX_PACKETS, c.rx_packets),
            (NET_RX_DROPPED, c.rx_dropped),
            (NET_RX_ERRORS, c.rx_errors),
            (NET_TX_BYTES, c.tx_bytes),
            (NET_TX_PACKETS, c.tx_packets),
            (NET_TX_DROPPED, c.tx_dropped),
            (NET_TX_ERRORS, c.tx_errors),
        ):
            out.append((desc, value, (name,)))
    return out


def to_metrics(values: Iterable[Value], base_labels: tuple[str, ...]) -> list[api_pb2.Metric]:
    return [
        api_pb2.Metric(
            name=desc.name,
            timestamp=0,
            metric_type=desc.metric_type,
            label_values=[*base_labels, *extra],
            value=api_pb2.UInt64Value(value=value),
        )
        for desc, value, extra in values
    ]


# --- labels -----------------------------------------------------------------------------------------


def container_labels(container: Container, pod: api_pb2.PodSandboxMetadata) -> tuple[str, ...]:
    """(container, id, image, name, namespace, pod); `name` is the k8s_… name containerd and CRI-O give."""
    meta = container.config.metadata
    image = container.config.image.image or container.image_ref
    name = f"k8s_{meta.name}_{pod.name}_{pod.namespace}_{pod.uid}_{meta.attempt}"
    return (meta.name, container.id, image, name, pod.namespace, pod.name)


def pod_labels(sandbox: Sandbox) -> tuple[str, ...]:
    """The pod's own series (its network) as the pause container: container "POD", as dockershim named it."""
    pod = sandbox.config.metadata
    name = f"k8s_POD_{pod.name}_{pod.namespace}_{pod.uid}_{pod.attempt}"
    return ("POD", sandbox.id, "", name, pod.namespace, pod.name)


# --- collecting --------------------------------------------------------------------------------------


@dataclass
class Collector:
    """Reads the metrics of pods in one worker thread per call (everything it reads blocks)."""

    sandboxes: Sandboxes
    containers: Containers
    families: list[str] = field(default_factory=lambda: list(METRIC_FAMILIES))

    def targets(self) -> list[tuple[Sandbox, list[Container]]]:
        """Ready pods with their running containers (a stopped pod has nothing left to measure)."""
        out = []
        for sandbox in sorted(self.sandboxes.list(), key=lambda s: s.id):
            if sandbox.state != READY:
                continue
            running = [c for c in self.containers.in_pod(sandbox.id) if c.state == RUNNING]
            out.append((sandbox, sorted(running, key=lambda c: c.id)))
        return out

    def _sample(self, container: Container) -> ContainerSample:
        env = self.containers.env
        spec = env.read_spec(container.id)
        sample = ContainerSample()
        wanted = set(self.families)
        if spec is not None and wanted & {"cpu", "memory", "oom", "process", "spec"}:
            dirs = cgroup_dirs(spec["linux"]["cgroupsPath"], env.systemd)
            sample.cgroup = read_metrics(dirs)
            if "process" in wanted and sample.cgroup is not None:
                pids = cgroup_pids(dirs)
                sample.processes = process_counts(pids) if pids is not None else None
        if "disk" in wanted:
            upper = env.layer_dir(container.id) / "upper"
            sample.filesystem = filesystem_counters(upper)
            if sample.filesystem is not None:
                sample.layer_bytes = usage_of_tree(upper)[0]
        return sample

    def pod_metrics(self, sandbox: Sandbox, members: list[Container]) -> api_pb2.PodSandboxMetrics:
        """Blocking: one pod's metrics now."""
        out = api_pb2.PodSandboxMetrics(pod_sandbox_id=sandbox.id)
        if "network" in self.families and sandbox.netns and not sandbox.host_network and sandbox.pid:
            out.metrics.extend(to_metrics(network_values(network_counters(sandbox.pid)), pod_labels(sandbox)))
        pod = sandbox.config.metadata
        for container in members:
            sample = self._sample(container)
            values: list[Value] = []
            for family in self.families:
                if family in CONTAINER_FAMILIES:
                    values.extend(CONTAINER_FAMILIES[family](sample))
            out.container_metrics.append(
                api_pb2.ContainerMetrics(
                    container_id=container.id, metrics=to_metrics(values, container_labels(container, pod))
                )
            )
        return out

    async def collect(
        self, targets: list[tuple[Sandbox, list[Container]]]
    ) -> list[api_pb2.PodSandboxMetrics]:
        def run() -> list[api_pb2.PodSandboxMetrics]:
            return [self.pod_metrics(sandbox, members) for sandbox, members in targets]

        return await asyncio.to_thread(run)
