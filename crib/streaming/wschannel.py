"""The Kubernetes WebSocket channel protocol (`wsstream`) over asyncio streams, on wsproto.

Every WebSocket message carries one channel's data: its first byte is the channel
number (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize; port-forward uses 2i/2i+1
per port). In the base64 subprotocols the message is text: an ASCII digit for the
channel, then the payload in base64. `v5.channel.k8s.io` adds the CLOSE signal,
the 2-byte message `[255, channel]` that half-closes a channel (client-go sends
it when stdin ends).

This module is the protocol's names and a `ChannelConnection` per upgraded
connection, either end. The HTTP/1.1 upgrade that precedes it (negotiation, the
101 response, and the `ChannelClient` for tests) is `crib.streaming.wschannel_upgrade`.

Semantics follow k8s.io/streaming `wsstream/conn.go` and the CRI server library's
`remotecommand/websocket.go` and `portforward/websocket.go`:

- Data for a channel the server does not read is dropped, as are messages
  naming an unknown channel; writes on a channel the server does not write are
  dropped too. Empty messages carry nothing.
- The CLOSE signal is honoured only in v5; in other protocols `[255, ch]` is a
  message for the (nonexistent) channel 255 and is ignored.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import enum
import json
import os
import struct
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from wsproto.connection import Connection, ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, Pong, TextMessage
from wsproto.utilities import LocalProtocolError

from crib.log_setup import get_logger

log = get_logger("crib.wschannel")

V5_CHANNEL = "v5.channel.k8s.io"
V4_CHANNEL = "v4.channel.k8s.io"
V4_BASE64_CHANNEL = "v4.base64.channel.k8s.io"
CHANNEL = "channel.k8s.io"
BASE64_CHANNEL = "base64.channel.k8s.io"
NO_SUBPROTOCOL = ""  # the client sent no Sec-WebSocket-Protocol: raw channel.k8s.io framing

# The order of these only shows in error messages: the client's order decides.
REMOTECOMMAND_PROTOCOLS: tuple[str, ...] = (
    V5_CHANNEL,
    V4_CHANNEL,
    V4_BASE64_CHANNEL,
    CHANNEL,
    BASE64_CHANNEL,
    NO_SUBPROTOCOL,
)
# portforward/websocket.go accepts exactly these three (no v5, no pre-v4 names).
PORTFORWARD_PROTOCOLS: tuple[str, ...] = (V4_CHANNEL, V4_BASE64_CHANNEL, NO_SUBPROTOCOL)
# client-go's SPDY-over-WebSocket port-forward (crictl/critest --transport websocket): every
# binary message is a piece of one SPDY/3.1 byte stream, with no channel byte.
SPDY_TUNNEL_PREFIX = "SPDY/3.1+"
SPDY_TUNNEL_PORTFORWARD = SPDY_TUNNEL_PREFIX + "portforward.k8s.io"

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE_SIGNAL = 255
MAX_CHANNEL = 254  # 255 is reserved (the v5 CLOSE signal)

NORMAL_CLOSURE = 1000
PROTOCOL_ERROR = 1002
ABNORMAL_CLOSURE = 1006  # local only: the TCP connection ended without a close handshake
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011

RECV_SIZE = 256 * 1024


def is_base64_protocol(protocol: str) -> bool:
    return protocol in (BASE64_CHANNEL, V4_BASE64_CHANNEL)


def supports_stream_close(protocol: str) -> bool:
    return protocol == V5_CHANNEL


def is_tunnel_protocol(protocol: str) -> bool:
    return protocol.startswith(SPDY_TUNNEL_PREFIX)


def has_v4_status(protocol: str) -> bool:
    """Whether the error channel carries a JSON metav1.Status (v4, v5) rather than plain text."""
    return protocol in (V5_CHANNEL, V4_CHANNEL, V4_BASE64_CHANNEL)


class ChannelMode(enum.Flag):
    """What the server does with a channel: READ what the client sends, WRITE to the client."""

    IGNORE = 0
    READ = enum.auto()
    WRITE = enum.auto()
    READ_WRITE = READ | WRITE


def remotecommand_channels(*, stdin: bool, stdout: bool, stderr: bool) -> list[ChannelMode]:
    """Channels of an exec/attach session; error and resize always exist (createChannels)."""
    return [
        ChannelMode.READ if stdin else ChannelMode.IGNORE,
        ChannelMode.WRITE if stdout else ChannelMode.IGNORE,
        ChannelMode.WRITE if stderr else ChannelMode.IGNORE,
        ChannelMode.WRITE,
        ChannelMode.READ,
    ]


def portforward_channels(n_ports: int) -> list[ChannelMode]:
    """Per port a data channel (2i, both ways) and an error channel (2i+1, server to client)."""
    return [ChannelMode.READ_WRITE, ChannelMode.WRITE] * n_ports


def port_header(port: int) -> bytes:
    """The first message on both channels of a forwarded port."""
    return struct.pack("<H", port)


class TerminalSize(NamedTuple):
    width: int
    height: int


@dataclass(frozen=True)
class ChannelSettings:
    """Tunables of one connection; None disables a timeout."""

    # No frame in either direction for this long ends the connection (cri-streaming: 4 h).
    idle_timeout: float | None = 4 * 3600.0
    # How long close() waits for the peer's close reply. Long on purpose: the peer replies
    # only after reading everything sent before our close frame, and closing the socket
    # earlier can reset it and truncate output still in flight (kubernetes' `finish`).
    close_timeout: float | None = 15 * 60.0
    max_chunk: int = 32 * 1024  # payload bytes per outgoing message
    # Unread bytes buffered per channel before the socket stops being read, so a
    # consumer that falls behind pushes back on the peer (wsstream blocks on io.Pipe).
    read_limit: int = 1 << 20
    max_message_size: int = 32 << 20  # x/net/websocket's DefaultMaxPayloadBytes


DEFAULT_SETTINGS = ChannelSettings()
# A client has no idle limit of its own and needs no long close wait.
CLIENT_SETTINGS = ChannelSettings(idle_timeout=None, close_timeout=30.0)


class ChannelConnectionClosed(ConnectionError):
    """The WebSocket connection is closed (or closing): nothing more can be written."""


# -- the connection --------------------------------------------------------------------------


class _IdleTimeout(Exception):
    pass


class _Inbound:
    """One channel's received bytes: a byte stream with EOF, bounded for backpressure."""

    __slots__ = ("_data_ready", "_has_room", "chunks", "eof", "limit", "size")

    def __init__(self, limit: int, eof: bool = False) -> None:
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.eof = eof
        self.limit = limit
        self._data_ready = asyncio.Event()
        self._has_room = asyncio.Event()
        self._has_room.set()
        if eof:
            self._data_ready.set()

    def feed(self, data: bytes) -> None:
        if self.eof or not data:
            return  # after CLOSE, data is dropped (a closed io.Pipe)
        self.chunks.append(data)
        self.size += len(data)
        self._data_ready.set()
        if self.size >= self.limit:
            self._has_room.clear()

    def feed_eof(self) -> None:
        self.eof = True
        self._data_ready.set()
        self._has_room.set()

    def discard(self) -> None:
        self.chunks.clear()
        self.size = 0
        self.feed_eof()

    async def wait_room(self) -> None:
        await self._has_room.wait()

    async def read(self, max_bytes: int) -> bytes:
        while not self.chunks:
            if self.eof:
                return b""
            self._data_ready.clear()
            await self._data_ready.wait()
        chunk = self.chunks.popleft()
        if len(chunk) > max_bytes:
            self.chunks.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        self.size -= len(chunk)
        if self.size < self.limit:
            self._has_room.set()
        return chunk


