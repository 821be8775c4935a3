"""Pod sandbox RPCs: run, stop, remove, status, list, resources and stats.

Proto ⇄ crib.sandbox, filters, and the status the kubelet reads.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from crib.container.containers import Container, Containers
from crib.cri_server import usage, wire
from crib.cri_server.container import ContainerService, container_status, status_bytes
from crib.cri_server.container import status_key as container_status_key
from crib.errors import InvalidArgument
from crib.proto.cri import api_pb2
from crib.runtime.cgroup_stats import CgroupStats
from crib.sandbox.sandboxes import READY, Sandbox, Sandboxes
from crib.store.index import LISTED


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


def pod_status(sandbox: Sandbox) -> api_pb2.PodSandboxStatus:
    config = sandbox.config
    network = api_pb2.PodSandboxNetworkStatus()
    if sandbox.ips and not sandbox.host_network:
        network.ip = sandbox.ips[0]
        network.additional_ips.extend(api_pb2.PodIP(ip=ip) for ip in sandbox.ips[1:])
    return api_pb2.PodSandboxStatus(
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


def status_key(sandbox: Sandbox) -> tuple[Any, ...]:
    """Every value pod_status shows that can change (the ID and the config cannot)."""
    return (sandbox.state, tuple(sandbox.ips), sandbox.created_at, sandbox.handler)


def sandbox_status(sandboxes: Sandboxes, sandbox: Sandbox, verbose: bool) -> api_pb2.PodSandboxStatusResponse:
    response = api_pb2.PodSandboxStatusResponse(status=pod_status(sandbox), timestamp=time.time_ns())
    if verbose:
        response.info["info"] = json.dumps(sandboxes.to_status(sandbox))
    return response


def status_reply(sandbox: Sandbox, members: list[Container]) -> bytes:
    """A serialized PodSandboxStatusResponse without `info`: field 1 the pod's status, 3 its
    containers', 4 the timestamp. Fields 1 and 3 are kept framed together, made again only when
    the pod's status key, or one of its containers or their status keys, differs (taken
    before they are built, so a change made meanwhile makes the next call build again)."""
    key = (status_key(sandbox), *[(c.id, container_status_key(c)) for c in members])
    cached = sandbox._status
    if cached is None or cached[0] != key:
        body = [wire.field(1, pod_status(sandbox).SerializeToString())]
        body.extend(wire.field(3, status_bytes(c)) for c in members)
        cached = (key, b"".join(body))
        sandbox._status = cached
    return cached[1] + wire.int_field(4, time.time_ns())


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


def _fill_interface(
    usage_msg: api_pb2.NetworkInterfaceUsage, name: str, counters: tuple[int, int, int, int]
) -> None:
    rx, rx_err, tx, tx_err = counters
    usage_msg.name = name
    usage_msg.rx_bytes.value = rx
    usage_msg.rx_errors.value = rx_err
    usage_msg.tx_bytes.value = tx
    usage_msg.tx_errors.value = tx_err


def pod_stats_message(
    sandbox: Sandbox,
    pod_cgroup: CgroupStats | None,
    parts: list[CgroupStats | None],
    network: dict[str, tuple[int, int, int, int]],
    processes: int | None,
    cpu_rates: usage.CpuRates | None = None,
    stats: api_pb2.PodSandboxStats | None = None,
) -> api_pb2.PodSandboxStats:
    """The pod's own cgroup when it has one (the kubelet's pod cgroup); else the sum of its
    containers. Filled into `stats` when given, whose linux.containers the caller fills (in
    place: a ContainerStats built apart would be copied whole into the repeated field)."""
    now = time.time_ns()
    if stats is None:
        stats = api_pb2.PodSandboxStats()
    stats.attributes.CopyFrom(usage.attributes_of(sandbox, api_pb2.PodSandboxAttributes))
    linux = stats.linux
    if pod_cgroup is not None:
        rate = None
        if cpu_rates is not None and pod_cgroup.cpu_usage_ns is not None:
            rate = cpu_rates.nano_cores(sandbox.id, pod_cgroup.timestamp_ns, pod_cgroup.cpu_usage_ns)
        usage.fill_cpu(linux.cpu, pod_cgroup, rate)
        usage.fill_memory(linux.memory, pod_cgroup)
        usage.fill_io(linux.io, pod_cgroup)
    else:
        live = [p for p in parts if p is not None]
        cpu = _sum([p.cpu_usage_ns for p in live])
        working_set = _sum([p.memory_working_set_bytes for p in live])
        mem_usage = _sum([p.memory_usage_bytes for p in live])
        rss = _sum([p.memory_rss_bytes for p in live])
        if cpu is not None:
            linux.cpu.timestamp = now
            linux.cpu.usage_core_nano_seconds.value = cpu
            if cpu_rates is not None:
                linux.cpu.usage_nano_cores.value = cpu_rates.nano_cores(sandbox.id, now, cpu)
        if working_set is not None or mem_usage is not None:
            linux.memory.timestamp = now
            if working_set is not None:
                linux.memory.working_set_bytes.value = working_set
            if mem_usage is not None:
                linux.memory.usage_bytes.value = mem_usage
            if rss is not None:
                linux.memory.rss_bytes.value = rss
    if network:
        net = linux.network
        net.timestamp = now
        # Set in place: built with nested constructors and copied in, an interface cost 27 µs
        # a pod (a tenth of ListPodSandboxStats's own work at 100 pods).
        for name, counters in sorted(network.items()):
            _fill_interface(net.interfaces.add(), name, counters)
            if name == "eth0":
                _fill_interface(net.default_interface, name, counters)
    if processes is not None:
        linux.process.timestamp = now
        linux.process.process_count.value = processes
    return stats


class SandboxService:
    """The pod sandbox RPCs of RuntimeService, one coroutine each, named as in the proto."""

    def __init__(
        self, sandboxes: Sandboxes, containers: Containers, container_service: ContainerService
    ) -> None:
        self.sandboxes = sandboxes
        self.containers = containers
        # A pod's stats hold its containers' stats, built as ContainerStats builds them.
        self.container_service = container_service
        self.cpu_rates = usage.CpuRates()
        self.relist = wire.ListCache()

    async def RunPodSandbox(
        self, request: api_pb2.RunPodSandboxRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.RunPodSandboxResponse:
        if not request.HasField("config"):
            raise InvalidArgument("RunPodSandbox: config is missing")
        sandbox_id = await self.sandboxes.run(request.config, request.runtime_handler)
        return api_pb2.RunPodSandboxResponse(pod_sandbox_id=sandbox_id)

    async def StopPodSandbox(
        self, request: api_pb2.StopPodSandboxRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.StopPodSandboxResponse:
        if not request.pod_sandbox_id:
            raise InvalidArgument("StopPodSandbox: pod_sandbox_id is empty")
        await self.sandboxes.stop(request.pod_sandbox_id, self.containers)
        return api_pb2.StopPodSandboxResponse()

    async def RemovePodSandbox(
        self, request: api_pb2.RemovePodSandboxRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.RemovePodSandboxResponse:
        if not request.pod_sandbox_id:
            raise InvalidArgument("RemovePodSandbox: pod_sandbox_id is empty")
        await self.sandboxes.remove(request.pod_sandbox_id, self.containers)
        return api_pb2.RemovePodSandboxResponse()

    async def PodSandboxStatus(
        self, request: api_pb2.PodSandboxStatusRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.PodSandboxStatusResponse | bytes:
        if not request.pod_sandbox_id:
            raise InvalidArgument("PodSandboxStatus: pod_sandbox_id is empty")
        sandbox = self.sandboxes.get(request.pod_sandbox_id)
        # Evented PLEG reads the pod's containers from here too.
        members = self.containers.in_pod(sandbox.id)
        if not request.verbose:
            return status_reply(sandbox, members)
        response = sandbox_status(self.sandboxes, sandbox, request.verbose)
        response.containers_statuses.extend(container_status(c) for c in members)
        return response

    async def ListPodSandbox(
        self, request: api_pb2.ListPodSandboxRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        # Already serialized: PLEG asks every second and the items rarely change; its relist
        # (no filter) is the reply made before while nothing listed has changed.
        f = request.filter
        if f.ByteSize():
            return list_sandboxes_wire(self.sandboxes, f)
        return self.relist.reply(LISTED.value, lambda: list_sandboxes_wire(self.sandboxes, f))

    async def StreamPodSandboxes(
        self, request: api_pb2.StreamPodSandboxesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[api_pb2.StreamPodSandboxesResponse]:
        for chunk in wire.chunks(list_sandboxes(self.sandboxes, request.filter)):
            yield api_pb2.StreamPodSandboxesResponse(pod_sandboxes=chunk)

    async def UpdatePodSandboxResources(
        self, request: api_pb2.UpdatePodSandboxResourcesRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.UpdatePodSandboxResourcesResponse:
        if not request.pod_sandbox_id:
            raise InvalidArgument("UpdatePodSandboxResources: pod_sandbox_id is empty")
        await self.sandboxes.update_resources(request.pod_sandbox_id, request.resources)
        return api_pb2.UpdatePodSandboxResourcesResponse()

    def _pod_stats(self, sandbox: Sandbox, members: list[Container], stats: api_pb2.PodSandboxStats) -> None:
        """Blocking: each of the pod's cgroups is read once, its containers' for their own
        stats and for the pod's sum alike; filled into `stats`, in place."""
        into = stats.linux.containers
        parts = [(c.id, self.container_service.sample(c, into.add())[1]) for c in members]
        pod_cgroup, part_stats, network, processes = self.sandboxes.stats_now(sandbox, parts)
        pod_stats_message(sandbox, pod_cgroup, part_stats, network, processes, self.cpu_rates, stats)

    def _pods_stats(self, sandboxes: list[Sandbox], into: Any) -> None:
        """Blocking: each pod's stats into a new item of `into`, the reply's repeated field (a
        reply made from messages built apart copies each whole)."""
        # The containers grouped by pod in one pass: asking per pod is quadratic at 500 pods.
        by_pod: dict[str, list[Container]] = {s.id: [] for s in sandboxes}
        for c in self.containers.list():
            if c.sandbox_id in by_pod:
                by_pod[c.sandbox_id].append(c)
        for s in sandboxes:
            self._pod_stats(s, by_pod[s.id], into.add())

    async def PodSandboxStats(
        self, request: api_pb2.PodSandboxStatsRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.PodSandboxStatsResponse:
        if not request.pod_sandbox_id:
            raise InvalidArgument("PodSandboxStats: pod_sandbox_id is empty")
        sandbox = self.sandboxes.get(request.pod_sandbox_id)
        members = self.containers.in_pod(sandbox.id)
        response = api_pb2.PodSandboxStatsResponse()
        await asyncio.to_thread(self._pod_stats, sandbox, members, response.stats)
        return response

    def _pod_stats_targets(self, f: api_pb2.PodSandboxStatsFilter) -> list[Sandbox]:
        return [
            s
            for s in self.sandboxes.list()
            if (not f.id or s.id.startswith(f.id))
            and all(s.config.labels.get(k) == v for k, v in f.label_selector.items())
        ]

    async def ListPodSandboxStats(
        self, request: api_pb2.ListPodSandboxStatsRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.ListPodSandboxStatsResponse:
        targets = self._pod_stats_targets(request.filter)
        response = api_pb2.ListPodSandboxStatsResponse()
        await asyncio.to_thread(self._pods_stats, targets, response.stats)
        self.cpu_rates.keep_only(s.id for s in self.sandboxes.list())
        return response

    async def StreamPodSandboxStats(
        self, request: api_pb2.StreamPodSandboxStatsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[api_pb2.StreamPodSandboxStatsResponse]:
        for chunk in wire.chunks(self._pod_stats_targets(request.filter)):
            response = api_pb2.StreamPodSandboxStatsResponse()
            await asyncio.to_thread(self._pods_stats, chunk, response.pod_sandbox_stats)
            yield response
