"""The SPDY/3.1 connection state machine, sans-IO: the middle SPDY layer.

`SpdyConnection` keeps stream ids, stream states, SPDY/3.1 flow control
(stream and session windows) and answers PINGs. Feed it bytes with
`receive_data`, get events back, send `data_to_send()`. It frames with
`crib.streaming.spdy_frames`; `crib.streaming.spdy_session` drives it over asyncio.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from crib.streaming.spdy_frames import (
    DEFAULT_MAX_CONTROL_PAYLOAD,
    DEFAULT_MAX_HEADER_BLOCK,
    MAX_FRAME_PAYLOAD,
    MAX_STREAM_ID,
    MAX_WINDOW,
    DataFrame,
    Frame,
    FrameDecoder,
    FrameEncoder,
    GoAwayFrame,
    GoAwayStatus,
    Headers,
    HeadersFrame,
    HeadersLike,
    PingFrame,
    ProtocolError,
    RstStatus,
    RstStreamFrame,
    Setting,
    SettingId,
    SettingsFrame,
    SpdyError,
    SynReplyFrame,
    SynStreamFrame,
    WindowUpdateFrame,
    normalize_headers,
)

DEFAULT_INITIAL_WINDOW = 64 * 1024
DEFAULT_MAX_DATA_PAYLOAD = 16 * 1024  # what we put in one outgoing DATA frame


class StreamClosedError(SpdyError):
    """The stream cannot take this operation any more (FIN sent, or unknown)."""


class SessionClosedError(SpdyError):
    """The SPDY session is over (closed, GOAWAY, or the transport was lost)."""


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer opened a stream (SYN_STREAM)."""

    stream_id: int
    headers: Headers
    fin: bool = False
    unidirectional: bool = False
    associated_id: int = 0
    priority: int = 0


@dataclass(frozen=True, slots=True)
class StreamReplied:
    """The peer accepted a stream we opened (SYN_REPLY)."""

    stream_id: int
    headers: Headers
    fin: bool = False


@dataclass(frozen=True, slots=True)
class HeadersReceived:
    stream_id: int
    headers: Headers
    fin: bool = False


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Stream data. Call `SpdyConnection.acknowledge` once it has been consumed."""

    stream_id: int
    data: bytes
    fin: bool = False


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The stream is gone: the peer sent RST_STREAM (remote) or we had to send one."""

    stream_id: int
    status: int
    remote: bool


@dataclass(frozen=True, slots=True)
class PingReceived:
    """The peer pinged; the answer is already queued."""

    ping_id: int


@dataclass(frozen=True, slots=True)
class PingAcknowledged:
    ping_id: int


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    last_good_stream_id: int
    status: int


@dataclass(frozen=True, slots=True)
class SettingsReceived:
    settings: dict[int, int]
    clear: bool = False


@dataclass(frozen=True, slots=True)
class WindowUpdated:
    """Our send window grew (stream 0: the session window)."""

    stream_id: int
    delta: int


Event = (
    StreamOpened
    | StreamReplied
    | HeadersReceived
    | DataReceived
    | StreamReset
    | PingReceived
    | PingAcknowledged
    | GoAwayReceived
    | SettingsReceived
    | WindowUpdated
)


class _Stream:
    __slots__ = (
        "fin_queued",
        "id",
        "local",
        "local_closed",
        "out",
        "out_head",
        "out_len",
        "recv_window",
        "remote_closed",
        "replied",
        "send_window",
        "unacked",
    )

    def __init__(self, stream_id: int, *, local: bool, send_window: int, recv_window: int) -> None:
        self.id = stream_id
        self.local = local  # we opened it
        self.send_window = send_window
        self.recv_window = recv_window  # what the peer may still send us
        self.unacked = 0  # consumed by the application, not yet given back by WINDOW_UPDATE
        self.out: deque[bytes] = deque()  # data waiting for window
        self.out_head = 0  # offset already sent from out[0]
        self.out_len = 0
        self.fin_queued = False  # FIN goes out once `out` is empty
        self.local_closed = False  # FIN sent
        self.remote_closed = False  # FIN received
        self.replied = False  # local: SYN_REPLY received; remote: SYN_REPLY sent

    def take(self, n: int) -> bytes:
        parts = []
        while n > 0:
            head = self.out[0]
            chunk = head[self.out_head : self.out_head + n]
            parts.append(chunk)
            n -= len(chunk)
            self.out_head += len(chunk)
            if self.out_head == len(head):
                self.out.popleft()
                self.out_head = 0
        data = b"".join(parts)
        self.out_len -= len(data)
        return data


