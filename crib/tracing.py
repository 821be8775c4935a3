"""Tracing with OpenTelemetry (`[tracing] endpoint`), off by default.

Every layer opens its spans with `span()`; the RPC wrapper opens the server span of
each call with `server_span()`, a child of the trace the kubelet sends in the call's
metadata (W3C `traceparent`). Unconfigured, both return one shared null context:
no span object, no context switch, nothing recorded, so a call pays one function
call. Configured, spans go to an OTLP/HTTP collector from a background thread
(BatchSpanProcessor), so a slow or absent collector never holds up a call; at exit
`shutdown()` flushes what is queued for a bounded time.

The provider is this module's own, never OpenTelemetry's global one: `setup()` can
then run again (the tests do, with an in-memory exporter), and a library that
traces through the global API does not end up in cribd's traces.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from crib import __version__
from crib.config import TracingSection
from crib.log_setup import get_logger

if TYPE_CHECKING:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    from opentelemetry.util.types import AttributeValue

log = get_logger("crib.tracing")

# Bounds the exporter's HTTP request (with its retries) and the flush at exit: a daemon
# that is asked to stop must not wait on a collector that is gone.
EXPORT_TIMEOUT_S = 5.0
SHUTDOWN_TIMEOUT_S = 5.0

Metadata = Iterable[tuple[str, Any]]


class _NullSpan:
    """The span while tracing is off, as OpenTelemetry's INVALID_SPAN behaves: records nothing.

    crib's own, so that a cribd that does not trace never imports even the OpenTelemetry
    API (about 0.4 MB resident, issue 17); setup() imports it when tracing is on.
    """

    def is_recording(self) -> bool:
        return False

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def set_attributes(self, attributes: Any) -> None:
        pass

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        pass

    def set_status(self, status: Any, description: str | None = None) -> None:
        pass

    def record_exception(self, exception: BaseException, *args: Any, **kwargs: Any) -> None:
        pass

    def update_name(self, name: str) -> None:
        pass

    def end(self, end_time: int | None = None) -> None:
        pass


# What span() and server_span() return while tracing is off: one shared, reusable null context.
INVALID_SPAN: Span = _NullSpan()  # type: ignore[assignment]
NOOP: AbstractContextManager[Span] = contextlib.nullcontext(INVALID_SPAN)


class _State:
    tracer: trace.Tracer | None = None
    provider: TracerProvider | None = None
    propagator: TraceContextTextMapPropagator | None = None


_state = _State()


class _ToLog(logging.Handler):
    """The SDK's and exporter's own messages (a collector that refuses, a dropped batch) as
    cribd events, so cribd's log stays one JSON object a line."""

    def emit(self, record: logging.LogRecord) -> None:
        emit = log.error if record.levelno >= logging.ERROR else log.warning
        emit("tracing.sdk", message=record.getMessage(), logger=record.name)


def _route_sdk_logs() -> None:
    sdk = logging.getLogger("opentelemetry")
    if not any(isinstance(h, _ToLog) for h in sdk.handlers):
        sdk.addHandler(_ToLog(logging.WARNING))
        sdk.propagate = False


def enabled() -> bool:
    return _state.tracer is not None


def setup(config: TracingSection, exporter: SpanExporter | None = None) -> None:
    """Trace as configured; `exporter` (tests) is used instead of OTLP, span by span.

    No endpoint and no exporter: tracing stays off.
    """
    shutdown()
    if exporter is None and not config.endpoint:
        return
    # The SDK only where tracing is on: a node that does not trace keeps the memory.
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor  # noqa: PLC0415
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased  # noqa: PLC0415
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator  # noqa: PLC0415

    _route_sdk_logs()
    provider = TracerProvider(
        sampler=ParentBased(TraceIdRatioBased(config.sampling_ratio)),
        resource=Resource.create({"service.name": config.service_name, "service.version": __version__}),
        # shutdown() is called by the daemon with a bound; the SDK's own atexit hook waits up to 30 s.
        shutdown_on_exit=False,
    )
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        # Imported only when used: it brings `requests` and the OTLP protobuf modules along.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415

        otlp = OTLPSpanExporter(endpoint=config.endpoint, timeout=EXPORT_TIMEOUT_S)
        provider.add_span_processor(BatchSpanProcessor(otlp))
        log.info("tracing.enabled", endpoint=config.endpoint, sampling_ratio=config.sampling_ratio)
    _state.provider = provider
    _state.propagator = TraceContextTextMapPropagator()
    _state.tracer = provider.get_tracer("crib", __version__)


def shutdown(timeout: float = SHUTDOWN_TIMEOUT_S) -> None:
    """Export what is queued and stop, waiting at most `timeout` seconds."""
    provider, _state.provider, _state.tracer = _state.provider, None, None
    if provider is None:
        return
    # The SDK's shutdown has no deadline of its own (a batch being retried holds it);
    # a daemon thread left behind does not keep the process alive.
    worker = threading.Thread(target=provider.shutdown, name="tracing-shutdown", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        log.warning("tracing.flush_timeout", seconds=timeout)


def span(name: str, **attributes: AttributeValue | None) -> AbstractContextManager[Span]:
    """A child span of the current one for the `with` block; an exception sets it to ERROR.

    Attributes whose value is None are left out. Dotted names go in as `**{"a.b": v}`.
    """
    tracer = _state.tracer
    if tracer is None:
        return NOOP
    return tracer.start_as_current_span(name, attributes=_attributes(attributes))


def server_span(
    name: str, metadata: Callable[[], Metadata | None] | None, attributes: dict[str, AttributeValue | None]
) -> AbstractContextManager[Span]:
    """The span of one served call, continuing the trace of `metadata()` (the call's headers).

    Its status is the caller's to set (`set_error`): an exception out of the block is
    how gRPC aborts a call, not necessarily a failure of it.
    """
    tracer, propagator = _state.tracer, _state.propagator
    if tracer is None or propagator is None:
        return NOOP
    from opentelemetry.trace import SpanKind  # noqa: PLC0415  (imported by setup() already)

    carrier: dict[str, str] = {}
    for key, value in (metadata() if metadata is not None else None) or ():
        # Binary headers (`-bin`) carry bytes; trace context is text.
        if isinstance(value, str):
            carrier[key.lower()] = value
    return tracer.start_as_current_span(
        name,
        context=propagator.extract(carrier),
        kind=SpanKind.SERVER,
        attributes=_attributes(attributes),
        record_exception=False,
        set_status_on_exception=False,
    )


def set_error(s: Span, message: str) -> None:
    from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415  (a recording span: imported)

    s.set_status(Status(StatusCode.ERROR, message))


def _attributes(attributes: dict[str, AttributeValue | None]) -> dict[str, AttributeValue]:
    return {k: v for k, v in attributes.items() if v is not None}
