"""cribctl's Go compatibility: Go's time.Parse, docker's --since, Go's duration and quoting.

Expected texts marked "crictl" were printed by crictl 1.36 (or by Go 1.2x's time
package for the same input) and are pasted here: these tests need neither Go nor crictl.
"""

from __future__ import annotations

import calendar

import pytest

from crib.cribctl import cri_logs, gotime
from crib.cribctl.gotime import (
    GoTime,
    GoTimeError,
    go_duration_string,
    go_parse_time,
    go_quote_bytes,
    is_digest,
    parse_since,
)
from tests.cribctl_samples import IMAGE_ID, SECOND

pytestmark = pytest.mark.usefixtures("no_crictl_config")


def _unix_ns(*fields: int, nanos: int = 0, offset: int = 0) -> int:
    return (calendar.timegm((*fields, 0, 0, 0)) - offset) * SECOND + nanos


# --- Go's time.Parse and docker's --since ---------------------------------------------------------


def test_go_parse_time_reads_rfc3339_with_any_fraction_and_offset() -> None:
    t = go_parse_time(gotime.RFC3339_NANO, "2026-11-28T06:43:48.195790031+00:00")
    assert t == GoTime(2026, 11, 28, 6, 43, 48, 195790031, 0)
    assert t.format_rfc3339_nano_fixed() == "2026-11-28T06:43:48.195790031Z"  # crictl -t
    t = go_parse_time(gotime.RFC3339_NANO, "2026-11-28T07:43:48.5+01:00")
    assert t.unix_ns == _unix_ns(2026, 11, 28, 6, 43, 48, nanos=500_000_000)
    assert t.format_rfc3339_nano_fixed() == "2026-11-28T07:43:48.500000000+01:00"
    # More digits than nanoseconds are cut, as Go does; a fraction RFC3339 does not name is read.
    assert go_parse_time(gotime.RFC3339_NANO, "2026-01-02T03:04:05.1234567899Z").nanosecond == 123456789
    assert go_parse_time(gotime.RFC3339, "2026-01-02T03:04:05.25-02:30").offset == -(2 * 3600 + 1800)
    assert go_parse_time("2006-01-02T15", "2026-01-02T3", 3600) == GoTime(2026, 1, 2, 3, 0, 0, 0, 3600)


@pytest.mark.parametrize(
    ("layout", "value", "error"),
    [
        # crictl:
        ("2006-01-02", "2026-13-01", 'parsing time "2026-13-01": month out of range'),
        (
            "2006-01-02T15",
            "2026-11-28Tx",
            'parsing time "2026-11-28Tx" as "2006-01-02T15": cannot parse "x" as "15"',
        ),
        (
            gotime.RFC3339,
            "2026-11-28T06:45:00+25:00",
            'parsing time "2026-11-28T06:45:00+25:00": time zone offset hour out of range',
        ),
        # Go:
        ("2006-01-02", "2026-02-29", 'parsing time "2026-02-29": day out of range'),
        ("2006-01-02", "2026-1-02", 'parsing time "2026-1-02" as "2006-01-02": cannot parse "1-02" as "01"'),
        (
            "2006-01-02",
            "2026/01/02",
            'parsing time "2026/01/02" as "2006-01-02": cannot parse "/01/02" as "-"',
        ),
        (
            "2006-01-02",
            "26-01-02",
            'parsing time "26-01-02" as "2006-01-02": cannot parse "26-01-02" as "2006"',
        ),
        (
            gotime.RFC3339,
            "2026-01-02T10:00:00Zjunk",
            'parsing time "2026-01-02T10:00:00Zjunk": extra text: "junk"',
        ),
        (
            gotime.RFC3339,
            "2026-01-02T10:00:00+0100",
            'parsing time "2026-01-02T10:00:00+0100" as "2006-01-02T15:04:05Z07:00": '
            'cannot parse "+0100" as "Z07:00"',
        ),
        ("2006-01-02T15:04", "2026-01-02T24:00", 'parsing time "2026-01-02T24:00": hour out of range'),
        (
            "2006-01-02T15:04:05",
            "2026-01-02T10:61:00",
            'parsing time "2026-01-02T10:61:00": minute out of range',
        ),
    ],
)
def test_go_parse_time_errors_are_gos(layout: str, value: str, error: str) -> None:
    with pytest.raises(GoTimeError) as err:
        go_parse_time(layout, value)
    assert str(err.value) == error


