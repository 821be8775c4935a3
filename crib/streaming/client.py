"""The client end of exec, attach and port-forward URLs: what crictl's streaming code does.

Used by `cribctl exec -it`, `attach` and `port-forward`, and by the e2e tests.
SPDY/3.1 (the default, as crictl) or WebSocket: the channel protocols for
exec/attach, and for port-forward either the v4 channel protocol or
client-go's SPDY-over-WebSocket tunnel (what crictl's `--transport websocket`
uses).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import ssl as ssl_module
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from crib.streaming import tunnel, wschannel, wschannel_upgrade
from crib.streaming.spdy_connection import SessionClosedError
from crib.streaming.spdy_frames import SpdyError
from crib.streaming.spdy_session import SpdySession, StreamResetError

Source = Callable[[], Awaitable[bytes]]  # b"" at the end
Sink = Callable[[bytes], Awaitable[None]]

REMOTECOMMAND_SPDY = ("v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io")
REMOTECOMMAND_WS = (wschannel.V5_CHANNEL, wschannel.V4_CHANNEL)
PORTFORWARD_SPDY = "portforward.k8s.io"
HANDSHAKE_TIMEOUT_S = 30.0
MAX_RESPONSE_HEAD = 64 * 1024


class StreamingError(Exception):
    """The server refused the upgrade, or the session failed (the message says which)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class CommandResult:
    """How an exec or attach ended: an exit code, or an error the server reported."""

    exit_code: int
    error: str = ""


def result_from_error_stream(raw: bytes, protocol: str) -> CommandResult:
    """The error stream's content: a v4/v5 Status JSON, or (older protocols) an error text."""
    text = raw.decode(errors="replace").strip()
    if not text:
        return CommandResult(0)
    if protocol.startswith(("v4.", "v5.")):
        try:
            status = json.loads(text)
        except ValueError:
            return CommandResult(1, f"error stream: not a Status: {text}")
        if status.get("status") == "Success":
            return CommandResult(0)
        if status.get("reason") == "NonZeroExitCode":
            for cause in (status.get("details") or {}).get("causes") or []:
                if cause.get("reason") == "ExitCode":
                    with contextlib.suppress(TypeError, ValueError):
                        return CommandResult(int(cause.get("message")))
        return CommandResult(1, str(status.get("message") or text))
    return CommandResult(1, text)


# --- the HTTP upgrade to SPDY -------------------------------------------------------------------


def _ssl_for(url: str, context: ssl_module.SSLContext | None) -> ssl_module.SSLContext | None:
    if urlsplit(url).scheme != "https":
        return None
    if context is not None:
        return context
    # As crictl (Insecure: true): the URL came from the runtime over its socket.
    context = ssl_module.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl_module.CERT_NONE
    return context


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise StreamingError("the server's response head is too large") from None
    except asyncio.IncompleteReadError:
        raise StreamingError("the server closed the connection during the upgrade") from None


