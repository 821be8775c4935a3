"""RuntimeService: one coroutine per implemented RPC, named as in the proto.

RPCs not defined here answer UNIMPLEMENTED (see rpc.generic_handler) until
their issue lands.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from crib.container.runtime_handler import HandlerInfo
from crib.cri_server import pod_sandbox, runtime_config, status, version
from crib.cri_server.config import Config
from crib.errors import InvalidArgument
from crib.log_setup import get_logger
from crib.proto.cri import api_pb2
from crib.sandbox.sandboxes import Sandboxes
from crib.store.state_store import StateStore

log = get_logger("crib.runtime")


class RuntimeServicer:
    def __init__(
        self,
        config: Config,
        store: StateStore,
        handlers: dict[str, HandlerInfo],
        cgroup_driver: str,
        sandboxes: Sandboxes,
    ) -> None:
        self.config = config
        self.store = store
        self.handlers = handlers
        self.cgroup_driver = cgroup_driver
        self.sandboxes = sandboxes
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
        return pod_sandbox.sandbox_status(self.sandboxes, sandbox, request.verbose)

    async def ListPodSandbox(
        self, request: api_pb2.ListPodSandboxRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.ListPodSandboxResponse:
        return api_pb2.ListPodSandboxResponse(
            items=pod_sandbox.list_sandboxes(self.sandboxes, request.filter)
        )

    async def StreamPodSandboxes(
        self, request: api_pb2.StreamPodSandboxesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[api_pb2.StreamPodSandboxesResponse]:
        items = pod_sandbox.list_sandboxes(self.sandboxes, request.filter)
        for start in range(0, len(items), pod_sandbox.STREAM_CHUNK):
            yield api_pb2.StreamPodSandboxesResponse(
                pod_sandboxes=items[start : start + pod_sandbox.STREAM_CHUNK]
            )

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
