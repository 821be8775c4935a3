"""The HTTP/1.1 upgrade to the Kubernetes WebSocket channel protocol, both ends.

The server side checks a request already parsed by the caller (h11; only its
headers, target and the bytes h11 read past the request are handed over),
negotiates the subprotocol and writes the 101 or the refusal; `ChannelClient`
is the client end for tests and probes. Both yield a
`crib.streaming.wschannel.ChannelConnection`.

As in k8s.io/streaming `wsstream/conn.go`, the subprotocol is the first one in
the *client's* list that the server supports (the server's set is a map there,
so its order cannot matter); no `Sec-WebSocket-Protocol` at all means ""
(raw `channel.k8s.io` framing). No match is a 403.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from crib.streaming.wschannel import (
    CLIENT_SETTINGS,
    DEFAULT_SETTINGS,
    NO_SUBPROTOCOL,
    PORTFORWARD_PROTOCOLS,
    RECV_SIZE,
    REMOTECOMMAND_PROTOCOLS,
    ChannelConnection,
    ChannelConnectionClosed,
    ChannelMode,
    ChannelSettings,
    port_header,
    portforward_channels,
    remotecommand_channels,
)


class WebSocketRejected(Exception):
    """The server refused the upgrade; the refusal has already been sent."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


class WebSocketHandshakeError(ConnectionError):
    """The client's upgrade failed: a non-101 answer (status, body) or a bad 101 (status 0)."""

    def __init__(self, status: int, message: str, body: bytes = b"") -> None:
        super().__init__(f"websocket handshake failed ({status or 'invalid response'}): {message}")
        self.status = status
        self.body = body


# -- handshake (server side) ---------------------------------------------------------------


