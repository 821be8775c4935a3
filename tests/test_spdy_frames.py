"""SPDY/3.1 framing (crib.streaming.spdy_frames): independent vectors, round trips, malformed input."""

from __future__ import annotations

import contextlib
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crib.streaming.spdy_connection import (
    SpdyConnection,
)
from crib.streaming.spdy_frames import (
    HEADER_DICTIONARY,
    DataFrame,
    FrameDecoder,
    FrameEncoder,
    GoAwayFrame,
    GoAwayStatus,
    HeadersFrame,
    PingFrame,
    ProtocolError,
    RstStatus,
    RstStreamFrame,
    Setting,
    SettingId,
    SettingsFrame,
    SynReplyFrame,
    SynStreamFrame,
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
