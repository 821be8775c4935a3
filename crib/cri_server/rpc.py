"""Registering the CRI services: every RPC of the proto, each wrapped once.

The wrapper is the single place where a call is timed, logged (one event per
RPC with its latency, gRPC code and the pod/container/image it concerns), traced
(one server span, continuing the caller's trace) and where domain errors become
gRPC statuses. An RPC a servicer does not define answers exactly UNIMPLEMENTED
naming the RPC: the kubelet falls back only on that code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from types import ModuleType
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, ServiceDescriptor
from google.protobuf.message import Message

from crib import log_setup, node_metrics, tracing
from crib.errors import CribError, Unimplemented, out_of_space
from crib.log_setup import get_logger
from crib.proto.cri import api_pb2

log = get_logger("crib.rpc")

# Read-only calls the kubelet makes every second or so (PLEG, node status).
# They log at debug so an idle node's log stays readable at info.
QUIET_RPCS = frozenset(
    {
        "Version",
        "Status",
        "RuntimeConfig",
        "ListPodSandbox",
        "StreamPodSandboxes",
        "PodSandboxStatus",
        "ListContainers",
        "StreamContainers",
        "ContainerStatus",
        "ContainerStats",
        "ListContainerStats",
        "StreamContainerStats",
        "PodSandboxStats",
        "ListPodSandboxStats",
        "StreamPodSandboxStats",
        "ListMetricDescriptors",
        "ListPodSandboxMetrics",
        "StreamPodSandboxMetrics",
        "ListImages",
        "StreamImages",
        "ImageStatus",
        "ImageFsInfo",
    }
)

Subjects = Callable[[Message], dict[str, str]]

# A request may carry megabytes in an ID or a name (up to the 16 MiB message limit), and the
# log and error messages echo them: each echo is capped, so a bad request costs neither a
# megabyte log line written on the event loop nor a status bigger than a client accepts.
MAX_ECHO = 512


def capped(text: str) -> str:
    return text if len(text) <= MAX_ECHO else f"{text[:MAX_ECHO]}... ({len(text)} characters)"


def _subjects_for(desc: Descriptor) -> Subjects:
    """What a request concerns, for the log: built once per method."""
    fields = desc.fields_by_name
    getters: list[Callable[[Any, dict[str, str]], None]] = []
    if "pod_sandbox_id" in fields:
        getters.append(lambda r, out: out.__setitem__("pod", r.pod_sandbox_id) if r.pod_sandbox_id else None)
    if "container_id" in fields:
        getters.append(
            lambda r, out: out.__setitem__("container", r.container_id) if r.container_id else None
        )
    image = fields.get("image")
    if image is not None and image.message_type is not None and image.message_type.name == "ImageSpec":
        getters.append(lambda r, out: out.__setitem__("image", r.image.image) if r.image.image else None)
    config = fields.get("config")
    if (
        config is not None
        and config.message_type is not None
        and "metadata" in config.message_type.fields_by_name
    ):

        def name(r: Any, out: dict[str, str]) -> None:
            meta = r.config.metadata
            if meta.name:
                out["name"] = f"{meta.namespace}/{meta.name}" if getattr(meta, "namespace", "") else meta.name

        getters.append(name)

    def subjects(request: Message) -> dict[str, str]:
        out: dict[str, str] = {}
        for get in getters:
            get(request, out)
        return {k: capped(v) for k, v in out.items()}

    return subjects


def _log_outcome(method: str, started: float, code: str, subjects: dict[str, str], error: str | None) -> None:
    seconds = time.perf_counter() - started
    node_metrics.GRPC_REQUESTS.labels(method, code).inc()
    node_metrics.GRPC_DURATION.labels(method).observe(seconds)
    duration_ms = round(seconds * 1000, 3)
    if error is None:
        emit = log.debug if method in QUIET_RPCS else log.info
        emit("rpc", method=method, duration_ms=duration_ms, code=code, **subjects)
    elif code in ("NOT_FOUND", "UNIMPLEMENTED", "CANCELLED"):
        log.info("rpc", method=method, duration_ms=duration_ms, code=code, error=error, **subjects)
    else:
        log.warning("rpc", method=method, duration_ms=duration_ms, code=code, error=error, **subjects)


def _status_for(exc: BaseException, method: str) -> tuple[str, str]:
    """Map an exception to (code name, message); the caller aborts with it."""
    # Whatever layer it surfaced in, a full disk is RESOURCE_EXHAUSTED: the kubelet retries,
    # the operator frees space, and nothing about the request was wrong.
    if (no_space := out_of_space(exc)) is not None:
        log.warning("rpc.out_of_space", method=method, error=no_space)
        return "RESOURCE_EXHAUSTED", f"{method}: out of disk space: {no_space}"
    if isinstance(exc, CribError):
        return exc.code, capped(exc.message)
    log.error("rpc.crashed", method=method, exc_info=exc)
    return "INTERNAL", capped(f"{method}: internal error: {type(exc).__name__}: {exc}")


UnaryHandler = Callable[[Message, grpc.aio.ServicerContext], Awaitable[Message]]
StreamHandler = Callable[[Message, grpc.aio.ServicerContext], AsyncIterator[Message]]
ClientStreamHandler = Callable[[AsyncIterator[Message], grpc.aio.ServicerContext], Awaitable[Message]]


# The log's subject keys as span attributes.
_SPAN_ATTRIBUTES = {
    "pod": "crib.pod_sandbox_id",
    "container": "crib.container_id",
    "image": "crib.image",
    "name": "crib.name",
}


def _server_span(
    service: str, method: str, subjects: dict[str, str], context: grpc.aio.ServicerContext | None
) -> AbstractContextManager[tracing.Span]:
    if not tracing.enabled():
        return tracing.NOOP
    attributes = {_SPAN_ATTRIBUTES[k]: v for k, v in subjects.items()}
    attributes.update({"rpc.system": "grpc", "rpc.service": service, "rpc.method": method})
    # The kubelet's otelgrpc interceptor sends its span as `traceparent` in the metadata.
    metadata = getattr(context, "invocation_metadata", None)
    return tracing.server_span(f"{service}/{method}" if service else method, metadata, attributes)


def _end_span(span: tracing.Span, code: str, error: str | None) -> None:
    if span.is_recording():
        span.set_attribute("rpc.grpc.status_code", grpc.StatusCode[code].value[0])
        if error is not None:
            tracing.set_error(span, error)


def _failed(
    method: str,
    started: float,
    subjects: dict[str, str],
    context: grpc.aio.ServicerContext,
    exc: BaseException,
    span: tracing.Span,
) -> tuple[str, str] | None:
    """Log (and end the span of) a call that raised; (code, message) to abort with, or None
    when the exception goes on as it is (a cancellation, an abort already made)."""
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        # GeneratorExit: a streaming handler closed at a yield, which is where it
        # waits while a message goes out, when its client went away then.
        error = "cancelled by the client or its deadline"
        _log_outcome(method, started, "CANCELLED", subjects, error)
        _end_span(span, "CANCELLED", error)
        return None
    if isinstance(exc, grpc.aio.AbortError):
        code = context.code()
        code_name = code.name if code else "UNKNOWN"
        _log_outcome(method, started, code_name, subjects, context.details() or "")
        _end_span(span, code_name, context.details() or code_name)
        return None
    if not isinstance(exc, Exception):
        return None
    code_name, message = _status_for(exc, method)
    _log_outcome(method, started, code_name, subjects, message)
    _end_span(span, code_name, message)
    return code_name, message


@asynccontextmanager
async def _outcome(
    method: str,
    request: Message | None,
    subjects_of: Subjects,
    context: grpc.aio.ServicerContext,
    service: str = "",
) -> AsyncIterator[None]:
    """Time and trace the call, log its outcome once, and turn exceptions into statuses."""
    started = time.perf_counter()
    subjects = subjects_of(request)
    with _server_span(service, method, subjects, context) as span:
        try:
            yield
        except BaseException as exc:
            status = _failed(method, started, subjects, context, exc, span)
            if status is None:
                raise
            await context.abort(grpc.StatusCode[status[0]], status[1])
        else:
            _log_outcome(method, started, "OK", subjects, None)
            _end_span(span, "OK", None)


class _Succeeded:
    """A method's successful calls, recorded at the least cost: the kubelet's small calls
    (Version, Status, the lists) are a few hundred microseconds in all, so the metric
    children are looked up once and the request's subjects are read only when logged."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.requests = node_metrics.GRPC_REQUESTS.labels(method, "OK")
        self.duration = node_metrics.GRPC_DURATION.labels(method)
        self.quiet = method in QUIET_RPCS

    def record(self, started: float, request: Message, subjects_of: Subjects) -> None:
        seconds = time.perf_counter() - started
        self.requests.inc()
        self.duration.observe(seconds)
        if self.quiet and not log_setup.enabled("debug"):
            return
        emit = log.debug if self.quiet else log.info
        ms = round(seconds * 1000, 3)
        emit("rpc", method=self.method, duration_ms=ms, code="OK", **subjects_of(request))


