"""What every cribctl command shares: stubs for the endpoints and crictl-style errors."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import grpc

from crib.cribctl.endpoint import Endpoints, grpc_target
from crib.proto.cri import api_pb2_grpc
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
