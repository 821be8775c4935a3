"""RuntimeService: one coroutine per implemented RPC, named as in the proto.

RPCs not defined here answer UNIMPLEMENTED (see rpc.generic_handler) until
their issue lands.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from crib.container.containers import Container, Containers
from crib.container.runtime_handler import HandlerInfo
from crib.cri_server import (
    container_rpcs,
    metrics_rpcs,
    pod_sandbox,
    runtime_config,
    status,
    streaming_rpcs,
    version,
)
from crib.cri_server.config import Config
from crib.errors import DeadlineExceeded, InvalidArgument, Unavailable
from crib.log_setup import get_logger
from crib.proto.cri import api_pb2
from crib.sandbox.sandboxes import Sandbox, Sandboxes
from crib.store.state_store import StateStore
from crib.streaming.server import StreamingServer

log = get_logger("crib.runtime")

# kubelet's checkpoint API passes its own timeout; this is for callers that give none.
CHECKPOINT_TIMEOUT_S = 300.0
# What ExecSync output may total: the kubelet's 16 MiB message cap, less room for the envelope.
EXEC_SYNC_BUDGET = 16 * 1024 * 1024 - 1024


class RuntimeServicer:
    def __init__(
        self,
        config: Config,
        store: StateStore,
        handlers: dict[str, HandlerInfo],
        cgroup_driver: str,
        sandboxes: Sandboxes,
        containers: Containers,
        streaming: StreamingServer | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.handlers = handlers
        self.cgroup_driver = cgroup_driver
        self.sandboxes = sandboxes
        self.containers = containers
        self.streaming = streaming
        containers.make_event = self._event
        # Handed to CNI ADD as the host-local ranges (capability ipRanges).
        self.pod_cidrs = runtime_config.stored_pod_cidr(store)
        sandboxes.pod_cidrs = lambda: self.pod_cidrs

    # --- pod sandboxes --------------------------------------------------------------------------

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
        await self.sandboxes.stop(request.pod_sandbox_id)
        return api_pb2.StopPodSandboxResponse()

    async def RemovePodSandbox(
        self, request: api_pb2.RemovePodSandboxRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.RemovePodSandboxResponse:
        if not request.pod_sandbox_id:
            raise InvalidArgument("RemovePodSandbox: pod_sandbox_id is empty")
        await self.sandboxes.remove(request.pod_sandbox_id)
        return api_pb2.RemovePodSandboxResponse()

    async def PodSandboxStatus(
        self, request: api_pb2.PodSandboxStatusRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.PodSandboxStatusResponse:
        if not request.pod_sandbox_id:
            raise InvalidArgument("PodSandboxStatus: pod_sandbox_id is empty")
        sandbox = self.sandboxes.get(request.pod_sandbox_id)
        response = pod_sandbox.sandbox_status(self.sandboxes, sandbox, request.verbose)
        # Evented PLEG reads the pod's containers from here too.
        response.containers_statuses.extend(
            container_rpcs.container_status(c) for c in self.containers.in_pod(sandbox.id)
        )
        return response

    async def ListPodSandbox(
        self, request: api_pb2.ListPodSandboxRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        # Already serialized: PLEG asks every second and the items rarely change.
        return pod_sandbox.list_sandboxes_wire(self.sandboxes, request.filter)

    async def StreamPodSandboxes(
        self, request: api_pb2.StreamPodSandboxesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[api_pb2.StreamPodSandboxesResponse]:
        items = pod_sandbox.list_sandboxes(self.sandboxes, request.filter)
        for start in range(0, len(items), pod_sandbox.STREAM_CHUNK):
            yield api_pb2.StreamPodSandboxesResponse(
                pod_sandboxes=items[start : start + pod_sandbox.STREAM_CHUNK]
            )

    async def UpdatePodSandboxResources(
        self, request: api_pb2.UpdatePodSandboxResourcesRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.UpdatePodSandboxResourcesResponse:
        if not request.pod_sandbox_id:
            raise InvalidArgument("UpdatePodSandboxResources: pod_sandbox_id is empty")
        await self.sandboxes.update_resources(request.pod_sandbox_id, request.resources)
        return api_pb2.UpdatePodSandboxResourcesResponse()

    async def _pod_stats(self, sandbox: Sandbox) -> api_pb2.PodSandboxStats:
        members = self.containers.in_pod(sandbox.id)
        container_stats = [await self._container_stats(c) for c in members]
        pod_cgroup, parts, network, processes = await self.sandboxes.stats(sandbox, [c.id for c in members])
        return pod_sandbox.pod_stats_message(sandbox, pod_cgroup, parts, network, processes, container_stats)

    async def PodSandboxStats(
        self, request: api_pb2.PodSandboxStatsRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.PodSandboxStatsResponse:
        if not request.pod_sandbox_id:
            raise InvalidArgument("PodSandboxStats: pod_sandbox_id is empty")
        sandbox = self.sandboxes.get(request.pod_sandbox_id)
        return api_pb2.PodSandboxStatsResponse(stats=await self._pod_stats(sandbox))

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
        stats = await asyncio.gather(*(self._pod_stats(s) for s in targets))
        return api_pb2.ListPodSandboxStatsResponse(stats=stats)

    async def StreamPodSandboxStats(
        self, request: api_pb2.StreamPodSandboxStatsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[api_pb2.StreamPodSandboxStatsResponse]:
        targets = self._pod_stats_targets(request.filter)
        for start in range(0, len(targets), pod_sandbox.STREAM_CHUNK):
            chunk = targets[start : start + pod_sandbox.STREAM_CHUNK]
            stats = await asyncio.gather(*(self._pod_stats(s) for s in chunk))
            yield api_pb2.StreamPodSandboxStatsResponse(pod_sandbox_stats=stats)

    # --- containers -----------------------------------------------------------------------------

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
    ) -> api_pb2.ContainerStatusResponse:
        if not request.container_id:
            raise InvalidArgument("ContainerStatus: container_id is empty")
        container = self.containers.get(request.container_id)
        response = api_pb2.ContainerStatusResponse(status=container_rpcs.container_status(container))
        if request.verbose:
            response.info.update(
                await asyncio.to_thread(container_rpcs.status_info, self.containers, container)
            )
        return response

    async def ListContainers(
        self, request: api_pb2.ListContainersRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        # Already serialized: PLEG asks every second and the items rarely change.
        return container_rpcs.list_containers_wire(self.containers, request.filter)

    async def StreamContainers(
        self, request: api_pb2.StreamContainersRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[api_pb2.StreamContainersResponse]:
        items = container_rpcs.list_containers(self.containers, request.filter)
        for start in range(0, len(items), container_rpcs.STREAM_CHUNK):
            yield api_pb2.StreamContainersResponse(
                containers=items[start : start + container_rpcs.STREAM_CHUNK]
            )

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

    async def _container_stats(self, container: Container) -> api_pb2.ContainerStats:
        cg, layer = await self.containers.stats(container)
        layer_dir = str(self.containers.env.layer_dir(container.id) / "upper")
        return container_rpcs.stats_message(container, cg, layer, layer_dir)

    async def ContainerStats(
        self, request: api_pb2.ContainerStatsRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.ContainerStatsResponse:
        if not request.container_id:
            raise InvalidArgument("ContainerStats: container_id is empty")
        container = self.containers.get(request.container_id)
        return api_pb2.ContainerStatsResponse(stats=await self._container_stats(container))

    def _stats_targets(self, f: api_pb2.ContainerStatsFilter) -> list[Container]:
        out = []
        for c in self.containers.list():
            if f.id and not c.id.startswith(f.id):
                continue
            if f.pod_sandbox_id and not c.sandbox_id.startswith(f.pod_sandbox_id):
                continue
            if any(c.config.labels.get(k) != v for k, v in f.label_selector.items()):
                continue
            out.append(c)
        return out

    async def ListContainerStats(
        self, request: api_pb2.ListContainerStatsRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.ListContainerStatsResponse:
        targets = self._stats_targets(request.filter)
        stats = await asyncio.gather(*(self._container_stats(c) for c in targets))
        return api_pb2.ListContainerStatsResponse(stats=stats)

    async def StreamContainerStats(
        self, request: api_pb2.StreamContainerStatsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[api_pb2.StreamContainerStatsResponse]:
        targets = self._stats_targets(request.filter)
        for start in range(0, len(targets), container_rpcs.STREAM_CHUNK):
            chunk = targets[start : start + container_rpcs.STREAM_CHUNK]
            stats = await asyncio.gather(*(self._container_stats(c) for c in chunk))
            yield api_pb2.StreamContainerStatsResponse(container_stats=stats)

    # --- streaming -------------------------------------------------------------------------------

    def _stream_url(self, kind: str, request: Any) -> str:
        if self.streaming is None:
            raise Unavailable("the streaming server is not running")
        return self.streaming.url(kind, request)

    async def Exec(
        self, request: api_pb2.ExecRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.ExecResponse:
        checked = streaming_rpcs.validate_exec(self.containers, request)
        return api_pb2.ExecResponse(url=self._stream_url("exec", checked))

    async def Attach(
        self, request: api_pb2.AttachRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.AttachResponse:
        checked = streaming_rpcs.validate_attach(self.containers, request)
        return api_pb2.AttachResponse(url=self._stream_url("attach", checked))

    async def PortForward(
        self, request: api_pb2.PortForwardRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.PortForwardResponse:
        checked = streaming_rpcs.validate_port_forward(self.sandboxes, request)
        return api_pb2.PortForwardResponse(url=self._stream_url("portforward", checked))

    def _event(self, container: Container, event_type: int) -> api_pb2.ContainerEventResponse:
        """With the pod's status and its containers' statuses: Evented PLEG drops events without them."""
        event = api_pb2.ContainerEventResponse(
            container_id=container.id, container_event_type=event_type, created_at=time.time_ns()
        )
        sandbox = self.sandboxes.find(container.sandbox_id)
        if sandbox is not None:
            event.pod_sandbox_status.CopyFrom(
                pod_sandbox.sandbox_status(self.sandboxes, sandbox, False).status
            )
        event.containers_statuses.extend(
            container_rpcs.container_status(c) for c in self.containers.in_pod(container.sandbox_id)
        )
        if event_type == api_pb2.CONTAINER_DELETED_EVENT:
            event.containers_statuses.append(container_rpcs.container_status(container))
        return event

    async def GetContainerEvents(
        self, request: api_pb2.GetEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[api_pb2.ContainerEventResponse]:
        async for event in self.containers.events.subscribe():
            yield event

    async def CheckpointContainer(
        self, request: api_pb2.CheckpointContainerRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.CheckpointContainerResponse:
        if not request.container_id:
            raise InvalidArgument("CheckpointContainer: container_id is empty")
        timeout = float(request.timeout) if request.timeout > 0 else CHECKPOINT_TIMEOUT_S
        await self.containers.checkpoint(request.container_id, request.location, timeout)
        return api_pb2.CheckpointContainerResponse()

    # --- metrics (the kubelet's /metrics/cadvisor with PodAndContainerStatsFromCRI) --------------

    def _metrics_collector(self) -> metrics_rpcs.Collector:
        return metrics_rpcs.Collector(self.sandboxes, self.containers, self.config.stats.included_pod_metrics)

    async def ListMetricDescriptors(
        self, request: api_pb2.ListMetricDescriptorsRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.ListMetricDescriptorsResponse:
        return api_pb2.ListMetricDescriptorsResponse(
            descriptors=metrics_rpcs.descriptors(self.config.stats.included_pod_metrics)
        )

    async def ListPodSandboxMetrics(
        self, request: api_pb2.ListPodSandboxMetricsRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.ListPodSandboxMetricsResponse:
        collector = self._metrics_collector()
        return api_pb2.ListPodSandboxMetricsResponse(pod_metrics=await collector.collect(collector.targets()))

    async def StreamPodSandboxMetrics(
        self, request: api_pb2.StreamPodSandboxMetricsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[api_pb2.StreamPodSandboxMetricsResponse]:
        # The pods are fixed when the call starts, then read a chunk at a time: each pod goes out
        # once, and the stream ends after the last chunk (no pods: no message, as containerd).
        collector = self._metrics_collector()
        targets = collector.targets()
        for start in range(0, len(targets), metrics_rpcs.STREAM_CHUNK):
            chunk = await collector.collect(targets[start : start + metrics_rpcs.STREAM_CHUNK])
            yield api_pb2.StreamPodSandboxMetricsResponse(pod_sandbox_metrics=chunk)

    # --- the runtime ----------------------------------------------------------------------------

    async def Version(
        self, request: api_pb2.VersionRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.VersionResponse:
        return version.version_response()

    async def Status(
        self, request: api_pb2.StatusRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.StatusResponse:
        return status.status_response(self.config, self.handlers, request.verbose, self.pod_cidrs)

    async def RuntimeConfig(
        self, request: api_pb2.RuntimeConfigRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.RuntimeConfigResponse:
        return runtime_config.runtime_config_response(self.cgroup_driver)

    async def UpdateRuntimeConfig(
        self, request: api_pb2.UpdateRuntimeConfigRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.UpdateRuntimeConfigResponse:
        cidrs = runtime_config.update_pod_cidr(self.store, request)
        if cidrs is not None and cidrs != self.pod_cidrs:
            log.info("pod_cidr.updated", pod_cidrs=cidrs, previous=self.pod_cidrs)
            self.pod_cidrs = cidrs
        return api_pb2.UpdateRuntimeConfigResponse()
