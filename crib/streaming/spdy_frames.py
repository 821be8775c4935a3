"""SPDY/3.1 framing, sans-IO: the lowest of the three SPDY layers.

After an HTTP/1.1 ``Upgrade: SPDY/3.1`` the connection carries SPDY/3.1 frames
(github.com/moby/spdystream on the Go side). Three layers, each usable alone:

* Framing, sans-IO (this module): `FrameEncoder` and `FrameDecoder` turn frame
  objects into bytes and back. Header blocks are compressed with zlib primed
  with the SPDY/3 dictionary, one compression context per direction for the
  whole connection and a Z_SYNC_FLUSH after every block. Malformed input raises
  `ProtocolError` and nothing else.
* `crib.streaming.spdy_connection.SpdyConnection`, sans-IO: stream ids, stream
  states, SPDY/3.1 flow control (stream and session windows), automatic PING
  answers. Feed it bytes with `receive_data`, get events back, send
  `data_to_send()`.
* `crib.streaming.spdy_session.SpdySession` and `SpdyStream`: the connection
  driven over an asyncio StreamReader/StreamWriter pair.

Each layer imports only the ones below it.
"""

from __future__ import annotations

import enum
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

VERSION = 3
MAX_WINDOW = 0x7FFFFFFF
MAX_STREAM_ID = 0x7FFFFFFF
MAX_FRAME_PAYLOAD = 0xFFFFFF  # what the 24-bit length field can say (16 MiB - 1)
DEFAULT_MAX_CONTROL_PAYLOAD = 1 << 20  # the spec requires at least 8192
DEFAULT_MAX_HEADER_BLOCK = 1 << 20  # decompressed; caps a zlib bomb
DEFAULT_MAX_HEADERS = 1000

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
FLAG_SETTINGS_CLEAR_SETTINGS = 0x01


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
    """Base of everything the SPDY modules raise on purpose."""


class ProtocolError(SpdyError):
    """The peer broke the protocol; the session must end with GOAWAY(status).

    `events` holds what the same `SpdyConnection.receive_data` call produced
    before the error, so the caller can still deliver it.
    """

    def __init__(self, message: str, status: int = GoAwayStatus.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.status = status
        self.events: list[Any] = []  # spdy_connection.Event, a layer above this one


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
