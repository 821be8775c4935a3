"""Go's time behaviours crictl's output and flags depend on, and go-digest's Parse.

time.Parse with Go layouts (docker's `--since`), time.ParseDuration, Duration.String, the local-zone
formats of time.Unix(0, ns), and %q of bytes: enough of each to read and print what crictl does.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

from crib.cribctl.endpoint import parse_go_duration
from crib.cribctl.golike import INT64_MAX, INT64_MIN, go_parse_int, go_quote


def go_duration_string(seconds: int) -> str:
    """time.Duration.String() of a whole number of seconds: "0s", "1m30s", "1h0m0s"."""
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    rest = abs(seconds)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{sign}{minutes}m{secs}s"
    return f"{sign}{secs}s"


_BARE_NUMBER = re.compile(r"[0-9.]+")


def parse_go_duration_strict(text: str) -> float:
    """time.ParseDuration in seconds: like endpoint.parse_go_duration but, as Go,
    a number needs a unit unless it is "0" (crictl.yaml's timeout is a bare
    number of seconds, a duration flag is not)."""
    body = text[1:] if text[:1] in ("+", "-") else text
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f"time: invalid duration {go_quote(text)}")
    if _BARE_NUMBER.fullmatch(body):
        raise ValueError(f"time: missing unit in duration {go_quote(text)}")
    if text != text.strip():
        raise ValueError(f"time: invalid duration {go_quote(text)}")
    try:
        return parse_go_duration(text)
    except ValueError:
        raise ValueError(f"time: invalid duration {go_quote(text)}") from None


def go_quote_bytes(data: bytes) -> str:
    """%q of a []byte: strconv.Quote of the bytes, invalid UTF-8 as \\xNN."""
    text = data.decode("utf-8", errors="surrogateescape")
    quoted = go_quote(text)
    return re.sub(r"\\udc([89a-f][0-9a-f])", lambda m: "\\x" + m.group(1), quoted)


class GoTimeError(ValueError):
    """time.Parse's error, worded as Go's *time.ParseError."""


@dataclass(frozen=True)
class GoTime:
    """A time as time.Parse returns it: wall clock fields and the UTC offset (seconds) they are in."""

    year: int
    month: int
    day: int
    hour: int
    minute: int
    second: int
    nanosecond: int
    offset: int

    @property
    def unix_ns(self) -> int:
        seconds = days_from_civil(self.year, self.month, self.day) * 86400
        seconds += self.hour * 3600 + self.minute * 60 + self.second - self.offset
        return seconds * 10**9 + self.nanosecond

    def format_rfc3339_nano_fixed(self) -> str:
        """Format("2006-01-02T15:04:05.000000000Z07:00") in the time's own offset."""
        if self.offset == 0:
            zone = "Z"
        else:
            hours, minutes = divmod(abs(self.offset) // 60, 60)
            zone = f"{'-' if self.offset < 0 else '+'}{hours:02d}:{minutes:02d}"
        return (
            f"{self.year:04d}-{self.month:02d}-{self.day:02d}T{self.hour:02d}:{self.minute:02d}:"
            f"{self.second:02d}.{self.nanosecond:09d}{zone}"
        )


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date, any year (date() stops at year 1)."""
    year -= month <= 2
    era = (year if year >= 0 else year - 399) // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _days_in(month: int, year: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[month - 1]


_STD_TOKENS = ("2006", "Z07:00", "01", "02", "04", "05", "15")


def _next_std_chunk(layout: str) -> tuple[str, str | None, str]:
    """time's nextStdChunk for the elements these layouts use: (prefix, element, rest)."""
    for i in range(len(layout)):
        for token in _STD_TOKENS:
            if layout.startswith(token, i):
                return layout[:i], token, layout[i + len(token) :]
        if layout[i] in ".," and layout[i + 1 : i + 2] == "9":
            j = i + 1
            while j < len(layout) and layout[j] == "9":
                j += 1
            if not (j < len(layout) and layout[j].isdigit()):
                return layout[:i], layout[i:j], layout[j:]
    return layout, None, ""


def _getnum(value: str, fixed: bool) -> tuple[int, str, bool]:
    """time's getnum: one or two digits (exactly two when fixed); the bool is "bad"."""
    if not value[:1].isdigit() or not value[0].isascii():
        return 0, value, True
    if not value[1:2].isdigit() or not value[1].isascii():
        if fixed:
            return 0, value, True
        return int(value[0]), value[1:], False
    return int(value[:2]), value[2:], False


def _atoi(text: str) -> tuple[int, bool]:
    """time's atoi: an optional sign, then digits only; the bool is "bad"."""
    body = text[1:] if text[:1] in ("+", "-") else text
    if body and not (body.isdigit() and body.isascii()):
        return 0, True
    number = int(body or "0")
    return (-number if text[:1] == "-" else number), False


def _parse_nanoseconds(value: str, nbytes: int) -> tuple[int, str, bool]:
    if value[0] not in ".,":
        return 0, "", True
    if nbytes > 10:
        value, nbytes = value[:10], 10
    ns, bad = _atoi(value[1:nbytes])
    if bad:
        return 0, "", True
    if ns < 0:
        return 0, "fractional second", False
    return ns * 10 ** (10 - nbytes), "", False


def _time_quote(text: str) -> str:
    # time's own quote(): only '"' and '\\' escaped, bytes outside printable ASCII as \xNN.
    out = []
    for ch in text:
        if ch < " " or not ch.isascii():
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", errors="surrogateescape"))
        else:
            out.append("\\" + ch if ch in '"\\' else ch)
    return '"' + "".join(out) + '"'


def go_parse_time(layout: str, value: str, default_offset: int = 0) -> GoTime:
    """time.Parse (or ParseInLocation in a fixed zone of `default_offset` seconds) for layouts
    built from 2006 01 02 15 04 05 .999999999 Z07:00; GoTimeError with Go's text."""
    alayout, avalue = layout, value

    def cannot(layout_elem: str, value_elem: str) -> GoTimeError:
        return GoTimeError(
            f"parsing time {_time_quote(avalue)} as {_time_quote(alayout)}: "
            f"cannot parse {_time_quote(value_elem)} as {_time_quote(layout_elem)}"
        )

    year, month, day, hour, minute, second, nsec = 0, -1, -1, 0, 0, 0, 0
    offset: int | None = None
    while True:
        prefix, std, layout = _next_std_chunk(layout)
        for ch in prefix:
            if not value or value[0] != ch:
                raise cannot(prefix, value)
            value = value[1:]
        if std is None:
            if value:
                raise GoTimeError(f"parsing time {_time_quote(avalue)}: extra text: {_time_quote(value)}")
            break
        hold, bad, range_error = value, False, ""
        if std == "2006":
            if len(value) < 4 or not value[0].isdigit():
                bad = True
            else:
                year, bad = _atoi(value[:4])
                value = value[4:]
        elif std == "01":
            month, value, bad = _getnum(value, True)
            if not bad and not 1 <= month <= 12:
                range_error = "month"
        elif std == "02":
            day, value, bad = _getnum(value, True)  # checked against the month at the end
        elif std == "15":
            hour, value, bad = _getnum(value, False)
            if not 0 <= hour < 24:
                range_error = "hour"
        elif std == "04":
            minute, value, bad = _getnum(value, True)
            if not 0 <= minute < 60:
                range_error = "minute"
        elif std == "05":
            second, value, bad = _getnum(value, True)
            if not bad and not 0 <= second < 60:
                range_error = "second"
            elif not bad and len(value) >= 2 and value[0] in ".," and value[1].isdigit():
                # A fraction the layout does not name is still read, as Go does.
                following = _next_std_chunk(layout)[1]
                if not (following and following[0] in ".,"):
                    n = 2
                    while n < len(value) and value[n].isdigit():
                        n += 1
                    nsec, range_error, bad = _parse_nanoseconds(value, n)
                    value = value[n:]
        elif std[0] in ".,":
            if len(value) >= 2 and value[0] in ".," and value[1].isdigit():
                i = 0
                while i + 1 < len(value) and value[i + 1].isdigit():
                    i += 1
                nsec, range_error, bad = _parse_nanoseconds(value, 1 + i)
                value = value[1 + i :]
        elif value[:1] == "Z":  # Z07:00
            value, offset = value[1:], 0
        elif len(value) < 6 or value[3] != ":":
            bad = True
        else:
            sign, hh, mm, value = value[0], value[1:3], value[4:6], value[6:]
            hours, _, bad = _getnum(hh, True)
            minutes = 0
            if not bad:
                minutes, _, bad = _getnum(mm, True)
            if hours > 24:
                range_error = "time zone offset hour"
            if minutes > 60:
                range_error = "time zone offset minute"
            offset = (hours * 60 + minutes) * 60
            if sign == "-":
                offset = -offset
            elif sign != "+":
                bad = True
        if range_error:
            raise GoTimeError(f"parsing time {_time_quote(avalue)}: {range_error} out of range")
        if bad:
            raise cannot(std, hold)
    month = 1 if month < 0 else month
    day = 1 if day < 0 else day
    if day < 1 or day > _days_in(month, year):
        raise GoTimeError(f"parsing time {_time_quote(avalue)}: day out of range")
    return GoTime(year, month, day, hour, minute, second, nsec, default_offset if offset is None else offset)


RFC3339 = "2006-01-02T15:04:05Z07:00"
RFC3339_NANO = "2006-01-02T15:04:05.999999999Z07:00"


def _parse_unix(value: str) -> tuple[int, int]:
    """docker's parseTimestamp: SECONDS[.FRACTION]; ValueError when either part is not an integer."""
    whole, dot, fraction = value.partition(".")
    seconds = go_parse_int(whole, 10)
    if not dot:
        return seconds, 0
    nanos = go_parse_int(fraction, 10)
    return seconds, int(float(nanos) * math.pow(10, 9 - len(fraction)))


def parse_since(value: str, now_ns: int, local_offset: int) -> int | None:
    """logs --since in Unix nanoseconds (None: not given), by docker's GetTimestamp then
    ParseTimestamps: a Go duration before now (cut to whole seconds), an RFC 3339 time or date
    (in the local zone of now when it names none), or Unix seconds. ValueError with docker's text."""
    if not value:
        return None
    try:
        duration = parse_go_duration_strict(value)
    except ValueError:
        duration = None
    if duration is not None and value != "0":
        return ((now_ns - round(duration * 1e9)) // 10**9) * 10**9
    in_location = not any(c in value for c in "zZ+") and value.count("-") != 3
    if "." in value:
        layout = "2006-01-02T15:04:05.999999999" if in_location else RFC3339_NANO
    elif "T" in value:
        colons = value.count(":")
        if not in_location and not any(c in value for c in "zZ") and colons > 0:
            colons -= 1  # the offset's colon
        local_layouts = ("2006-01-02T15", "2006-01-02T15:04", "2006-01-02T15:04:05")
        zoned_layouts = ("2006-01-02T15Z07:00", "2006-01-02T15:04Z07:00", RFC3339)
        layout = (local_layouts if in_location else zoned_layouts)[min(colons, 2)]
    else:
        layout = "2006-01-02" if in_location else "2006-01-02Z07:00"
    try:
        return go_parse_time(layout, value, local_offset if in_location else 0).unix_ns
    except GoTimeError as exc:
        if "-" in value:
            raise ValueError(str(exc)) from None
    try:
        seconds, nanos = _parse_unix(value)
    except ValueError:
        raise ValueError(f"failed to parse value as time or duration: {_time_quote(value)}") from None
    return seconds * 10**9 + nanos


def since(created_ns: int, now_ns: int) -> int:
    """time.Now().Sub(time.Unix(0, created)): saturated to a Duration (int64 nanoseconds)."""
    return min(max(now_ns - created_ns, INT64_MIN), INT64_MAX)


def _local_parts(ns: int) -> tuple[str, str, int, str]:
    """(date and clock, fraction, UTC offset in seconds, zone name) of time.Unix(0, ns) in the local zone."""
    sec, nsec = divmod(ns, 10**9)  # Go normalises the nanoseconds into [0, 1e9) too
    tm = time.localtime(sec)
    clock = (
        f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d} {tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"
    )
    # Layout .999999999: trailing zeros dropped, and the dot too when nothing is left.
    frac = f".{nsec:09d}".rstrip("0") if nsec else ""
    return clock, frac, tm.tm_gmtoff or 0, tm.tm_zone or ""


def go_time_string(ns: int) -> str:
    """time.Unix(0, ns).String(): "2006-01-02 15:04:05.999999999 -0700 MST"."""
    clock, frac, offset, zone = _local_parts(ns)
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset) // 60, 60)
    return f"{clock}{frac} {sign}{hours:02d}{minutes:02d} {zone or f'{sign}{hours:02d}{minutes:02d}'}"


def go_rfc3339_nano(ns: int) -> str:
    """time.Unix(0, ns).Format(time.RFC3339Nano) in the local zone ("Z" at offset zero)."""
    clock, frac, offset, _ = _local_parts(ns)
    if offset == 0:
        zone = "Z"
    else:
        hours, minutes = divmod(abs(offset) // 60, 60)
        zone = f"{'-' if offset < 0 else '+'}{hours:02d}:{minutes:02d}"
    return f"{clock.replace(' ', 'T')}{frac}{zone}"


_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_DIGEST_HEX_LEN = {"sha256": 64, "sha384": 96, "sha512": 128}


def is_digest(text: str) -> bool:
    """go-digest's Parse succeeds: a known algorithm and its exact length of lowercase hex."""
    if not _DIGEST.fullmatch(text):
        return False
    algorithm, _, encoded = text.partition(":")
    size = _DIGEST_HEX_LEN.get(algorithm)
    return size is not None and len(encoded) == size and re.fullmatch(r"[a-f0-9]+", encoded) is not None
