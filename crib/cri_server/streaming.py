"""Exec, Attach and PortForward: validate, cache the request, return the streaming URL.

Also the streaming server's backend: how an exec starts, an attach connects
and a port is reached, on top of crib's containers and sandboxes.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Any

import grpc

from crib import first_use
from crib.container import attach as attach_io
from crib.container.containers import RUNNING, Container, Containers
from crib.errors import FailedPrecondition, InvalidArgument, Unavailable
from crib.proto.cri import api_pb2
from crib.sandbox import port_forward
from crib.sandbox.sandboxes import READY, Sandboxes
from crib.streaming.server import Backend, StreamingServer

if TYPE_CHECKING:
    from crib.container import exec_stream


def _running(containers: Containers, container_id: str, what: str) -> Container:
    if not container_id:
        raise InvalidArgument(f"{what}: container_id is empty")
    container = containers.get(container_id)
    if container.state != RUNNING or container.exited.is_set():
        raise FailedPrecondition(f"{what}: container {container.id} is not running")
    return container


def _streams(req: Any, what: str) -> None:
    if req.tty and req.stderr:
        raise InvalidArgument(f"{what}: tty and stderr cannot both be set (a terminal has one output)")
    if not (req.stdin or req.stdout or req.stderr):
        raise InvalidArgument(f"{what}: one of stdin, stdout or stderr must be set")


def validate_exec(containers: Containers, req: api_pb2.ExecRequest) -> api_pb2.ExecRequest:
    container = _running(containers, req.container_id, "Exec")
    if not req.cmd:
        raise InvalidArgument("Exec: cmd is empty")
    _streams(req, "Exec")
    out = api_pb2.ExecRequest()
    out.CopyFrom(req)
    out.container_id = container.id
    return out


def validate_attach(containers: Containers, req: api_pb2.AttachRequest) -> api_pb2.AttachRequest:
    container = _running(containers, req.container_id, "Attach")
    _streams(req, "Attach")
    out = api_pb2.AttachRequest()
    out.CopyFrom(req)
    out.container_id = container.id
    if req.stdin and not container.config.stdin:
        # As CRI-O: a container without stdin has none to attach to; the output still streams.
        out.stdin = False
        _streams(out, "Attach")
    return out


def validate_port_forward(
    sandboxes: Sandboxes, req: api_pb2.PortForwardRequest
) -> api_pb2.PortForwardRequest:
    if not req.pod_sandbox_id:
        raise InvalidArgument("PortForward: pod_sandbox_id is empty")
    sandbox = sandboxes.get(req.pod_sandbox_id)
    if sandbox.state != READY:
        raise FailedPrecondition(f"PortForward: pod sandbox {sandbox.id} is not ready")
    for port in req.port:
        if not 0 < port <= 65535:
            raise InvalidArgument(f"PortForward: invalid port {port}")
    out = api_pb2.PortForwardRequest()
    out.CopyFrom(req)
    out.pod_sandbox_id = sandbox.id
    return out


def backend(containers: Containers, sandboxes: Sandboxes) -> Backend:
    env = containers.env

    async def start_exec(req: api_pb2.ExecRequest, width: int, height: int) -> exec_stream.ExecProcess:
        container = _running(containers, req.container_id, "Exec")
        process = await containers.exec_process(container, list(req.cmd))
        # Imported at the first Exec (first_use), with termios for its terminal (issue 17).
        runner = await first_use.module("crib.container.exec_stream")
        return await runner.start(
            env.runtime(container.handler),
            container.id,
            process,
            env.state / "exec",
            tty=req.tty,
            stdin=req.stdin,
            stdout=req.stdout,
            stderr=req.stderr and not req.tty,
            width=width,
            height=height,
        )

    async def attach(req: api_pb2.AttachRequest) -> socket.socket:
        container = _running(containers, req.container_id, "Attach")
        return await attach_io.connect(env, container.id)

    def attach_resize(req: api_pb2.AttachRequest, width: int, height: int) -> None:
        attach_io.resize(env, req.container_id, width, height)

    async def connect(req: api_pb2.PortForwardRequest, port: int) -> socket.socket:
        sandbox = sandboxes.get(req.pod_sandbox_id)
        if sandbox.state != READY:
            raise FailedPrecondition(f"pod sandbox {sandbox.id} is not ready")
        return await asyncio.to_thread(port_forward.connect, sandbox.netns, port)

    return Backend(start_exec=start_exec, attach=attach, attach_resize=attach_resize, connect=connect)


class StreamingService:
    """Exec, Attach and PortForward of RuntimeService: each returns a URL of the streaming server."""

    def __init__(self, containers: Containers, sandboxes: Sandboxes, server: StreamingServer | None) -> None:
        self.containers = containers
        self.sandboxes = sandboxes
        self.server = server

    def _url(self, kind: str, request: Any) -> str:
        if self.server is None:
            raise Unavailable("the streaming server is not running")
        return self.server.url(kind, request)

    async def Exec(
        self, request: api_pb2.ExecRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.ExecResponse:
        return api_pb2.ExecResponse(url=self._url("exec", validate_exec(self.containers, request)))

    async def Attach(
        self, request: api_pb2.AttachRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.AttachResponse:
        return api_pb2.AttachResponse(url=self._url("attach", validate_attach(self.containers, request)))

    async def PortForward(
        self, request: api_pb2.PortForwardRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.PortForwardResponse:
        checked = validate_port_forward(self.sandboxes, request)
        return api_pb2.PortForwardResponse(url=self._url("portforward", checked))