def _wrap_unary(method: str, fn: UnaryHandler, subjects_of: Subjects, service: str = "") -> UnaryHandler:
    succeeded = _Succeeded(method)

    async def call(request: Message, context: grpc.aio.ServicerContext) -> Message:
        if tracing.enabled():
            async with _outcome(method, request, subjects_of, context, service):
                return await fn(request, context)
            raise AssertionError("unreachable: _outcome re-raises or aborts")
        # Without tracing, no context manager: the same outcome, inline.
        started = time.perf_counter()
        try:
            response = await fn(request, context)
        except BaseException as exc:
            status = _failed(method, started, subjects_of(request), context, exc, tracing.INVALID_SPAN)
            if status is None:
                raise
            await context.abort(grpc.StatusCode[status[0]], status[1])
            raise AssertionError("unreachable: abort raises") from None
        succeeded.record(started, request, subjects_of)
        return response

    return call


def _wrap_stream(method: str, fn: StreamHandler, subjects_of: Subjects, service: str = "") -> StreamHandler:
    async def call(request: Message, context: grpc.aio.ServicerContext) -> AsyncIterator[Message]:
        async with _outcome(method, request, subjects_of, context, service):
            async for item in fn(request, context):
                yield item

    return call


def _unimplemented(service: str, method: str, streaming: bool) -> Callable[..., Any]:
    message = f"{service}.{method} is not implemented by crib yet"
    if streaming:

        async def stream(request: Message, context: grpc.aio.ServicerContext) -> AsyncIterator[Message]:
            raise Unimplemented(message)
            yield  # pragma: no cover - makes this an async generator

        return stream

    async def unary(request: Message, context: grpc.aio.ServicerContext) -> Message:
        raise Unimplemented(message)

    return unary


