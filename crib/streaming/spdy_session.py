"""SPDY/3.1 over asyncio: `SpdySession` and `SpdyStream`, the top SPDY layer.

They drive a `crib.streaming.spdy_connection.SpdyConnection` over an asyncio
StreamReader/StreamWriter pair (e.g. an upgraded HTTP connection).

Interop: spdystream implements no flow control. It never sends WINDOW_UPDATE or
SETTINGS, ignores ours, and sends DATA regardless of our windows. A session
with it must be made with ``peer_flow_control=False``. Otherwise our output
stalls after 64 KiB, and its input past 64 KiB is reset as a flow-control
violation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from crib.log_setup import get_logger
from crib.streaming.spdy_connection import (
    DEFAULT_INITIAL_WINDOW,
    DataReceived,
    Event,
    GoAwayReceived,
    HeadersReceived,
    PingAcknowledged,
    PingReceived,
    SessionClosedError,
    SettingsReceived,
    SpdyConnection,
    StreamClosedError,
    StreamOpened,
    StreamReplied,
    StreamReset,
    WindowUpdated,
)
from crib.streaming.spdy_frames import (
    GoAwayStatus,
    Headers,
    HeadersLike,
    ProtocolError,
    RstStatus,
    SpdyError,
    normalize_headers,
)

log = get_logger("spdy")


class StreamResetError(SpdyError):
    def __init__(self, stream_id: int, status: int, remote: bool) -> None:
        who = "peer" if remote else "us"
        super().__init__(f"stream {stream_id} reset by {who}: {_status_name(status)}")
        self.stream_id = stream_id
        self.status = status
        self.remote = remote


def _status_name(status: int) -> str:
    try:
        return RstStatus(status).name
    except ValueError:
        return str(status)


class _Signal:
    """Wakes every current waiter; waiters re-check their condition in a loop."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        self._event.clear()
        await self._event.wait()


