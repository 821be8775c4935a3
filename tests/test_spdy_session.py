"""The SPDY/3.1 asyncio adapter (crib.streaming.spdy_session) over real socket pairs."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import struct

import pytest

from crib.streaming.spdy_connection import (
    DEFAULT_INITIAL_WINDOW,
    SessionClosedError,
    SpdyConnection,
    StreamClosedError,
)
from crib.streaming.spdy_frames import (
    DataFrame,
    FrameDecoder,
    GoAwayFrame,
    GoAwayStatus,
    ProtocolError,
    RstStatus,
)
from crib.streaming.spdy_session import (
    SpdySession,
    StreamResetError,
)

# --- asyncio adapter --------------------------------------------------------------------


async def session_pair(
    flow_control: bool = True, *, idle_timeout: float | None = None
) -> tuple[SpdySession, SpdySession, socket.socket, socket.socket]:
    ssock, csock = socket.socketpair()
    sr, sw = await asyncio.open_connection(sock=ssock)
    cr, cw = await asyncio.open_connection(sock=csock)
    server = SpdySession(sr, sw, client=False, peer_flow_control=flow_control, idle_timeout=idle_timeout)
    client = SpdySession(cr, cw, client=True, peer_flow_control=flow_control)
    return server, client, ssock, csock


async def read_all(stream: object) -> bytes:
    out = bytearray()
    while chunk := await stream.read():  # type: ignore[attr-defined]
        out += chunk
    return bytes(out)


def other_tasks() -> set[asyncio.Task]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


@pytest.mark.parametrize("flow_control", [True, False], ids=["flow-control", "spdystream-mode"])
async def test_concurrent_streams_carry_5mb_each_way_intact(flow_control: bool) -> None:
    size = 5 << 20
    async with asyncio.timeout(120):
        server, client, _, _ = await session_pair(flow_control)

        async def serve_one(stream) -> str:
            await stream.reply({"X-Accepted": stream.header("streamType")})
            # Send our own 5 MB while receiving theirs.
            seed = int(stream.header("seed"))
            outgoing = hashlib.shake_256(str(seed).encode()).digest(size)
            writer = asyncio.create_task(stream.write(outgoing))
            got = await read_all(stream)
            await writer
            await stream.close()
            return hashlib.sha256(got).hexdigest()

        async def server_loop() -> list[str]:
            handlers = []
            while True:
                try:
                    stream = await server.accept_stream()
                except SessionClosedError:
                    break
                handlers.append(asyncio.create_task(serve_one(stream)))
            return list(await asyncio.gather(*handlers))

        server_task = asyncio.create_task(server_loop())

        async def client_one(i: int) -> tuple[str, bytes]:
            stream = await client.open_stream({"streamType": f"s{i}", "seed": str(i)})
            assert stream.reply_headers == {"x-accepted": [f"s{i}"]}
            payload = os.urandom(size)
            reader = asyncio.create_task(read_all(stream))
            await stream.write(payload)
            await stream.close()
            got = await reader
            assert got == hashlib.shake_256(str(i).encode()).digest(size)
            return hashlib.sha256(payload).hexdigest(), got

        results = await asyncio.gather(*(client_one(i) for i in range(4)))
        assert await client.ping() >= 0
        await client.aclose()
        server_digests = await server_task
        assert sorted(server_digests) == sorted(r[0] for r in results)
        await server.wait_closed()
        assert other_tasks() == set()


async def test_slow_reader_holds_back_the_writer() -> None:
    async with asyncio.timeout(30):
        server, client, _, _ = await session_pair(True)
        opened = asyncio.create_task(client.open_stream({"streamType": "stdout"}))
        stream = await server.accept_stream()
        await stream.reply()
        cstream = await opened
        payload = os.urandom(1 << 20)
        write = asyncio.create_task(stream.write(payload))
        await asyncio.sleep(0.2)
        assert not write.done()  # the client has not read anything yet
        assert server.connection.pending_data(stream.id) == len(payload) - DEFAULT_INITIAL_WINDOW
        got = bytearray()
        while len(got) < len(payload):
            got += await cstream.read(10_000)  # small reads: acknowledgements trickle back
            if len(got) < len(payload) // 2:
                assert not write.done()
        await write
        assert bytes(got) == payload
        await client.aclose()
        await server.wait_closed()


async def test_peer_vanishing_mid_stream_ends_every_task_and_closes_the_transport() -> None:
    async with asyncio.timeout(30):
        ssock, csock = socket.socketpair()
        sr, sw = await asyncio.open_connection(sock=ssock)
        server = SpdySession(sr, sw, client=False, peer_flow_control=True)
        # The peer is a bare sans-IO client on a blocking socket, so it can vanish without a GOAWAY.
        peer = SpdyConnection(client=True)
        sid = peer.open_stream({"streamType": "stdin"})
        peer.send_data(sid, b"partial input")
        csock.sendall(peer.data_to_send())

        stream = await server.accept_stream()
        await stream.reply({})
        assert await stream.read() == b"partial input"
        reader = asyncio.create_task(stream.read())
        writer = asyncio.create_task(stream.write(b"o" * (1 << 20)))  # blocks on the 64 KiB window
        accept = asyncio.create_task(server.accept_stream())
        ping = asyncio.create_task(server.ping(timeout=None))
        await asyncio.sleep(0.1)
        assert not (reader.done() or writer.done() or accept.done())

        csock.close()  # the peer is gone mid-stream

        for task in (reader, writer, accept, ping):
            with pytest.raises(SessionClosedError):
                await task
        await server.wait_closed()
        assert server.closed
        assert sw.transport.is_closing()
        assert other_tasks() == set()
        with pytest.raises(SessionClosedError):
            await stream.write(b"x")
        with pytest.raises(SessionClosedError):
            await server.open_stream({})


async def test_reset_and_close_semantics() -> None:
    async with asyncio.timeout(30):
        server, client, _, _ = await session_pair(True)
        opened = asyncio.create_task(client.open_stream({"streamType": "error"}))
        sstream = await server.accept_stream()
        await sstream.reply()
        cstream = await opened
        await cstream.write(b"abc")
        await cstream.close()
        await cstream.close()  # idempotent
        with pytest.raises(StreamClosedError):
            await cstream.write(b"x")
        assert await sstream.readexactly(3) == b"abc"
        assert await sstream.read() == b""  # FIN
        pending = asyncio.create_task(cstream.read())
        sstream.reset(RstStatus.INTERNAL_ERROR)
        with pytest.raises(StreamResetError) as info:
            await pending
        assert info.value.status == RstStatus.INTERNAL_ERROR and info.value.remote
        with pytest.raises(StreamResetError):
            await sstream.write(b"x")
        await client.aclose()
        await server.wait_closed()
        assert other_tasks() == set()


async def test_unread_data_of_a_reset_stream_gives_the_session_window_back() -> None:
    async with asyncio.timeout(30):
        server, client, _, _ = await session_pair(True)
        first = asyncio.create_task(client.open_stream({"streamType": "a"}))
        a = await server.accept_stream()
        await a.reply()
        ca = await first
        await a.write(b"x" * 60_000)  # fills most of the 64 KiB session window, never read
        await asyncio.sleep(0.05)
        ca.reset()
        second = asyncio.create_task(client.open_stream({"streamType": "b"}))
        b = await server.accept_stream()
        await b.reply()
        cb = await second
        payload = os.urandom(300_000)
        writer = asyncio.create_task(b.write(payload))
        assert await cb.readexactly(len(payload)) == payload
        await writer
        await client.aclose()
        await server.wait_closed()


async def test_streams_are_accepted_with_auto_reply_on_first_write() -> None:
    async with asyncio.timeout(30):
        server, client, _, _ = await session_pair(False)
        opened = asyncio.create_task(client.open_stream({"streamType": "stdout"}))
        sstream = await server.accept_stream()
        await sstream.write(b"no explicit reply")  # replies with empty headers first, like the Go server
        cstream = await opened
        assert cstream.reply_headers == {}
        assert await cstream.read() == b"no explicit reply"
        await client.aclose()
        await server.wait_closed()


async def test_open_stream_times_out_without_a_reply() -> None:
    async with asyncio.timeout(30):
        server, client, _, _ = await session_pair(True)
        with pytest.raises(TimeoutError):
            await client.open_stream({"streamType": "stdin"}, timeout=0.2)
        stream = await server.accept_stream()
        with pytest.raises(StreamResetError):  # the client cancelled it
            await stream.read()
        await client.aclose()
        await server.wait_closed()


async def test_idle_session_is_closed() -> None:
    async with asyncio.timeout(30):
        server, client, _, _ = await session_pair(True, idle_timeout=0.3)
        opened = asyncio.create_task(client.open_stream({"streamType": "stdin"}))
        sstream = await server.accept_stream()
        await sstream.reply()
        cstream = await opened
        await cstream.write(b"x")
        assert await sstream.read() == b"x"
        loop = asyncio.get_running_loop()
        start = loop.time()
        await server.wait_closed()
        assert 0.25 <= loop.time() - start < 5
        with pytest.raises(StreamResetError):
            await sstream.read()
        await client.wait_closed()  # the client saw the reset, the GOAWAY and EOF
        assert client.goaway is not None
        assert other_tasks() == set()


async def test_protocol_error_from_the_peer_sends_goaway_and_closes() -> None:
    async with asyncio.timeout(30):
        ssock, csock = socket.socketpair()
        sr, sw = await asyncio.open_connection(sock=ssock)
        server = SpdySession(sr, sw, client=False, peer_flow_control=False)
        csock.sendall(struct.pack(">HHI", 0x8002, 1, 0))  # SPDY/2
        await server.wait_closed()
        assert isinstance(server.error, ProtocolError)
        csock.settimeout(5)
        answer = b""
        while chunk := csock.recv(100):
            answer += chunk
        decoder = FrameDecoder()
        decoder.feed(answer)
        assert list(decoder.frames()) == [GoAwayFrame(0, GoAwayStatus.PROTOCOL_ERROR)]
        csock.close()


async def test_a_slow_reader_still_gets_the_last_frame_after_close() -> None:
    """The exec status is the last frame: a client still reading when the server closes gets
    it, however long past close_timeout, as long as it keeps reading (spdystream's Close waits
    for it too). Over TCP with small buffers, so the server still holds data when it closes."""
    async with asyncio.timeout(60):
        accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

        async def on_connect(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            await accepted.put((r, w))

        listener = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        csock = socket.socket()
        csock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        csock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(csock, ("127.0.0.1", port))
        sr, sw = await accepted.get()
        server = SpdySession(sr, sw, client=False, peer_flow_control=False, close_timeout=1.0)
        peer = SpdyConnection(client=True)  # spdystream-like: acknowledges nothing
        sid = peer.open_stream({"streamType": "stdout"})
        await loop.sock_sendall(csock, peer.data_to_send())
        stream = await server.accept_stream()
        await stream.reply({})
        big = b"o" * (48 << 10)

        async def serve() -> None:
            await stream.write(big)
            await stream.write(b"STATUS")
            await stream.close()
            await server.aclose(1.0)

        served = asyncio.create_task(serve())
        decoder = FrameDecoder()
        got = bytearray()
        fin = False
        while not fin:
            # 1 KiB every 100 ms: the up to 16 KiB the server still holds when it closes
            # take longer than its close_timeout, yet each second brings progress.
            await asyncio.sleep(0.1)
            chunk = await loop.sock_recv(csock, 1024)
            if not chunk:
                break
            decoder.feed(chunk)
            for frame in decoder.frames():
                if isinstance(frame, DataFrame) and frame.stream_id == sid:
                    got += frame.data
                    fin = fin or frame.fin
        await served
        csock.close()
        listener.close()
        await listener.wait_closed()
        assert fin and len(got) == len(big) + 6 and got.endswith(b"STATUS")
