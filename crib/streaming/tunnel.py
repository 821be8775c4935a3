"""SPDY over WebSocket: the stream pair a SpdySession runs on when port-forward comes as WebSocket.

client-go's tunneling dialer (crictl and critest with `--transport websocket`) upgrades
to WebSocket with the subprotocol `SPDY/3.1+portforward.k8s.io` and then speaks plain
SPDY/3.1 inside binary messages, message boundaries meaning nothing. These adapters
give SpdySession the reader and writer it expects on top of a tunnel-mode
ChannelConnection (channel 0 is the byte stream).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from crib.streaming import wschannel, wschannel_upgrade

TUNNEL_PROTOCOLS: tuple[str, ...] = (wschannel.SPDY_TUNNEL_PORTFORWARD,)


class TunnelReader:
    def __init__(self, conn: wschannel.ChannelConnection) -> None:
        self._conn = conn

    async def read(self, n: int = -1) -> bytes:
        return await self._conn.read(0, n if n > 0 else 64 * 1024)


class TunnelWriter:
    """The subset of asyncio.StreamWriter that SpdySession uses."""

    def __init__(self, conn: wschannel.ChannelConnection) -> None:
        self._conn = conn
        self._closing: asyncio.Task[None] | None = None

    @property
    def transport(self) -> asyncio.BaseTransport:
        return self._conn.transport

    def write(self, data: bytes) -> None:
        try:
            self._conn.write_nowait(0, data)
        except wschannel.ChannelConnectionClosed as exc:
            raise ConnectionResetError(str(exc)) from None

    async def drain(self) -> None:
        try:
            await self._conn.drain()
        except wschannel.ChannelConnectionClosed as exc:
            raise ConnectionResetError(str(exc)) from None

    def close(self) -> None:
        if self._closing is None and not self._conn.closed:
            self._closing = asyncio.get_running_loop().create_task(self._conn.close(timeout=5.0))

    async def wait_closed(self) -> None:
        await self._conn.wait_closed()


def wants_tunnel(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    return any(wschannel.is_tunnel_protocol(p) for p in wschannel_upgrade.requested_subprotocols(headers))


async def accept(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    headers: Sequence[tuple[bytes, bytes]],
    target: bytes | str,
    buffered: bytes,
    *,
    method: bytes = b"GET",
    settings: wschannel.ChannelSettings = wschannel.DEFAULT_SETTINGS,
) -> tuple[TunnelReader, TunnelWriter, wschannel.ChannelConnection]:
    """Upgrade to the tunnel; the SPDY protocol inside is the subprotocol minus its prefix."""
    conn = await wschannel_upgrade.accept(
        reader,
        writer,
        headers,
        target,
        buffered,
        TUNNEL_PROTOCOLS,
        [wschannel.ChannelMode.READ_WRITE],
        method=method,
        settings=settings,
    )
    return TunnelReader(conn), TunnelWriter(conn), conn


async def connect(
    url: str, protocols: Sequence[str] = TUNNEL_PROTOCOLS, **kw: Any
) -> tuple[TunnelReader, TunnelWriter, wschannel.ChannelConnection]:
    """The client end (tests and cribctl): a SpdySession(client=True) runs on what this returns."""
    conn = await wschannel_upgrade.ChannelClient.connect(url, protocols, **kw)
    if not wschannel.is_tunnel_protocol(conn.protocol):
        with contextlib.suppress(Exception):
            await conn.close(timeout=5.0)
        message = f"server chose {conn.protocol!r}, not a SPDY tunnel"
        raise wschannel_upgrade.WebSocketHandshakeError(101, message)
    return TunnelReader(conn), TunnelWriter(conn), conn