def _header_values(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [value for key, value in headers if key.lower() == name]


def _comma_tokens(values: Iterable[bytes]) -> list[str]:
    # All header lines, comma-split, trimmed; empty items are not protocol names.
    out: list[str] = []
    for value in values:
        out.extend(t for t in (p.strip() for p in value.decode("latin-1").split(",")) if t)
    return out


def requested_subprotocols(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """The client's Sec-WebSocket-Protocol list, in its order."""
    return _comma_tokens(_header_values(headers, b"sec-websocket-protocol"))


def is_websocket_request(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """`Upgrade: websocket` plus `Connection: upgrade` (wsstream.IsWebSocketRequest)."""
    headers = list(headers)
    upgrade = [v.strip().lower() for v in _header_values(headers, b"upgrade")]
    connection = [t.lower() for t in _comma_tokens(_header_values(headers, b"connection"))]
    return b"websocket" in upgrade and "upgrade" in connection


def choose_subprotocol(requested: Sequence[str], supported: Iterable[str]) -> str | None:
    """The first of the client's protocols the server supports; None if there is none.

    wsstream's handshake loops over the client's list first, so the client's
    preference wins. A client that asks for nothing gets "" if "" is supported.
    """
    allowed = set(supported)
    for protocol in requested or [NO_SUBPROTOCOL]:
        if protocol in allowed:
            return protocol
    return None


@dataclass(frozen=True)
class Upgrade:
    """What negotiate() decided: `response` is to be written to the client as is."""

    status: int  # 101 when accepted
    response: bytes
    protocol: str | None = None  # the negotiated subprotocol ("" = none); None when rejected
    connection: Connection | None = None  # wsproto's open connection, already fed `buffered`
    reason: str = ""  # why it was rejected

    @property
    def accepted(self) -> bool:
        return self.status == 101


def _refusal(status: int, reason: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> Upgrade:
    phrase = {400: "Bad Request", 403: "Forbidden", 405: "Method Not Allowed", 426: "Upgrade Required"}
    body = (reason + "\n").encode()
    head = [f"HTTP/1.1 {status} {phrase.get(status, 'Error')}".encode()]
    head += [b"%s: %s" % (k, v) for k, v in headers]
    head += [
        b"Content-Type: text/plain; charset=utf-8",
        b"Content-Length: %d" % len(body),
        b"Connection: close",
    ]
    return Upgrade(status=status, response=b"\r\n".join(head) + b"\r\n\r\n" + body, reason=reason)


def negotiate(
    headers: Sequence[tuple[bytes, bytes]],
    target: bytes | str,
    buffered: bytes = b"",
    supported: Iterable[str] = REMOTECOMMAND_PROTOCOLS,
    *,
    method: bytes = b"GET",
) -> Upgrade:
    """Check a parsed upgrade request and produce the 101 (through wsproto) or a refusal.

    `headers` are the request's (name, value) byte pairs (an h11.Request's
    `headers` will do), `buffered` the bytes already read past the request
    (`h11.Connection.trailing_data[0]`): a client may send frames right behind
    its request, and they belong to the WebSocket. Refusals: 405 for a method
    other than GET, 400/426 for a malformed upgrade, 403 for no common subprotocol.
    """
    supported = tuple(supported)
    if method.upper() != b"GET":
        return _refusal(405, "websocket upgrade needs GET", [(b"Allow", b"GET")])
    ws = WSConnection(ConnectionType.SERVER)
    try:
        ws.initiate_upgrade_connection(list(headers), target)
        request = next((e for e in ws.events() if isinstance(e, Request)), None)
    except RemoteProtocolError as exc:
        hint = exc.event_hint
        if isinstance(hint, RejectConnection):
            return _refusal(hint.status_code, f"bad websocket upgrade: {exc}", hint.headers)
        return _refusal(400, f"bad websocket upgrade: {exc}")
    except (LocalProtocolError, h11.ProtocolError, ValueError) as exc:
        # h11 refusing to restate the request (no Host, bad target) or an undecodable Host.
        return _refusal(400, f"bad websocket upgrade: {exc}")
    if request is None:
        return _refusal(400, "bad websocket upgrade")
    requested = request.subprotocols
    protocol = choose_subprotocol(requested, supported)
    if protocol is None:
        offered = ", ".join(requested)
        accepted = ", ".join(p or '"" (no subprotocol)' for p in supported)
        return _refusal(403, f"unsupported websocket subprotocol(s) {offered}; supported: {accepted}")
    response = ws.send(AcceptConnection(subprotocol=protocol or None))
    connection = ws.connection
    assert connection is not None  # AcceptConnection opened it
    if buffered:
        connection.receive_data(buffered)
    return Upgrade(status=101, response=response, protocol=protocol, connection=connection)


async def _send_refusal(writer: asyncio.StreamWriter, upgrade: Upgrade) -> None:
    with contextlib.suppress(OSError):
        writer.write(upgrade.response)
        async with asyncio.timeout(5):
            await writer.drain()
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(5):
            await writer.wait_closed()


async def accept(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    headers: Sequence[tuple[bytes, bytes]],
    target: bytes | str,
    buffered: bytes,
    supported: Iterable[str],
    channels: Sequence[ChannelMode],
    *,
    method: bytes = b"GET",
    settings: ChannelSettings = DEFAULT_SETTINGS,
) -> ChannelConnection:
    """Upgrade and return the connection; on refusal send it, close, raise WebSocketRejected."""
    upgrade = negotiate(headers, target, buffered, supported, method=method)
    if not upgrade.accepted:
        await _send_refusal(writer, upgrade)
        raise WebSocketRejected(upgrade.status, upgrade.reason)
    assert upgrade.connection is not None and upgrade.protocol is not None
    writer.write(upgrade.response)
    return ChannelConnection(reader, writer, upgrade.connection, upgrade.protocol, channels, settings)


async def accept_remotecommand(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    headers: Sequence[tuple[bytes, bytes]],
    target: bytes | str,
    buffered: bytes,
    *,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    protocols: Iterable[str] = REMOTECOMMAND_PROTOCOLS,
    method: bytes = b"GET",
    settings: ChannelSettings = DEFAULT_SETTINGS,
) -> ChannelConnection:
    """Exec/attach: upgrade, open channels 0-4 and send the readiness message."""
    conn = await accept(
        reader,
        writer,
        headers,
        target,
        buffered,
        protocols,
        remotecommand_channels(stdin=stdin, stdout=stdout, stderr=stderr),
        method=method,
        settings=settings,
    )
    with contextlib.suppress(ChannelConnectionClosed):  # a client gone already reads as EOF
        await conn.signal_ready()
    return conn


async def accept_portforward(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    headers: Sequence[tuple[bytes, bytes]],
    target: bytes | str,
    buffered: bytes,
    ports: Sequence[int],
    *,
    protocols: Iterable[str] = PORTFORWARD_PROTOCOLS,
    method: bytes = b"GET",
    settings: ChannelSettings = DEFAULT_SETTINGS,
) -> ChannelConnection:
    """Port-forward: upgrade, open 2 channels per port and send each the port (LE uint16).

    There is no separate readiness message here: the port headers are it.
    """
    for port in ports:
        if not 0 < port <= 0xFFFF:
            raise ValueError(f"port {port} out of range")
    conn = await accept(
        reader,
        writer,
        headers,
        target,
        buffered,
        protocols,
        portforward_channels(len(ports)),
        method=method,
        settings=settings,
    )
    with contextlib.suppress(ChannelConnectionClosed):
        for i, port in enumerate(ports):
            await conn.write(2 * i, port_header(port))
            await conn.write(2 * i + 1, port_header(port))
    return conn


# -- the client (tests, probes) ----------------------------------------------------------


class ChannelClient(ChannelConnection):
    """The client end: connect() performs the HTTP/1.1 upgrade; frames are masked (wsproto)."""

    @classmethod
    async def connect(
        cls,
        url: str,
        protocols: Sequence[str] = (),
        *,
        headers: Sequence[tuple[bytes, bytes]] = (),
        settings: ChannelSettings = CLIENT_SETTINGS,
        ssl: ssl_module.SSLContext | bool | None = None,
        timeout: float | None = 30.0,
    ) -> ChannelClient:
        """Upgrade `url` (http, https, ws or wss) offering `protocols` in this order.

        No protocols sends no Sec-WebSocket-Protocol header. Raises
        WebSocketHandshakeError on any answer but a valid 101.
        """
        parts = urlsplit(url)
        secure = parts.scheme in ("https", "wss")
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            raise ValueError(f"unsupported url {url!r}")
        port = parts.port or (443 if secure else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if secure and ssl is None:
            ssl = True
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=ssl or None)
            try:
                ws = WSConnection(ConnectionType.CLIENT)
                writer.write(
                    ws.send(
                        Request(
                            host=parts.netloc,
                            target=target,
                            subprotocols=list(protocols),
                            extra_headers=list(headers),
                        )
                    )
                )
                protocol = await cls._await_accept(reader, ws)
            except BaseException:
                writer.transport.abort()
                raise
        assert ws.connection is not None
        return cls(reader, writer, ws.connection, protocol, None, settings)

    @staticmethod
    async def _await_accept(reader: asyncio.StreamReader, ws: WSConnection) -> str:
        status = 0
        body = bytearray()
        while True:
            data = await reader.read(RECV_SIZE)
            try:
                ws.receive_data(data or None)
                for event in ws.events():
                    if isinstance(event, AcceptConnection):
                        return event.subprotocol or NO_SUBPROTOCOL
                    if isinstance(event, RejectConnection):
                        status = event.status_code
                        if not event.has_body:
                            raise WebSocketHandshakeError(status, "rejected")
                    elif isinstance(event, RejectData):
                        body += event.data
                        if event.body_finished:
                            raise WebSocketHandshakeError(
                                status, bytes(body).decode("utf-8", "replace").strip(), bytes(body)
                            )
            except RemoteProtocolError as exc:
                raise WebSocketHandshakeError(status, str(exc), bytes(body)) from exc
            if not data:
                raise WebSocketHandshakeError(status, "connection closed during the handshake", bytes(body))