class SpdyConnection:
    """A SPDY/3.1 session without I/O.

    `client` picks the stream-id parity (client odd, server even) and the ping
    id parity. With ``peer_flow_control=False`` (a spdystream peer) the peer's
    windows are neither waited for nor enforced. We still account for them and
    still send WINDOW_UPDATE, which spdystream ignores.
    """

    def __init__(
        self,
        client: bool,
        *,
        peer_flow_control: bool = True,
        max_data_payload: int = DEFAULT_MAX_DATA_PAYLOAD,
        max_concurrent_streams: int = 1000,
        max_frame_payload: int = MAX_FRAME_PAYLOAD,
        max_control_payload: int = DEFAULT_MAX_CONTROL_PAYLOAD,
        max_header_block: int = DEFAULT_MAX_HEADER_BLOCK,
        session_window: int = DEFAULT_INITIAL_WINDOW,
    ) -> None:
        if not 1 <= max_data_payload <= MAX_FRAME_PAYLOAD:
            raise ValueError("max_data_payload out of range")
        if not DEFAULT_INITIAL_WINDOW <= session_window <= MAX_WINDOW:
            raise ValueError("session_window out of range")
        self.client = client
        self.peer_flow_control = peer_flow_control
        self._max_data = max_data_payload
        self._max_concurrent = max_concurrent_streams
        self._encoder = FrameEncoder()
        self._decoder = FrameDecoder(
            max_data_payload=max_frame_payload,
            max_control_payload=max_control_payload,
            max_header_block=max_header_block,
        )
        self._out = bytearray()
        self._streams: dict[int, _Stream] = {}
        self._sending: dict[int, _Stream] = {}  # insertion-ordered set: streams with queued output
        self._next_stream_id = 1 if client else 2
        self._next_ping_id = 1 if client else 2
        self._pings: set[int] = set()
        self._last_peer_stream_id = 0  # highest stream id the peer opened
        self._last_accepted_id = 0  # highest of those we accepted: GOAWAY's last-good-stream-id
        self._peer_initial_window = DEFAULT_INITIAL_WINDOW  # for our sending, from peer SETTINGS
        self._local_initial_window = DEFAULT_INITIAL_WINDOW  # what we let the peer send per stream
        self._send_session_window = DEFAULT_INITIAL_WINDOW
        self._recv_session_window = DEFAULT_INITIAL_WINDOW
        self._session_window_size = session_window
        self._session_unacked = 0
        self.peer_settings: dict[int, int] = {}
        self.goaway_sent = False
        self.goaway_received = False
        self.failed = False
        if session_window > DEFAULT_INITIAL_WINDOW:
            # The session window starts at 64 KiB for both sides; only WINDOW_UPDATE(0) can widen ours.
            self._emit(WindowUpdateFrame(0, session_window - DEFAULT_INITIAL_WINDOW))
            self._recv_session_window = session_window

    # -- inspection -------------------------------------------------------

    @property
    def session_send_window(self) -> int:
        return self._send_session_window

    def stream_send_window(self, stream_id: int) -> int:
        return self._get(stream_id).send_window

    def pending_data(self, stream_id: int) -> int:
        """Bytes queued on the stream and not yet framed (waiting for window)."""
        st = self._streams.get(stream_id)
        return st.out_len if st is not None else 0

    @property
    def pending_total(self) -> int:
        return sum(st.out_len for st in self._sending.values())

    def is_open(self, stream_id: int) -> bool:
        return stream_id in self._streams

    def _get(self, stream_id: int) -> _Stream:
        st = self._streams.get(stream_id)
        if st is None:
            raise StreamClosedError(f"stream {stream_id} is not open")
        return st

    def _peer_initiated(self, stream_id: int) -> bool:
        return (stream_id % 2 == 1) != self.client

    # -- output -------------------------------------------------------------

    def data_to_send(self) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        return data

    def _emit(self, frame: Frame) -> None:
        self._out += self._encoder.encode(frame)

    # -- local actions --------------------------------------------------------

    def open_stream(
        self,
        headers: HeadersLike | None = None,
        *,
        fin: bool = False,
        unidirectional: bool = False,
        priority: int = 0,
        associated_id: int = 0,
    ) -> int:
        if self.goaway_sent or self.goaway_received or self.failed:
            raise SessionClosedError("no new streams after GOAWAY")
        sid = self._next_stream_id
        if sid > MAX_STREAM_ID:
            raise SessionClosedError("stream ids exhausted")
        limit = self.peer_settings.get(SettingId.MAX_CONCURRENT_STREAMS)
        if limit is not None and sum(1 for st in self._streams.values() if st.local) >= limit:
            raise SpdyError(f"the peer allows {limit} concurrent streams")
        frame = SynStreamFrame(
            sid,
            normalize_headers(headers),
            fin=fin,
            unidirectional=unidirectional,
            associated_id=associated_id,
            priority=priority,
        )
        self._emit(frame)  # validates before any state changes
        self._next_stream_id += 2
        st = _Stream(
            sid, local=True, send_window=self._peer_initial_window, recv_window=self._local_initial_window
        )
        st.local_closed = fin
        st.remote_closed = unidirectional
        if not (st.local_closed and st.remote_closed):
            self._streams[sid] = st
        return sid

    def reply(self, stream_id: int, headers: HeadersLike | None = None, *, fin: bool = False) -> None:
        st = self._get(stream_id)
        if st.local:
            raise SpdyError(f"stream {stream_id} is ours; only the peer replies to it")
        if st.replied:
            raise SpdyError(f"stream {stream_id} already replied")
        if st.local_closed:
            raise StreamClosedError(f"stream {stream_id} is half-closed on our side")
        self._emit(SynReplyFrame(stream_id, normalize_headers(headers), fin=fin))
        st.replied = True
        if fin:
            self._close_local(st)

    def send_headers(self, stream_id: int, headers: HeadersLike, *, fin: bool = False) -> None:
        st = self._get(stream_id)
        if st.local_closed or st.fin_queued:
            raise StreamClosedError(f"stream {stream_id} is half-closed on our side")
        if not st.local and not st.replied:
            raise SpdyError(f"reply to stream {stream_id} before sending headers")
        self._emit(HeadersFrame(stream_id, normalize_headers(headers), fin=fin))
        if fin:
            self._close_local(st)

    def send_data(self, stream_id: int, data: bytes, *, fin: bool = False) -> None:
        """Queue data; it is framed as the windows allow (see `pending_data`)."""
        st = self._get(stream_id)
        if st.local_closed or st.fin_queued:
            raise StreamClosedError(f"stream {stream_id} is half-closed on our side")
        if not st.local and not st.replied:
            # spdystream drops DATA that arrives before the SYN_REPLY of its stream.
            raise SpdyError(f"reply to stream {stream_id} before sending data")
        if data:
            st.out.append(bytes(data))
            st.out_len += len(data)
        if fin:
            st.fin_queued = True
        if st.out_len or st.fin_queued:
            self._sending[stream_id] = st
        self._flush_streams()

    def end_stream(self, stream_id: int) -> None:
        """Half-close our side (FIN after whatever data is still queued)."""
        self.send_data(stream_id, b"", fin=True)

    def reset(self, stream_id: int, status: int = RstStatus.CANCEL) -> None:
        """Abort a stream. A no-op once it is gone (closed both ways, or reset by either side)."""
        st = self._streams.pop(stream_id, None)
        self._sending.pop(stream_id, None)
        if st is None:
            return
        self._emit(RstStreamFrame(stream_id, status))

    def ping(self) -> int:
        ping_id = self._next_ping_id
        self._next_ping_id = ping_id + 2 if ping_id + 2 <= 0xFFFFFFFF else (1 if self.client else 2)
        self._pings.add(ping_id)
        self._emit(PingFrame(ping_id))
        return ping_id

    def goaway(self, status: int = GoAwayStatus.OK) -> None:
        if self.goaway_sent:
            return
        self.goaway_sent = True
        self._emit(GoAwayFrame(self._last_accepted_id, status))

    def send_settings(self, settings: Mapping[int, int]) -> None:
        for sid, value in settings.items():
            if sid == SettingId.INITIAL_WINDOW_SIZE:
                if not 0 <= value <= MAX_WINDOW:
                    raise ValueError("initial window out of range")
                delta = value - self._local_initial_window
                self._local_initial_window = value
                for st in self._streams.values():
                    st.recv_window += delta
        self._emit(SettingsFrame(tuple(Setting(k, v) for k, v in sorted(settings.items()))))

    def acknowledge(self, stream_id: int, n: int) -> None:
        """The application consumed n bytes of the stream: give the windows back.

        Every DataReceived byte must be acknowledged once, also when it is
        discarded (stream reset, nobody reading): the session window is shared.
        Works after the stream is gone (then only the session window grows).
        WINDOW_UPDATEs go out in batches of half a window, so a reader that
        never acknowledges stops a flow-controlled peer after one window.
        """
        if n <= 0:
            return
        st = self._streams.get(stream_id)
        if st is not None and not st.remote_closed:
            st.unacked += n
            if st.unacked >= self._local_initial_window // 2:
                self._emit(WindowUpdateFrame(stream_id, st.unacked))
                st.recv_window += st.unacked
                st.unacked = 0
        self._release_session(n)

    def _release_session(self, n: int) -> None:
        if n <= 0:
            return
        self._session_unacked += n
        if self._session_unacked >= self._session_window_size // 2:
            self._emit(WindowUpdateFrame(0, self._session_unacked))
            self._recv_session_window += self._session_unacked
            self._session_unacked = 0

    # -- input ----------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Consume bytes from the peer; return what happened.

        Raises ProtocolError (with `.events` and `.status`) on a session error;
        the caller then sends `goaway(err.status)` and closes the transport.
        """
        if self.failed:
            return []
        self._decoder.feed(data)
        events: list[Event] = []
        try:
            while (frame := self._decoder.next_frame()) is not None:
                self._handle(frame, events)
        except ProtocolError as e:
            self.failed = True
            e.events = events
            raise
        self._flush_streams()
        return events

    def _handle(self, frame: Frame, events: list[Event]) -> None:
        match frame:
            case DataFrame():
                self._on_data(frame, events)
            case SynStreamFrame():
                self._on_syn_stream(frame, events)
            case SynReplyFrame():
                self._on_syn_reply(frame, events)
            case HeadersFrame():
                self._on_headers(frame, events)
            case RstStreamFrame(stream_id=sid, status=status):
                st = self._streams.pop(sid, None)
                self._sending.pop(sid, None)
                if st is not None:
                    events.append(StreamReset(sid, status, remote=True))
            case SettingsFrame():
                self._on_settings(frame, events)
            case PingFrame(ping_id=ping_id):
                if (ping_id % 2 == 1) == self.client:  # our parity: an answer
                    if ping_id in self._pings:
                        self._pings.discard(ping_id)
                        events.append(PingAcknowledged(ping_id))
                else:
                    self._emit(PingFrame(ping_id))
                    events.append(PingReceived(ping_id))
            case GoAwayFrame(last_good_stream_id=last, status=status):
                self.goaway_received = True
                # Our streams above `last` were never seen by the peer.
                for sid in [s for s, st in self._streams.items() if st.local and s > last]:
                    self._streams.pop(sid)
                    self._sending.pop(sid, None)
                    events.append(StreamReset(sid, RstStatus.REFUSED_STREAM, remote=True))
                events.append(GoAwayReceived(last, status))
            case WindowUpdateFrame():
                self._on_window_update(frame, events)

    def _known_id(self, stream_id: int) -> bool:
        """Whether the id was ever used (opened by us or by the peer)."""
        if self._peer_initiated(stream_id):
            return stream_id <= self._last_peer_stream_id
        return stream_id < self._next_stream_id

    def _stream_error(self, stream_id: int, status: RstStatus, events: list[Event]) -> None:
        st = self._streams.pop(stream_id, None)
        self._sending.pop(stream_id, None)
        self._emit(RstStreamFrame(stream_id, status))
        if st is not None:
            events.append(StreamReset(stream_id, status, remote=False))

    def _unknown_stream(self, stream_id: int, events: list[Event]) -> None:
        # Frames for streams we closed or reset are in-flight leftovers; ids never used are errors.
        if not self._known_id(stream_id) and not self.goaway_sent:
            self._stream_error(stream_id, RstStatus.INVALID_STREAM, events)

    def _on_data(self, frame: DataFrame, events: list[Event]) -> None:
        sid, n = frame.stream_id, len(frame.data)
        # Every DATA byte counts against the session window, even on a dead stream.
        self._recv_session_window -= n
        if self._recv_session_window < 0 and self.peer_flow_control:
            raise ProtocolError("peer overran the session flow-control window")
        st = self._streams.get(sid)
        if st is None:
            self._release_session(n)
            self._unknown_stream(sid, events)
            return
        if st.remote_closed:
            self._release_session(n)
            self._stream_error(sid, RstStatus.STREAM_ALREADY_CLOSED, events)
            return
        if st.local and not st.replied:
            self._release_session(n)
            self._stream_error(sid, RstStatus.PROTOCOL_ERROR, events)
            return
        st.recv_window -= n
        if st.recv_window < 0 and self.peer_flow_control:
            self._release_session(n)
            self._stream_error(sid, RstStatus.FLOW_CONTROL_ERROR, events)
            return
        if frame.fin:
            st.remote_closed = True
        if n or frame.fin:
            events.append(DataReceived(sid, frame.data, frame.fin))
        if frame.fin:
            st.unacked = 0  # no more stream updates after FIN; the session part is counted separately
            self._maybe_forget(st)

    def _on_syn_stream(self, frame: SynStreamFrame, events: list[Event]) -> None:
        sid = frame.stream_id
        if not self._peer_initiated(sid) or sid <= self._last_peer_stream_id:
            # Like spdystream: refuse the stream, keep the session.
            self._emit(RstStreamFrame(sid, RstStatus.PROTOCOL_ERROR))
            return
        self._last_peer_stream_id = sid
        active = sum(1 for st in self._streams.values() if not st.local)
        if self.goaway_sent or active >= self._max_concurrent:
            self._emit(RstStreamFrame(sid, RstStatus.REFUSED_STREAM))
            return
        st = _Stream(
            sid, local=False, send_window=self._peer_initial_window, recv_window=self._local_initial_window
        )
        st.remote_closed = frame.fin
        st.local_closed = frame.unidirectional
        self._streams[sid] = st
        self._last_accepted_id = sid
        events.append(
            StreamOpened(
                sid,
                frame.headers,
                fin=frame.fin,
                unidirectional=frame.unidirectional,
                associated_id=frame.associated_id,
                priority=frame.priority,
            )
        )
        self._maybe_forget(st)

    def _on_syn_reply(self, frame: SynReplyFrame, events: list[Event]) -> None:
        sid = frame.stream_id
        st = self._streams.get(sid)
        if st is None:
            self._unknown_stream(sid, events)
            return
        if not st.local:
            self._stream_error(sid, RstStatus.PROTOCOL_ERROR, events)
            return
        if st.replied:
            self._stream_error(sid, RstStatus.STREAM_IN_USE, events)
            return
        st.replied = True
        if frame.fin:
            st.remote_closed = True
        events.append(StreamReplied(sid, frame.headers, frame.fin))
        self._maybe_forget(st)

    def _on_headers(self, frame: HeadersFrame, events: list[Event]) -> None:
        sid = frame.stream_id
        st = self._streams.get(sid)
        if st is None:
            self._unknown_stream(sid, events)
            return
        if st.remote_closed:
            self._stream_error(sid, RstStatus.STREAM_ALREADY_CLOSED, events)
            return
        if frame.fin:
            st.remote_closed = True
        events.append(HeadersReceived(sid, frame.headers, frame.fin))
        self._maybe_forget(st)

    def _on_settings(self, frame: SettingsFrame, events: list[Event]) -> None:
        values: dict[int, int] = {}
        for s in frame.settings:
            values.setdefault(s.id, s.value)  # the spec: only the first value of an id counts
        window = values.get(SettingId.INITIAL_WINDOW_SIZE)
        if window is not None:
            if window > MAX_WINDOW:
                raise ProtocolError(f"SETTINGS_INITIAL_WINDOW_SIZE {window} out of range")
            delta = window - self._peer_initial_window
            self._peer_initial_window = window
            for st in self._streams.values():
                st.send_window += delta  # may go negative: the spec says to track that
        self.peer_settings.update(values)
        events.append(SettingsReceived(values, frame.clear))

    def _on_window_update(self, frame: WindowUpdateFrame, events: list[Event]) -> None:
        sid, delta = frame.stream_id, frame.delta
        if delta == 0:
            return  # invalid but harmless
        if sid == 0:
            self._send_session_window += delta
            if self._send_session_window > MAX_WINDOW and self.peer_flow_control:
                raise ProtocolError("session window grew past 2^31-1")
        else:
            st = self._streams.get(sid)
            if st is None:
                return  # WINDOW_UPDATE may trail a closed stream
            st.send_window += delta
            if st.send_window > MAX_WINDOW and self.peer_flow_control:
                self._stream_error(sid, RstStatus.FLOW_CONTROL_ERROR, events)
                return
        events.append(WindowUpdated(sid, delta))

    # -- stream bookkeeping ---------------------------------------------------

    def _close_local(self, st: _Stream) -> None:
        st.local_closed = True
        self._sending.pop(st.id, None)
        self._maybe_forget(st)

    def _maybe_forget(self, st: _Stream) -> None:
        if st.local_closed and st.remote_closed and not st.out_len:
            self._streams.pop(st.id, None)
            self._sending.pop(st.id, None)

    def _flush_streams(self) -> None:
        """Frame queued output round-robin, one frame per stream per turn, within the windows."""
        progressed = True
        while progressed and self._sending:
            progressed = False
            for st in list(self._sending.values()):
                if st.out_len:
                    n = min(self._max_data, st.out_len)
                    if self.peer_flow_control:
                        n = min(n, st.send_window, self._send_session_window)
                    if n <= 0:
                        continue
                    data = st.take(n)
                    fin = st.fin_queued and not st.out_len
                    st.send_window -= n
                    self._send_session_window -= n
                    self._emit(DataFrame(st.id, data, fin))
                    progressed = True
                else:
                    # An empty FIN needs no window.
                    fin = st.fin_queued
                    if fin:
                        self._emit(DataFrame(st.id, b"", True))
                if not st.out_len:
                    self._sending.pop(st.id, None)
                    if fin:
                        st.fin_queued = False
                        self._close_local(st)
