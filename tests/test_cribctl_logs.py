"""cribctl's reading of CRI log files: parsing, tail, since, follow across rotation."""

from __future__ import annotations

import calendar
import io
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crib.cribctl.client import CommandError
from crib.cribctl.cri_logs import (
    LogError,
    LogOptions,
    parse_cri_log,
    parse_docker_json_log,
    previous_log_path,
    read_logs,
    tail_start,
)
from crib.cribctl.gotime import (
    GoTime,
)
from tests.cribctl_samples import (
    LOG,
    SECOND,
    T2,
)

pytestmark = pytest.mark.usefixtures("no_crictl_config")


def _unix_ns(*fields: int, nanos: int = 0, offset: int = 0) -> int:
    return (calendar.timegm((*fields, 0, 0, 0)) - offset) * SECOND + nanos


# --- CRI log files --------------------------------------------------------------------------------


def test_parse_cri_log_lines() -> None:
    msg = parse_cri_log(b"2026-11-28T06:43:48.195790031+00:00 stdout F line0\n")
    assert (msg.stream, msg.log) == ("stdout", b"line0\n")
    assert msg.timestamp is not None and msg.timestamp.unix_ns == _unix_ns(
        2026, 11, 28, 6, 43, 48, nanos=195790031
    )
    msg = parse_cri_log(b"2026-11-28T06:43:48Z stderr P part\n")
    assert (msg.stream, msg.log) == ("stderr", b"part")  # a partial line loses its newline
    assert parse_cri_log(b"2026-11-28T06:43:48Z stdout P:x  two spaces\n").log == b" two spaces"
    assert parse_cri_log(b"2026-11-28T06:43:48Z stdout F \n").log == b"\n"
    for line, error in (
        (b"nothing", "timestamp is not found"),
        (b"2026-11-28T06:43:48Z stdout", "stream type is not found"),
        (b"2026-11-28T06:43:48Z stdin F x", 'unexpected stream type "stdin"'),
        (b"2026-11-28T06:43:48Z stdout F", "log tag is not found"),
        (
            b"2026-11-28 stdout F x",
            'unexpected timestamp format "2006-01-02T15:04:05.999999999Z07:00": parsing time "2026-11-28" as '
            '"2006-01-02T15:04:05.999999999Z07:00": cannot parse "" as "T"',
        ),
    ):
        with pytest.raises(ValueError) as err:
            parse_cri_log(line)
        assert str(err.value) == error


def test_parse_docker_json_log() -> None:
    msg = parse_docker_json_log(b'{"log":"hi\\n","stream":"stderr","time":"2026-11-28T06:43:48.5Z"}\n')
    assert (msg.stream, msg.log) == ("stderr", b"hi\n")
    assert msg.timestamp == GoTime(2026, 11, 28, 6, 43, 48, 500_000_000, 0)
    with pytest.raises(ValueError):
        parse_docker_json_log(b"not json")


def _read(tmp_path: Path, data: bytes, streams: str = "both", **opts: Any) -> tuple[bytes, bytes, list[str]]:
    path = tmp_path / "ctr.log"
    path.write_bytes(data)
    out, err, warnings = io.BytesIO(), io.BytesIO(), []
    read_logs(
        str(path),
        LogOptions(**opts),
        None if streams == "stderr" else out,
        None if streams == "stdout" else err,
        warn=warnings.append,
    )
    return out.getvalue(), err.getvalue(), warnings


def test_read_logs_joins_partial_lines_and_splits_streams(tmp_path: Path) -> None:
    out, err, _ = _read(tmp_path, LOG)
    assert out == b"line0\npartline1\nline2\n"
    assert err == b"err0\nerr2\n"
    out, err, _ = _read(tmp_path, LOG, "stdout")
    assert (out, err) == (b"line0\npartline1\nline2\n", b"")


def test_read_logs_timestamps_prefix_whole_lines_only(tmp_path: Path) -> None:
    out, err, _ = _read(tmp_path, LOG, timestamps=True)
    assert out == (
        b"2026-11-28T06:43:48.000000001Z line0\n"
        b"2026-11-28T07:43:49.500000000+01:00 partline1\n"
        b"2026-11-28T06:43:50.000000003Z line2\n"
    )
    assert err == b"2026-11-28T06:43:48.000000001Z err0\n2026-11-28T06:43:50.000000003Z err2\n"


def test_read_logs_tail_counts_file_lines(tmp_path: Path) -> None:
    assert _read(tmp_path, LOG, tail=2)[:2] == (b"line2\n", b"err2\n")
    assert _read(tmp_path, LOG, tail=0)[:2] == (b"", b"")
    # The tail starts inside the partial line: only its last pieces show.
    assert _read(tmp_path, LOG, tail=4)[:2] == (b"tline1\nline2\n", b"err2\n")
    assert _read(tmp_path, LOG, tail=100)[:2] == _read(tmp_path, LOG)[:2]
    assert _read(tmp_path, LOG, tail=-1)[:2] == _read(tmp_path, LOG)[:2]
    # A last line without its newline is shown when not following, but --tail counts it out.
    unended = LOG + f"{T2} stdout F no newline".encode()
    assert _read(tmp_path, unended)[0] == b"line0\npartline1\nline2\nno newline"
    assert _read(tmp_path, unended, tail=1)[0] == b"line2\n"