class SpdyStream:
    """One SPDY stream of a `SpdySession`.

    `headers` are the SYN_STREAM headers (the peer's for accepted streams, ours
    for opened ones); `reply_headers` the SYN_REPLY's; HEADERS frames extend
    `headers` for accepted streams and `reply_headers` for opened ones.
    """

    def __init__(self, session: SpdySession, stream_id: int, headers: Headers, *, local: bool) -> None:
        self._session = session
        self.id = stream_id
        self.local = local
        self.headers = headers
        self.reply_headers: Headers | None = None
        self._buf: deque[bytes] = deque()
        self._buffered = 0
        self._eof = False
        self._replied = False
        self._local_closed = False
        self._reset: StreamResetError | None = None
        self._signal = _Signal()

    def __repr__(self) -> str:
        return f"<SpdyStream {self.id} headers={self.headers!r}>"

    def header(self, name: str, default: str | None = None) -> str | None:
        """First value of a request header (case-insensitive), e.g. ``header("streamType")``."""
        values = self.headers.get(name.lower())
        return values[0] if values else default

    @property
    def reset_error(self) -> StreamResetError | None:
        return self._reset

    @property
    def replied(self) -> bool:
        return self._replied

    # -- reading --------------------------------------------------------------

    async def read(self, n: int = -1) -> bytes:
        """Up to n bytes (n < 0: all that is buffered); waits for at least one.

        Returns b"" at FIN. Raises StreamResetError if the stream was reset and
        SessionClosedError if the session ended before FIN.
        """
        if n == 0:
            return b""
        while not self._buf:
            if self._eof:
                return b""
            if self._reset is not None:
                raise self._reset
            if self._session.closed:
                raise SessionClosedError(f"session closed before stream {self.id} finished")
            await self._signal.wait()
        if n < 0 or n >= self._buffered:
            data = b"".join(self._buf)
            self._buf.clear()
        else:
            parts = []
            want = n
            while want:
                head = self._buf[0]
                if len(head) <= want:
                    parts.append(self._buf.popleft())
                    want -= len(head)
                else:
                    parts.append(head[:want])
                    self._buf[0] = head[want:]
                    want = 0
            data = b"".join(parts)
        self._buffered -= len(data)
        self._session._consumed(self.id, len(data))
        return data

    async def readexactly(self, n: int) -> bytes:
        parts = []
        want = n
        while want > 0:
            chunk = await self.read(want)
            if not chunk:
                raise asyncio.IncompleteReadError(b"".join(parts), n)
            parts.append(chunk)
            want -= len(chunk)
        return b"".join(parts)

    # -- writing --------------------------------------------------------------

    def _check_writable(self) -> None:
        if self._reset is not None:
            raise self._reset
        if self._session.closed:
            raise SessionClosedError(f"session closed; stream {self.id} cannot send")
        if self._local_closed:
            raise StreamClosedError(f"stream {self.id} is already closed for writing")

    def _auto_reply(self) -> None:
        # The Go server replies to every accepted stream with empty headers; we do the same on first use.
        if not self.local and not self._replied:
            self._session._conn.reply(self.id, {})
            self._replied = True

    async def write(self, data: bytes) -> None:
        """Send data; returns once it is framed within the peer's windows and the transport drained."""
        self._check_writable()
        if not data:
            return
        self._auto_reply()
        self._session._conn.send_data(self.id, data)
        self._session._flush()
        await self._wait_sent()

    async def close(self) -> None:
        """Half-close: FIN after any queued data. Idempotent; a no-op on a reset stream."""
        if self._local_closed or self._reset is not None or self._session.closed:
            return
        self._auto_reply()
        self._local_closed = True
        self._session._conn.end_stream(self.id)
        self._session._flush()
        with contextlib.suppress(SpdyError):
            await self._wait_sent()

    def reset(self, status: int = RstStatus.CANCEL) -> None:
        """Abort the stream (RST_STREAM); unread data is discarded."""
        if self._reset is not None:
            return
        self._session._conn.reset(self.id, status)
        self._on_reset(status, remote=False)
        self._session._flush()

    async def reply(self, headers: HeadersLike | None = None, *, fin: bool = False) -> None:
        """Accept a peer-opened stream (SYN_REPLY)."""
        if self.local:
            raise SpdyError("cannot reply to a stream we opened")
        if self._replied:
            raise SpdyError(f"stream {self.id} already replied")
        self._check_writable()
        self._session._conn.reply(self.id, headers, fin=fin)
        self._replied = True
        if fin:
            self._local_closed = True
        self._session._flush()
        await self._session._drain()

    async def send_headers(self, headers: HeadersLike, *, fin: bool = False) -> None:
        self._check_writable()
        self._auto_reply()
        self._session._conn.send_headers(self.id, headers, fin=fin)
        if fin:
            self._local_closed = True
        self._session._flush()
        await self._session._drain()

    async def _wait_sent(self) -> None:
        conn = self._session._conn
        while conn.pending_data(self.id):
            if self._reset is not None:
                raise self._reset
            if self._session.closed:
                raise SessionClosedError(f"session closed; stream {self.id} data not sent")
            await self._signal.wait()
        await self._session._drain()

    # -- events from the session ----------------------------------------------

    def _on_data(self, data: bytes, fin: bool) -> None:
        if data:
            self._buf.append(data)
            self._buffered += len(data)
        if fin:
            self._eof = True
        self._signal.notify()

    def _on_reply(self, headers: Headers, fin: bool) -> None:
        self._replied = True
        self.reply_headers = headers
        if fin:
            self._eof = True
        self._signal.notify()

    def _on_headers(self, headers: Headers, fin: bool) -> None:
        target = self.reply_headers if self.local and self.reply_headers is not None else self.headers
        for name, values in headers.items():
            target.setdefault(name, []).extend(values)
        if fin:
            self._eof = True
        self._signal.notify()

    def _on_reset(self, status: int, *, remote: bool) -> None:
        if self._reset is None:
            self._reset = StreamResetError(self.id, status, remote)
        dropped = self._buffered
        self._buf.clear()
        self._buffered = 0
        self._session._forget(self.id, dropped)
        self._signal.notify()