async def open_spdy(
    url: str,
    protocols: Sequence[str],
    *,
    ssl: ssl_module.SSLContext | None = None,
    timeout: float = HANDSHAKE_TIMEOUT_S,
) -> tuple[SpdySession, str]:
    """POST url with `Upgrade: SPDY/3.1`, offering `protocols`; the session and the chosen one."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StreamingError(f"unsupported streaming URL {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            parts.hostname, port, ssl=_ssl_for(url, ssl), limit=MAX_RESPONSE_HEAD
        )
        try:
            head = [
                f"POST {target} HTTP/1.1",
                f"Host: {parts.netloc}",
                "Connection: Upgrade",
                "Upgrade: SPDY/3.1",
                *(f"X-Stream-Protocol-Version: {p}" for p in protocols),
                "Content-Length: 0",
                "",
                "",
            ]
            writer.write("\r\n".join(head).encode())
            await writer.drain()
            response = (await _read_head(reader)).decode("latin-1")
            status_line, *header_lines = response.split("\r\n")
            fields = status_line.split(" ", 2)
            status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
            headers = {}
            for line in header_lines:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            if status != 101:
                body = b""
                with contextlib.suppress(Exception):
                    length = int(headers.get("content-length", "0"))
                    body = await reader.readexactly(min(length, MAX_RESPONSE_HEAD))
                message = body.decode(errors="replace").strip() or status_line
                raise StreamingError(f"upgrade refused ({status}): {message}", status)
            chosen = headers.get("x-stream-protocol-version", "")
        except BaseException:
            writer.transport.abort()
            raise
    # The server is crib or a Go spdystream peer: neither may wait on our window updates.
    session = SpdySession(reader, writer, client=True, peer_flow_control=False)
    return session, chosen


# --- exec and attach ----------------------------------------------------------------------------


@dataclass
class CommandStreams:
    """What the caller connects: None for a stream it does not want."""

    stdin: Source | None = None
    stdout: Sink | None = None
    stderr: Sink | None = None
    tty: bool = False
    resizes: AsyncIterator[tuple[int, int]] | None = None  # (width, height)


async def _copy_in(source: Source, write: Sink, close: Callable[[], Awaitable[Any]]) -> None:
    try:
        while data := await source():
            await write(data)
    finally:
        with contextlib.suppress(SpdyError, ConnectionError, wschannel.ChannelConnectionClosed):
            await close()


async def _send_sizes(sizes: AsyncIterator[tuple[int, int]], write: Sink) -> None:
    async for width, height in sizes:
        await write(json.dumps({"Width": width, "Height": height}).encode())


async def _copy_out(read: Source, sink: Sink) -> None:
    while data := await read():
        await sink(data)


async def _cancel(tasks: Sequence[asyncio.Future[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def stream_spdy(
    url: str,
    streams: CommandStreams,
    *,
    protocols: Sequence[str] = REMOTECOMMAND_SPDY,
    ssl: ssl_module.SSLContext | None = None,
) -> CommandResult:
    """Exec or attach over SPDY, as client-go's v4 (or older) stream protocol does."""
    session, protocol = await open_spdy(url, protocols, ssl=ssl)
    side: list[asyncio.Future[Any]] = []
    try:
        error = await session.open_stream({"streamType": "error"})
        await error.close()  # the client never writes to it
        stdin = stdout = stderr = resize = None
        if streams.stdin is not None:
            stdin = await session.open_stream({"streamType": "stdin"})
        if streams.stdout is not None:
            stdout = await session.open_stream({"streamType": "stdout"})
        if streams.stderr is not None and not streams.tty:
            stderr = await session.open_stream({"streamType": "stderr"})
        if streams.tty and protocol in ("v4.channel.k8s.io", "v3.channel.k8s.io"):
            resize = await session.open_stream({"streamType": "resize"})
        if stdin is not None and streams.stdin is not None:
            side.append(asyncio.ensure_future(_copy_in(streams.stdin, stdin.write, stdin.close)))
        if resize is not None and streams.resizes is not None:
            side.append(asyncio.ensure_future(_send_sizes(streams.resizes, resize.write)))
        outputs = [
            asyncio.ensure_future(_copy_out(_until_reset(stream.read), sink))
            for stream, sink in ((stdout, streams.stdout), (stderr, streams.stderr))
            if stream is not None and sink is not None
        ]
        status = await _read_all(_until_reset(error.read))
        # The outputs end with their streams, which the server closes before the status.
        await asyncio.gather(*outputs)
        return result_from_error_stream(status, protocol)
    except SpdyError as exc:
        raise StreamingError(f"streaming session failed: {exc}") from exc
    finally:
        await _cancel(side)
        await session.aclose(5.0)


def _until_reset(read: Source) -> Source:
    """Reads where a reset stream or a closed session is the end, as spdystream has them.

    A Go server resets its streams when it closes the connection (the kubelet's
    does, after an exit 0 it sends no status for): that is EOF, not an error.
    """

    async def safe_read() -> bytes:
        try:
            return await read()
        except (StreamResetError, SessionClosedError):
            return b""

    return safe_read


async def _read_all(read: Source) -> bytes:
    parts = []
    while data := await read():
        parts.append(data)
    return b"".join(parts)


async def stream_websocket(
    url: str,
    streams: CommandStreams,
    *,
    protocols: Sequence[str] = REMOTECOMMAND_WS,
    ssl: ssl_module.SSLContext | None = None,
) -> CommandResult:
    """Exec or attach over WebSocket channels (v5 half-closes stdin; v4 cannot)."""
    try:
        conn = await wschannel_upgrade.ChannelClient.connect(url, protocols, ssl=_ssl_for(url, ssl))
    except wschannel_upgrade.WebSocketHandshakeError as exc:
        raise StreamingError(f"upgrade refused ({exc.status}): {exc}", exc.status) from exc
    side: list[asyncio.Future[Any]] = []

    async def write_stdin(data: bytes) -> None:
        await conn.write(wschannel.STDIN, data)

    async def close_stdin() -> None:
        if conn.supports_stream_close:
            await conn.close_channel(wschannel.STDIN)

    async def write_resize(data: bytes) -> None:
        await conn.write(wschannel.RESIZE, data)

    try:
        if streams.stdin is not None:
            side.append(asyncio.ensure_future(_copy_in(streams.stdin, write_stdin, close_stdin)))
        if streams.tty and streams.resizes is not None:
            side.append(asyncio.ensure_future(_send_sizes(streams.resizes, write_resize)))
        outputs = []
        for channel, sink in ((wschannel.STDOUT, streams.stdout), (wschannel.STDERR, streams.stderr)):
            if sink is not None:
                outputs.append(asyncio.ensure_future(_copy_out(_channel_reader(conn, channel), sink)))
        # The server sends the status last and then closes: every channel ends with it.
        status = await conn.read_all(wschannel.ERROR)
        await asyncio.gather(*outputs)
        return result_from_error_stream(status, conn.protocol)
    finally:
        await _cancel(side)
        if not conn.closed:
            await conn.close(timeout=5.0)


