"""Tracing: one server span per RPC, continuing the caller's trace, with the domain's spans under it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from crib import errors, tracing
from crib.config import TracingSection
from crib.cri_server.rpc import generic_handler
from crib.proto.cri import api_pb2, api_pb2_grpc
from crib.runtime.oci_runtime import OCIRuntime
from tests.test_rpc import FakeRuntime as RpcFakeRuntime

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


class FakeRuntime(RpcFakeRuntime):
    """test_rpc's fake (Version answers, PodSandboxStatus is NOT_FOUND, ContainerStatus a bug),
    with calls that go through the domain's spans."""

    def __init__(self, tmp_path: Path) -> None:
        # /bin/true takes any arguments: a "runtime" whose every call succeeds.
        self.oci = OCIRuntime("runc", "/bin/true", tmp_path / "runc")

    async def StartContainer(self, request, context):
        with tracing.span("domain.step", **{"crib.container_id": request.container_id}):
            await asyncio.sleep(0)
            await self.oci.start(request.container_id)
        return api_pb2.StartContainerResponse()

    async def StreamContainers(self, request, context) -> AsyncIterator:
        for i in range(2):
            yield api_pb2.StreamContainersResponse(containers=[api_pb2.Container(id=f"c{i}")])


class Exporter(InMemorySpanExporter):
    """Says when a span arrives: the spans are exported on the server's loop, the test's own."""

    def __init__(self) -> None:
        super().__init__()
        self.exported = asyncio.Event()

    def export(self, spans):  # type: ignore[no-untyped-def]
        result = super().export(spans)
        self.exported.set()
        return result


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    exp = Exporter()
    tracing.setup(TracingSection(), exp)
    yield exp
    tracing.shutdown()


@pytest.fixture
async def stub(tmp_path: Path) -> AsyncIterator[api_pb2_grpc.RuntimeServiceStub]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((generic_handler("RuntimeService", FakeRuntime(tmp_path)),))
    sock = tmp_path / "t.sock"
    server.add_insecure_port(f"unix://{sock}")
    await server.start()
    async with grpc.aio.insecure_channel(f"unix://{sock}") as ch:
        yield api_pb2_grpc.RuntimeServiceStub(ch)
    await server.stop(None)


async def _spans(exporter: Exporter, count: int) -> list[ReadableSpan]:
    # A server span ends as the handler returns, about when the reply goes out.
    async with asyncio.timeout(5):
        while len(spans := exporter.get_finished_spans()) < count:
            exporter.exported.clear()
            await exporter.exported.wait()
    return list(spans)


async def test_an_rpc_is_one_server_span(exporter: Exporter, stub) -> None:
    await stub.Version(api_pb2.VersionRequest(), timeout=5)
    (span,) = await _spans(exporter, 1)
    assert span.name == "runtime.v1.RuntimeService/Version"
    assert span.kind == SpanKind.SERVER
    assert span.parent is None
    assert span.status.status_code == StatusCode.UNSET
    assert dict(span.attributes or {}) == {
        "rpc.system": "grpc",
        "rpc.service": "runtime.v1.RuntimeService",
        "rpc.method": "Version",
        "rpc.grpc.status_code": 0,
    }
    assert span.resource.attributes["service.name"] == "cribd"


async def test_a_failed_call_is_an_error_with_its_message(exporter: Exporter, stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id="p1"), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.ContainerStatus(api_pb2.ContainerStatusRequest(container_id="c1"), timeout=5)
    not_found, internal = await _spans(exporter, 2)

    assert not_found.name == "runtime.v1.RuntimeService/PodSandboxStatus"
    assert not_found.attributes["crib.pod_sandbox_id"] == "p1"
    assert not_found.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert not_found.status.status_code == StatusCode.ERROR
    assert not_found.status.description == "pod sandbox 'p1' not found"

    assert internal.attributes["crib.container_id"] == "c1"
    assert internal.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INTERNAL.value[0]
    assert internal.status.status_code == StatusCode.ERROR
    assert "ValueError: a bug" in (internal.status.description or "")
    # The abort that carries the status is not an exception of the call's own.
    assert not internal.events


