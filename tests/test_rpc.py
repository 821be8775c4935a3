"""The RPC layer: every CRI method registered, errors mapped, one log event per call."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest

from crib import errors, log_setup
from crib.cri_server.rpc import generic_handler, service_descriptor
from crib.proto.cri import api_pb2, api_pb2_grpc


class FakeRuntime:
    async def Version(self, request, context):
        return api_pb2.VersionResponse(runtime_name="fake")

    async def PodSandboxStatus(self, request, context):
        raise errors.NotFound(f"pod sandbox {request.pod_sandbox_id!r} not found")

    async def ContainerStatus(self, request, context):
        raise ValueError("a bug")

    async def StopContainer(self, request, context):
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "aborted by the handler")

    async def StreamContainers(self, request, context) -> AsyncIterator:
        for i in range(3):
            yield api_pb2.StreamContainersResponse(containers=[api_pb2.Container(id=f"c{i}")])

    async def StreamImages(self, request, context) -> AsyncIterator:
        yield api_pb2.StreamImagesResponse()
        raise errors.InvalidArgument("bad filter")


class LogSink(io.StringIO):
    """Captures log lines and wakes waiters: the server logs on this same loop."""

    def __init__(self) -> None:
        super().__init__()
        self.written = asyncio.Event()

    def write(self, text: str) -> int:
        self.written.set()
        return super().write(text)

    async def wait_for(self, predicate: Callable[[list[dict]], bool]) -> list[dict]:
        async with asyncio.timeout(5.0):
            while not predicate(events := _events(self)):
                self.written.clear()
                await self.written.wait()
        return events


@pytest.fixture
def log_stream() -> LogSink:
    stream = LogSink()
    log_setup.configure("debug", "json", stream, cache=False)
    yield stream
    log_setup.configure("info", "json", None, cache=False)


def _events(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


@pytest.fixture
async def channel(tmp_path: Path) -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (generic_handler("RuntimeService", FakeRuntime()), generic_handler("ImageService", object()))
    )
    sock = tmp_path / "t.sock"
    server.add_insecure_port(f"unix://{sock}")
    await server.start()
    async with grpc.aio.insecure_channel(f"unix://{sock}") as ch:
        yield ch
    await server.stop(None)


async def test_every_rpc_is_registered_and_unimplemented_ones_say_so(channel: grpc.aio.Channel) -> None:
    seen = 0
    for service_name, fake in (("RuntimeService", FakeRuntime), ("ImageService", object)):
        service = service_descriptor(service_name)
        for m in service.methods:
            if hasattr(fake, m.name):
                continue
            request_cls = getattr(api_pb2, m.input_type.name)
            response_cls = getattr(api_pb2, m.output_type.name)
            path = f"/{service.full_name}/{m.name}"
            if m.server_streaming:
                call = channel.unary_stream(path, request_cls.SerializeToString, response_cls.FromString)
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    async for _ in call(request_cls(), timeout=5):
                        pass
            else:
                call = channel.unary_unary(path, request_cls.SerializeToString, response_cls.FromString)
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call(request_cls(), timeout=5)
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED, m.name
            assert info.value.details() == f"{service_name}.{m.name} is not implemented by crib yet"
            seen += 1
    assert seen == 41 - 5


async def test_domain_errors_bugs_and_aborts_keep_their_codes(
    channel: grpc.aio.Channel, log_stream: LogSink
) -> None:
    stub = api_pb2_grpc.RuntimeServiceStub(channel)
    assert (await stub.Version(api_pb2.VersionRequest(), timeout=5)).runtime_name == "fake"

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id="p1"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "'p1' not found" in info.value.details()

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ContainerStatus(api_pb2.ContainerStatusRequest(container_id="c1"), timeout=5)
    # A bug is INTERNAL with its cause, never UNKNOWN.
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "ValueError: a bug" in info.value.details()

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.StopContainer(api_pb2.StopContainerRequest(container_id="c2"), timeout=5)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    # A handler's own abort sends the status before the wrapper logs it.
    events = await log_stream.wait_for(lambda evs: sum(e["event"] == "rpc" for e in evs) >= 4)
    rpcs = [e for e in events if e["event"] == "rpc"]
    assert [(e["method"], e["code"]) for e in rpcs] == [
        ("Version", "OK"),
        ("PodSandboxStatus", "NOT_FOUND"),
        ("ContainerStatus", "INTERNAL"),
        ("StopContainer", "FAILED_PRECONDITION"),
    ]
    assert rpcs[1]["pod"] == "p1"
    assert rpcs[2]["container"] == "c1"
    assert rpcs[2]["level"] == "warning"
    assert all(isinstance(e["duration_ms"], float) and e["duration_ms"] >= 0 for e in rpcs)
    crash = [e for e in _events(log_stream) if e["event"] == "rpc.crashed"]
    assert len(crash) == 1 and "ValueError: a bug" in crash[0]["exception"]


async def test_streams_deliver_items_then_the_error(channel: grpc.aio.Channel, log_stream: LogSink) -> None:
    stub = api_pb2_grpc.RuntimeServiceStub(channel)
    got = [
        r.containers[0].id async for r in stub.StreamContainers(api_pb2.StreamContainersRequest(), timeout=5)
    ]
    assert got == ["c0", "c1", "c2"]

    images = api_pb2_grpc.ImageServiceStub(channel)
    # The fake ImageService has no StreamImages: it is UNIMPLEMENTED there.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in images.StreamImages(api_pb2.StreamImagesRequest(), timeout=5):
            pass
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_a_stream_that_fails_midway_ends_with_the_domain_code(tmp_path: Path) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((generic_handler("ImageService", FakeRuntime()),))
    sock = tmp_path / "i.sock"
    server.add_insecure_port(f"unix://{sock}")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"unix://{sock}") as ch:
            stub = api_pb2_grpc.ImageServiceStub(ch)
            got = []
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for r in stub.StreamImages(api_pb2.StreamImagesRequest(), timeout=5):
                    got.append(r)
            assert len(got) == 1
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert info.value.details() == "bad filter"
    finally:
        await server.stop(None)


async def test_a_huge_id_is_echoed_capped_in_the_status_and_the_log(
    channel: grpc.aio.Channel, log_stream: LogSink
) -> None:
    # Found by e2e/test_fuzz_rpc.py: a 565 KB container_id, echoed whole into the log line and
    # the status, blocked the event loop for over 100 ms.
    stub = api_pb2_grpc.RuntimeServiceStub(channel)
    huge = "p" * 1_000_000
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=huge), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert len(info.value.details()) < 1000
    assert info.value.details().endswith("... (1000024 characters)")
    events = await log_stream.wait_for(lambda evs: any(e["event"] == "rpc" for e in evs))
    (rpc,) = [e for e in events if e["event"] == "rpc"]
    assert len(rpc["pod"]) < 1000 and len(rpc["error"]) < 1000
