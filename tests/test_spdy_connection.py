"""The SPDY/3.1 connection state machine (crib.streaming.spdy_connection).

Streams, flow control, pings, resets and GOAWAY, with two connections wired back to back.
"""

from __future__ import annotations

import os
import struct

import pytest

from crib.streaming.spdy_connection import (
    DEFAULT_INITIAL_WINDOW,
    DEFAULT_MAX_DATA_PAYLOAD,
    DataReceived,
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
    DataFrame,
    FrameDecoder,
    FrameEncoder,
    GoAwayFrame,
    GoAwayStatus,
    PingFrame,
    ProtocolError,
    RstStatus,
    RstStreamFrame,
    SettingId,
    SynStreamFrame,
    WindowUpdateFrame,
    normalize_headers,
)

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