def _channel_reader(conn: wschannel.ChannelConnection, channel: int) -> Source:
    async def read() -> bytes:
        return await conn.read(channel)

    return read


async def stream(url: str, streams: CommandStreams, *, transport: str = "spdy", **kw: Any) -> CommandResult:
    if transport == "websocket":
        return await stream_websocket(url, streams, **kw)
    if transport == "spdy":
        return await stream_spdy(url, streams, **kw)
    raise ValueError(f"unknown transport {transport!r}")


# --- port-forward -------------------------------------------------------------------------------


class PortConnection:
    """One forwarded TCP connection: bytes both ways, and the error the server reports."""

    def __init__(self, read: Source, write: Sink, close_write: Callable[[], Awaitable[None]], error: Source):
        self.read = read
        self.write = write
        self.close_write = close_write
        self._error = error

    async def error(self) -> str:
        """What the server wrote on the error stream ("" when the connection went fine)."""
        return (await _read_all(self._error)).decode(errors="replace")


class SpdyPortForwarder:
    """A port-forward session over SPDY (or SPDY tunnelled in WebSocket): many connections."""

    def __init__(self, session: SpdySession, ws: wschannel.ChannelConnection | None = None) -> None:
        self.session = session
        self._ws = ws
        self._ids = itertools.count()

    @classmethod
    async def connect(
        cls, url: str, *, transport: str = "spdy", ssl: ssl_module.SSLContext | None = None
    ) -> SpdyPortForwarder:
        if transport == "spdy":
            session, chosen = await open_spdy(url, [PORTFORWARD_SPDY], ssl=ssl)
            if chosen != PORTFORWARD_SPDY:
                session.close()
                raise StreamingError(f"the server chose {chosen!r}, not {PORTFORWARD_SPDY}")
            return cls(session)
        if transport != "websocket":
            raise ValueError(f"unknown transport {transport!r}")
        try:
            reader, writer, conn = await tunnel.connect(url, ssl=_ssl_for(url, ssl))
        except wschannel_upgrade.WebSocketHandshakeError as exc:
            raise StreamingError(f"upgrade refused ({exc.status}): {exc}", exc.status) from exc
        session = SpdySession(reader, writer, client=True, peer_flow_control=False)  # type: ignore[arg-type]
        return cls(session, conn)

    async def open(self, port: int) -> PortConnection:
        """A new connection to `port` in the pod: the error stream first, as client-go."""
        request_id = str(next(self._ids))
        headers = {"port": str(port), "requestID": request_id}
        try:
            error = await self.session.open_stream({**headers, "streamType": "error"})
            await error.close()
            data = await self.session.open_stream({**headers, "streamType": "data"})
        except SpdyError as exc:
            raise StreamingError(f"port-forward to {port} failed: {exc}") from exc
        return PortConnection(_until_reset(data.read), data.write, data.close, _until_reset(error.read))

    async def close(self) -> None:
        await self.session.aclose(5.0)
        if self._ws is not None and not self._ws.closed:
            self._ws.abort()


class WebSocketPortForward:
    """The v4 channel protocol: one connection per port, ports in the URL's query."""

    def __init__(self, conn: wschannel.ChannelConnection, ports: Sequence[int]) -> None:
        self.conn = conn
        self.ports = list(ports)

    @classmethod
    async def connect(
        cls,
        url: str,
        ports: Sequence[int],
        *,
        protocols: Sequence[str] = (wschannel.V4_CHANNEL,),
        ssl: ssl_module.SSLContext | None = None,
    ) -> WebSocketPortForward:
        query = "&".join(f"port={p}" for p in ports)
        full = url + ("&" if "?" in url else "?") + query
        try:
            conn = await wschannel_upgrade.ChannelClient.connect(full, protocols, ssl=_ssl_for(url, ssl))
        except wschannel_upgrade.WebSocketHandshakeError as exc:
            raise StreamingError(f"upgrade refused ({exc.status}): {exc}", exc.status) from exc
        self = cls(conn, ports)
        # Each channel starts with its port, little-endian: check that they are ours.
        for i, port in enumerate(ports):
            for channel in (2 * i, 2 * i + 1):
                header = await conn.read_exactly(channel, 2)
                if int.from_bytes(header, "little") != port:
                    await conn.close(timeout=5.0)
                    raise StreamingError(f"channel {channel} announced port {header!r}, not {port}")
        return self

    def connection(self, index: int) -> PortConnection:
        data, error = 2 * index, 2 * index + 1

        async def write(payload: bytes) -> None:
            await self.conn.write(data, payload)

        async def close_write() -> None:
            # The v4 channel protocol cannot half-close: the connection ends with the socket.
            return None

        async def read_error() -> bytes:
            # An error arrives as one message; a healthy connection sends none until the end.
            return await self.conn.read(error)

        return PortConnection(_channel_reader(self.conn, data), write, close_write, read_error)

    async def close(self) -> None:
        if not self.conn.closed:
            await self.conn.close(timeout=5.0)
