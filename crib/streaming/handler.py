"""One connection to the streaming server: the HTTP request, its token, the upgrade to
SPDY/3.1 or WebSocket, and the exec, attach or port-forward it carries.

Imported at the first streaming connection, not with the server (see StreamingServer.handler).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import h11

from crib import node_metrics
from crib.log_setup import get_logger
from crib.streaming import remotecommand, tunnel, wschannel, wschannel_upgrade
from crib.streaming.spdy_connection import SessionClosedError
from crib.streaming.spdy_frames import SpdyError
from crib.streaming.spdy_session import SpdySession, SpdyStream

if TYPE_CHECKING:
    from crib.streaming.backend import Backend
    from crib.streaming.tokens import TokenCache

log = get_logger("crib.streaming")

REMOTECOMMAND_SPDY = ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"]
PORTFORWARD_SPDY = ["portforward.k8s.io"]
REQUEST_TIMEOUT_S = 30.0
MAX_REQUEST_BYTES = 64 * 1024


# --- SPDY adapters ----------------------------------------------------------------------------


class _SpdyCommandIO:
    def __init__(self, streams: dict[str, SpdyStream], protocol: str, session: SpdySession) -> None:
        self.streams = streams
        self.protocol = protocol
        self.session = session
        self.has_stdin = "stdin" in streams
        self.has_stdout = "stdout" in streams
        self.has_stderr = "stderr" in streams

    async def read_stdin(self) -> bytes:
        try:
            return await self.streams["stdin"].read()
        except (SpdyError, KeyError):
            return b""

    async def write_stdout(self, data: bytes) -> None:
        await self.streams["stdout"].write(data)

    async def write_stderr(self, data: bytes) -> None:
        await self.streams["stderr"].write(data)

    def resizes(self) -> AsyncIterator[tuple[int, int]] | None:
        stream = self.streams.get("resize")
        return None if stream is None else _json_sizes(stream.read)

    async def finish(self, status: dict[str, Any] | None, text: str) -> None:
        error = self.streams.get("error")
        if error is not None:
            with contextlib.suppress(SpdyError, ConnectionError):
                if self.protocol == "v4.channel.k8s.io" and status is not None:
                    await error.write(remotecommand.status_json(status))
                elif text:
                    await error.write(text.encode())
        for stream in self.streams.values():
            with contextlib.suppress(SpdyError, ConnectionError):
                await stream.close()

    async def wait_closed(self) -> None:
        await self.session.wait_closed()


async def _json_sizes(read: Callable[[], Awaitable[bytes]]) -> AsyncIterator[tuple[int, int]]:
    """A stream of JSON {"Width","Height"} objects, as kubectl sends them."""
    decoder = json.JSONDecoder()
    buf = ""
    while True:
        try:
            chunk = await read()
        except (SpdyError, ConnectionError):
            return
        if not chunk:
            return
        buf += chunk.decode(errors="replace")
        while buf.strip():
            try:
                obj, end = decoder.raw_decode(buf.lstrip())
            except ValueError:
                break
            buf = buf.lstrip()[end:]
            if isinstance(obj, dict):
                yield int(obj.get("Width", 0)), int(obj.get("Height", 0))


class _WsCommandIO:
    def __init__(
        self, conn: wschannel.ChannelConnection, stdin: bool, stdout: bool, stderr: bool, tty: bool
    ) -> None:
        self.conn = conn
        self.has_stdin, self.has_stdout, self.has_stderr = stdin, stdout, stderr
        self.tty = tty

    async def read_stdin(self) -> bytes:
        return await self.conn.read(wschannel.STDIN)

    async def write_stdout(self, data: bytes) -> None:
        await self.conn.write(wschannel.STDOUT, data)

    async def write_stderr(self, data: bytes) -> None:
        await self.conn.write(wschannel.STDERR, data)

    def resizes(self) -> AsyncIterator[tuple[int, int]] | None:
        if not self.tty:
            return None

        async def sizes() -> AsyncIterator[tuple[int, int]]:
            async for size in self.conn.resize_events():
                yield size.width, size.height

        return sizes()

    async def finish(self, status: dict[str, Any] | None, text: str) -> None:
        with contextlib.suppress(wschannel.ChannelConnectionClosed):
            if wschannel.has_v4_status(self.conn.protocol) and status is not None:
                await self.conn.write(wschannel.ERROR, remotecommand.status_json(status))
            elif text:
                await self.conn.write(wschannel.ERROR, text.encode())
        await self.conn.close()

    async def wait_closed(self) -> None:
        await self.conn.wait_closed()


# --- a connection ---------------------------------------------------------------------------


class StreamHandler:
    """Serves the streaming server's connections, with its backend, tokens and timeouts."""

    def __init__(
        self, backend: Backend, tokens: TokenCache, *, idle_timeout: float, creation_timeout: float
    ) -> None:
        self.backend = backend
        self.tokens = tokens
        self.idle_timeout = idle_timeout
        self.creation_timeout = creation_timeout

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        except (ConnectionError, SpdyError, wschannel_upgrade.WebSocketRejected, asyncio.IncompleteReadError):
            pass
        except Exception as exc:
            log.error("streaming.session_failed", exc_info=exc)
        finally:
            if not writer.is_closing():
                writer.close()

    async def _read_request(self, reader: asyncio.StreamReader, conn: h11.Connection) -> h11.Request | None:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(8192)
                    if not data:
                        return None
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.Request):
                    return event
                return None

    async def _respond(
        self, writer: asyncio.StreamWriter, code: int, text: str, headers: list[tuple[str, str]] = ()
    ) -> None:  # type: ignore[assignment]
        body = text.encode()
        lines = [f"HTTP/1.1 {code} {_REASONS.get(code, 'Error')}", "Content-Type: text/plain; charset=utf-8"]
        lines += [f"{k}: {v}" for k, v in headers]
        lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
        writer.write("\r\n".join(lines).encode() + body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
        try:
            request = await self._read_request(reader, conn)
        except (h11.RemoteProtocolError, TimeoutError):
            await self._respond(writer, 400, "malformed request\n")
            return
        if request is None:
            return
        target = request.target.decode(errors="replace")
        parts = target.split("?", 1)[0].strip("/").split("/")
        if len(parts) != 2 or parts[0] not in ("exec", "attach", "portforward"):
            log.info("streaming.not_found", target=target)
            await self._respond(writer, 404, "not found\n")
            return
        kind, token = parts
        if request.method not in (b"GET", b"POST"):
            await self._respond(writer, 405, "method not allowed\n")
            return
        pending = self.tokens.take(kind, token)
        if pending is None:
            log.info("streaming.unknown_token", kind=kind)
            await self._respond(writer, 404, "unknown, used or expired streaming token\n")
            return
        headers = {k.decode().lower(): v.decode(errors="replace") for k, v in request.headers}
        upgrade = headers.get("upgrade", "").lower()
        buffered = conn.trailing_data[0]
        if upgrade == "websocket":
            serve, protocol = self._websocket, "websocket"
        elif upgrade.startswith("spdy/3.1"):
            serve, protocol = self._spdy, "spdy"
        else:
            await self._respond(writer, 400, "this endpoint needs an Upgrade to SPDY/3.1 or websocket\n")
            return
        node_metrics.STREAMING_SESSIONS.labels(kind, protocol).inc()
        active = node_metrics.STREAMING_ACTIVE.labels(kind)
        active.inc()
        try:
            await serve(kind, pending.request, reader, writer, request, buffered)
        finally:
            active.dec()

    # --- SPDY -------------------------------------------------------------------------------

    async def _spdy(
        self, kind: str, cri: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
        request: h11.Request, buffered: bytes,
    ) -> None:  # fmt: skip
        offered = [
            p.strip()
            for k, v in request.headers
            if k.decode().lower() == "x-stream-protocol-version"
            for p in v.decode(errors="replace").split(",")  # any bytes may arrive; h11 checks no charset
            if p.strip()
        ]
        supported = PORTFORWARD_SPDY if kind == "portforward" else REMOTECOMMAND_SPDY
        chosen = next((p for p in offered if p in supported), None)
        if chosen is None:
            log.info("streaming.no_protocol", kind=kind, offered=offered)
            await self._respond(
                writer,
                403,
                f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                f"server accepts {supported}\n",
                [("X-Accepted-Stream-Protocol-Versions", ", ".join(supported))],
            )
            return
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
            + f"X-Stream-Protocol-Version: {chosen}\r\n\r\n".encode()
        )
        await writer.drain()
        # The kubelet's peer (spdystream) does no flow control: ours must not wait for it.
        session = SpdySession(
            _Prepended(reader, buffered),
            writer,
            client=False,
            peer_flow_control=False,
            idle_timeout=self.idle_timeout,
        )
        try:
            if kind == "portforward":
                await self._spdy_portforward(session, cri)
            else:
                await self._spdy_command(kind, session, cri, chosen)
        finally:
            with contextlib.suppress(Exception):
                await session.aclose(5.0)

    async def _spdy_command(self, kind: str, session: SpdySession, cri: Any, protocol: str) -> None:
        tty = bool(cri.tty)
        expected = {"error"}
        if cri.stdin:
            expected.add("stdin")
        if cri.stdout:
            expected.add("stdout")
        if cri.stderr and not tty:
            expected.add("stderr")
        if tty and protocol in ("v4.channel.k8s.io", "v3.channel.k8s.io"):
            expected.add("resize")
        streams: dict[str, SpdyStream] = {}
        try:
            async with asyncio.timeout(self.creation_timeout):
                while not expected <= set(streams):
                    stream = await session.accept_stream()
                    kind_of = (stream.header("streamType") or "").lower()
                    await stream.reply({})
                    if kind_of in ("error", "stdin", "stdout", "stderr", "resize"):
                        streams[kind_of] = stream
                    else:
                        stream.reset()
        except TimeoutError:
            log.info("streaming.streams_timeout", kind=kind, got=sorted(streams))
            return
        io = _SpdyCommandIO(streams, protocol, session)
        await self._run_command(kind, cri, io)

    async def _run_command(self, kind: str, cri: Any, io: Any) -> None:
        if kind == "exec":
            try:
                proc = await self.backend.start_exec(cri, 0, 0)
            except Exception as exc:
                message = getattr(exc, "message", str(exc))
                await io.finish(remotecommand.error_status(message), message)
                return
            code = await remotecommand.run_exec(io, proc, list(cri.cmd))
            log.info("streaming.exec_done", container=cri.container_id, exit_code=code)
        else:
            try:
                sock = await self.backend.attach(cri)
            except Exception as exc:
                message = getattr(exc, "message", str(exc))
                await io.finish(remotecommand.error_status(message), message)
                return
            await remotecommand.run_attach(io, sock, lambda w, h: self.backend.attach_resize(cri, w, h))
            log.info("streaming.attach_done", container=cri.container_id)

    async def _spdy_portforward(self, session: SpdySession, cri: Any) -> None:
        pairs: dict[str, dict[str, SpdyStream]] = {}
        tasks: set[asyncio.Task[Any]] = set()
        try:
            while True:
                try:
                    stream = await session.accept_stream()
                except SessionClosedError:
                    break
                await stream.reply({})
                stream_type = (stream.header("streamType") or "").lower()
                request_id = stream.header("requestID") or str(stream.id)
                pair = pairs.setdefault(request_id, {})
                pair[stream_type] = stream
                if "data" in pair and "error" in pair:
                    del pairs[request_id]
                    task = asyncio.create_task(self._forward_pair(cri, pair["data"], pair["error"]))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _forward_pair(self, cri: Any, data: SpdyStream, error: SpdyStream) -> None:
        port_text = data.header("port") or ""
        try:
            port = int(port_text)
            if not 0 < port <= 65535:
                raise ValueError
        except ValueError:
            with contextlib.suppress(SpdyError, ConnectionError):
                await error.write(f"invalid port {port_text!r}".encode())
                await error.close()
                await data.close()
            return
        try:
            sock = await self.backend.connect(cri, port)
        except Exception as exc:
            with contextlib.suppress(SpdyError, ConnectionError):
                await error.write(getattr(exc, "message", str(exc)).encode())
                await error.close()
                data.reset()
            return
        await _relay(sock, data.read, data.write, data.close)
        with contextlib.suppress(SpdyError, ConnectionError):
            await error.close()

    # --- WebSocket --------------------------------------------------------------------------

    async def _websocket(
        self, kind: str, cri: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
        request: h11.Request, buffered: bytes,
    ) -> None:  # fmt: skip
        settings = wschannel.ChannelSettings(idle_timeout=self.idle_timeout)
        if kind == "portforward" and tunnel.wants_tunnel(request.headers):
            t_reader, t_writer, conn = await tunnel.accept(
                reader, writer, request.headers, request.target, buffered,
                method=request.method, settings=settings,
            )  # fmt: skip
            # client-go's SPDY client inside, as on the kubelet leg: no flow control from it.
            session = SpdySession(
                t_reader, t_writer, client=False, peer_flow_control=False,  # type: ignore[arg-type]
                idle_timeout=self.idle_timeout,
            )  # fmt: skip
            try:
                await self._spdy_portforward(session, cri)
            finally:
                with contextlib.suppress(Exception):
                    await session.aclose(5.0)
                if not conn.closed:
                    conn.abort()
            return
        if kind == "portforward":
            try:
                ports = _query_ports(request.target) or [int(p) for p in cri.port]
            except ValueError as exc:
                await self._respond(writer, 400, f"{exc}\n")
                return
            if not ports:
                await self._respond(writer, 400, 'query parameter "port" is required\n')
                return
            conn = await wschannel_upgrade.accept_portforward(
                reader, writer, request.headers, request.target, buffered, ports,
                method=request.method, settings=settings,
            )  # fmt: skip
            async with conn:
                await asyncio.gather(*(self._forward_channel(conn, cri, i, p) for i, p in enumerate(ports)))
            return
        tty = bool(cri.tty)
        conn = await wschannel_upgrade.accept_remotecommand(
            reader, writer, request.headers, request.target, buffered,
            stdin=bool(cri.stdin), stdout=bool(cri.stdout), stderr=bool(cri.stderr) and not tty,
            method=request.method, settings=settings,
        )  # fmt: skip
        io = _WsCommandIO(conn, bool(cri.stdin), bool(cri.stdout), bool(cri.stderr) and not tty, tty)
        try:
            await self._run_command(kind, cri, io)
        finally:
            if not conn.closed:
                conn.abort()

    async def _forward_channel(
        self, conn: wschannel.ChannelConnection, cri: Any, index: int, port: int
    ) -> None:
        data_ch, error_ch = 2 * index, 2 * index + 1
        try:
            sock = await self.backend.connect(cri, port)
        except Exception as exc:
            with contextlib.suppress(wschannel.ChannelConnectionClosed):
                await conn.write(error_ch, getattr(exc, "message", str(exc)).encode())
            return

        async def read() -> bytes:
            return await conn.read(data_ch)

        async def write(data: bytes) -> None:
            await conn.write(data_ch, data)

        async def done() -> None:
            pass

        await _relay(sock, read, write, done)