def service_descriptor(name: str, module: ModuleType = api_pb2) -> ServiceDescriptor:
    return module.DESCRIPTOR.services_by_name[name]


def _wrap_client_stream(method: str, fn: ClientStreamHandler, service: str = "") -> ClientStreamHandler:
    async def call(requests: AsyncIterator[Message], context: grpc.aio.ServicerContext) -> Message:
        async with _outcome(method, None, lambda _: {}, context, service):
            return await fn(requests, context)
        raise AssertionError("unreachable: _outcome re-raises or aborts")

    return call


def _serializer(response_cls: type[Message]) -> Callable[[Any], bytes]:
    """Messages are serialized; bytes are a response serialized already (the cached list replies)."""
    serialize = response_cls.SerializeToString

    def to_bytes(response: Any) -> bytes:
        return response if isinstance(response, bytes) else serialize(response)

    return to_bytes


def generic_handler(
    service_name: str, *servicers: object, module: ModuleType = api_pb2
) -> grpc.GenericRpcHandler:
    """A handler for every method of `service_name` in `module` (a generated _pb2): the
    coroutine named like the RPC on the servicer that has one, UNIMPLEMENTED where none has."""
    service = service_descriptor(service_name, module)
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for m in service.methods:
        request_cls = getattr(module, m.input_type.name)
        response_cls = getattr(module, m.output_type.name)
        owners = [s for s in servicers if hasattr(s, m.name)]
        if len(owners) > 1:
            raise TypeError(f"{service_name}.{m.name} is defined by more than one servicer")
        fn = getattr(owners[0], m.name) if owners else None
        if m.client_streaming:
            if m.server_streaming or fn is None:
                raise TypeError(f"{service_name}.{m.name}: only implemented client-streaming RPCs are served")
            handlers[m.name] = grpc.stream_unary_rpc_method_handler(
                _wrap_client_stream(m.name, fn, service.full_name),
                request_deserializer=request_cls.FromString,
                response_serializer=_serializer(response_cls),
            )
            continue
        fn = fn or _unimplemented(service_name, m.name, m.server_streaming)
        subjects = _subjects_for(m.input_type)
        if m.server_streaming:
            handlers[m.name] = grpc.unary_stream_rpc_method_handler(
                _wrap_stream(m.name, fn, subjects, service.full_name),
                request_deserializer=request_cls.FromString,
                response_serializer=_serializer(response_cls),
            )
        else:
            handlers[m.name] = grpc.unary_unary_rpc_method_handler(
                _wrap_unary(m.name, fn, subjects, service.full_name),
                request_deserializer=request_cls.FromString,
                response_serializer=_serializer(response_cls),
            )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
