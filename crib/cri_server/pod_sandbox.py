"""Pod sandbox RPCs: proto ⇄ crib.sandbox, filters, and the status the kubelet reads."""

from __future__ import annotations

import json
import time

from crib.container.cgroup_stats import CgroupStats
from crib.cri_server import wire
from crib.proto.cri import api_pb2
from crib.sandbox.sandboxes import READY, Sandbox, Sandboxes

STREAM_CHUNK = 500


def _state(sandbox: Sandbox) -> int:
    return api_pb2.SANDBOX_READY if sandbox.state == READY else api_pb2.SANDBOX_NOTREADY


def sandbox_item(sandbox: Sandbox) -> api_pb2.PodSandbox:
    config = sandbox.config
    return api_pb2.PodSandbox(
        id=sandbox.id,
        metadata=config.metadata,
        state=_state(sandbox),
        created_at=sandbox.created_at,
        labels=config.labels,
        annotations=config.annotations,
        runtime_handler=sandbox.handler,
    )


def sandbox_status(sandboxes: Sandboxes, sandbox: Sandbox, verbose: bool) -> api_pb2.PodSandboxStatusResponse:
    config = sandbox.config
    network = api_pb2.PodSandboxNetworkStatus()
    if sandbox.ips and not sandbox.host_network:
        network.ip = sandbox.ips[0]
        network.additional_ips.extend(api_pb2.PodIP(ip=ip) for ip in sandbox.ips[1:])
    status = api_pb2.PodSandboxStatus(
        id=sandbox.id,
        metadata=config.metadata,
        state=_state(sandbox),
        created_at=sandbox.created_at,
        network=network,
        linux=api_pb2.LinuxPodSandboxStatus(
            namespaces=api_pb2.Namespace(options=config.linux.security_context.namespace_options)
        ),
        labels=config.labels,
        annotations=config.annotations,
        runtime_handler=sandbox.handler,
    )
    response = api_pb2.PodSandboxStatusResponse(status=status, timestamp=time.time_ns())
    if verbose:
        response.info["info"] = json.dumps(sandboxes.to_status(sandbox))
    return response


def matches(sandbox: Sandbox, f: api_pb2.PodSandboxFilter) -> bool:
    if f.id and not sandbox.id.startswith(f.id):
        return False
    if f.HasField("state") and _state(sandbox) != f.state.state:
        return False
    labels = sandbox.config.labels
    return all(labels.get(k) == v for k, v in f.label_selector.items())


def list_sandboxes(sandboxes: Sandboxes, f: api_pb2.PodSandboxFilter) -> list[api_pb2.PodSandbox]:
    return [sandbox_item(s) for s in sandboxes.list() if matches(s, f)]


def list_sandboxes_wire(sandboxes: Sandboxes, f: api_pb2.PodSandboxFilter) -> bytes:
    """A serialized ListPodSandboxResponse (field 1: items), from cached items."""
    return wire.list_reply(sandboxes.list(), f, lambda r: matches(r, f), sandbox_item)


def _sum(values: list[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def pod_stats_message(
    sandbox: Sandbox,
    pod_cgroup: CgroupStats | None,
    parts: list[CgroupStats | None],
    network: dict[str, tuple[int, int, int, int]],
    processes: int | None,
    containers: list[api_pb2.ContainerStats],
) -> api_pb2.PodSandboxStats:
    """The pod's own cgroup when it has one (the kubelet's pod cgroup); else the sum of its containers."""
    now = time.time_ns()
    config = sandbox.config
    stats = api_pb2.PodSandboxStats(
        attributes=api_pb2.PodSandboxAttributes(
            id=sandbox.id, metadata=config.metadata, labels=config.labels, annotations=config.annotations
        )
    )
    linux = stats.linux
    if pod_cgroup is not None:
        cpu, working_set, usage, rss = (
            pod_cgroup.cpu_usage_ns,
            pod_cgroup.memory_working_set_bytes,
            pod_cgroup.memory_usage_bytes,
            pod_cgroup.memory_rss_bytes,
        )
    else:
        live = [p for p in parts if p is not None]
        cpu = _sum([p.cpu_usage_ns for p in live])
        working_set = _sum([p.memory_working_set_bytes for p in live])
        usage = _sum([p.memory_usage_bytes for p in live])
        rss = _sum([p.memory_rss_bytes for p in live])
    if cpu is not None:
        linux.cpu.timestamp = now
        linux.cpu.usage_core_nano_seconds.value = cpu
    if working_set is not None or usage is not None:
        linux.memory.timestamp = now
        if working_set is not None:
            linux.memory.working_set_bytes.value = working_set
        if usage is not None:
            linux.memory.usage_bytes.value = usage
        if rss is not None:
            linux.memory.rss_bytes.value = rss
    if network:
        linux.network.timestamp = now
        for name, (rx, rx_err, tx, tx_err) in sorted(network.items()):
            usage_msg = api_pb2.NetworkInterfaceUsage(
                name=name,
                rx_bytes=api_pb2.UInt64Value(value=rx),
                rx_errors=api_pb2.UInt64Value(value=rx_err),
                tx_bytes=api_pb2.UInt64Value(value=tx),
                tx_errors=api_pb2.UInt64Value(value=tx_err),
            )
            linux.network.interfaces.append(usage_msg)
            if name == "eth0":
                linux.network.default_interface.CopyFrom(usage_msg)
    if processes is not None:
        linux.process.timestamp = now
        linux.process.process_count.value = processes
    linux.containers.extend(containers)
    return stats
