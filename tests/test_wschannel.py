"""The Kubernetes WebSocket channel protocol: negotiation, framing and v5 CLOSE.

Clients are ChannelClient or, where the bytes on the wire matter, a bare wsproto client,
against tests.wschannel_loopback's server.
"""

from __future__ import annotations

import asyncio
import base64
import os

import pytest
from wsproto.events import (
    CloseConnection,
)

from crib.streaming.wschannel import (
    BASE64_CHANNEL,
    CHANNEL,
    ERROR,
    PORTFORWARD_PROTOCOLS,
    REMOTECOMMAND_PROTOCOLS,
    STDERR,
    STDIN,
    STDOUT,
    V4_BASE64_CHANNEL,
    V4_CHANNEL,
    V5_CHANNEL,
    ChannelConnection,
    ChannelConnectionClosed,
    ChannelSettings,
    has_v4_status,
    port_header,
)
from crib.streaming.wschannel_upgrade import (
    ChannelClient,
    WebSocketHandshakeError,
    choose_subprotocol,
    is_websocket_request,
    negotiate,
    requested_subprotocols,
)
from tests.wschannel_loopback import KEY, KEY_ACCEPT, RawClient, echo, masked_frame, serve

pytestmark = pytest.mark.timeout(60)
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