def _query_ports(target: bytes) -> list[int]:
    """The `port` query parameters, where the kubelet's WebSocket port-forward takes its ports."""
    query = urllib.parse.urlsplit(target.decode(errors="replace")).query
    ports = []
    for text in urllib.parse.parse_qs(query).get("port", []):
        try:
            port = int(text)
        except ValueError:
            raise ValueError(f"invalid port {text!r}") from None
        if not 0 < port <= 65535:
            raise ValueError(f"port {port} must be > 0 and < 65536")
        ports.append(port)
    return ports


class _Prepended:
    """A StreamReader that first returns bytes h11 read past the request headers."""

    def __init__(self, reader: asyncio.StreamReader, first: bytes) -> None:
        self._reader = reader
        self._first = first

    async def read(self, n: int = -1) -> bytes:
        if self._first:
            data, self._first = self._first, b""
            return data
        return await self._reader.read(n)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


async def _relay(
    sock: Any,
    read: Callable[[], Awaitable[bytes]],
    write: Callable[[bytes], Awaitable[None]],
    close: Callable[[], Awaitable[None]],
) -> None:
    """Copy both ways between a TCP socket and a stream, until both directions end."""
    loop = asyncio.get_running_loop()

    async def to_socket() -> None:
        try:
            while data := await read():
                await loop.sock_sendall(sock, data)
        except (SpdyError, ConnectionError, OSError):
            pass
        with contextlib.suppress(OSError):
            sock.shutdown(1)

    async def from_socket() -> None:
        try:
            while data := await loop.sock_recv(sock, 64 * 1024):
                await write(data)
        except (SpdyError, ConnectionError, OSError):
            pass
        with contextlib.suppress(SpdyError, ConnectionError):
            await close()

    try:
        await asyncio.gather(to_socket(), from_socket())
    finally:
        sock.close()


_REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed"}