class ChannelConnection:
    """One upgraded WebSocket speaking the channel protocol, server or client side.

    A single task reads the socket: it answers pings, routes each message to its
    channel's buffer and ends on the close handshake, EOF, an error or the idle
    timeout, after which every channel reads as EOF and writes raise
    ChannelConnectionClosed. Create it inside a running event loop.

    `channels` gives each channel's mode as the server sees it; None (the client)
    means any channel 0-254 may be read and written.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        connection: Connection,
        protocol: str,
        channels: Sequence[ChannelMode] | None,
        settings: ChannelSettings = DEFAULT_SETTINGS,
    ) -> None:
        if settings.max_chunk < 1:
            raise ValueError("max_chunk must be positive")
        self.protocol = protocol
        self.settings = settings
        self._reader = reader
        self._writer = writer
        self._conn = connection
        self._base64 = is_base64_protocol(protocol)
        self._stream_close = supports_stream_close(protocol)
        # A tunnel is one byte stream both ways, read and written as channel 0.
        self._tunnel = is_tunnel_protocol(protocol)
        self._modes = list(channels) if channels is not None else None
        if self._modes is not None and len(self._modes) > MAX_CHANNEL + 1:
            raise ValueError("too many channels")
        self._inbound: dict[int, _Inbound] = {}
        self._write_closed: set[int] = set()
        self._pings: dict[bytes, asyncio.Future[None]] = {}
        self._message: list[bytes] = []
        self._message_size = 0
        self._closing = False  # close() or abort() called, or the peer's close received
        self._closed = False
        self._closed_event = asyncio.Event()
        self.close_code: int | None = None  # the peer's close code, ABNORMAL_CLOSURE without one
        self.close_reason: str = ""
        self._loop = asyncio.get_running_loop()
        self._last_activity = self._loop.time()
        self._task = asyncio.create_task(self._run(), name=f"wschannel-reader-{id(self):x}")

    # -- introspection

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def supports_stream_close(self) -> bool:
        return self._stream_close

    def _mode(self, channel: int) -> ChannelMode:
        if not 0 <= channel <= MAX_CHANNEL:
            raise ValueError(f"channel {channel} out of range")
        if self._modes is None:
            return ChannelMode.READ_WRITE
        if channel >= len(self._modes):
            raise ValueError(f"channel {channel} does not exist (connection has {len(self._modes)})")
        return self._modes[channel]

    def readable(self, channel: int) -> bool:
        return ChannelMode.READ in self._mode(channel)

    def writable(self, channel: int) -> bool:
        return ChannelMode.WRITE in self._mode(channel)

    # -- reading

    def _inbound_for(self, channel: int) -> _Inbound:
        inbound = self._inbound.get(channel)
        if inbound is None:
            # Created lazily; after the end it starts at EOF.
            inbound = _Inbound(self.settings.read_limit, eof=self._closed or self._closing)
            self._inbound[channel] = inbound
        return inbound

    async def read(self, channel: int, max_bytes: int = 64 * 1024) -> bytes:
        """Up to max_bytes received on `channel`; b"" once it is closed and drained.

        A channel the server does not read is at EOF from the start (wsstream).
        """
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        if not self.readable(channel):
            return b""
        return await self._inbound_for(channel).read(max_bytes)

    async def read_exactly(self, channel: int, n: int) -> bytes:
        """Exactly n bytes; asyncio.IncompleteReadError if the channel ends first."""
        parts: list[bytes] = []
        got = 0
        while got < n:
            chunk = await self.read(channel, n - got)
            if not chunk:
                raise asyncio.IncompleteReadError(b"".join(parts), n)
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    async def read_all(self, channel: int) -> bytes:
        """Everything until EOF (what client-go does with the error channel)."""
        parts: list[bytes] = []
        while chunk := await self.read(channel):
            parts.append(chunk)
        return b"".join(parts)

    async def resize_events(self, channel: int = RESIZE) -> AsyncIterator[TerminalSize]:
        """The resize channel's stream of JSON `{"Width":w,"Height":h}` objects.

        Ends at the channel's EOF or at data that is not such a stream (as Go's
        json.Decoder loop in handleResizeEvents does).
        """
        decoder = json.JSONDecoder()
        text = ""
        while chunk := await self.read(channel):
            text += chunk.decode("utf-8", "replace")
            while text := text.lstrip():
                try:
                    obj, end = decoder.raw_decode(text)
                except json.JSONDecodeError:
                    if len(text) > 4096:  # not a partial object any more
                        return
                    break
                text = text[end:]
                if not isinstance(obj, dict):
                    return
                try:
                    yield TerminalSize(int(obj.get("Width", 0)), int(obj.get("Height", 0)))
                except (TypeError, ValueError):
                    return

    # -- writing

    def _touch(self) -> None:
        self._last_activity = self._loop.time()

    def _send_event(self, event: Event) -> None:
        if self._closed or self._closing or self._conn.state is not ConnectionState.OPEN:
            raise ChannelConnectionClosed("websocket connection is closed")
        self._writer.write(self._conn.send(event))
        self._touch()

    async def _drain(self) -> None:
        try:
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            raise ChannelConnectionClosed(f"websocket connection lost: {exc}") from exc

    def _message_for(self, channel: int, data: bytes | memoryview) -> Event:
        if self._tunnel:
            return BytesMessage(data=bytes(data))
        if self._base64:
            # base64 variants: text, the channel as an ASCII digit ('0' + n, as Go writes it).
            return TextMessage(data=chr(ord("0") + channel) + base64.b64encode(data).decode("ascii"))
        return BytesMessage(data=bytes((channel,)) + data)

    async def write(self, channel: int, data: bytes | bytearray | memoryview) -> None:
        """Send `data` on `channel`, in messages of at most settings.max_chunk bytes.

        Waits for the socket to drain between messages (backpressure). Empty data
        sends one empty message (the readiness signal). Data for a channel the
        server does not write is dropped, as wsstream does. Raises
        ChannelConnectionClosed once the connection (or, after close_channel,
        the channel) is closed.
        """
        if not self.writable(channel):
            return
        if channel in self._write_closed:
            raise ChannelConnectionClosed(f"channel {channel} is closed")
        view = memoryview(data).cast("B")
        if not view:
            self._send_event(self._message_for(channel, b""))
            await self._drain()
            return
        step = self.settings.max_chunk
        for offset in range(0, len(view), step):
            self._send_event(self._message_for(channel, view[offset : offset + step]))
            await self._drain()

    def write_nowait(self, channel: int, data: bytes | bytearray | memoryview) -> None:
        """write() without waiting for the socket to drain (for a caller that drains itself)."""
        if not self.writable(channel) or not data:
            return
        if channel in self._write_closed:
            raise ChannelConnectionClosed(f"channel {channel} is closed")
        view = memoryview(data).cast("B")
        step = self.settings.max_chunk
        for offset in range(0, len(view), step):
            self._send_event(self._message_for(channel, view[offset : offset + step]))

    async def drain(self) -> None:
        await self._drain()

    @property
    def transport(self) -> asyncio.BaseTransport:
        return self._writer.transport

    async def signal_ready(self) -> int:
        """Send the empty readiness message on the lowest channel the server writes.

        For exec/attach that is stdout if enabled, else stderr, else error
        (remotecommand/websocket.go). Returns the channel used.
        """
        if self._modes is None:
            raise ValueError("signal_ready needs the server's channel modes")
        for channel, mode in enumerate(self._modes):
            if ChannelMode.WRITE in mode:
                await self.write(channel, b"")
                return channel
        raise ValueError("no writable channel")

    async def close_channel(self, channel: int) -> bool:
        """Half-close our sending side of `channel`; later writes to it raise.

        Only v5 has a wire signal ([255, channel]); it returns True when that was
        sent and False when the protocol has none (the peer learns nothing).
        """
        self._mode(channel)
        if channel in self._write_closed:
            return False
        self._write_closed.add(channel)
        if not self._stream_close:
            return False
        self._send_event(BytesMessage(data=bytes((CLOSE_SIGNAL, channel))))
        await self._drain()
        return True

    async def send_message(self, payload: bytes | str) -> None:
        """Send one raw message (bytes: binary, str: text), bypassing the channel framing."""
        self._send_event(
            TextMessage(data=payload) if isinstance(payload, str) else BytesMessage(data=payload)
        )
        await self._drain()

    async def ping(self, payload: bytes | None = None, timeout: float | None = 30.0) -> float:
        """Send a ping and wait for its pong; returns the round trip in seconds."""
        payload = os.urandom(8) if payload is None else payload
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._pings[payload] = waiter
        try:
            start = self._loop.time()
            self._send_event(Ping(payload=payload))
            await self._drain()
            async with asyncio.timeout(timeout):
                await waiter
            return self._loop.time() - start
        finally:
            self._pings.pop(payload, None)

    # -- closing

    async def close(self, code: int = NORMAL_CLOSURE, reason: str = "", timeout: float | None = None) -> None:
        """Close handshake: send a close frame, wait for the peer's reply, close the socket.

        What is still unread on our channels is dropped, and so is everything the
        peer sends meanwhile, so that a peer still sending cannot stall the
        handshake. `timeout` (default settings.close_timeout) bounds the wait,
        after which the connection is aborted.
        """
        if not self._closed and not self._closing:
            self._closing = True
            for inbound in self._inbound.values():
                inbound.discard()
            if self._conn.state is ConnectionState.OPEN:
                with contextlib.suppress(OSError, RuntimeError):
                    self._writer.write(self._conn.send(CloseConnection(code=code, reason=reason or None)))
        timeout = self.settings.close_timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(timeout):
                await self._closed_event.wait()
        except TimeoutError:
            self.abort()
        await self.wait_closed()

    def abort(self) -> None:
        """Drop the connection now, without a close handshake."""
        self._closing = True
        for inbound in self._inbound.values():
            inbound.discard()
        self._writer.transport.abort()

    async def wait_closed(self) -> None:
        """Until the connection is closed and its reader task has ended."""
        await asyncio.wait([self._task])

    async def __aenter__(self) -> ChannelConnection:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if exc_type is None:
            await self.close()
        elif issubclass(exc_type, asyncio.CancelledError):
            self.abort()  # no waiting inside a cancelled task
        else:
            await self.close(INTERNAL_ERROR, "internal error", timeout=5.0)

    # -- the reader task

    async def _recv(self) -> bytes:
        idle = self.settings.idle_timeout
        while True:
            if idle is None:
                return await self._reader.read(RECV_SIZE)
            remaining = self._last_activity + idle - self._loop.time()
            if remaining <= 0:
                raise _IdleTimeout
            deadline = asyncio.timeout(remaining)
            try:
                async with deadline:
                    return await self._reader.read(RECV_SIZE)
            except TimeoutError:
                if not deadline.expired():
                    raise  # the socket's own ETIMEDOUT
                # else a write may have kept the connection alive meanwhile: look again

    async def _run(self) -> None:
        # Close the socket cleanly (flushing our close frame or reply) unless the peer is
        # unresponsive or gone, then reset it.
        graceful = True
        try:
            while await self._handle_events() and self._conn.state is not ConnectionState.CLOSED:
                data = await self._recv()
                if not data:
                    break  # the peer closed the TCP connection (1006 unless it sent a close)
                self._conn.receive_data(data)
        except _IdleTimeout:
            graceful = False
            self.close_reason = "idle timeout"
        except (ConnectionError, OSError) as exc:
            graceful = False
            self.close_reason = f"connection lost: {exc}"
        except Exception as exc:
            # A bug here must not leave the channels hanging: end the connection, say why.
            graceful = False
            self.close_reason = f"internal error: {exc!r}"
            log.exception("wschannel.reader_failed", protocol=self.protocol)
        finally:
            await self._teardown(graceful)

    async def _handle_events(self) -> bool:
        """Process what wsproto has parsed; False when the connection must end now."""
        for event in self._conn.events():
            self._touch()
            if isinstance(event, BytesMessage | TextMessage):
                chunk = event.data.encode() if isinstance(event.data, str) else bytes(event.data)
                self._message.append(chunk)
                self._message_size += len(chunk)
                if self._message_size > self.settings.max_message_size:
                    self._fail(MESSAGE_TOO_BIG, "message too big")
                    return False
                if event.message_finished:
                    payload = b"".join(self._message)
                    self._message.clear()
                    self._message_size = 0
                    if not await self._deliver(payload):
                        return False
            elif isinstance(event, Ping):
                if self._conn.state is ConnectionState.OPEN:
                    self._writer.write(self._conn.send(event.response()))
            elif isinstance(event, Pong):
                waiter = self._pings.get(bytes(event.payload))
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            elif isinstance(event, CloseConnection):
                self.close_code = int(event.code)
                self.close_reason = event.reason or ""
                self._closing = True
                if self._conn.state is ConnectionState.REMOTE_CLOSING:
                    self._writer.write(self._conn.send(event.response()))
                elif self._conn.state is ConnectionState.OPEN:
                    # wsproto reports a frame it cannot parse as a close from the peer.
                    self._fail(int(event.code), event.reason or "protocol error")
                    return False
        return True

    async def _deliver(self, payload: bytes) -> bool:
        """Route one complete message to its channel; False on a fatal protocol error."""
        if not payload:
            return True  # an empty message carries nothing (the readiness signal)
        if self._tunnel:
            if not self._closing:
                inbound = self._inbound_for(0)
                inbound.feed(payload)
                await inbound.wait_room()
            return True
        if self._stream_close and payload[0] == CLOSE_SIGNAL:
            # wsstream ends the connection on a malformed CLOSE or one for a bad channel.
            if len(payload) != 2 or not self._known(payload[1]):
                self._fail(PROTOCOL_ERROR, "invalid CLOSE signal")
                return False
            if self._modes is None or ChannelMode.READ in self._modes[payload[1]]:
                self._inbound_for(payload[1]).feed_eof()
            return True
        channel = payload[0]
        if self._base64:
            channel = (channel - ord("0")) & 0xFF
        if not self._known(channel) or (
            self._modes is not None and ChannelMode.READ not in self._modes[channel]
        ):
            return True  # unknown or not read by us: dropped, as wsstream does
        if self._closing:
            return True  # close() in progress: nobody reads any more
        data = payload[1:]
        if self._base64:
            try:
                data = base64.b64decode(data.replace(b"\r", b"").replace(b"\n", b""), validate=True)
            except binascii.Error:
                return True  # wsstream logs and drops an undecodable message
        inbound = self._inbound_for(channel)
        inbound.feed(data)
        # Stop reading the socket while this channel's consumer is behind.
        await inbound.wait_room()
        return True

    def _known(self, channel: int) -> bool:
        if self._modes is None:
            return channel <= MAX_CHANNEL
        return channel < len(self._modes)

    def _fail(self, code: int, reason: str) -> None:
        """Send a close frame for a protocol error; the caller then drops the connection."""
        self.close_code = ABNORMAL_CLOSURE if self.close_code is None else self.close_code
        self.close_reason = reason
        if self._conn.state is ConnectionState.OPEN:
            with contextlib.suppress(OSError, RuntimeError, LocalProtocolError):
                self._writer.write(self._conn.send(CloseConnection(code=code, reason=reason)))

    async def _teardown(self, graceful: bool) -> None:
        self._closing = True
        self._closed = True
        if self.close_code is None:
            self.close_code = ABNORMAL_CLOSURE
        for inbound in self._inbound.values():
            inbound.feed_eof()
        for waiter in self._pings.values():
            if not waiter.done():
                waiter.set_exception(ChannelConnectionClosed("websocket connection closed"))
        try:
            if graceful:
                self._writer.close()
                try:
                    async with asyncio.timeout(5):
                        await self._writer.wait_closed()
                except (OSError, TimeoutError):
                    self._writer.transport.abort()
            else:
                self._writer.transport.abort()
        finally:
            self._closed_event.set()
