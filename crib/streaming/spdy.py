"""SPDY/3.1 as the kubelet and crictl speak it on a CRI streaming URL.

After an HTTP/1.1 ``Upgrade: SPDY/3.1`` the connection carries SPDY/3.1 frames
(github.com/moby/spdystream on the Go side). Three layers, each usable alone:

* Framing, sans-IO: `FrameEncoder` and `FrameDecoder` turn frame objects into
  bytes and back. Header blocks are compressed with zlib primed with the SPDY/3
  dictionary, one compression context per direction for the whole connection
  and a Z_SYNC_FLUSH after every block. Malformed input raises `ProtocolError`
  and nothing else.
* `SpdyConnection`, sans-IO: stream ids, stream states, SPDY/3.1 flow control
  (stream and session windows), automatic PING answers. Feed it bytes with
  `receive_data`, get events back, send `data_to_send()`.
* `SpdySession` and `SpdyStream`: the connection driven over an asyncio
  StreamReader/StreamWriter pair.

Interop: spdystream implements no flow control. It never sends WINDOW_UPDATE or
SETTINGS, ignores ours, and sends DATA regardless of our windows. A session
with it must be made with ``peer_flow_control=False``. Otherwise our output
stalls after 64 KiB, and its input past 64 KiB is reset as a flow-control
violation.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import struct
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from crib.log_setup import get_logger

log = get_logger("spdy")

VERSION = 3
DEFAULT_INITIAL_WINDOW = 64 * 1024
MAX_WINDOW = 0x7FFFFFFF
MAX_STREAM_ID = 0x7FFFFFFF
MAX_FRAME_PAYLOAD = 0xFFFFFF  # what the 24-bit length field can say (16 MiB - 1)
DEFAULT_MAX_DATA_PAYLOAD = 16 * 1024  # what we put in one outgoing DATA frame
DEFAULT_MAX_CONTROL_PAYLOAD = 1 << 20  # the spec requires at least 8192
DEFAULT_MAX_HEADER_BLOCK = 1 << 20  # decompressed; caps a zlib bomb
DEFAULT_MAX_HEADERS = 1000

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
FLAG_SETTINGS_CLEAR_SETTINGS = 0x01
SETTINGS_FLAG_PERSIST_VALUE = 0x01
SETTINGS_FLAG_PERSISTED = 0x02


class FrameType(enum.IntEnum):
    SYN_STREAM = 1
    SYN_REPLY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PING = 6
    GOAWAY = 7
    HEADERS = 8
    WINDOW_UPDATE = 9


class RstStatus(enum.IntEnum):
    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6
    FLOW_CONTROL_ERROR = 7
    STREAM_IN_USE = 8
    STREAM_ALREADY_CLOSED = 9
    FRAME_TOO_LARGE = 11


class GoAwayStatus(enum.IntEnum):
    OK = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


class SettingId(enum.IntEnum):
    UPLOAD_BANDWIDTH = 1
    DOWNLOAD_BANDWIDTH = 2
    ROUND_TRIP_TIME = 3
    MAX_CONCURRENT_STREAMS = 4
    CURRENT_CWND = 5
    DOWNLOAD_RETRANS_RATE = 6
    INITIAL_WINDOW_SIZE = 7
    CLIENT_CERTIFICATE_VECTOR_SIZE = 8


# The zlib dictionary of SPDY/3 (draft 3, section 2.6.10.1): these header names,
# each behind its 32-bit big-endian length, then a run of common value text.
_DICTIONARY_NAMES = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
    "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
    "cache-control", "connection", "content-base", "content-encoding", "content-language",
    "content-length", "content-location", "content-md5", "content-range", "content-type",
    "date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
    "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
    "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent",
    "vary", "via", "warning", "www-authenticate", "method", "get", "status", "200 OK",
    "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin",
)  # fmt: skip
_DICTIONARY_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
HEADER_DICTIONARY: bytes = b"".join(
    struct.pack(">I", len(name)) + name.encode("ascii") for name in _DICTIONARY_NAMES
) + _DICTIONARY_TAIL.encode("ascii")
# 1423 bytes; its Adler-32 (the DICTID in every SPDY/3 zlib header) is 0xE3C6A7C2.


Headers = dict[str, list[str]]
HeadersLike = Mapping[str, str | Iterable[str]]


class SpdyError(Exception):
    """Base of everything this module raises on purpose."""


class ProtocolError(SpdyError):
    """The peer broke the protocol; the session must end with GOAWAY(status).

    `events` holds what the same `receive_data` call produced before the error,
    so the caller can still deliver it.
    """

    def __init__(self, message: str, status: int = GoAwayStatus.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.status = status
        self.events: list[Event] = []


class StreamClosedError(SpdyError):
    """The stream cannot take this operation any more (FIN sent, or unknown)."""


class StreamResetError(SpdyError):
    def __init__(self, stream_id: int, status: int, remote: bool) -> None:
        who = "peer" if remote else "us"
        super().__init__(f"stream {stream_id} reset by {who}: {_status_name(status)}")
        self.stream_id = stream_id
        self.status = status
        self.remote = remote


class SessionClosedError(SpdyError):
    """The SPDY session is over (closed, GOAWAY, or the transport was lost)."""


def _status_name(status: int) -> str:
    try:
        return RstStatus(status).name
    except ValueError:
        return str(status)


# ---------------------------------------------------------------------------
# Header blocks


def normalize_headers(headers: HeadersLike | None) -> Headers:
    """Lowercase names and merge duplicates, as the wire needs them."""
    out: Headers = {}
    for name, value in (headers or {}).items():
        key = name.lower()
        if not key or "\x00" in key:
            raise ValueError(f"invalid SPDY header name {name!r}")
        values = [value] if isinstance(value, str) else list(value)
        for v in values:
            if "\x00" in v:
                raise ValueError(f"SPDY header {key!r} has a NUL in its value")
        out.setdefault(key, []).extend(values)
    return out


def _text(data: bytes) -> str:
    # surrogateescape keeps arbitrary bytes (Go strings are bytes) round-trippable.
    return data.decode("utf-8", "surrogateescape")


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def encode_header_block(headers: Headers) -> bytes:
    """The uncompressed name/value block: 32-bit count, then length-prefixed pairs."""
    parts = [struct.pack(">I", len(headers))]
    for name, values in headers.items():
        raw_name = _raw(name)
        raw_value = b"\x00".join(_raw(v) for v in values)
        parts.append(struct.pack(">I", len(raw_name)))
        parts.append(raw_name)
        parts.append(struct.pack(">I", len(raw_value)))
        parts.append(raw_value)
    return b"".join(parts)


def decode_header_block(raw: bytes, *, max_headers: int = DEFAULT_MAX_HEADERS) -> Headers:
    """Parse an uncompressed name/value block; any malformation is a ProtocolError."""
    view = memoryview(raw)
    if len(view) < 4:
        raise ProtocolError("truncated header block")
    (count,) = struct.unpack_from(">I", view, 0)
    if count > max_headers:
        raise ProtocolError(f"header block has {count} headers (limit {max_headers})")
    pos = 4
    headers: Headers = {}
    for _ in range(count):
        fields: list[bytes] = []
        for _part in ("name", "value"):
            if pos + 4 > len(view):
                raise ProtocolError("truncated header block")
            (length,) = struct.unpack_from(">I", view, pos)
            pos += 4
            if length > len(view) - pos:
                raise ProtocolError("truncated header block")
            fields.append(bytes(view[pos : pos + length]))
            pos += length
        # Lenient like spdystream: lowercase what should have been, merge repeats.
        name = _text(fields[0]).lower()
        headers.setdefault(name, []).extend(_text(v) for v in fields[1].split(b"\x00"))
    if pos != len(view):
        raise ProtocolError("trailing bytes after header block")
    return headers


class HeaderCompressor:
    """One direction's zlib stream: every block continues the same context."""

    def __init__(self, level: int = zlib.Z_DEFAULT_COMPRESSION) -> None:
        self._z = zlib.compressobj(level, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, HEADER_DICTIONARY)

    def compress(self, headers: Headers) -> bytes:
        raw = encode_header_block(headers)
        if len(raw) > MAX_FRAME_PAYLOAD // 2:
            # Refused before zlib sees it: a block that cannot be sent must not advance the context.
            raise ValueError(f"header block of {len(raw)} bytes is too large")
        # Z_SYNC_FLUSH ends every block on a byte boundary so the peer can inflate it whole.
        return self._z.compress(raw) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    def __init__(
        self, *, max_block: int = DEFAULT_MAX_HEADER_BLOCK, max_headers: int = DEFAULT_MAX_HEADERS
    ) -> None:
        self._z = zlib.decompressobj(15, HEADER_DICTIONARY)
        self._max_block = max_block
        self._max_headers = max_headers

    def decompress(self, block: bytes) -> Headers:
        try:
            raw = self._z.decompress(block, self._max_block + 1)
        except zlib.error as e:
            raise ProtocolError(f"header block does not inflate: {e}") from None
        if len(raw) > self._max_block or self._z.unconsumed_tail:
            raise ProtocolError(f"header block inflates past {self._max_block} bytes")
        if self._z.eof:
            raise ProtocolError("peer ended its header compression stream")
        return decode_header_block(raw, max_headers=self._max_headers)


