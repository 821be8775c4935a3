"""The CRI client as crictl uses it: stubs for the endpoints, the connection checks crictl makes
first, and calls with the CRI client's deadlines and crictl's error texts.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from crib.cribctl.endpoint import Endpoints, grpc_target
from crib.cribctl.golike import go_quote
from crib.proto.cri import api_pb2, api_pb2_grpc
from crib.proto.crib.v1 import crib_pb2_grpc


class CommandError(Exception):
    pass


def _go_code(code: grpc.StatusCode) -> str:
    # Go's codes.Code.String(): DEADLINE_EXCEEDED → DeadlineExceeded.
    return "".join(part.capitalize() for part in code.name.split("_"))


def rpc_error(exc: grpc.RpcError) -> str:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return f"rpc error: code = {_go_code(code)} desc = {details}"


# crictl's (and the kubelet's) limit: list replies up to 16 MiB.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]


def channel(endpoint: str) -> grpc.Channel:
    return grpc.insecure_channel(grpc_target(endpoint), options=_CHANNEL_OPTIONS)


def runtime_stub(ep: Endpoints) -> api_pb2_grpc.RuntimeServiceStub:
    return api_pb2_grpc.RuntimeServiceStub(channel(ep.runtime))


def image_stub(ep: Endpoints) -> api_pb2_grpc.ImageServiceStub:
    return api_pb2_grpc.ImageServiceStub(channel(ep.image))


def crib_stub(ep: Endpoints) -> crib_pb2_grpc.CribServiceStub:
    """crib's own service; it shares the image endpoint's socket."""
    return crib_pb2_grpc.CribServiceStub(channel(ep.image))


Command = Callable[[argparse.Namespace, Endpoints], None]


# --- calls ----------------------------------------------------------------------------------------

DEADLINE_EXCEEDED = "rpc error: code = DeadlineExceeded desc = context deadline exceeded"


class CallError(Exception):
    """The message of a failed call as crictl's client words it, before the command's prefix."""


def call_error(exc: grpc.RpcError) -> str:
    code = exc.code() if hasattr(exc, "code") else None
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and exc.details() == "Deadline Exceeded":
        # A deadline that expired in this client: Go's context error text.
        return DEADLINE_EXCEEDED
    return rpc_error(exc)


def call_rpc(method: Callable[..., Any], request: Message, timeout: float | None) -> Any:
    """One unary call with the CRI client's deadline; a deadline already over fails as Go's context."""
    if timeout is not None and timeout <= 0:
        raise CallError(DEADLINE_EXCEEDED)
    try:
        return method(request, timeout=timeout)
    except grpc.RpcError as exc:
        raise CallError(call_error(exc)) from None


def wait_for_call(future: grpc.Future, what: str) -> Any:
    """The result of a call without deadline; Ctrl-C cancels it, as crictl's InterruptableRPC."""
    try:
        return future.result()
    except KeyboardInterrupt:
        future.cancel()
        raise CommandError(f"{what}: interrupted: context canceled") from None


# --- connecting -----------------------------------------------------------------------------------


def connect(ep: Endpoints, timeout: float | None = None) -> api_pb2_grpc.RuntimeServiceStub:
    """crictl's getRuntimeService: the CRI client checks the endpoint with Version within the timeout."""
    seconds = timeout or ep.timeout
    stub = runtime_stub(ep)
    try:
        if seconds <= 0:
            # A negative --cancel-timeout: Go's context is over before the call starts.
            raise CallError(DEADLINE_EXCEEDED)
        try:
            stub.Version(api_pb2.VersionRequest(), timeout=seconds)
        except grpc.RpcError as exc:
            raise CallError(call_error(exc)) from None
    except CallError as exc:
        endpoint = go_quote(ep.runtime)
        raise CommandError(
            f"validate service connection: validate CRI v1 runtime API for endpoint {endpoint}: {exc}"
        ) from None
    return stub


def check_endpoint(stub: api_pb2_grpc.ImageServiceStub, ep: Endpoints) -> None:
    """crictl's connect: one ImageFsInfo within --timeout, before calls without a deadline."""
    try:
        stub.ImageFsInfo(api_pb2.ImageFsInfoRequest(), timeout=ep.timeout)
    except grpc.RpcError as exc:
        raise CommandError(
            f"validate CRI v1 image API for endpoint {go_quote(ep.image)}: {call_error(exc)}"
        ) from None


def connect_image(ep: Endpoints) -> api_pb2_grpc.ImageServiceStub:
    """crictl's getImageService: the CRI client checks the image endpoint with ImageFsInfo."""
    stub = image_stub(ep)
    try:
        check_endpoint(stub, ep)
    except CommandError as exc:
        raise CommandError(f"validate service connection: {exc}") from None
    return stub
