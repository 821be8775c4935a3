"""RuntimeService: one coroutine per implemented RPC, named as in the proto.

RPCs not defined here answer UNIMPLEMENTED (see rpc.generic_handler) until
their issue lands.
"""

from __future__ import annotations

import grpc

from crib.container.runtime_handler import HandlerInfo
from crib.cri_server import runtime_config, status, version
from crib.cri_server.config import Config
from crib.log_setup import get_logger
from crib.proto.cri import api_pb2
from crib.store.state_store import StateStore

log = get_logger("crib.runtime")


class RuntimeServicer:
    def __init__(
        self, config: Config, store: StateStore, handlers: dict[str, HandlerInfo], cgroup_driver: str
    ) -> None:
        self.config = config
        self.store = store
        self.handlers = handlers
        self.cgroup_driver = cgroup_driver
        # Handed to CNI ADD as the host-local range once pods land.
        self.pod_cidrs = runtime_config.stored_pod_cidr(store)

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
