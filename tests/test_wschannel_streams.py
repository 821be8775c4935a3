"""The Kubernetes WebSocket channel protocol: readiness, bulk data, port-forward, close and timeouts.

Clients are ChannelClient or a bare wsproto client, against tests.wschannel_loopback's server.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random

import pytest
from wsproto.events import (
    Ping,
    Pong,
)

from crib.streaming.wschannel import (
    ERROR,
    RESIZE,
    STDERR,
    STDIN,
    STDOUT,
    V4_BASE64_CHANNEL,
    V4_CHANNEL,
    V5_CHANNEL,
    ChannelConnection,
    ChannelConnectionClosed,
    ChannelSettings,
    TerminalSize,
    port_header,
)
from crib.streaming.wschannel_upgrade import (
    ChannelClient,
)
from tests.wschannel_loopback import RawClient, echo, serve

pytestmark = pytest.mark.timeout(60)
# -- readiness --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stdout", "stderr", "channel"), [(True, True, STDOUT), (False, True, STDERR), (False, False, ERROR)]
)
@pytest.mark.parametrize("protocol", [V5_CHANNEL, V4_BASE64_CHANNEL])
async def test_readiness_message_on_lowest_writable_channel(
    stdout: bool, stderr: bool, channel: int, protocol: str
) -> None:
    async def app(conn: ChannelConnection) -> None:
        await conn.write(STDOUT, b"dropped unless stdout is on")
        await conn.write(ERROR, b"x")

    async with serve(app, stdout=stdout, stderr=stderr) as served:
        raw, _ = await RawClient.connect(served.port, [protocol])
        first = await raw.recv()
        if protocol == V5_CHANNEL:
            assert first == bytes([channel])
        else:
            assert first == str(channel)
        # stdout is written only when enabled; otherwise the write is dropped (wsstream)
        expected = (STDOUT, b"dropped unless stdout is on") if stdout else (ERROR, b"x")
        if protocol == V5_CHANNEL:
            assert await raw.recv() == bytes([expected[0]]) + expected[1]
        else:
            assert await raw.recv() == str(expected[0]) + base64.b64encode(expected[1]).decode()
        raw.close()


async def test_portforward_sends_port_headers_not_an_empty_message() -> None:
    async def app(conn: ChannelConnection) -> None:
        await asyncio.sleep(0)

    async with serve(app, ports=[8080, 5432]) as served:
        raw, _ = await RawClient.connect(served.port, [V4_CHANNEL])
        got = [await raw.recv() for _ in range(4)]
        assert got == [
            b"\x00" + port_header(8080),
            b"\x01" + port_header(8080),
            b"\x02" + port_header(5432),
            b"\x03" + port_header(5432),
        ]
        raw.close()


# -- bulk data --------------------------------------------------------------------------------


async def _pump(client: ChannelClient, payload: bytes, close_stdin: bool) -> None:
    rng = random.Random(7)
    offset = 0
    while offset < len(payload):
        step = rng.randint(1, 200_000)
        await client.write(STDIN, payload[offset : offset + step])
        offset += step
    if close_stdin:
        await client.close_channel(STDIN)


async def test_five_megabytes_through_stdin_and_back_through_stdout() -> None:
    payload = os.urandom(5 * 1024 * 1024)
    async with serve(echo) as served:
        client = await ChannelClient.connect(served.url, [V5_CHANNEL])
        pump = asyncio.create_task(_pump(client, payload, close_stdin=True))
        received = await client.read_all(STDOUT)
        await pump
        assert len(received) == len(payload)
        assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
        assert await client.read_all(ERROR) == b'{"metadata":{},"status":"Success"}'
        await client.wait_closed()
        assert client.close_code == 1000


async def test_one_megabyte_round_trip_in_base64() -> None:
    payload = os.urandom(1024 * 1024)
    async with serve(lambda conn: echo(conn, limit=len(payload))) as served:
        client = await ChannelClient.connect(served.url, [V4_BASE64_CHANNEL])
        pump = asyncio.create_task(_pump(client, payload, close_stdin=False))
        received = await client.read_all(STDOUT)
        await pump
        assert received == payload


async def test_a_slow_consumer_pushes_back_on_the_sender() -> None:
    release = asyncio.Event()

    async def app(conn: ChannelConnection) -> None:
        await release.wait()
        await echo(conn)

    payload = os.urandom(24 * 1024 * 1024)
    async with serve(app, settings=ChannelSettings(read_limit=64 * 1024)) as served:
        client = await ChannelClient.connect(served.url, [V5_CHANNEL])
        sink = asyncio.create_task(client.read_all(STDOUT))
        pump = asyncio.create_task(_pump(client, payload, close_stdin=True))
        done, _ = await asyncio.wait([pump], timeout=0.5)
        assert not done, "24 MiB went into a server that reads nothing"
        release.set()
        await pump
        assert await sink == payload
        await client.wait_closed()


async def test_oversized_message_closes_with_1009() -> None:
    async with serve(echo, settings=ChannelSettings(max_message_size=1024)) as served:
        client = await ChannelClient.connect(served.url, [V5_CHANNEL])
        await client.send_message(b"\x00" + b"y" * 2000)
        await client.wait_closed()
        assert client.close_code == 1009


# -- port-forward -----------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [V4_CHANNEL, V4_BASE64_CHANNEL])
async def test_portforward_channel_pairs(protocol: str) -> None:
    ports = [8080, 5432, 65535]

    async def forward(conn: ChannelConnection, i: int) -> None:
        data = await conn.read_exactly(2 * i, 5)
        await conn.write(2 * i, data.upper() + str(ports[i]).encode())
        await conn.write(2 * i + 1, b"error for port %d" % ports[i])

    async def app(conn: ChannelConnection) -> None:
        assert conn.readable(0) and conn.writable(0) and conn.writable(1) and not conn.readable(1)
        await asyncio.gather(*(forward(conn, i) for i in range(len(ports))))

    async with serve(app, ports=ports) as served:
        client = await ChannelClient.connect(served.url, [protocol])
        for i, port in enumerate(ports):
            assert await client.read_exactly(2 * i, 2) == port_header(port)
            assert await client.read_exactly(2 * i + 1, 2) == port_header(port)
        await client.write(1, b"the server does not read error channels")
        for i in reversed(range(len(ports))):
            await client.write(2 * i, b"hello")
        for i, port in enumerate(ports):
            expected = b"HELLO" + str(port).encode()
            assert await client.read_exactly(2 * i, len(expected)) == expected
        for i, port in enumerate(ports):
            assert await client.read_all(2 * i + 1) == b"error for port %d" % port
        assert client.close_code == 1000


# -- control frames, close, timeouts, disconnects ----------------------------------------------


async def test_ping_pong() -> None:
    async def app(conn: ChannelConnection) -> None:
        assert await conn.ping(b"server") >= 0  # the client answers too
        await conn.write(STDOUT, await conn.read_exactly(STDIN, 2))

    async with serve(app) as served:
        raw, _ = await RawClient.connect(served.port, [V5_CHANNEL])
        assert await raw.recv() == b"\x01"
        ping = await raw.recv()
        assert isinstance(ping, Ping) and ping.payload == b"server"
        raw.writer.write(raw.ws.send(ping.response()))
        raw.writer.write(raw.ws.send(Ping(payload=b"abc")))
        event = await raw.recv()
        assert isinstance(event, Pong) and event.payload == b"abc"
        raw.send(b"\x00ok")
        assert await raw.recv() == b"\x01ok"
        raw.close()

    async with serve(app) as served:
        client = await ChannelClient.connect(served.url, [V5_CHANNEL])
        rtt = await client.ping()
        assert 0 <= rtt < 5
        await client.write(STDIN, b"ok")
        assert await client.read_all(STDOUT) == b"ok"


async def test_server_close_handshake() -> None:
    async def app(conn: ChannelConnection) -> None:
        await conn.write(STDOUT, b"bye")

    async with serve(app) as served:
        client = await ChannelClient.connect(served.url, [V5_CHANNEL])
        assert await client.read_all(STDOUT) == b"bye"
        for channel in (STDIN, STDERR, ERROR, RESIZE):
            assert await client.read(channel) == b""
        await client.wait_closed()
        assert client.close_code == 1000
        server = await served.conn()
        await server.wait_closed()
        assert server.close_code == 1000  # the client's reply
        with pytest.raises(ChannelConnectionClosed):
            await client.write(STDIN, b"late")


async def test_client_close_ends_the_server_side() -> None:
    seen: list[object] = []

    async def app(conn: ChannelConnection) -> None:
        seen.append(await conn.read_all(STDIN))
        await conn.wait_closed()
        try:
            await conn.write(STDOUT, b"too late")
        except ChannelConnectionClosed:
            seen.append("closed")

    async with serve(app) as served:
        client = await ChannelClient.connect(served.url, [V4_CHANNEL])
        await client.write(STDIN, b"last words")
        await client.close(code=1000)
        assert client.closed
    assert seen == [b"last words", "closed"]


async def test_idle_timeout_ends_the_connection() -> None:
    async def app(conn: ChannelConnection) -> None:
        assert await conn.read(STDIN) == b""
        assert conn.close_reason == "idle timeout"

    async with serve(app, settings=ChannelSettings(idle_timeout=0.3)) as served:
        client = await ChannelClient.connect(served.url, [V5_CHANNEL])
        start = asyncio.get_running_loop().time()
        assert await client.read(STDOUT) == b""
        assert asyncio.get_running_loop().time() - start < 5
        await client.wait_closed()
        assert client.close_code == 1006


async def test_resize_events() -> None:
    sizes: list[TerminalSize] = []

    async def app(conn: ChannelConnection) -> None:
        sizes.extend([size async for size in conn.resize_events()])

    async with serve(app) as served:
        client = await ChannelClient.connect(served.url, [V5_CHANNEL])
        await client.write(RESIZE, b'{"Width":80,"Height":24}\n')
        await client.write(RESIZE, b'{"Width":132,')
        await client.write(RESIZE, b'"Height":50}\n{"Width":1,"Height":2}')
        await client.close_channel(RESIZE)
        await client.wait_closed()
    assert sizes == [TerminalSize(80, 24), TerminalSize(132, 50), TerminalSize(1, 2)]


def _reader_tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t.get_name().startswith("wschannel-") and not t.done()}


@pytest.mark.parametrize("server_writing", [True, False])
async def test_client_vanishing_mid_stream(server_writing: bool) -> None:
    report: dict[str, object] = {}
    stdin_seen = asyncio.Event()

    async def app(conn: ChannelConnection) -> None:
        first = await conn.read_exactly(STDIN, 7)
        stdin_seen.set()
        if server_writing:
            try:
                while True:
                    await conn.write(STDOUT, b"z" * 65536)
            except ChannelConnectionClosed:
                report["write"] = "closed"
        rest = await conn.read_all(STDIN)
        report["stdin"] = first + rest
        report["eof"] = [await conn.read(ch) for ch in range(5)]
        await conn.wait_closed()
        report["code"] = conn.close_code

    before = _reader_tasks()
    async with serve(app) as served:
        client = await ChannelClient.connect(served.url, [V5_CHANNEL])
        await client.write(STDIN, b"partialtail")
        await stdin_seen.wait()
        if server_writing:
            assert len(await client.read_exactly(STDOUT, 1 << 20)) == 1 << 20
        client.abort()  # the client process dies: no close frame, no CLOSE signal
        await client.wait_closed()
    assert report["stdin"] == b"partialtail"
    assert report["eof"] == [b""] * 5
    assert report["code"] == 1006
    if server_writing:
        assert report["write"] == "closed"
    await asyncio.sleep(0)
    assert _reader_tasks() == before == set()
    assert {t for t in asyncio.all_tasks() if t is not asyncio.current_task()} == set()