class SpdySession:
    """A `SpdyConnection` over an asyncio stream pair (e.g. an upgraded HTTP connection).

    `peer_flow_control` has no default on purpose: kubelet, crictl and every
    other spdystream peer need False (see the module docstring); True is for
    peers that implement SPDY/3.1 flow control, such as this module itself.

    Construct it inside a running loop; it starts one reader task. Every wait
    is cancellable and ends when the session closes. The session closes when
    the peer disconnects, on a protocol error (GOAWAY PROTOCOL_ERROR), after
    `idle_timeout` seconds without frames in either direction (all streams
    reset, GOAWAY), or on `close()`. `wait_closed()` returns once the reader
    task has ended and the transport is closed.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        client: bool,
        peer_flow_control: bool,
        idle_timeout: float | None = None,
        max_buffered: int = 4 << 20,
        close_timeout: float = 5.0,
        read_size: int = 64 * 1024,
        max_concurrent_streams: int = 1000,
        session_window: int = DEFAULT_INITIAL_WINDOW,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._conn = SpdyConnection(
            client,
            peer_flow_control=peer_flow_control,
            max_concurrent_streams=max_concurrent_streams,
            session_window=session_window,
        )
        self._streams: dict[int, SpdyStream] = {}
        self._incoming: deque[SpdyStream] = deque()
        self._incoming_signal = _Signal()
        self._pings: dict[int, asyncio.Future[None]] = {}
        self._buffered = 0  # unread bytes over all streams
        self._max_buffered = max_buffered
        self._read_gate = _Signal()  # wakes the reader paused for back-pressure
        self._progress = _Signal()  # wakes `aclose` waiting for queued output to leave
        self._read_size = read_size
        self._close_timeout = close_timeout
        self._idle_timeout = idle_timeout
        self._loop = asyncio.get_running_loop()
        self._last_activity = self._loop.time()
        self._idle_handle: asyncio.TimerHandle | None = None
        self._closing = False  # close() called or the reader is finishing
        self._closed = False  # no more frames in or out
        self.error: BaseException | None = None  # why the session ended, if not cleanly
        self.goaway: GoAwayReceived | None = None
        self._task = self._loop.create_task(self._run(), name="spdy-session")
        if idle_timeout:
            self._idle_handle = self._loop.call_later(idle_timeout, self._check_idle)

    @property
    def closed(self) -> bool:
        return self._closing

    @property
    def connection(self) -> SpdyConnection:
        return self._conn

    # -- public API -------------------------------------------------------------

    async def accept_stream(self, timeout: float | None = None) -> SpdyStream:
        """The next stream the peer opened; SessionClosedError once none can come."""
        async with asyncio.timeout(timeout):
            while not self._incoming:
                if self._closing or self.goaway is not None:
                    raise SessionClosedError("session closed")
                await self._incoming_signal.wait()
        return self._incoming.popleft()

    async def open_stream(
        self,
        headers: HeadersLike | None = None,
        *,
        fin: bool = False,
        wait_reply: bool = True,
        timeout: float | None = 30.0,
    ) -> SpdyStream:
        """Open a stream; by default wait (like spdystream's CreateStream) for the SYN_REPLY."""
        if self._closing:
            raise SessionClosedError("session closed")
        norm = normalize_headers(headers)
        sid = self._conn.open_stream(norm, fin=fin)
        stream = SpdyStream(self, sid, norm, local=True)
        stream._local_closed = fin
        self._streams[sid] = stream
        self._flush()
        if wait_reply:
            try:
                async with asyncio.timeout(timeout):
                    while not stream.replied:
                        if stream.reset_error is not None:
                            raise stream.reset_error
                        if self._closing:
                            raise SessionClosedError("session closed before the stream was accepted")
                        await stream._signal.wait()
            except BaseException:
                stream.reset(RstStatus.CANCEL)
                raise
        return stream

    async def ping(self, timeout: float | None = 10.0) -> float:
        """Round-trip time of one PING, in seconds."""
        if self._closing:
            raise SessionClosedError("session closed")
        ping_id = self._conn.ping()
        fut: asyncio.Future[None] = self._loop.create_future()
        self._pings[ping_id] = fut
        start = self._loop.time()
        self._flush()
        try:
            async with asyncio.timeout(timeout):
                await fut
        finally:
            self._pings.pop(ping_id, None)
        return self._loop.time() - start

    def close(self, status: int = GoAwayStatus.OK) -> None:
        """Send GOAWAY and close: unsent stream data is dropped, open streams end."""
        if self._closing:
            return
        self._closing = True
        with contextlib.suppress(Exception):
            self._conn.goaway(status)
            self._flush(force=True)
        self._task.cancel()
        self._wake_all()

    async def aclose(self, timeout: float | None = None) -> None:
        """Graceful close: let queued stream data out (bounded), then `close()` and wait."""
        if not self._closing:
            with contextlib.suppress(TimeoutError, SpdyError):
                async with asyncio.timeout(self._close_timeout if timeout is None else timeout):
                    while self._conn.pending_total and not self._closing:
                        await self._progress.wait()
                    await self._drain()
        self.close()
        await self.wait_closed()

    async def wait_closed(self) -> None:
        # Shielded: a waiter giving up must not cancel the teardown itself.
        await asyncio.shield(self._task)

    async def __aenter__(self) -> SpdySession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- internals ------------------------------------------------------------------

    def _flush(self, *, force: bool = False) -> None:
        self._prune()
        data = self._conn.data_to_send()
        if not data or (self._closed and not force):
            return
        self._touch()
        transport = self._writer.transport
        if transport is None or transport.is_closing():
            return
        self._writer.write(data)

    async def _drain(self) -> None:
        try:
            await self._writer.drain()
        except (ConnectionError, OSError) as e:
            raise SessionClosedError(f"transport lost: {e}") from e

    def _prune(self) -> None:
        # A stream the connection has forgotten (FIN both ways) gets no more events; drop our reference.
        # The SpdyStream object stays readable for whoever holds it.
        for sid in [sid for sid in self._streams if not self._conn.is_open(sid)]:
            del self._streams[sid]

    def _touch(self) -> None:
        self._last_activity = self._loop.time()

    def _check_idle(self) -> None:
        self._idle_handle = None
        if self._closing or not self._idle_timeout:
            return
        remaining = self._last_activity + self._idle_timeout - self._loop.time()
        if remaining > 0:
            self._idle_handle = self._loop.call_later(remaining, self._check_idle)
            return
        log.info("spdy session idle, closing", idle_timeout=self._idle_timeout)
        for stream in list(self._streams.values()):
            stream.reset(RstStatus.CANCEL)
        self.close()

    def _consumed(self, stream_id: int, n: int) -> None:
        self._buffered -= n
        if self._closed:
            return
        self._conn.acknowledge(stream_id, n)
        self._flush()
        if self._buffered < self._max_buffered:
            self._read_gate.notify()

    def _forget(self, stream_id: int, dropped: int) -> None:
        self._streams.pop(stream_id, None)
        self._buffered -= dropped
        if dropped and not self._closed:
            # Discarded bytes still hold the shared session window until given back.
            self._conn.acknowledge(stream_id, dropped)
            self._flush()
        self._read_gate.notify()
        self._progress.notify()

    def _wake_all(self) -> None:
        for stream in list(self._streams.values()):
            stream._signal.notify()
        self._incoming_signal.notify()
        self._read_gate.notify()
        self._progress.notify()

    async def _run(self) -> None:
        cancelled_from_outside = False
        try:
            while not self._closing:
                while self._buffered >= self._max_buffered and not self._closing:
                    # Back-pressure for peers without flow control: stop reading the socket.
                    await self._read_gate.wait()
                data = await self._reader.read(self._read_size)
                if not data:
                    break
                self._touch()
                try:
                    events = self._conn.receive_data(data)
                except ProtocolError as e:
                    log.warning("spdy protocol error, sending GOAWAY", error=str(e))
                    self._dispatch(e.events)
                    self._conn.goaway(e.status)
                    self._flush()
                    self.error = e
                    break
                self._dispatch(events)
                self._flush()
        except asyncio.CancelledError:
            cancelled_from_outside = not self._closing  # close() cancels us too: that is no error
            if not cancelled_from_outside and (task := asyncio.current_task()) is not None:
                # Taken back, so the teardown's own timeouts end as timeouts, not as this
                # cancellation again (which would abort the transport at the first one).
                task.uncancel()
            self._closing = True
        except (ConnectionError, OSError) as e:
            self.error = e
        except Exception as e:  # a bug must still end the session cleanly
            log.exception("spdy session failed")
            self.error = e
        finally:
            await self._teardown()
        if cancelled_from_outside:
            raise asyncio.CancelledError

    def _dispatch(self, events: list[Event]) -> None:
        for ev in events:
            match ev:
                case DataReceived(stream_id=sid, data=data, fin=fin):
                    stream = self._streams.get(sid)
                    if stream is None:
                        self._conn.acknowledge(sid, len(data))
                        continue
                    self._buffered += len(data)
                    stream._on_data(data, fin)
                case StreamOpened():
                    stream = SpdyStream(self, ev.stream_id, ev.headers, local=False)
                    if ev.unidirectional:
                        stream._local_closed = True
                        stream._replied = True  # nothing to reply on a one-way stream
                    if ev.fin:
                        stream._eof = True
                    self._streams[ev.stream_id] = stream
                    self._incoming.append(stream)
                    self._incoming_signal.notify()
                case StreamReplied(stream_id=sid, headers=headers, fin=fin):
                    if (stream := self._streams.get(sid)) is not None:
                        stream._on_reply(headers, fin)
                case HeadersReceived(stream_id=sid, headers=headers, fin=fin):
                    if (stream := self._streams.get(sid)) is not None:
                        stream._on_headers(headers, fin)
                case StreamReset(stream_id=sid, status=status, remote=remote):
                    if (stream := self._streams.get(sid)) is not None:
                        stream._on_reset(status, remote=remote)
                case PingAcknowledged(ping_id=ping_id):
                    fut = self._pings.get(ping_id)
                    if fut is not None and not fut.done():
                        fut.set_result(None)
                case GoAwayReceived():
                    self.goaway = ev
                    self._incoming_signal.notify()
                case WindowUpdated() | SettingsReceived():
                    for stream in list(self._streams.values()):
                        stream._signal.notify()
                    self._progress.notify()
                case PingReceived():
                    pass  # answered by the connection already

    async def _flush_out(self) -> None:
        """Wait for the closed transport to hand the peer what is still buffered (the exec
        status is the last frame of an exec). A peer that goes on reading gets the time it
        needs, like spdystream's unbounded Close; one that stops for `close_timeout` is cut off."""
        # asyncio.wait, not a timeout around wait_closed(): a timeout would cancel the
        # transport's one close-waiter future, and every later wait would end at once.
        closed = asyncio.ensure_future(self._writer.wait_closed())
        left: int | None = None
        try:
            while True:
                done, _ = await asyncio.wait({closed}, timeout=self._close_timeout)
                if done:
                    closed.result()
                    return
                transport = self._writer.transport
                now = transport.get_write_buffer_size() if transport is not None else 0
                if left is not None and now >= left:
                    raise TimeoutError("the peer stopped reading")
                left = now
        finally:
            closed.cancel()

    async def _teardown(self) -> None:
        self._closing = True
        self._closed = True
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        for fut in self._pings.values():
            if not fut.done():
                fut.set_exception(SessionClosedError("session closed"))
        self._wake_all()
        with contextlib.suppress(Exception):
            self._writer.close()
        try:
            await self._flush_out()
        except (TimeoutError, ConnectionError, OSError):
            transport = self._writer.transport
            if transport is not None:
                transport.abort()
        except asyncio.CancelledError:
            transport = self._writer.transport
            if transport is not None:
                transport.abort()
            raise
