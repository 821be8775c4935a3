"""A loopback streaming server for the WebSocket channel tests, and a bare wsproto client.

The server parses each request with h11 and hands it to crib.streaming.wschannel_upgrade;
the bare client shows the bytes on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import h11
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import FrameProtocol

from crib.streaming.wschannel import (
    ERROR,
    STDIN,
    STDOUT,
    ChannelConnection,
    ChannelConnectionClosed,
    ChannelSettings,
)
from crib.streaming.wschannel_upgrade import (
    WebSocketRejected,
    accept_portforward,
    accept_remotecommand,
)

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
