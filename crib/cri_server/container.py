"""Container RPCs: create, start, stop, remove, status, list, logs, exec, stats, checkpoint.

Proto ⇄ crib.container; the list replies are served from cached serialized items.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from crib.container import signals
from crib.container.containers import CREATED, EXITED, RUNNING, Container, Containers
from crib.cri_server import usage, wire
from crib.errors import DeadlineExceeded, InvalidArgument
from crib.proto.cri import api_pb2
from crib.runtime.cgroup_stats import CgroupStats
from crib.store.index import LISTED

_STATES = {
    CREATED: api_pb2.CONTAINER_CREATED,
    RUNNING: api_pb2.CONTAINER_RUNNING,
    EXITED: api_pb2.CONTAINER_EXITED,
}


def state_of(container: Container) -> int:
    return _STATES.get(container.state, api_pb2.CONTAINER_UNKNOWN)


def _image_spec(container: Container) -> api_pb2.ImageSpec:
    spec = api_pb2.ImageSpec()
    spec.CopyFrom(container.config.image)
    # A name of the image, not the ID the kubelet created it with: the kubelet shows this as
    # the container's image (and compares it with the pod's).
    spec.image = container.image_name or spec.image or container.image_id
    return spec


def container_item(container: Container) -> api_pb2.Container:
    config = container.config
    return api_pb2.Container(
        id=container.id,
        pod_sandbox_id=container.sandbox_id,
        metadata=config.metadata,
        image=_image_spec(container),
        image_ref=container.image_ref,
        state=state_of(container),
        created_at=container.created_at,
        labels=config.labels,
        annotations=config.annotations,
        image_id=container.image_id,
    )


def container_status(container: Container) -> api_pb2.ContainerStatus:
    config = container.config
    return api_pb2.ContainerStatus(
        id=container.id,
        metadata=config.metadata,
        state=state_of(container),
        created_at=container.created_at,
        started_at=container.started_at,
        finished_at=container.finished_at,
        exit_code=container.exit_code,
        image=_image_spec(container),
        image_ref=container.image_ref,
        reason=container.reason,
        message=container.message,
        labels=config.labels,
        annotations=config.annotations,
        mounts=config.mounts,
        log_path=container.log_path,
        resources=api_pb2.ContainerResources(linux=container.resources),
        image_id=container.image_id,
        user=api_pb2.ContainerUser(
            linux=api_pb2.LinuxContainerUser(
                uid=container.uid, gid=container.gid, supplemental_groups=container.groups
            )
        ),
        stop_signal=effective_stop_signal(container.stop_signal),
    )


def status_key(container: Container) -> tuple[Any, ...]:
    """Every value container_status shows that can change (the ID and the config cannot)."""
    c = container
    return (
        c.state,
        c.started_at,
        c.finished_at,
        c.exit_code,
        c.reason,
        c.message,
        c.resources_b64,
        c.image_name,
        c.image_ref,
        c.image_id,
        c.log_path,
        c.created_at,
        c.uid,
        c.gid,
        tuple(c.groups),
        c.stop_signal,
    )


def status_bytes(container: Container) -> bytes:
    """The container's ContainerStatus serialized: the kubelet asks for it after every relist
    that saw the pod change, and most of those asks find it as it was."""
    return wire.status_bytes(container, status_key(container), container_status)


def effective_stop_signal(number: int) -> int:
    """The CRI Signal of the signal StopContainer sends (the config's, else the image's, else SIGTERM)."""
    name = signals.cri_name(number)
    try:
        return api_pb2.Signal.Value(name) if name else api_pb2.RUNTIME_DEFAULT
    except ValueError:  # a signal the CRI has no name for
        return api_pb2.RUNTIME_DEFAULT


def status_info(containers: Containers, container: Container) -> dict[str, str]:
    spec = containers.env.read_spec(container.id)
    return {
        "info": json.dumps(
            {
                "pid": container.pid,
                "conmonPid": container.conmon_pid,
                "sandboxID": container.sandbox_id,
                "runtimeHandler": container.handler,
                "runtimeSpec": spec,
            }
        )
    }


def matches(container: Container, f: api_pb2.ContainerFilter) -> bool:
    if f.id and not container.id.startswith(f.id):
        return False
    if f.HasField("state") and state_of(container) != f.state.state:
        return False
    if f.pod_sandbox_id and not container.sandbox_id.startswith(f.pod_sandbox_id):
        return False
    labels = container.config.labels
    return all(labels.get(k) == v for k, v in f.label_selector.items())


def list_containers(containers: Containers, f: api_pb2.ContainerFilter) -> list[api_pb2.Container]:
    return [container_item(c) for c in containers.list() if matches(c, f)]


def list_containers_wire(containers: Containers, f: api_pb2.ContainerFilter) -> bytes:
    """A serialized ListContainersResponse (field 1: containers), from cached items."""
    return wire.list_reply(containers.list(), f, lambda r: matches(r, f), container_item)


def stats_message(
    container: Container,
    cg: CgroupStats | None,
    layer: tuple[int, int],
    layer_dir: str,
    nano_cores: int | None = None,
    stats: api_pb2.ContainerStats | None = None,
) -> api_pb2.ContainerStats:
    """The container's ContainerStats, filled into `stats` when given (a pod's stats build
    theirs in place: a message built apart is copied whole when added to a repeated field)."""
    if stats is None:
        stats = api_pb2.ContainerStats()
    stats.attributes.CopyFrom(usage.attributes_of(container, api_pb2.ContainerAttributes))
    writable = stats.writable_layer
    writable.timestamp = time.time_ns()
    writable.fs_id.mountpoint = layer_dir
    writable.used_bytes.value = layer[0]
    writable.inodes_used.value = layer[1]
    if cg is not None:
        usage.fill_cpu(stats.cpu, cg, nano_cores)
        usage.fill_memory(stats.memory, cg)
        usage.fill_io(stats.io, cg)
    return stats


# kubelet's checkpoint API passes its own timeout; this is for callers that give none.
CHECKPOINT_TIMEOUT_S = 300.0
# What ExecSync output may total: the kubelet's 16 MiB message cap, less room for the envelope.
EXEC_SYNC_BUDGET = 16 * 1024 * 1024 - 1024


class ContainerService:
    """The container RPCs of RuntimeService, one coroutine each, named as in the proto."""

    def __init__(self, containers: Containers) -> None:
        self.containers = containers
        self.cpu_rates = usage.CpuRates()
        self.relist = wire.ListCache()

    async def CreateContainer(
        self, request: api_pb2.CreateContainerRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.CreateContainerResponse:
        if not request.pod_sandbox_id:
            raise InvalidArgument("CreateContainer: pod_sandbox_id is empty")
        if not request.HasField("config"):
            raise InvalidArgument("CreateContainer: config is missing")
        container_id = await self.containers.create(request.pod_sandbox_id, request.config)
        return api_pb2.CreateContainerResponse(container_id=container_id)

    async def StartContainer(
        self, request: api_pb2.StartContainerRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.StartContainerResponse:
        if not request.container_id:
            raise InvalidArgument("StartContainer: container_id is empty")
        await self.containers.start(request.container_id)
        return api_pb2.StartContainerResponse()

    async def StopContainer(
        self, request: api_pb2.StopContainerRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.StopContainerResponse:
        if not request.container_id:
            raise InvalidArgument("StopContainer: container_id is empty")
        await self.containers.stop(request.container_id, max(0, request.timeout))
        return api_pb2.StopContainerResponse()

    async def RemoveContainer(
        self, request: api_pb2.RemoveContainerRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.RemoveContainerResponse:
        if not request.container_id:
            raise InvalidArgument("RemoveContainer: container_id is empty")
        await self.containers.remove(request.container_id)
        return api_pb2.RemoveContainerResponse()

    async def ContainerStatus(
        self, request: api_pb2.ContainerStatusRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.ContainerStatusResponse | bytes:
        if not request.container_id:
            raise InvalidArgument("ContainerStatus: container_id is empty")
        container = self.containers.get(request.container_id)
        if not request.verbose:
            # ContainerStatusResponse's field 1, from the cached status.
            return wire.field(1, status_bytes(container))
        response = api_pb2.ContainerStatusResponse(status=container_status(container))
        response.info.update(await asyncio.to_thread(status_info, self.containers, container))
        return response

    async def ListContainers(
        self, request: api_pb2.ListContainersRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        # Already serialized: PLEG asks every second and the items rarely change; its relist
        # (no filter) is the reply made before while nothing listed has changed.
        f = request.filter
        if f.ByteSize():
            return list_containers_wire(self.containers, f)
        return self.relist.reply(LISTED.value, lambda: list_containers_wire(self.containers, f))

    async def StreamContainers(
        self, request: api_pb2.StreamContainersRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[api_pb2.StreamContainersResponse]:
        for chunk in wire.chunks(list_containers(self.containers, request.filter)):
            yield api_pb2.StreamContainersResponse(containers=chunk)

    async def UpdateContainerResources(
        self, request: api_pb2.UpdateContainerResourcesRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.UpdateContainerResourcesResponse:
        if not request.container_id:
            raise InvalidArgument("UpdateContainerResources: container_id is empty")
        await self.containers.update_resources(request.container_id, request.linux)
        return api_pb2.UpdateContainerResourcesResponse()

    async def ReopenContainerLog(
        self, request: api_pb2.ReopenContainerLogRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.ReopenContainerLogResponse:
        if not request.container_id:
            raise InvalidArgument("ReopenContainerLog: container_id is empty")
        await self.containers.reopen_log(request.container_id)
        return api_pb2.ReopenContainerLogResponse()

    async def ExecSync(
        self, request: api_pb2.ExecSyncRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.ExecSyncResponse:
        if not request.container_id:
            raise InvalidArgument("ExecSync: container_id is empty")
        result = await self.containers.exec_sync(
            request.container_id, list(request.cmd), float(request.timeout)
        )
        if result.timed_out:
            raise DeadlineExceeded(
                f"ExecSync: command {list(request.cmd)!r} timed out after {request.timeout}s"
            )
        # Both outputs must fit the 16 MiB message the kubelet accepts.
        stdout = result.stdout[:EXEC_SYNC_BUDGET]
        stderr = result.stderr[: EXEC_SYNC_BUDGET - len(stdout)]
        return api_pb2.ExecSyncResponse(stdout=stdout, stderr=stderr, exit_code=result.exit_code)

    def sample(
        self, container: Container, stats: api_pb2.ContainerStats | None = None
    ) -> tuple[api_pb2.ContainerStats, CgroupStats | None]:
        """The container's ContainerStats (filled into `stats` when given), and the cgroup
        stats it was made from. Blocking."""
        cg, layer = self.containers.stats_now(container)
        layer_dir = self.containers.env.upper_dir(container.id)
        rate = None
        if cg is not None and cg.cpu_usage_ns is not None:
            rate = self.cpu_rates.nano_cores(container.id, cg.timestamp_ns, cg.cpu_usage_ns)
        return stats_message(container, cg, layer, layer_dir, rate, stats), cg

    def stats_of(self, containers: list[Container], into: Any) -> None:
        """Blocking: a list call's containers one after another in one worker thread (a thread
        per container only adds switches: the files are small and the GIL is one), each filled
        into a new item of `into`, the reply's repeated field (a reply made from messages built
        apart copies each whole: 1.2 ms of ListPodSandboxStats at 100 pods)."""
        for c in containers:
            self.sample(c, into.add())

    async def ContainerStats(
        self, request: api_pb2.ContainerStatsRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.ContainerStatsResponse:
        if not request.container_id:
            raise InvalidArgument("ContainerStats: container_id is empty")
        container = self.containers.get(request.container_id)
        response = api_pb2.ContainerStatsResponse()
        await asyncio.to_thread(self.sample, container, response.stats)
        return response

    def _stats_targets(self, f: api_pb2.ContainerStatsFilter) -> list[Container]:
        return [
            c
            for c in self.containers.list()
            if (not f.id or c.id.startswith(f.id))
            and (not f.pod_sandbox_id or c.sandbox_id.startswith(f.pod_sandbox_id))
            and all(c.config.labels.get(k) == v for k, v in f.label_selector.items())
        ]

    async def ListContainerStats(
        self, request: api_pb2.ListContainerStatsRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.ListContainerStatsResponse:
        targets = self._stats_targets(request.filter)
        response = api_pb2.ListContainerStatsResponse()
        await asyncio.to_thread(self.stats_of, targets, response.stats)
        self.cpu_rates.keep_only(c.id for c in self.containers.list())
        return response

    async def StreamContainerStats(
        self, request: api_pb2.StreamContainerStatsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[api_pb2.StreamContainerStatsResponse]:
        for chunk in wire.chunks(self._stats_targets(request.filter)):
            response = api_pb2.StreamContainerStatsResponse()
            await asyncio.to_thread(self.stats_of, chunk, response.container_stats)
            yield response

    async def CheckpointContainer(
        self, request: api_pb2.CheckpointContainerRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.CheckpointContainerResponse:
        if not request.container_id:
            raise InvalidArgument("CheckpointContainer: container_id is empty")
        timeout = float(request.timeout) if request.timeout > 0 else CHECKPOINT_TIMEOUT_S
        await self.containers.checkpoint(request.container_id, request.location, timeout)
        return api_pb2.CheckpointContainerResponse()