# ---------------------------------------------------------------------------
# Frames


@dataclass(frozen=True, slots=True)
class SynStreamFrame:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    fin: bool = False
    unidirectional: bool = False
    associated_id: int = 0
    priority: int = 0
    slot: int = 0


@dataclass(frozen=True, slots=True)
class SynReplyFrame:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    fin: bool = False


@dataclass(frozen=True, slots=True)
class RstStreamFrame:
    stream_id: int
    status: int


@dataclass(frozen=True, slots=True)
class Setting:
    id: int
    value: int
    flags: int = 0


@dataclass(frozen=True, slots=True)
class SettingsFrame:
    settings: tuple[Setting, ...] = ()
    clear: bool = False


@dataclass(frozen=True, slots=True)
class PingFrame:
    ping_id: int


@dataclass(frozen=True, slots=True)
class GoAwayFrame:
    last_good_stream_id: int
    status: int = GoAwayStatus.OK


@dataclass(frozen=True, slots=True)
class HeadersFrame:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    fin: bool = False


@dataclass(frozen=True, slots=True)
class WindowUpdateFrame:
    stream_id: int  # 0: the session window
    delta: int


@dataclass(frozen=True, slots=True)
class DataFrame:
    stream_id: int
    data: bytes = b""
    fin: bool = False


