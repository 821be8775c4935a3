"""The streaming server's pieces without containers: tokens, statuses, and a loopback round trip."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from crib.errors import NotFound, ResourceExhausted
from crib.proto.cri import api_pb2
from crib.streaming import client, remotecommand, tokens
from crib.streaming.handler import _query_ports
from crib.streaming.server import Backend, StreamingServer

# --- tokens -------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(tokens.time, "monotonic", c)
    return c


def test_a_token_is_single_use_and_of_its_own_kind(clock: Clock) -> None:
    cache = tokens.TokenCache()
    token = cache.put("exec", "request")
    assert len(token) == tokens.TOKEN_LENGTH and token.isalnum()
    assert cache.take("attach", token) is None  # another kind: not consumed either
    entry = cache.take("exec", token)
    assert entry is not None and entry.request == "request"
    assert cache.take("exec", token) is None


def test_a_token_expires_after_its_minute(clock: Clock) -> None:
    cache = tokens.TokenCache()
    early, late = cache.put("exec", 1), None
    clock.now += 30
    late = cache.put("exec", 2)
    clock.now += 30  # early is 60 s old
    assert cache.take("exec", early) is None
    assert cache.take("exec", late) is not None


def test_at_most_1000_wait_and_expired_ones_make_room(clock: Clock) -> None:
    cache = tokens.TokenCache()
    for i in range(tokens.MAX_PENDING):
        cache.put("portforward", i)
    with pytest.raises(ResourceExhausted):
        cache.put("portforward", "one too many")
    clock.now += tokens.TTL_S
    cache.put("portforward", "room again")
    assert len(cache) == 1


# --- statuses and query ports -------------------------------------------------------------------


def test_the_v4_status_carries_the_exit_code_both_ways() -> None:
    failure = remotecommand.status_json(remotecommand.exit_status(["sh"], 3))
    assert client.result_from_error_stream(failure, "v4.channel.k8s.io") == client.CommandResult(3)
    success = remotecommand.status_json(remotecommand.success_status())
    assert client.result_from_error_stream(success, "v5.channel.k8s.io") == client.CommandResult(0)
    internal = remotecommand.status_json(remotecommand.error_status("no such container"))
    assert client.result_from_error_stream(internal, "v4.channel.k8s.io") == client.CommandResult(
        1, "no such container"
    )
    # Older protocols: the text only.
    assert client.result_from_error_stream(b"exit code 3", "v2.channel.k8s.io") == client.CommandResult(
        1, "exit code 3"
    )
    assert client.result_from_error_stream(b"", "channel.k8s.io") == client.CommandResult(0)


def test_query_ports() -> None:
    assert _query_ports(b"/portforward/abc?port=80&port=8080") == [80, 8080]
    assert _query_ports(b"/portforward/abc") == []
    for bad in (b"/p/a?port=x", b"/p/a?port=0", b"/p/a?port=65536"):
        with pytest.raises(ValueError):
            _query_ports(bad)


# --- port-forward round trips on loopback -------------------------------------------------------


async def _echo_server() -> tuple[asyncio.Server, int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _backend(open_port: int) -> Backend:
    async def connect(req: Any, port: int) -> socket.socket:
        if port != open_port:
            raise NotFound(f"connection to port {port} refused")
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setblocking(False)
        return sock

    async def unused(*_: Any) -> Any:
        raise AssertionError("not in these tests")

    return Backend(start_exec=unused, attach=unused, attach_resize=lambda *_: None, connect=connect)


@pytest.mark.parametrize("transport", ["spdy", "websocket"])
async def test_port_forward_round_trip_and_refusal(transport: str) -> None:
    echo, port = await _echo_server()
    server = StreamingServer("127.0.0.1", 0, _backend(port))
    await server.start()
    try:
        url = server.url("portforward", api_pb2.PortForwardRequest(pod_sandbox_id="p"))
        forwarder = await client.SpdyPortForwarder.connect(url, transport=transport)
        try:
            refused = await forwarder.open(port + 1)
            assert "refused" in await refused.error()
            conns = [await forwarder.open(port) for _ in range(3)]
            for i, conn in enumerate(conns):
                await conn.write(b"x" * (i + 1) * 100000)
                await conn.close_write()
            for i, conn in enumerate(conns):
                got = b""
                while chunk := await conn.read():
                    got += chunk
                assert got == b"x" * (i + 1) * 100000
                assert await conn.error() == ""
        finally:
            await forwarder.close()
        # The token was used: a second session is refused with 404.
        with pytest.raises(client.StreamingError) as info:
            await client.SpdyPortForwarder.connect(url, transport=transport)
        assert info.value.status == 404
    finally:
        await server.close()
        echo.close()
        await echo.wait_closed()


async def test_a_protocol_header_that_is_not_utf8_is_refused_with_403() -> None:
    # Found by e2e/test_fuzz_streaming.py: a strict decode raised, and the session failed
    # unanswered instead of refusing the upgrade.
    server = StreamingServer("127.0.0.1", 0, _backend(0))
    await server.start()
    try:
        url = server.url("exec", api_pb2.ExecRequest(container_id="c", cmd=["true"], stdout=True))
        target = url.split(str(server.port), 1)[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            f"POST {target} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n".encode()
            + b"X-Stream-Protocol-Version: v4.\xe4channel.k8s.io\r\n\r\n"
        )
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 403 ")
            await reader.read()  # then it closes
        writer.close()
    finally:
        await server.close()