def test_leap_days_and_years_before_1970() -> None:
    assert go_parse_time("2006-01-02", "2024-02-29").unix_ns == _unix_ns(2024, 2, 29)
    assert go_parse_time("2006-01-02", "1900-03-01").unix_ns == _unix_ns(1900, 3, 1)
    assert go_parse_time("2006-01-02", "0001-01-01").unix_ns == cri_logs._GO_ZERO_TIME_NS


NOW = _unix_ns(2026, 11, 28, 6, 50, 30, nanos=750_000_000)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # A duration before now, cut to whole seconds (reference.Add(-d).Unix()).
        ("5s", _unix_ns(2026, 11, 28, 6, 50, 25)),
        ("1m30.5s", _unix_ns(2026, 11, 28, 6, 49, 0)),
        ("-10s", _unix_ns(2026, 11, 28, 6, 50, 40)),
        ("0s", _unix_ns(2026, 11, 28, 6, 50, 30)),
        # "0" is not a duration here: it is Unix time 0.
        ("0", 0),
        ("1795848500", 1795848500 * SECOND),
        ("5", 5 * SECOND),  # a bare number is Unix seconds, not a duration
        ("1795848500.25", 1795848500 * SECOND + 250_000_000),
        ("1795848500.0000000015", 1795848500 * SECOND + 1),
        # RFC 3339 with a zone, and the local zone (here +02:00) without one.
        ("2026-11-28T06:45:00Z", _unix_ns(2026, 11, 28, 6, 45, 0)),
        ("2026-11-28T06:45:00.5+01:00", _unix_ns(2026, 11, 28, 5, 45, 0, nanos=500_000_000)),
        ("2026-11-28T06:45:00-05:00", _unix_ns(2026, 11, 28, 11, 45, 0)),
        ("2026-11-28T06:45Z", _unix_ns(2026, 11, 28, 6, 45, 0)),
        ("2026-11-28T06Z", _unix_ns(2026, 11, 28, 6, 0, 0)),
        ("2026-11-28T06:45:00", _unix_ns(2026, 11, 28, 6, 45, 0, offset=7200)),
        ("2026-11-28T06:45", _unix_ns(2026, 11, 28, 6, 45, 0, offset=7200)),
        ("2026-11-28T06", _unix_ns(2026, 11, 28, 6, 0, 0, offset=7200)),
        ("2026-11-28T06:45:00.125", _unix_ns(2026, 11, 28, 6, 45, 0, nanos=125_000_000, offset=7200)),
        ("2026-11-28", _unix_ns(2026, 11, 28, 0, 0, 0, offset=7200)),
        ("2026-11-28Z", _unix_ns(2026, 11, 28, 0, 0, 0)),
    ],
)
def test_parse_since(value: str, expected: int) -> None:
    assert parse_since(value, NOW, 7200) == expected


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("abc", 'failed to parse value as time or duration: "abc"'),  # crictl
        ("1.x", 'failed to parse value as time or duration: "1.x"'),  # crictl
        ("2026-13-01", 'parsing time "2026-13-01": month out of range'),  # crictl
        ("-5", 'parsing time "-5" as "2006-01-02": cannot parse "-5" as "2006"'),
    ],
)
def test_parse_since_errors(value: str, error: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_since(value, NOW, 0)
    assert str(err.value) == error


def test_parse_since_empty_is_none() -> None:
    assert parse_since("", NOW, 0) is None


# --- small Go behaviours --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (1, "1s"), (59, "59s"), (90, "1m30s"), (3600, "1h0m0s"), (-5, "-5s")]
)
def test_go_duration_string(seconds: int, text: str) -> None:
    assert go_duration_string(seconds) == text


def test_is_digest_as_go_digest_parses() -> None:
    assert is_digest(IMAGE_ID)
    assert is_digest("sha512:" + "a" * 128)
    assert not is_digest("sha256:" + "A" * 64)  # upper case hex
    assert not is_digest("sha256:abc")  # wrong length
    assert not is_digest("md5:" + "a" * 32)  # unknown algorithm
    assert not is_digest("crib.e2e/busybox:1")


def test_go_quote_bytes() -> None:
    assert go_quote_bytes(b'a"\n\xff') == '"a\\"\\n\\xff"'