Frame = (
    SynStreamFrame
    | SynReplyFrame
    | RstStreamFrame
    | SettingsFrame
    | PingFrame
    | GoAwayFrame
    | HeadersFrame
    | WindowUpdateFrame
    | DataFrame
)


def _check_id(value: int, what: str, *, zero_ok: bool = False) -> None:
    if not (0 if zero_ok else 1) <= value <= MAX_STREAM_ID:
        raise ValueError(f"{what} {value} out of range")


def _control(frame_type: FrameType, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME_PAYLOAD:
        raise ValueError(f"{frame_type.name} payload of {len(payload)} bytes does not fit a frame")
    return struct.pack(">HHI", 0x8000 | VERSION, frame_type, (flags << 24) | len(payload)) + payload


class FrameEncoder:
    """Serializes frames; owns this direction's header compression context."""

    def __init__(self, *, compression_level: int = zlib.Z_DEFAULT_COMPRESSION) -> None:
        self._compressor = HeaderCompressor(compression_level)

    def encode(self, frame: Frame) -> bytes:
        match frame:
            case DataFrame(stream_id=sid, data=data, fin=fin):
                _check_id(sid, "stream id")
                if len(data) > MAX_FRAME_PAYLOAD:
                    raise ValueError(f"DATA payload of {len(data)} bytes does not fit a frame")
                flags = FLAG_FIN if fin else 0
                return struct.pack(">II", sid, (flags << 24) | len(data)) + bytes(data)
            case SynStreamFrame():
                _check_id(frame.stream_id, "stream id")
                _check_id(frame.associated_id, "associated stream id", zero_ok=True)
                if not 0 <= frame.priority <= 7 or not 0 <= frame.slot <= 255:
                    raise ValueError("priority must be 0..7 and slot 0..255")
                flags = (FLAG_FIN if frame.fin else 0) | (FLAG_UNIDIRECTIONAL if frame.unidirectional else 0)
                block = self._compressor.compress(frame.headers)
                head = struct.pack(
                    ">IIBB", frame.stream_id, frame.associated_id, frame.priority << 5, frame.slot
                )
                return _control(FrameType.SYN_STREAM, flags, head + block)
            case SynReplyFrame(stream_id=sid, headers=headers, fin=fin):
                _check_id(sid, "stream id")
                block = self._compressor.compress(headers)
                return _control(FrameType.SYN_REPLY, FLAG_FIN if fin else 0, struct.pack(">I", sid) + block)
            case HeadersFrame(stream_id=sid, headers=headers, fin=fin):
                _check_id(sid, "stream id")
                block = self._compressor.compress(headers)
                return _control(FrameType.HEADERS, FLAG_FIN if fin else 0, struct.pack(">I", sid) + block)
            case RstStreamFrame(stream_id=sid, status=status):
                _check_id(sid, "stream id")
                if not 1 <= status <= 0xFFFFFFFF:
                    raise ValueError(f"RST_STREAM status {status} is invalid")
                return _control(FrameType.RST_STREAM, 0, struct.pack(">II", sid, status))
            case SettingsFrame(settings=settings, clear=clear):
                body = [struct.pack(">I", len(settings))]
                for s in settings:
                    if not 0 <= s.id <= 0xFFFFFF or not 0 <= s.flags <= 0xFF:
                        raise ValueError(f"setting {s} out of range")
                    body.append(struct.pack(">II", (s.flags << 24) | s.id, s.value))
                flags = FLAG_SETTINGS_CLEAR_SETTINGS if clear else 0
                return _control(FrameType.SETTINGS, flags, b"".join(body))
            case PingFrame(ping_id=ping_id):
                return _control(FrameType.PING, 0, struct.pack(">I", ping_id))
            case GoAwayFrame(last_good_stream_id=last, status=status):
                _check_id(last, "last good stream id", zero_ok=True)
                return _control(FrameType.GOAWAY, 0, struct.pack(">II", last, status))
            case WindowUpdateFrame(stream_id=sid, delta=delta):
                _check_id(sid, "stream id", zero_ok=True)
                if not 1 <= delta <= MAX_WINDOW:
                    raise ValueError(f"WINDOW_UPDATE delta {delta} out of range")
                return _control(FrameType.WINDOW_UPDATE, 0, struct.pack(">II", sid, delta))
        raise TypeError(f"not a SPDY frame: {frame!r}")


class FrameDecoder:
    """Incremental parser: `feed` bytes in any pieces, pull frames with `next_frame`.

    Unknown control frame types are skipped (the spec says to ignore them).
    After a ProtocolError the decoder stays failed: the header compression
    state may be out of step, so the session cannot continue.
    """

    def __init__(
        self,
        *,
        max_data_payload: int = MAX_FRAME_PAYLOAD,
        max_control_payload: int = DEFAULT_MAX_CONTROL_PAYLOAD,
        max_header_block: int = DEFAULT_MAX_HEADER_BLOCK,
        max_headers: int = DEFAULT_MAX_HEADERS,
    ) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._max_data = max_data_payload
        self._max_control = max_control_payload
        self._decompressor = HeaderDecompressor(max_block=max_header_block, max_headers=max_headers)
        self._error: ProtocolError | None = None
        self.skipped_frames = 0  # unknown control frames ignored so far

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def frames(self) -> Iterator[Frame]:
        while (frame := self.next_frame()) is not None:
            yield frame

    def next_frame(self) -> Frame | None:
        if self._error is not None:
            raise self._error
        try:
            return self._next_frame()
        except ProtocolError as e:
            self._error = e
            raise

    def _fail(self, message: str) -> ProtocolError:
        return ProtocolError(message)

    def _next_frame(self) -> Frame | None:
        while True:
            avail = len(self._buf) - self._pos
            if avail < 8:
                self._compact()
                return None
            first, second = struct.unpack_from(">II", self._buf, self._pos)
            flags, length = second >> 24, second & 0xFFFFFF
            control = bool(first & 0x80000000)
            # Checked on the header alone, so an oversized frame is refused before it is buffered.
            if control:
                version = (first >> 16) & 0x7FFF
                if version != VERSION:
                    raise self._fail(f"unsupported SPDY version {version}")
                if length > self._max_control:
                    raise self._fail(f"control frame of {length} bytes exceeds {self._max_control}")
            elif length > self._max_data:
                raise self._fail(f"data frame of {length} bytes exceeds {self._max_data}")
            if avail < 8 + length:
                self._compact()
                return None
            start = self._pos + 8
            payload = bytes(self._buf[start : start + length])
            self._pos = start + length
            if not control:
                stream_id = first & 0x7FFFFFFF
                if stream_id == 0:
                    raise self._fail("DATA frame on stream 0")
                return DataFrame(stream_id, payload, bool(flags & FLAG_FIN))
            try:
                frame = self._parse_control(first & 0xFFFF, flags, payload)
            except (struct.error, ValueError, IndexError, OverflowError) as e:
                raise self._fail(f"malformed control frame: {e}") from None
            if frame is not None:
                return frame
            self.skipped_frames += 1

    def _compact(self) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0

    def _parse_control(self, frame_type: int, flags: int, payload: bytes) -> Frame | None:
        n = len(payload)
        fin = bool(flags & FLAG_FIN)
        if frame_type == FrameType.SYN_STREAM:
            if n < 10:
                raise self._fail("short SYN_STREAM")
            sid, assoc = struct.unpack_from(">II", payload, 0)
            # Inflate before any check so the compression context stays in step.
            headers = self._decompressor.decompress(payload[10:])
            sid &= 0x7FFFFFFF
            if sid == 0:
                raise self._fail("SYN_STREAM for stream 0")
            return SynStreamFrame(
                sid,
                headers,
                fin=fin,
                unidirectional=bool(flags & FLAG_UNIDIRECTIONAL),
                associated_id=assoc & 0x7FFFFFFF,
                priority=payload[8] >> 5,
                slot=payload[9],
            )
        if frame_type in (FrameType.SYN_REPLY, FrameType.HEADERS):
            if n < 4:
                raise self._fail(f"short {FrameType(frame_type).name}")
            (sid,) = struct.unpack_from(">I", payload, 0)
            headers = self._decompressor.decompress(payload[4:])
            sid &= 0x7FFFFFFF
            if sid == 0:
                raise self._fail(f"{FrameType(frame_type).name} for stream 0")
            if frame_type == FrameType.SYN_REPLY:
                return SynReplyFrame(sid, headers, fin=fin)
            return HeadersFrame(sid, headers, fin=fin)
        if frame_type == FrameType.RST_STREAM:
            if n != 8:
                raise self._fail("RST_STREAM length is not 8")
            sid, status = struct.unpack(">II", payload)
            sid &= 0x7FFFFFFF
            if sid == 0:
                raise self._fail("RST_STREAM for stream 0")
            return RstStreamFrame(sid, status)
        if frame_type == FrameType.SETTINGS:
            if n < 4:
                raise self._fail("short SETTINGS")
            (count,) = struct.unpack_from(">I", payload, 0)
            if count > (n - 4) // 8:
                raise self._fail("SETTINGS count exceeds its payload")
            settings = []
            for i in range(count):
                flag_id, value = struct.unpack_from(">II", payload, 4 + 8 * i)
                settings.append(Setting(flag_id & 0xFFFFFF, value, flag_id >> 24))
            return SettingsFrame(tuple(settings), clear=bool(flags & FLAG_SETTINGS_CLEAR_SETTINGS))
        if frame_type == FrameType.PING:
            if n != 4:
                raise self._fail("PING length is not 4")
            return PingFrame(struct.unpack(">I", payload)[0])
        if frame_type == FrameType.GOAWAY:
            # 3.1 has a status; draft 2 did not. Accept both.
            if n not in (4, 8):
                raise self._fail("GOAWAY length is not 8")
            last = struct.unpack_from(">I", payload, 0)[0] & 0x7FFFFFFF
            status = struct.unpack_from(">I", payload, 4)[0] if n == 8 else GoAwayStatus.OK
            return GoAwayFrame(last, status)
        if frame_type == FrameType.WINDOW_UPDATE:
            if n != 8:
                raise self._fail("WINDOW_UPDATE length is not 8")
            sid, delta = struct.unpack(">II", payload)
            return WindowUpdateFrame(sid & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        return None  # NOOP (v2), CREDENTIAL or anything newer: ignored


# ---------------------------------------------------------------------------
# Connection state machine (sans-IO)


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

    @property
    def session_recv_window(self) -> int:
        return self._recv_session_window

    def stream_send_window(self, stream_id: int) -> int:
        return self._get(stream_id).send_window

    def stream_recv_window(self, stream_id: int) -> int:
        return self._get(stream_id).recv_window

    def pending_data(self, stream_id: int) -> int:
        """Bytes queued on the stream and not yet framed (waiting for window)."""
        st = self._streams.get(stream_id)
        return st.out_len if st is not None else 0

    @property
    def pending_total(self) -> int:
        return sum(st.out_len for st in self._sending.values())

    def is_open(self, stream_id: int) -> bool:
        return stream_id in self._streams

    def open_streams(self) -> list[int]:
        return list(self._streams)

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


# ---------------------------------------------------------------------------
# asyncio adapter


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
    def remote_closed(self) -> bool:
        """The peer sent FIN (reads return b"" once the buffer is drained)."""
        return self._eof

    @property
    def local_closed(self) -> bool:
        return self._local_closed

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
            async with asyncio.timeout(self._close_timeout):
                await self._writer.wait_closed()
        except (TimeoutError, ConnectionError, OSError):
            transport = self._writer.transport
            if transport is not None:
                transport.abort()
        except asyncio.CancelledError:
            transport = self._writer.transport
            if transport is not None:
                transport.abort()
            raise
