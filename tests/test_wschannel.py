"""The Kubernetes WebSocket channel protocol: negotiation, framing, v5 CLOSE, port-forward, lifecycle.

A loopback asyncio server parses each request with h11 and hands it to
crib.streaming.wschannel; clients are ChannelClient or, where the bytes on the
wire matter, a bare wsproto client.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import h11
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import FrameProtocol

from crib.streaming.wschannel import (
    BASE64_CHANNEL,
    CHANNEL,
    ERROR,
    PORTFORWARD_PROTOCOLS,
    REMOTECOMMAND_PROTOCOLS,
    RESIZE,
    STDERR,
    STDIN,
    STDOUT,
    V4_BASE64_CHANNEL,
    V4_CHANNEL,
    V5_CHANNEL,
    ChannelClient,
    ChannelConnection,
    ChannelConnectionClosed,
    ChannelSettings,
    TerminalSize,
    WebSocketHandshakeError,
    WebSocketRejected,
    accept_portforward,
    accept_remotecommand,
    choose_subprotocol,
    has_v4_status,
    is_websocket_request,
    negotiate,
    port_header,
    requested_subprotocols,
)

pytestmark = pytest.mark.timeout(60)

App = Callable[[ChannelConnection], Awaitable[None]]

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample key
KEY_ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


# -- a loopback streaming server ----------------------------------------------------------


async def read_request(reader: asyncio.StreamReader) -> tuple[h11.Request, bytes]:
    """The request as the streaming server will parse it, plus the bytes read past it."""
    conn = h11.Connection(h11.SERVER)
    request: h11.Request | None = None
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(65536))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            return request, conn.trailing_data[0]
        else:
            raise AssertionError(f"unexpected {event!r}")


@dataclass
class Served:
    url: str
    port: int
    conns: list[ChannelConnection] = field(default_factory=list)
    rejections: list[WebSocketRejected] = field(default_factory=list)
    app_errors: list[BaseException] = field(default_factory=list)
    handlers: set[asyncio.Task[None]] = field(default_factory=set)
    accepted: asyncio.Event = field(default_factory=asyncio.Event)
    rejected: asyncio.Event = field(default_factory=asyncio.Event)

    async def conn(self) -> ChannelConnection:
        await self.accepted.wait()
        return self.conns[0]


@contextlib.asynccontextmanager
async def serve(
    app: App,
    *,
    stdin: bool = True,
    stdout: bool = True,
    stderr: bool = True,
    ports: Sequence[int] | None = None,
    settings: ChannelSettings | None = None,
) -> AsyncIterator[Served]:
    """Exec/attach (or port-forward when `ports` is given) on 127.0.0.1, running `app` per connection."""
    served: Served

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        served.handlers.add(task)
        request, buffered = await read_request(reader)
        headers = list(request.headers)
        extra = {"settings": settings} if settings is not None else {}
        try:
            if ports is None:
                conn = await accept_remotecommand(
                    reader,
                    writer,
                    headers,
                    request.target,
                    buffered,
                    stdin=stdin,
                    stdout=stdout,
                    stderr=stderr,
                    method=request.method,
                    **extra,
                )
            else:
                conn = await accept_portforward(
                    reader, writer, headers, request.target, buffered, ports, method=request.method, **extra
                )
        except WebSocketRejected as exc:
            served.rejections.append(exc)
            served.rejected.set()
            return
        served.conns.append(conn)
        served.accepted.set()
        try:
            async with conn:
                await app(conn)
        except Exception as exc:
            served.app_errors.append(exc)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    served = Served(url=f"http://127.0.0.1:{port}/exec/abcdefgh", port=port)
    try:
        yield served
    finally:
        server.close()
        await server.wait_closed()
        if served.handlers:
            _, pending = await asyncio.wait(served.handlers, timeout=10)
            for task in pending:
                task.cancel()
            assert not pending, "a handler did not finish"
        for conn in served.conns:
            await asyncio.wait_for(conn.wait_closed(), 10)
    assert not served.app_errors, served.app_errors


async def echo(conn: ChannelConnection, limit: int | None = None) -> None:
    """cat: stdin to stdout until EOF (or `limit` bytes), then a v4 success status.

    A client that has gone (or closed) by then is no error: the write says so.
    """
    got = 0
    with contextlib.suppress(ChannelConnectionClosed):
        while limit is None or got < limit:
            data = await conn.read(STDIN)
            if not data:
                break
            got += len(data)
            await conn.write(STDOUT, data)
        await conn.write(ERROR, b'{"metadata":{},"status":"Success"}')


# -- a bare wsproto client, to see the bytes on the wire -----------------------------------


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ws: WSConnection) -> None:
        self.reader = reader
        self.writer = writer
        self.ws = ws
        self.pending: list[object] = []

    @classmethod
    async def connect(cls, port: int, protocols: Sequence[str], early: bytes = b"") -> tuple[RawClient, str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        ws = WSConnection(ConnectionType.CLIENT)
        # `early`: frames sent behind the request, before the 101 arrives.
        writer.write(
            ws.send(Request(host=f"127.0.0.1:{port}", target="/exec/x", subprotocols=list(protocols)))
        )
        writer.write(early)
        client = cls(reader, writer, ws)
        while True:
            ws.receive_data(await reader.read(65536))
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    client.pending.extend(ws.events())
                    return client, event.subprotocol or ""
                assert not isinstance(event, RejectConnection), event

    def send(self, payload: bytes | str) -> None:
        event = TextMessage(data=payload) if isinstance(payload, str) else BytesMessage(data=payload)
        self.writer.write(self.ws.send(event))

    async def recv(self) -> object:
        """The next whole message (bytes or str) or control event (Ping, Pong, CloseConnection)."""
        binary: list[bytes] = []
        text: list[str] = []
        while True:
            while self.pending:
                event = self.pending.pop(0)
                if isinstance(event, BytesMessage):
                    binary.append(bytes(event.data))
                    if event.message_finished:
                        return b"".join(binary)
                elif isinstance(event, TextMessage):
                    text.append(event.data)
                    if event.message_finished:
                        return "".join(text)
                else:
                    return event
            data = await self.reader.read(65536)
            self.ws.receive_data(data or None)
            self.pending.extend(self.ws.events())

    async def recv_bytes(self) -> bytes:
        message = await self.recv()
        assert isinstance(message, bytes), message
        return message

    def close(self) -> None:
        self.writer.transport.abort()


def masked_frame(payload: bytes) -> bytes:
    return bytes(FrameProtocol(client=True, extensions=[]).send_data(payload))


# -- negotiation ------------------------------------------------------------------------------


def upgrade_headers(*protocols: str, **override: bytes | None) -> list[tuple[bytes, bytes]]:
    base: dict[str, bytes | None] = {
        "host": b"127.0.0.1:1",
        "upgrade": b"websocket",
        "connection": b"Upgrade",
        "sec-websocket-key": KEY,
        "sec-websocket-version": b"13",
    }
    base.update({k.replace("_", "-"): v for k, v in override.items()})
    headers = [(k.encode(), v) for k, v in base.items() if v is not None]
    if protocols:
        headers.append((b"sec-websocket-protocol", ", ".join(protocols).encode()))
    return headers


def test_choose_subprotocol_follows_the_clients_order() -> None:
    assert choose_subprotocol([V4_CHANNEL, V5_CHANNEL], REMOTECOMMAND_PROTOCOLS) == V4_CHANNEL
    assert choose_subprotocol([V5_CHANNEL, V4_CHANNEL], REMOTECOMMAND_PROTOCOLS) == V5_CHANNEL
    assert (
        choose_subprotocol(["v9.channel.k8s.io", BASE64_CHANNEL], REMOTECOMMAND_PROTOCOLS) == BASE64_CHANNEL
    )
    assert choose_subprotocol([], REMOTECOMMAND_PROTOCOLS) == ""
    assert choose_subprotocol([], [V5_CHANNEL]) is None
    assert choose_subprotocol(["v9.channel.k8s.io"], REMOTECOMMAND_PROTOCOLS) is None
    # port-forward: no v5 and no pre-v4 names (portforward/websocket.go)
    for name in (V5_CHANNEL, CHANNEL, BASE64_CHANNEL):
        assert choose_subprotocol([name], PORTFORWARD_PROTOCOLS) is None
    assert (
        choose_subprotocol(["x", V4_BASE64_CHANNEL, V4_CHANNEL], PORTFORWARD_PROTOCOLS) == V4_BASE64_CHANNEL
    )
    assert choose_subprotocol([], PORTFORWARD_PROTOCOLS) == ""


def test_header_helpers() -> None:
    headers = [(b"Sec-WebSocket-Protocol", b" v5.channel.k8s.io ,, x"), (b"sec-websocket-protocol", b"y")]
    assert requested_subprotocols(headers) == [V5_CHANNEL, "x", "y"]
    assert is_websocket_request(upgrade_headers())
    assert is_websocket_request(upgrade_headers(connection=b"keep-alive, Upgrade", upgrade=b"WebSocket"))
    assert not is_websocket_request(upgrade_headers(upgrade=b"SPDY/3.1"))
    assert not is_websocket_request(upgrade_headers(connection=b"keep-alive"))
    assert has_v4_status(V5_CHANNEL) and has_v4_status(V4_BASE64_CHANNEL)
    assert not has_v4_status(CHANNEL) and not has_v4_status("")


def test_negotiate_accepts_with_wsproto_101() -> None:
    up = negotiate(upgrade_headers("v9.channel.k8s.io", V4_CHANNEL, V5_CHANNEL), b"/exec/t")
    assert up.accepted and up.protocol == V4_CHANNEL and up.connection is not None
    head = up.response.lower()
    assert head.startswith(b"http/1.1 101 ")
    assert b"sec-websocket-accept: " + KEY_ACCEPT.lower() in head
    assert b"sec-websocket-protocol: v4.channel.k8s.io\r\n" in head

    bare = negotiate(upgrade_headers(), "/exec/t")
    assert bare.accepted and bare.protocol == ""
    assert b"sec-websocket-protocol" not in bare.response.lower()


@pytest.mark.parametrize(
    ("headers", "method", "status", "needle"),
    [
        (upgrade_headers("v9.channel.k8s.io"), b"GET", 403, b"supported: v5.channel.k8s.io"),
        (upgrade_headers(V5_CHANNEL), b"POST", 405, b"GET"),
        (upgrade_headers(sec_websocket_version=b"8"), b"GET", 426, b"Sec-WebSocket-Version: 13"),
        (upgrade_headers(sec_websocket_key=None), b"GET", 400, b"Sec-WebSocket-Key"),
        (upgrade_headers(host=None), b"GET", 400, b"bad websocket upgrade"),
        (upgrade_headers(upgrade=b"h2c"), b"GET", 400, b"Upgrade: websocket"),
    ],
)
def test_negotiate_refusals(
    headers: list[tuple[bytes, bytes]], method: bytes, status: int, needle: bytes
) -> None:
    up = negotiate(headers, b"/exec/t", method=method)
    assert not up.accepted and up.status == status and up.connection is None
    assert up.response.startswith(b"HTTP/1.1 %d " % status)
    assert needle in up.response
    head, body = up.response.split(b"\r\n\r\n", 1)
    assert b"Content-Length: %d" % len(body) in head


@pytest.mark.parametrize("protocol", REMOTECOMMAND_PROTOCOLS)
async def test_remotecommand_negotiates_each_variant(protocol: str) -> None:
    async with serve(echo) as served:
        client = await ChannelClient.connect(served.url, [protocol] if protocol else [])
        assert client.protocol == protocol
        assert (await served.conn()).protocol == protocol
        await client.write(STDIN, b"ping")
        assert await client.read_exactly(STDOUT, 4) == b"ping"
        await client.close()


@pytest.mark.parametrize("protocol", PORTFORWARD_PROTOCOLS)
async def test_portforward_negotiates_each_variant(protocol: str) -> None:
    async def app(conn: ChannelConnection) -> None:
        await conn.write(0, await conn.read_exactly(0, 2))

    async with serve(app, ports=[80]) as served:
        client = await ChannelClient.connect(served.url, [protocol] if protocol else [])
        assert client.protocol == protocol
        assert await client.read_exactly(0, 2) == port_header(80)
        await client.write(0, b"ok")
        assert await client.read_exactly(0, 2) == b"ok"
        await client.close()


@pytest.mark.parametrize(
    ("ports", "protocols"),
    [
        (None, ["v9.channel.k8s.io"]),
        (None, ["SPDY/3.1+portforward.k8s.io"]),
        ([80], [V5_CHANNEL]),
        ([80], [CHANNEL, BASE64_CHANNEL]),
    ],
)
async def test_no_common_subprotocol_is_refused_with_403(
    ports: list[int] | None, protocols: list[str]
) -> None:
    async with serve(echo, ports=ports) as served:
        with pytest.raises(WebSocketHandshakeError) as info:
            await ChannelClient.connect(served.url, protocols)
        assert info.value.status == 403
        assert b"unsupported websocket subprotocol" in info.value.body
        assert protocols[0].encode() in info.value.body
        await served.rejected.wait()
        assert served.rejections[0].status == 403 and not served.conns


# -- framing ----------------------------------------------------------------------------------


async def test_binary_framing_on_the_wire() -> None:
    async def app(conn: ChannelConnection) -> None:
        while data := await conn.read(STDIN):
            await conn.write(STDOUT, data)
            await conn.write(STDERR, data.upper())

    async with serve(app) as served:
        raw, protocol = await RawClient.connect(served.port, [V4_CHANNEL])
        assert protocol == V4_CHANNEL
        assert await raw.recv() == b"\x01"  # readiness: empty message on stdout
        raw.send(b"\x01not read by the server")  # stdout is write-only: dropped
        raw.send(b"\x09no such channel")  # dropped
        raw.send(b"")  # carries nothing
        raw.send("\x00text frames count as bytes")
        raw.send(b"\x00hello")
        assert await raw.recv() == b"\x01text frames count as bytes"
        assert await raw.recv() == b"\x02TEXT FRAMES COUNT AS BYTES"
        assert await raw.recv() == b"\x01hello"
        assert await raw.recv() == b"\x02HELLO"
        raw.send(b"\x00bye")
        assert await raw.recv() == b"\x01bye"
        raw.close()


@pytest.mark.parametrize("protocol", [BASE64_CHANNEL, V4_BASE64_CHANNEL])
async def test_base64_framing_on_the_wire(protocol: str) -> None:
    async with serve(echo) as served:
        raw, negotiated = await RawClient.connect(served.port, [protocol])
        assert negotiated == protocol
        assert await raw.recv() == "1"  # readiness: '1' and an empty payload, as text
        raw.send("0" + base64.b64encode(b"hello").decode())
        assert await raw.recv() == "1" + base64.b64encode(b"hello").decode()
        raw.send("0!!not base64!!")  # dropped, the connection lives on
        raw.send(b"0" + base64.b64encode(b"\x00\xff binary frame"))
        assert await raw.recv() == "1" + base64.b64encode(b"\x00\xff binary frame").decode()
        raw.close()

    # and ChannelClient decodes it back
    async with serve(echo) as served:
        client = await ChannelClient.connect(served.url, [protocol])
        blob = os.urandom(100_000)
        await client.write(STDIN, blob)
        assert await client.read_exactly(STDOUT, len(blob)) == blob
        await client.close()


async def test_outgoing_messages_are_chunked() -> None:
    async def app(conn: ChannelConnection) -> None:
        await conn.write(STDOUT, b"x" * 70_000)

    async with serve(app, settings=ChannelSettings(max_chunk=32 * 1024)) as served:
        raw, _ = await RawClient.connect(served.port, [V4_CHANNEL])
        assert await raw.recv() == b"\x01"
        sizes = [len(await raw.recv_bytes()) - 1 for _ in range(3)]
        assert sizes == [32768, 32768, 70_000 - 65536]
        assert isinstance(await raw.recv(), CloseConnection)
        raw.close()


async def test_frames_sent_behind_the_request_are_not_lost() -> None:
    async def app(conn: ChannelConnection) -> None:
        await conn.write(STDOUT, await conn.read_exactly(STDIN, 5))

    async with serve(app) as served:
        raw, _ = await RawClient.connect(served.port, [V4_CHANNEL], early=masked_frame(b"\x00early"))
        assert await raw.recv() == b"\x01"
        assert await raw.recv() == b"\x01early"
        raw.close()


# -- v5 CLOSE ---------------------------------------------------------------------------------


async def test_v5_close_half_closes_stdin() -> None:
    async def app(conn: ChannelConnection) -> None:
        data = await conn.read_all(STDIN)
        await conn.write(STDOUT, data + b"|EOF")

    async with serve(app) as served:
        raw, protocol = await RawClient.connect(served.port, [V5_CHANNEL])
        assert protocol == V5_CHANNEL
        assert await raw.recv() == b"\x01"
        raw.send(b"\x00abc")
        raw.send(b"\xff\x00")
        raw.send(b"\x00after close: dropped")
        assert await raw.recv() == b"\x01abc|EOF"
        raw.close()

    # ChannelClient.close_channel sends the same signal
    async with serve(echo) as served:
        client = await ChannelClient.connect(served.url, [V5_CHANNEL])
        await client.write(STDIN, b"abc")
        assert await client.close_channel(STDIN) is True
        with pytest.raises(ChannelConnectionClosed):
            await client.write(STDIN, b"more")
        assert await client.read_all(STDOUT) == b"abc"
        assert b"Success" in await client.read_all(ERROR)
        await client.wait_closed()
        assert client.close_code == 1000


async def test_close_signal_is_not_honoured_in_v4() -> None:
    async def app(conn: ChannelConnection) -> None:
        data = await conn.read_exactly(STDIN, 6)
        try:
            async with asyncio.timeout(0.3):
                eof = await conn.read(STDIN) == b""
        except TimeoutError:
            eof = False
        await conn.write(STDOUT, data + (b"|EOF" if eof else b"|open"))

    async with serve(app) as served:
        raw, _ = await RawClient.connect(served.port, [V4_CHANNEL])
        assert await raw.recv() == b"\x01"
        raw.send(b"\x00abc")
        raw.send(b"\xff\x00")  # what client-go sends on stdin's end: channel 255 here, ignored
        raw.send(b"\x00def")
        assert await raw.recv() == b"\x01abcdef|open"
        raw.close()

    async with serve(echo, stdout=False) as served:
        client = await ChannelClient.connect(served.url, [V4_CHANNEL])
        assert await client.close_channel(STDIN) is False  # no wire signal in v4
        await client.close()


async def test_malformed_v5_close_ends_the_connection() -> None:
    async with serve(echo) as served:
        raw, _ = await RawClient.connect(served.port, [V5_CHANNEL])
        assert await raw.recv() == b"\x01"
        raw.send(b"\xff\x00\x00")
        event = await raw.recv()
        assert isinstance(event, CloseConnection) and event.code == 1002
        raw.close()


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