def test_read_logs_since_and_limit_bytes(tmp_path: Path) -> None:
    since = _unix_ns(2026, 11, 28, 6, 43, 49, nanos=500_000_000)  # T1 exactly: kept
    assert _read(tmp_path, LOG, since_ns=since)[:2] == (b"partline1\nline2\n", b"err2\n")
    assert _read(tmp_path, LOG, since_ns=since + 1)[:2] == (b"line2\n", b"err2\n")
    # One budget for both streams, cut mid-line (crictl: "line0\nerr0" for 10 bytes).
    assert _read(tmp_path, LOG, limit_bytes=10)[:2] == (b"line0\n", b"err0")
    assert _read(tmp_path, LOG, limit_bytes=0)[:2] == (b"", b"")
    # A stream not shown does not use the budget.
    assert _read(tmp_path, LOG, "stdout", limit_bytes=10)[:2] == (b"line0\npart", b"")


def test_read_logs_docker_json_and_bad_lines(tmp_path: Path) -> None:
    docker = b'{"log":"a\\n","stream":"stdout","time":"2026-11-28T06:43:48Z"}\ngarbage\n'
    docker += b'{"log":"b\\n","stream":"stderr","time":"2026-11-28T06:43:49Z"}\n'
    out, err, warnings = _read(tmp_path, docker)
    assert (out, err) == (b"a\n", b"b\n")
    assert len(warnings) == 1 and "garbage" in warnings[0]
    with pytest.raises(LogError) as error:
        _read(tmp_path, b"garbage\n" + LOG)
    assert str(error.value) == 'failed to get parse function: unsupported log format: "garbage\\n"'


def test_read_logs_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LogError) as err:
        read_logs(str(tmp_path / "nope" / "x.log"), LogOptions(), io.BytesIO(), io.BytesIO())
    assert str(err.value) == (
        f'failed to try resolving symlinks in path "{tmp_path}/nope/x.log": '
        f"lstat {tmp_path}/nope: no such file or directory"
    )


@given(
    st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=40),
    st.booleans(),
    st.integers(-1, 45),
)
def test_tail_start_is_after_the_newline_before_the_last_n_lines(
    lines: list[bytes], ended: bool, n: int
) -> None:
    data = b"\n".join(lines) + (b"\n" if ended and lines else b"")
    newlines = [i for i, byte in enumerate(data) if byte == 10]
    expected = 0 if n < 0 or len(newlines) <= n else newlines[len(newlines) - n - 1] + 1
    assert tail_start(io.BytesIO(data), n) == expected


def test_tail_start_on_big_files() -> None:
    data = b"".join(b"%06d\n" % i for i in range(100_000))
    start = tail_start(io.BytesIO(data), 3)
    assert data[start:] == b"099997\n099998\n099999\n"


def _line(text: str, stream: str = "stdout", tag: str = "F") -> bytes:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000000000Z"
    return f"{stamp} {stream} {tag} {text}\n".encode()


def test_follow_reads_as_the_file_grows_and_stops_with_the_container(tmp_path: Path) -> None:
    path = tmp_path / "follow.log"
    path.write_bytes(_line("first"))
    running = threading.Event()
    running.set()
    out = io.BytesIO()

    def writer() -> None:
        with path.open("ab") as f:
            for i in range(5):
                time.sleep(0.05)
                f.write(_line(f"line{i}"))
                f.flush()
            f.write(_line("pa", tag="P"))  # the rest of a partial line comes later
            f.flush()
            time.sleep(0.1)
            f.write(_line("rt"))
            f.flush()
        running.clear()

    thread = threading.Thread(target=writer)
    thread.start()
    started = time.monotonic()
    read_logs(str(path), LogOptions(follow=True, tail=0), out, None, running.is_set)
    thread.join()
    assert out.getvalue() == b"line0\nline1\nline2\nline3\nline4\npart\n"
    assert time.monotonic() - started < 3


def test_follow_goes_on_in_a_reopened_file_after_reading_the_rotated_one(tmp_path: Path) -> None:
    path = tmp_path / "rot.log"
    path.write_bytes(_line("old0"))
    running = threading.Event()
    running.set()
    out = io.BytesIO()

    def rotate() -> None:
        time.sleep(0.2)
        with path.open("ab") as old:
            os.rename(path, str(path) + ".1")
            time.sleep(0.1)
            old.write(_line("old1"))  # still written to the rotated file until the reopen
            old.flush()
        path.write_bytes(_line("new0"))  # the reopened log
        time.sleep(0.2)
        with path.open("ab") as new:
            new.write(_line("new1"))
        time.sleep(0.2)
        running.clear()

    thread = threading.Thread(target=rotate)
    thread.start()
    read_logs(str(path), LogOptions(follow=True), out, None, running.is_set)
    thread.join()
    assert out.getvalue() == b"old0\nold1\nnew0\nnew1\n"


def test_follow_of_a_stopped_container_reads_what_is_there(tmp_path: Path) -> None:
    calls = []

    def stopped() -> bool:
        calls.append(1)
        return False

    path = tmp_path / "done.log"
    path.write_bytes(LOG + _line("unended")[:-1])
    out = io.BytesIO()
    read_logs(str(path), LogOptions(follow=True), out, None, stopped)
    assert out.getvalue() == b"line0\npartline1\nline2\n"  # an unended line waits for its end
    assert calls == [1]


def test_previous_log_path() -> None:
    assert previous_log_path("/var/log/pods/x/web/3.log", 3) == "/var/log/pods/x/web/2.log"
    with pytest.raises(CommandError):
        previous_log_path("/logs/noext", 1)
