"""SPDY/3.1 framing, connection state machine and asyncio adapter (crib.streaming.spdy)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crib.streaming.spdy import (
    DEFAULT_INITIAL_WINDOW,
    DEFAULT_MAX_DATA_PAYLOAD,
    HEADER_DICTIONARY,
    DataFrame,
    DataReceived,
    FrameDecoder,
    FrameEncoder,
    GoAwayFrame,
    GoAwayReceived,
    GoAwayStatus,
    HeadersFrame,
    HeadersReceived,
    PingAcknowledged,
    PingFrame,
    PingReceived,
    ProtocolError,
    RstStatus,
    RstStreamFrame,
    SessionClosedError,
    Setting,
    SettingId,
    SettingsFrame,
    SettingsReceived,
    SpdyConnection,
    SpdySession,
    StreamClosedError,
    StreamOpened,
    StreamReplied,
    StreamReset,
    StreamResetError,
    SynReplyFrame,
    SynStreamFrame,
    WindowUpdated,
    WindowUpdateFrame,
    decode_header_block,
    encode_header_block,
    normalize_headers,
)

# --- independent vectors ------------------------------------------------------

# Chromium's net/spdy framer test (CreateSynStreamCompressed, SPDY/3): SYN_STREAM for
# stream 1, priority 4, headers bar=foo and foo=bar, compressed by Chromium with a
# 2 KiB window (zlib header 38 ea) and DICTID e3c6a7c2.
CHROMIUM_SYN_STREAM = bytes.fromhex(
    "80030001000000370000000100000000800038eae3c6a7c202e50e50c24b4a04e50b6680004acbcf"
    "0708201095969f0fa200022829b108208000000000ffff"
)
# The same test file's SYN_REPLY (CreateSynReplyCompressed) for stream 1.
CHROMIUM_SYN_REPLY = bytes.fromhex(
    "800300020000003100000001"
    "38eae3c6a7c202e50e50c24b4a04e50b6680004acbcf0708201095969f0fa200022829b108208000000000ffff"
)
# Uncompressed control frames from the same file (CreateRstStream, CreateSettings).
CHROMIUM_RST_STREAM = bytes.fromhex("80030003000000080000000100000001")
CHROMIUM_SETTINGS = bytes.fromhex("800300040000000c00000001010203040a0b0c0d")

# Captured from github.com/moby/spdystream v0.5.1 (the vendored copy crictl uses) as a
# client: PING 1, then three SYN_STREAMs sharing one zlib context (level 9: 78 f9).
# Streams 3 and 5 only decode after stream 1's block.
SPDYSTREAM_OPENING = bytes.fromhex(
    "800300060000000400000001"
    "80030001000000400000000100000000000078f9e3c6a7c262606060626060e02a2e294a4dcc8516256cc5"
    "2529a945450c0c0cec15bab9a53925990c0c0ccc890c4900000000ffff"
    "800300010000001a00000003000000000000c2aa9ab5b82425330f5331000000ffff"
    "800300010000001800000005000000000000c269747e6909a66a00000000ffff"
)


def test_header_dictionary_is_spdy3s() -> None:
    # The DICTID every SPDY/3 zlib stream carries is the Adler-32 of the dictionary.
    assert len(HEADER_DICTIONARY) == 1423
    assert zlib.adler32(HEADER_DICTIONARY) == 0xE3C6A7C2
    assert HEADER_DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert HEADER_DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")


def test_decodes_chromium_compressed_syn_stream() -> None:
    decoder = FrameDecoder()
    decoder.feed(CHROMIUM_SYN_STREAM)
    assert list(decoder.frames()) == [
        SynStreamFrame(1, {"bar": ["foo"], "foo": ["bar"]}, priority=4),
    ]


def test_decodes_chromium_compressed_syn_reply() -> None:
    decoder = FrameDecoder()
    decoder.feed(CHROMIUM_SYN_REPLY)
    assert list(decoder.frames()) == [SynReplyFrame(1, {"bar": ["foo"], "foo": ["bar"]})]


def test_decodes_spdystream_frames_sharing_one_compression_context() -> None:
    decoder = FrameDecoder()
    decoder.feed(SPDYSTREAM_OPENING)
    frames = list(decoder.frames())
    assert frames == [
        PingFrame(1),
        SynStreamFrame(1, {"streamtype": ["stderr"], "x-multi": ["a", "b"]}),
        SynStreamFrame(3, {"streamtype": ["stdin"], "x-multi": ["a", "b"]}),
        SynStreamFrame(5, {"streamtype": ["stdout"], "x-multi": ["a", "b"]}),
    ]
    # Without the first block's context the third frame cannot be inflated.
    fresh = FrameDecoder()
    fresh.feed(SPDYSTREAM_OPENING[-32:])
    with pytest.raises(ProtocolError):
        fresh.next_frame()


def test_our_header_blocks_inflate_with_plain_zlib_and_the_dictionary() -> None:
    # An independent inflater (zlib, not our decoder) reads what we compress, block after block.
    encoder = FrameEncoder()
    inflater = zlib.decompressobj(zdict=HEADER_DICTIONARY)
    for sid, value in ((1, "stdin"), (3, "stdout")):
        frame = encoder.encode(SynStreamFrame(sid, {"streamtype": [value]}))
        if sid == 1:  # the zlib header, with the dictionary's id, opens the first block only
            assert frame[18] == 0x78 and frame[20:24] == bytes.fromhex("e3c6a7c2")
        raw = inflater.decompress(frame[18:])
        assert decode_header_block(raw) == {"streamtype": [value]}
        assert frame.endswith(b"\x00\x00\xff\xff")  # Z_SYNC_FLUSH after every block


def test_uncompressed_control_frames_match_chromium_bytes() -> None:
    encoder = FrameEncoder()
    assert encoder.encode(RstStreamFrame(1, RstStatus.PROTOCOL_ERROR)) == CHROMIUM_RST_STREAM
    assert encoder.encode(SettingsFrame((Setting(0x020304, 0x0A0B0C0D, flags=1),))) == CHROMIUM_SETTINGS
    decoder = FrameDecoder()
    decoder.feed(CHROMIUM_RST_STREAM + CHROMIUM_SETTINGS)
    assert list(decoder.frames()) == [
        RstStreamFrame(1, 1),
        SettingsFrame((Setting(0x020304, 0x0A0B0C0D, flags=1),)),
    ]


def test_fixed_layouts() -> None:
    encoder = FrameEncoder()
    assert encoder.encode(PingFrame(7)) == bytes.fromhex("800300060000000400000007")
    assert encoder.encode(GoAwayFrame(5, GoAwayStatus.PROTOCOL_ERROR)) == bytes.fromhex(
        "80030007000000080000000500000001"
    )
    assert encoder.encode(WindowUpdateFrame(0, 0x10000)) == bytes.fromhex("80030009000000080000000000010000")
    assert encoder.encode(DataFrame(3, b"hi", fin=True)) == bytes.fromhex("00000003010000026869")
    assert encoder.encode(DataFrame(0x7FFFFFFF, b"")) == bytes.fromhex("7fffffff00000000")


# --- framing round trips --------------------------------------------------------

ALL_FRAMES = [
    SynStreamFrame(1, {"streamtype": ["stdin"], "port": ["8080"], "x-multi": ["a", "b", ""]}),
    SynStreamFrame(3, {}, fin=True, unidirectional=True, associated_id=1, priority=7, slot=9),
    SynReplyFrame(1, {}),
    SynReplyFrame(3, {"x": ["y"]}, fin=True),
    RstStreamFrame(1, RstStatus.CANCEL),
    RstStreamFrame(0x7FFFFFFF, RstStatus.FRAME_TOO_LARGE),
    SettingsFrame(),
    SettingsFrame((Setting(SettingId.INITIAL_WINDOW_SIZE, 1 << 20), Setting(4, 100, flags=2)), clear=True),
    PingFrame(1),
    PingFrame(0xFFFFFFFF),
    GoAwayFrame(0),
    GoAwayFrame(9, GoAwayStatus.INTERNAL_ERROR),
    HeadersFrame(1, {"a": ["b"]}),
    HeadersFrame(3, {"c": ["d"]}, fin=True),
    WindowUpdateFrame(0, 1),
    WindowUpdateFrame(5, 0x7FFFFFFF),
    DataFrame(1, b""),
    DataFrame(1, b"x" * 70000, fin=True),
]


def test_every_frame_type_round_trips() -> None:
    encoder, decoder = FrameEncoder(), FrameDecoder()
    for frame in ALL_FRAMES:
        decoder.feed(encoder.encode(frame))
        assert decoder.next_frame() == frame
    assert decoder.next_frame() is None
    assert decoder.buffered == 0


def test_feeding_byte_by_byte_gives_the_same_frames() -> None:
    encoder = FrameEncoder()
    wire = b"".join(encoder.encode(f) for f in ALL_FRAMES)
    decoder = FrameDecoder()
    got = []
    for i in range(len(wire)):
        decoder.feed(wire[i : i + 1])
        got.extend(decoder.frames())
    assert got == ALL_FRAMES


def test_unknown_control_frames_are_skipped() -> None:
    encoder = FrameEncoder()
    credential = struct.pack(">HHI", 0x8003, 10, 4) + b"abcd"
    future = struct.pack(">HHI", 0x8003, 0xFFFF, 0)
    noop = struct.pack(">HHI", 0x8003, 5, 0)
    decoder = FrameDecoder()
    decoder.feed(credential + encoder.encode(PingFrame(2)) + future + noop + encoder.encode(PingFrame(4)))
    assert list(decoder.frames()) == [PingFrame(2), PingFrame(4)]
    assert decoder.skipped_frames == 3


def test_header_names_are_lowercased_and_merged() -> None:
    assert normalize_headers({"streamType": "stdin", "X-Multi": ["a", "b"], "x-multi": "c"}) == {
        "streamtype": ["stdin"],
        "x-multi": ["a", "b", "c"],
    }
    with pytest.raises(ValueError):
        normalize_headers({"": "x"})
    with pytest.raises(ValueError):
        normalize_headers({"a": "b\x00c"})
    block = encode_header_block({"a": ["1", "2"]})
    assert block == b"\x00\x00\x00\x01\x00\x00\x00\x01a\x00\x00\x00\x031\x002"


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (struct.pack(">HHI", 0x8002, 6, 4) + b"\0\0\0\1", "version"),  # SPDY/2
        (struct.pack(">HHI", 0x8003, 1, 0xFFFFFF), "exceeds"),  # 16 MiB control frame: refused on its header
        (struct.pack(">II", 1, 0xFFFFFF), "exceeds"),  # data frame over the configured limit
        (struct.pack(">II", 0, 0), "stream 0"),
        (struct.pack(">HHI", 0x8003, 6, 8) + b"\0" * 8, "PING"),
        (struct.pack(">HHI", 0x8003, 3, 4) + b"\0\0\0\1", "RST_STREAM"),
        (struct.pack(">HHI", 0x8003, 4, 4) + b"\0\0\0\5", "SETTINGS"),
        (struct.pack(">HHI", 0x8003, 9, 8) + b"\0" * 8, None),  # well-formed (delta 0): no error
        (struct.pack(">HHI", 0x8003, 1, 14) + b"\0\0\0\1\0\0\0\0\0\0garb", "inflate"),
        (struct.pack(">HHI", 0x8003, 2, 2) + b"\0\0", "short"),
    ],
)
def test_malformed_input_raises_only_protocol_error(wire: bytes, message: str | None) -> None:
    decoder = FrameDecoder(max_data_payload=1 << 20)
    decoder.feed(wire)
    if message is None:
        assert decoder.next_frame() is not None
        return
    with pytest.raises(ProtocolError, match=message):
        decoder.next_frame()
    with pytest.raises(ProtocolError):  # and it stays failed
        decoder.next_frame()


def test_truncated_input_waits_for_more() -> None:
    wire = FrameEncoder().encode(SynStreamFrame(1, {"a": ["b"]}))
    decoder = FrameDecoder()
    decoder.feed(wire[:-1])
    assert decoder.next_frame() is None
    decoder.feed(wire[-1:])
    assert decoder.next_frame() == SynStreamFrame(1, {"a": ["b"]})


def test_header_block_bomb_is_refused() -> None:
    encoder = FrameEncoder()
    frame = encoder.encode(SynStreamFrame(1, {"big": ["x" * 300_000]}))
    decoder = FrameDecoder(max_header_block=100_000)
    decoder.feed(frame)
    with pytest.raises(ProtocolError, match="inflates past"):
        decoder.next_frame()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(min_value=1, max_value=64))
def test_fuzz_raw_bytes_raise_nothing_but_protocol_error(data: bytes, chunk: int) -> None:
    conn = SpdyConnection(client=False)
    try:
        for i in range(0, len(data), chunk):
            conn.receive_data(data[i : i + chunk])
    except ProtocolError:
        pass
    conn.goaway(GoAwayStatus.PROTOCOL_ERROR)
    conn.data_to_send()


VALID_WIRE = SPDYSTREAM_OPENING + b"".join(FrameEncoder().encode(f) for f in ALL_FRAMES[:6])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(VALID_WIRE) - 1), st.integers(0, 255)), max_size=4))
def test_fuzz_corrupted_frames_raise_nothing_but_protocol_error(flips: list[tuple[int, int]]) -> None:
    wire = bytearray(VALID_WIRE)
    for pos, value in flips:
        wire[pos] = value
    conn = SpdyConnection(client=False)
    with contextlib.suppress(ProtocolError):
        conn.receive_data(bytes(wire))


# --- connection state machine ------------------------------------------------------


class Pair:
    """A client and a server connection wired back to back, with an observer per direction."""

    def __init__(self, client_kw: dict | None = None, server_kw: dict | None = None) -> None:
        self.client = SpdyConnection(True, **(client_kw or {}))
        self.server = SpdyConnection(False, **(server_kw or {}))
        self._c2s, self._s2c = FrameDecoder(), FrameDecoder()
        self.c2s: list = []  # frames the client sent
        self.s2c: list = []

    def pump(self) -> tuple[list, list]:
        """Deliver bytes both ways until quiet; return (client events, server events)."""
        cev: list = []
        sev: list = []
        while True:
            a, b = self.client.data_to_send(), self.server.data_to_send()
            if not a and not b:
                return cev, sev
            if a:
                self._c2s.feed(a)
                self.c2s.extend(self._c2s.frames())
                sev += self.server.receive_data(a)
            if b:
                self._s2c.feed(b)
                self.s2c.extend(self._s2c.frames())
                cev += self.client.receive_data(b)

    def open(self, headers: dict | None = None) -> int:
        sid = self.client.open_stream(headers or {"streamtype": "stdout"})
        _, sev = self.pump()
        assert sev == [StreamOpened(sid, normalize_headers(headers or {"streamtype": "stdout"}))]
        self.server.reply(sid, {})
        cev, _ = self.pump()
        assert cev == [StreamReplied(sid, {})]
        return sid


def test_stream_ids_and_a_simple_exchange() -> None:
    pair = Pair()
    assert pair.open() == 1
    assert pair.open({"streamtype": "stdin"}) == 3
    pair.client.send_data(1, b"hello", fin=True)
    _, sev = pair.pump()
    assert sev == [DataReceived(1, b"hello", True)]
    pair.server.send_data(1, b"world")
    pair.server.end_stream(1)
    cev, _ = pair.pump()
    assert cev == [DataReceived(1, b"world"), DataReceived(1, b"", True)]
    assert not pair.client.is_open(1) and not pair.server.is_open(1)
    with pytest.raises(StreamClosedError):
        pair.server.send_data(1, b"late")
    # A server opens even ids.
    assert pair.server.open_stream({"x": "y"}) == 2


def test_headers_frames_and_unidirectional_streams() -> None:
    pair = Pair()
    sid = pair.open()
    pair.server.send_headers(sid, {"Trailer": "t"}, fin=True)
    cev, _ = pair.pump()
    assert cev == [HeadersReceived(sid, {"trailer": ["t"]}, True)]
    uni = pair.client.open_stream({"a": "b"}, unidirectional=True)
    _, sev = pair.pump()
    assert sev == [StreamOpened(uni, {"a": ["b"]}, unidirectional=True)]
    with pytest.raises(StreamClosedError):
        pair.server.send_data(uni, b"x")


def test_data_before_reply_must_not_be_sent() -> None:
    pair = Pair()
    sid = pair.client.open_stream({})
    pair.pump()
    with pytest.raises(Exception, match="reply"):
        pair.server.send_data(sid, b"x")


def test_flow_control_one_megabyte_completes_only_as_the_reader_acknowledges() -> None:
    pair = Pair()
    sid = pair.open()
    payload = os.urandom(1 << 20)
    pair.server.send_data(sid, payload, fin=True)
    received = bytearray()
    unacked = 0
    rounds = 0
    while True:
        cev, _ = pair.pump()
        for ev in cev:
            assert isinstance(ev, DataReceived)
            received += ev.data
            unacked += len(ev.data)
        # Never more in flight than the 64 KiB windows allow.
        assert unacked <= DEFAULT_INITIAL_WINDOW
        if cev and cev[-1].fin:
            break
        assert cev, "stalled although the reader acknowledged everything"
        if rounds == 0:
            assert len(received) == DEFAULT_INITIAL_WINDOW
            assert pair.server.pending_data(sid) == len(payload) - DEFAULT_INITIAL_WINDOW
            assert pair.server.session_send_window == 0
            # Nothing moves until the reader acknowledges.
            assert pair.pump() == ([], [])
        rounds += 1
        pair.client.acknowledge(sid, unacked)  # the application consumed it all
        unacked = 0
    assert bytes(received) == payload
    assert rounds > 10
    data_frames = [f for f in pair.s2c if isinstance(f, DataFrame)]
    assert max(len(f.data) for f in data_frames) <= DEFAULT_MAX_DATA_PAYLOAD
    updates = [f for f in pair.c2s if isinstance(f, WindowUpdateFrame)]
    assert {f.stream_id for f in updates} == {0, sid}  # both the session and the stream windows
    assert sum(f.delta for f in updates if f.stream_id == 0) >= len(payload) - DEFAULT_INITIAL_WINDOW


def test_partial_acknowledgement_applies_back_pressure() -> None:
    pair = Pair()
    sid = pair.open()
    pair.server.send_data(sid, b"x" * 200_000)
    pair.pump()
    pair.client.acknowledge(sid, 1000)  # below the half-window threshold: no WINDOW_UPDATE yet
    assert pair.pump() == ([], [])
    pair.client.acknowledge(sid, 40_000)
    cev, _ = pair.pump()
    assert sum(len(e.data) for e in cev) == 41_000


def test_session_window_is_shared_by_all_streams() -> None:
    pair = Pair()
    a, b = pair.open(), pair.open()
    pair.server.send_data(a, b"a" * 50_000)
    pair.server.send_data(b, b"b" * 50_000)
    cev, _ = pair.pump()
    assert sum(len(e.data) for e in cev) == DEFAULT_INITIAL_WINDOW  # 64 KiB in total, not per stream
    assert pair.server.stream_send_window(a) > 0 and pair.server.stream_send_window(b) > 0


def test_stream_window_limits_one_stream_even_with_a_large_session_window() -> None:
    pair = Pair(client_kw={"session_window": 10 << 20})
    pair.pump()  # the initial WINDOW_UPDATE(0) widening the session window
    assert pair.server.session_send_window == 10 << 20
    sid = pair.open()
    pair.server.send_data(sid, b"z" * 200_000)
    cev, _ = pair.pump()
    assert sum(len(e.data) for e in cev) == DEFAULT_INITIAL_WINDOW
    assert pair.server.stream_send_window(sid) == 0


def test_peer_initial_window_setting_adjusts_existing_streams() -> None:
    pair = Pair()
    sid = pair.open()
    pair.server.send_data(sid, b"q" * 10_000)
    pair.pump()
    pair.client.send_settings({SettingId.INITIAL_WINDOW_SIZE: 4096})
    _, sev = pair.pump()
    assert sev == [SettingsReceived({SettingId.INITIAL_WINDOW_SIZE: 4096})]
    assert pair.server.stream_send_window(sid) == 4096 - 10_000  # negative, as the spec says
    pair.server.send_data(sid, b"w" * 10)
    assert pair.pump() == ([], [])  # blocked until the window is positive again
    new = pair.open()
    assert pair.server.stream_send_window(new) == 4096


def test_window_updates_from_the_peer_release_queued_data() -> None:
    pair = Pair()
    sid = pair.open()
    pair.server.send_data(sid, b"p" * 100_000)
    pair.pump()
    pair.client.acknowledge(sid, DEFAULT_INITIAL_WINDOW)
    cev, sev = pair.pump()
    assert WindowUpdated(0, DEFAULT_INITIAL_WINDOW) in sev
    assert WindowUpdated(sid, DEFAULT_INITIAL_WINDOW) in sev
    assert sum(len(e.data) for e in cev) == 100_000 - DEFAULT_INITIAL_WINDOW


def test_a_peer_overrunning_the_windows_is_stopped() -> None:
    # A peer that ignores our windows (a raw encoder plays it).
    encoder = FrameEncoder()
    server = SpdyConnection(client=False, session_window=1 << 20)
    server.receive_data(encoder.encode(SynStreamFrame(1, {})))
    server.reply(1, {})
    events = server.receive_data(encoder.encode(DataFrame(1, b"x" * (DEFAULT_INITIAL_WINDOW + 1))))
    assert events == [StreamReset(1, RstStatus.FLOW_CONTROL_ERROR, remote=False)]
    decoder = FrameDecoder()
    decoder.feed(server.data_to_send())
    assert RstStreamFrame(1, RstStatus.FLOW_CONTROL_ERROR) in list(decoder.frames())
    # Each stream within its own window, together past the 64 KiB session window: a session error.
    encoder = FrameEncoder()
    server = SpdyConnection(client=False)
    server.receive_data(encoder.encode(SynStreamFrame(1, {})) + encoder.encode(SynStreamFrame(3, {})))
    server.reply(1, {})
    server.reply(3, {})
    server.receive_data(encoder.encode(DataFrame(1, b"a" * 40_000)))
    with pytest.raises(ProtocolError, match="session flow-control window"):
        server.receive_data(encoder.encode(DataFrame(3, b"b" * 40_000)))


def test_without_peer_flow_control_overruns_are_accepted_and_output_is_not_held() -> None:
    server = SpdyConnection(client=False, peer_flow_control=False)
    encoder = FrameEncoder()
    server.receive_data(encoder.encode(SynStreamFrame(1, {})))
    server.reply(1, {})
    big = b"x" * (3 * DEFAULT_INITIAL_WINDOW)
    events = server.receive_data(encoder.encode(DataFrame(1, big)))
    assert events == [DataReceived(1, big)]
    server.send_data(1, big)
    assert server.pending_data(1) == 0  # framed at once, windows ignored
    decoder = FrameDecoder()
    decoder.feed(server.data_to_send())
    assert sum(len(f.data) for f in decoder.frames() if isinstance(f, DataFrame)) == len(big)


def test_pings_are_answered_automatically() -> None:
    pair = Pair()
    ping_id = pair.client.ping()
    assert ping_id % 2 == 1
    cev, sev = pair.pump()
    assert sev == [PingReceived(ping_id)]
    assert cev == [PingAcknowledged(ping_id)]
    assert pair.s2c == [PingFrame(ping_id)]
    server_ping = pair.server.ping()
    assert server_ping % 2 == 0
    cev, sev = pair.pump()
    assert (cev, sev) == ([PingReceived(server_ping)], [PingAcknowledged(server_ping)])
    # A ping of our own parity that we never sent is ignored, not echoed.
    assert pair.client.receive_data(FrameEncoder().encode(PingFrame(101))) == []
    assert pair.client.data_to_send() == b""


def test_reset_by_either_side() -> None:
    pair = Pair()
    sid = pair.open()
    pair.server.send_data(sid, b"x" * 1000)
    pair.client.reset(sid, RstStatus.CANCEL)
    cev, sev = pair.pump()
    assert sev == [StreamReset(sid, RstStatus.CANCEL, remote=True)]
    assert cev == []  # data that crossed the RST is dropped silently
    assert not pair.server.is_open(sid)
    with pytest.raises(StreamClosedError):
        pair.server.send_data(sid, b"more")
    pair.server.reset(sid)  # a no-op: no RST answers an RST
    assert pair.server.data_to_send() == b""
    # The dropped bytes still count against the session window and are given back.
    other = pair.open()
    pair.server.send_data(other, b"y" * 100_000)
    cev, _ = pair.pump()
    assert sum(len(e.data) for e in cev) == DEFAULT_INITIAL_WINDOW - 1000


def test_frames_for_unknown_streams() -> None:
    server = SpdyConnection(client=False)
    encoder = FrameEncoder()
    assert server.receive_data(encoder.encode(DataFrame(9, b"x"))) == []
    decoder = FrameDecoder()
    decoder.feed(server.data_to_send())
    assert list(decoder.frames()) == [RstStreamFrame(9, RstStatus.INVALID_STREAM)]
    # Reusing a stream id is refused without killing the session.
    server.receive_data(encoder.encode(SynStreamFrame(1, {})))
    assert server.receive_data(encoder.encode(SynStreamFrame(1, {}))) == []
    decoder.feed(server.data_to_send())
    assert list(decoder.frames()) == [RstStreamFrame(1, RstStatus.PROTOCOL_ERROR)]


def test_goaway_both_ways() -> None:
    pair = Pair()
    first = pair.open()
    pending = pair.client.open_stream({})  # crosses the server's GOAWAY
    pair.server.goaway()
    cev, sev = pair.pump()
    assert GoAwayReceived(first, GoAwayStatus.OK) in cev
    assert StreamReset(pending, RstStatus.REFUSED_STREAM, remote=True) in cev
    assert sev == []  # the server refused the late stream instead of opening it
    assert RstStreamFrame(pending, RstStatus.REFUSED_STREAM) in pair.s2c
    with pytest.raises(SessionClosedError):
        pair.client.open_stream({})
    # Existing streams keep working after GOAWAY.
    pair.server.send_data(first, b"still here", fin=True)
    cev, _ = pair.pump()
    assert cev == [DataReceived(first, b"still here", True)]


def test_protocol_error_becomes_goaway() -> None:
    server = SpdyConnection(client=False)
    encoder = FrameEncoder()
    good = encoder.encode(SynStreamFrame(1, {"a": "b"}))
    bad = struct.pack(">HHI", 0x8003, 1, 14) + b"\0\0\0\3\0\0\0\0\0\0junk"
    with pytest.raises(ProtocolError) as info:
        server.receive_data(good + bad)
    assert info.value.events == [StreamOpened(1, {"a": ["b"]})]  # what came before the error
    assert server.failed
    server.goaway(info.value.status)
    decoder = FrameDecoder()
    decoder.feed(server.data_to_send())
    assert list(decoder.frames()) == [GoAwayFrame(1, GoAwayStatus.PROTOCOL_ERROR)]
    assert server.receive_data(b"anything") == []


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