async def test_a_traceparent_in_the_metadata_makes_the_span_its_child(exporter: Exporter, stub) -> None:
    await stub.Version(
        api_pb2.VersionRequest(), timeout=5, metadata=[("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01")]
    )
    (span,) = await _spans(exporter, 1)
    assert span.context.trace_id == int(TRACE_ID, 16)
    assert span.parent is not None and span.parent.span_id == int(PARENT_ID, 16)
    assert span.parent.is_remote


async def test_spans_opened_under_an_rpc_are_its_children(exporter: Exporter, stub) -> None:
    await stub.StartContainer(api_pb2.StartContainerRequest(container_id="c9"), timeout=5)
    runc, step, rpc = await _spans(exporter, 3)
    assert rpc.name == "runtime.v1.RuntimeService/StartContainer"
    assert rpc.attributes["crib.container_id"] == "c9"
    assert step.name == "domain.step" and step.parent.span_id == rpc.context.span_id
    assert runc.name == "runc start" and runc.parent.span_id == step.context.span_id
    assert runc.attributes["process.command_args"] == ("start", "c9")
    assert {s.context.trace_id for s in (runc, step, rpc)} == {rpc.context.trace_id}


async def test_a_stream_is_one_span_too(exporter: Exporter, stub) -> None:
    got = [r async for r in stub.StreamContainers(api_pb2.StreamContainersRequest(), timeout=5)]
    assert len(got) == 2
    (span,) = await _spans(exporter, 1)
    assert span.name == "runtime.v1.RuntimeService/StreamContainers"
    assert span.attributes["rpc.grpc.status_code"] == 0


async def test_the_sampling_ratio_applies_to_new_traces_only(stub) -> None:
    exp = Exporter()
    tracing.setup(TracingSection(sampling_ratio=0.0), exp)
    try:
        await stub.Version(api_pb2.VersionRequest(), timeout=5)
        # The kubelet sampled its trace: the call is recorded whatever the ratio.
        await stub.Version(
            api_pb2.VersionRequest(), timeout=5, metadata=[("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01")]
        )
        (span,) = await _spans(exp, 1)
        assert span.context.trace_id == int(TRACE_ID, 16)
    finally:
        tracing.shutdown()


async def test_unconfigured_tracing_records_nothing(stub) -> None:
    exp = InMemorySpanExporter()
    tracing.setup(TracingSection(), exp)
    tracing.setup(TracingSection())  # off again: no endpoint, no exporter
    assert not tracing.enabled()
    await stub.StartContainer(api_pb2.StartContainerRequest(container_id="c9"), timeout=5)
    await stub.Version(
        api_pb2.VersionRequest(), timeout=5, metadata=[("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01")]
    )
    assert exp.get_finished_spans() == ()
    # Off, a span is the one shared null context: nothing is built per call.
    assert tracing.span("x", a=1) is tracing.NOOP
    assert tracing.server_span("x", None, {}) is tracing.NOOP
    with tracing.span("x") as span:
        assert not span.is_recording()


def test_an_exception_in_a_span_marks_it_failed(exporter: Exporter) -> None:
    with pytest.raises(errors.Unavailable), tracing.span("cni.add", network="net", absent=None):
        raise errors.Unavailable("no plugin")
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert dict(span.attributes or {}) == {"network": "net"}


def test_shutdown_is_bounded_when_the_collector_is_unreachable() -> None:
    # Port 1 on loopback: refused at once, so the exporter retries with backoff.
    tracing.setup(TracingSection(endpoint="http://127.0.0.1:1/v1/traces"))
    assert tracing.enabled()
    started = time.monotonic()
    with tracing.span("lost"):
        pass
    assert time.monotonic() - started < 0.1  # the span is queued, not sent in the caller's time
    tracing.shutdown(timeout=1.0)
    assert time.monotonic() - started < 3.0
    assert not tracing.enabled()
