"""cribctl's container commands: the pure parts, and the commands against in-process fake services.

Expected texts marked "crictl" were printed by crictl 1.36 against cribd (or
by Go 1.2x's time package for the same input) and are pasted here: these
tests need neither Go nor crictl.
"""

from __future__ import annotations

import argparse
import calendar
import io
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crib.cribctl import container_cmds, cri_logs, endpoint, gotime, main
from crib.cribctl.client import CommandError
from crib.cribctl.container_cmds import (
    ConfigError,
    container_filter,
    container_status_json,
    container_status_table,
    container_verbose,
    containers_table,
    cpu_percent,
    load_container_config,
    parse_container_config,
    pull_settings,
    render_event,
    select_containers,
    stats_table,
    verify_container_status,
)
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
    GoTimeError,
    go_duration_string,
    go_parse_time,
    go_quote_bytes,
    is_digest,
    parse_since,
)
from crib.proto.cri import api_pb2, api_pb2_grpc

ID_A = "78c311b9216670672fd8792e2744e9390571378244d36dc2c3331ce786e40340"
ID_B = "a052041bafa1731ab4f1c9fbe0b11606a680e802540a2a4cec5a506cadd43282"
ID_C = "467f5007964787b8c25f44de218245dbefd50001fdb555a0af6fc3f5ec958b62"
POD = "3a596a4dd8e68edc23612fea348f82edb37866bea6d6c23224a80db23ec80cb2"
IMAGE_ID = "sha256:85ff7cf95cd2e97b98f5f7c8ed03b698018d4e6323541af8511ca22877c814cc"
CREATED = 1795848226106651483  # 2026-11-28T06:43:46.106651483Z
SECOND = 10**9


@pytest.fixture(autouse=True)
def no_default_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(endpoint, "DEFAULT_CONFIG_PATH", tmp_path / "absent-crictl.yaml")
    monkeypatch.delenv("CONTAINER_RUNTIME_ENDPOINT", raising=False)
    monkeypatch.delenv("CRI_CONFIG_FILE", raising=False)
    monkeypatch.delenv("CRICTL_PULL_TIMEOUT", raising=False)


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


# --- container configs ----------------------------------------------------------------------------

CONTAINER_YAML = """\
metadata: {name: web, attempt: 2}
Image: {image: "busybox:1", annotations: {a: 1}}
command: [/bin/sh, -c]
args: [echo hi]
working_dir: /srv
envs:
- {key: PORT, value: 8080}       # a number for a string: "8080"
- {key: SECRET, value: aGVsbG8=}  # kept as written (cri-api's value is a string)
- {key: DEBUG, value: yes}        # YAML 1.1: true, then "true"
labels: {tier: web}
log_path: web/0.log
tty: true
linux:
  resources: {memory_limit_in_bytes: 67108864, cpu_shares: 512}
  security_context: {run_as_user: {value: 33}, readonly_rootfs: true}
mounts:
- {container_path: /data, host_path: /tmp, readonly: true, propagation: 2}
stopSignal: 23                    # lowerCamelCase and an enum number (SIGTERM)
"""


def test_container_config_as_crictl_reads_it() -> None:
    config = parse_container_config(CONTAINER_YAML)
    assert (config.metadata.name, config.metadata.attempt) == ("web", 2)
    assert config.image.image == "busybox:1" and dict(config.image.annotations) == {"a": "1"}
    assert list(config.command) == ["/bin/sh", "-c"] and list(config.args) == ["echo hi"]
    assert [(e.key, e.value) for e in config.envs] == [
        ("PORT", b"8080"),
        ("SECRET", b"aGVsbG8="),
        ("DEBUG", b"true"),
    ]
    assert config.linux.resources.memory_limit_in_bytes == 64 << 20
    assert config.linux.security_context.run_as_user.value == 33
    assert config.mounts[0].propagation == api_pb2.PROPAGATION_BIDIRECTIONAL
    assert config.tty and config.log_path == "web/0.log" and config.stop_signal == api_pb2.SIGTERM
    json_config = parse_container_config(
        json.dumps({"metadata": {"name": "j"}, "envs": [{"key": "A", "value": 1}]})
    )
    assert json_config.envs[0].value == b"1"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "metadata: {name: x}\nimage: {image: a}\nenvs: [{key: A, value: [1]}]\n",
            "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal array into "
            "Go struct field KeyValue.envs.value of type string",
        ),
        (
            "metadata: {name: x}\ncommand: sh\n",
            "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal string into "
            "Go struct field ContainerConfig.command of type []string",
        ),
    ],
)
def test_container_config_errors(text: str, error: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_container_config(text)
    assert str(err.value) == error


def test_load_container_config_checks_as_crictl(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"

    def error(text: str) -> str:
        path.write_text(text)
        with pytest.raises(ConfigError) as err:
            load_container_config(str(path))
        return str(err.value)

    assert error("image: {image: a}\n") == "metadata is not set"
    assert error("metadata: {attempt: 1}\n") == 'name is not in metadata "attempt:1"'
    assert error("metadata: {name: x}\n") == "image is not set"
    # crictl:
    assert error("metadata: {name: x}\nimage: {user_specified_image: b}\n") == (
        'image field is not set in image "user_specified_image:\\"b\\""'
    )
    with pytest.raises(ConfigError) as err:
        load_container_config(str(tmp_path / "absent.yaml"))
    assert str(err.value) == f"config at {tmp_path}/absent.yaml not found"
    with pytest.raises(ConfigError) as err:
        load_container_config(str(tmp_path))
    assert str(err.value) == f"read {tmp_path}: is a directory"


def test_pull_settings_follow_the_config_file_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert pull_settings(None) == (False, False)
    explicit = tmp_path / "crictl.yaml"
    explicit.write_text("pull-image-on-create: true\ndisable-pull-on-run: 'true'\n")
    assert pull_settings(str(explicit)) == (True, True)
    monkeypatch.setattr(endpoint, "DEFAULT_CONFIG_PATH", explicit)
    assert pull_settings(None) == (True, True)
    explicit.write_text("nonsense: 1\n")
    assert pull_settings(None) == (False, False)  # a broken default file counts as none
    with pytest.raises(endpoint.ClientConfigError):
        pull_settings(str(explicit))


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


T0 = "2026-11-28T06:43:48.000000001Z"
T1 = "2026-11-28T07:43:49.5+01:00"
T2 = "2026-11-28T06:43:50.000000003Z"
LOG = (
    f"{T0} stdout F line0\n"
    f"{T0} stderr F err0\n"
    f"{T1} stdout P par\n"
    f"{T1} stdout P t\n"
    f"{T1} stdout F line1\n"
    f"{T2} stderr F err2\n"
    f"{T2} stdout F line2\n"
).encode()


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


# --- listing and showing containers ---------------------------------------------------------------


def _container(
    cid: str, name: str, state: int, created: int, image: str = "crib.e2e/busybox:1", **labels: str
) -> api_pb2.Container:
    return api_pb2.Container(
        id=cid,
        pod_sandbox_id=POD,
        metadata=api_pb2.ContainerMetadata(name=name, attempt=1 if name == "b" else 0),
        image=api_pb2.ImageSpec(image=image, user_specified_image=image),
        image_ref=IMAGE_ID,
        image_id=IMAGE_ID,
        state=state,
        created_at=created,
        labels=labels,
    )


CONTAINERS = [
    _container(ID_A, "a", api_pb2.CONTAINER_RUNNING, CREATED, app="a"),
    _container(
        ID_B,
        "b",
        api_pb2.CONTAINER_EXITED,
        CREATED + 2 * SECOND,
        IMAGE_ID,
        app="b",
        **{"io.kubernetes.pod.name": "web-0", "io.kubernetes.pod.namespace": "prod"},
    ),
    _container(ID_C, "c", api_pb2.CONTAINER_CREATED, CREATED + SECOND, app="c"),
]


def test_container_filter_is_what_goes_to_the_runtime() -> None:
    assert container_filter() == api_pb2.ContainerFilter(
        state=api_pb2.ContainerStateValue(state=api_pb2.CONTAINER_RUNNING)
    )
    assert container_filter(show_all=True) == api_pb2.ContainerFilter()
    assert container_filter(state="Exited", labels={"a": "1"}, container_id="ab", pod_id="cd") == (
        api_pb2.ContainerFilter(
            id="ab",
            pod_sandbox_id="cd",
            state=api_pb2.ContainerStateValue(state=api_pb2.CONTAINER_EXITED),
            label_selector={"a": "1"},
        )
    )
    assert container_filter(state="unknown").state.state == api_pb2.CONTAINER_UNKNOWN
    assert not container_filter(latest=True).HasField("state")
    assert not container_filter(state="created", last=2).HasField("state")
    with pytest.raises(CommandError) as err:
        container_filter(state="paused")
    assert str(err.value) == "--state should be one of created, running, exited or unknown"


def test_select_containers() -> None:
    def names(**kw: Any) -> list[str]:
        return [c.metadata.name for c in select_containers(list(CONTAINERS), **kw)]

    assert names() == ["b", "c", "a"]  # newest first
    assert names(name="^[ab]$") == ["b", "a"]
    assert names(namespace="prod") == ["b"]
    assert names(namespace="unknown") == ["c", "a"]  # no namespace label: "unknown", as crictl
    assert names(latest=True) == ["b"]
    assert names(last=2) == ["b", "c"]
    assert names(name="(") == []  # a pattern that does not compile matches nothing
    assert names(image_matches=lambda c: c.image.image == IMAGE_ID) == ["b"]


def test_containers_table() -> None:
    now = CREATED + 65 * SECOND
    rows = select_containers(list(CONTAINERS))
    assert containers_table(rows, now) == (
        "CONTAINER           IMAGE                CREATED              STATE               NAME"
        "                ATTEMPT             POD ID              POD                 NAMESPACE\n"
        "a052041bafa17       85ff7cf95cd2e        About a minute ago   Exited              b"
        "                   1                   3a596a4dd8e68       web-0               prod\n"
        "467f500796478       crib.e2e/busybox:1   About a minute ago   Created             c"
        "                   0                   3a596a4dd8e68       unknown             unknown\n"
        "78c311b921667       crib.e2e/busybox:1   About a minute ago   Running             a"
        "                   0                   3a596a4dd8e68       unknown             unknown\n"
    )
    wide = containers_table(rows[:1], now, no_trunc=True, resolve_image=lambda image: f"<{image}>")
    assert wide.splitlines()[1].split() == [
        ID_B, f"<{IMAGE_ID}>", "About", "a", "minute", "ago", "Exited", "b", "1", POD, "web-0", "prod"
    ]  # fmt: skip
    # The header alone when nothing is listed (crictl prints it too).
    assert containers_table([], now) == (
        "CONTAINER           IMAGE               CREATED             STATE               NAME"
        "                ATTEMPT             POD ID              POD                 NAMESPACE\n"
    )
    with pytest.raises(CommandError) as err:
        containers_table([_container(ID_A, "x", 9, CREATED)], now)
    assert str(err.value) == 'Unknown container state "9"'


def test_container_verbose() -> None:
    c = api_pb2.Container()
    c.CopyFrom(CONTAINERS[1])
    c.annotations["note"] = "x"
    assert container_verbose(c, CREATED + 5 * SECOND) == (
        f"ID: {ID_B}\nPodID: {POD}\nNamespace: prod\nName: b\nAttempt: 1\nState: Exited\n"
        f"Image: {IMAGE_ID}\nCreated: 3 seconds ago\nLabels:\n\tapp -> b\n\tio.kubernetes.pod.name -> web-0\n"
        "\tio.kubernetes.pod.namespace -> prod\nAnnotations:\n\tnote -> x\n\n"
    )


def _status(state: int, **kw: Any) -> api_pb2.ContainerStatus:
    return api_pb2.ContainerStatus(
        id=ID_A,
        metadata=api_pb2.ContainerMetadata(name="a", attempt=kw.pop("attempt", 0)),
        state=state,
        created_at=CREATED,
        image=api_pb2.ImageSpec(image="crib.e2e/busybox:1"),
        image_ref=IMAGE_ID,
        log_path="/logs/a.log",
        **kw,
    )


def test_container_status_table() -> None:
    running = api_pb2.ContainerStatusResponse(
        status=_status(api_pb2.CONTAINER_RUNNING, started_at=CREATED + 2 * SECOND, labels={"app": "a"}),
        info={"info": '{"pid": 1}'},
    )
    now = CREATED + 20 * SECOND
    # crictl (as printed against cribd, times aside):
    assert container_status_table(running, True, now) == (
        f"ID: {ID_A}\nName: a\nState: CONTAINER_RUNNING\nCreated: 20 seconds ago\nStarted: 18 seconds ago\n"
        'Labels:\n\tapp -> a\nInfo: map[info:{"pid": 1}]\n'
    )
    exited = api_pb2.ContainerStatusResponse(
        status=_status(
            api_pb2.CONTAINER_EXITED,
            attempt=3,
            started_at=CREATED,
            finished_at=CREATED + SECOND,
            exit_code=137,
        )
    )
    assert container_status_table(exited, False, now) == (
        f"ID: {ID_A}\nName: a\nAttempt: 3\nState: CONTAINER_EXITED\nCreated: 20 seconds ago\n"
        "Started: 20 seconds ago\nFinished: 19 seconds ago\nExit Code: 137\n"
    )
    created = api_pb2.ContainerStatusResponse(status=_status(api_pb2.CONTAINER_CREATED))
    assert "Started" not in container_status_table(created, False, now)


def test_container_status_json_times(local_zone: Callable[[str], None]) -> None:
    doc = container_status_json(_status(api_pb2.CONTAINER_CREATED))
    assert (doc["createdAt"], doc["startedAt"], doc["finishedAt"]) == (
        "2026-11-28T06:43:46.106651483Z",
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
    )
    assert doc["resources"] is None and doc["user"] is None  # unset messages: null, as crictl
    local_zone("Europe/Berlin")
    doc = container_status_json(
        _status(api_pb2.CONTAINER_EXITED, started_at=CREATED, finished_at=CREATED + 1)
    )
    assert doc["startedAt"] == "2026-11-28T07:43:46.106651483+01:00"
    assert doc["finishedAt"] == "2026-11-28T07:43:46.106651484+01:00"
    doc = container_status_json(_status(api_pb2.CONTAINER_UNKNOWN, started_at=0, finished_at=0))
    assert doc["startedAt"] == "1970-01-01T01:00:00+01:00" and doc["finishedAt"] == "0001-01-01T00:00:00Z"


def test_verify_container_status() -> None:
    assert verify_container_status(_status(api_pb2.CONTAINER_RUNNING)) is None
    st = _status(api_pb2.CONTAINER_RUNNING)
    st.image_ref = ""
    assert verify_container_status(st) == "status.ImageRef is not set"
    st.ClearField("image")
    assert verify_container_status(st) == "status.Image is not set"
    st.metadata.name = ""
    assert verify_container_status(st) == 'metadata.Name is not in metadata ""'


# --- stats ----------------------------------------------------------------------------------------


def _stats(
    cid: str, name: str, cpu: int, ts: int, mem: int, disk: int = 8192, inodes: int = 4
) -> api_pb2.ContainerStats:
    s = api_pb2.ContainerStats(
        attributes=api_pb2.ContainerAttributes(id=cid, metadata=api_pb2.ContainerMetadata(name=name))
    )
    if cpu:
        s.cpu.timestamp = ts
        s.cpu.usage_core_nano_seconds.value = cpu
    if mem:
        s.memory.working_set_bytes.value = mem
    s.writable_layer.used_bytes.value = disk
    s.writable_layer.inodes_used.value = inodes
    return s


def test_cpu_percent() -> None:
    old = _stats(ID_A, "a", 66_000_000, CREATED, 1)
    new = _stats(ID_A, "a", 67_400_000, CREATED + SECOND, 1)
    assert cpu_percent(old, new) == pytest.approx(0.14)
    assert f"{cpu_percent(old, new):.2f}" == "0.14"
    busy = _stats(ID_A, "a", 66_000_000 + 2 * SECOND, CREATED + SECOND, 1)
    assert f"{cpu_percent(old, busy):.2f}" == "200.00"  # two cores
    assert cpu_percent(old, _stats(ID_A, "a", 0, 0, 1)) == 0.0
    with pytest.raises(CommandError) as err:
        cpu_percent(old, _stats(ID_A, "a", 67_000_000, CREATED, 1))
    assert str(err.value) == "cpu stat is not updated during sample"


def test_stats_table() -> None:
    old = [
        _stats(ID_A, "a", 66_000_000, CREATED, 794_624),
        _stats(ID_C, "c", 0, 0, 0, 4096, 1),
    ]
    new = [
        _stats(ID_A, "a", 67_400_000, CREATED + SECOND, 794_624),
        _stats(ID_B, "b", 5, CREATED, 10),  # new since the first sample: left out
        _stats(ID_C, "c", 0, 0, 0, 4096, 1),
    ]
    # crictl (its row against cribd, same numbers):
    assert stats_table(old, new, False) == (
        "CONTAINER           NAME                CPU %               MEM                 DISK"
        "                INODES              SWAP\n"
        "78c311b921667       a                   0.14                794.6kB             8.192kB"
        "             4                   0B\n"
    )
    assert stats_table(old, new, True).splitlines()[2].split() == [
        "467f500796478",
        "c",
        "0.00",
        "0B",
        "4.096kB",
        "1",
        "0B",
    ]


# --- argument parsing -----------------------------------------------------------------------------


def _parse(*argv: str) -> argparse.Namespace:
    return main.parser().parse_args(list(argv))


def test_argument_parsing() -> None:
    args = _parse("-t", "5s", "exec", "-s", "--timeout", "3", ID_A, "sh", "-c", "echo -n; exit 2")
    assert (args.sync, args.exec_timeout, args.argv) == (
        True,
        ("3", "timeout"),
        [ID_A, "sh", "-c", "echo -n; exit 2"],
    )
    assert args.timeout == "5s"  # the global --timeout is not the subcommand's
    args = _parse("stop", "-t", "10", "a", "b")
    assert (args.stop_timeout, args.ids, args.timeout) == (("10", "t"), ["a", "b"], None)
    args = _parse(
        "ps", "-aqv", "--label", "a=1,b=2", "-s", "exited", "-p", "pod", "-n", "2", "-r", "--no-trunc"
    )
    assert (args.all, args.quiet, args.verbose, args.label, args.state, args.pod, args.last) == (
        True, True, True, ["a=1", "b=2"], "exited", "pod", ("2", "n")
    )  # fmt: skip
    assert args.resolve_image_path and args.no_trunc and args.output == "table"
    args = _parse("logs", "-ft", "--tail", "5", "--since", "1m", "-s", "stderr", "x")
    assert (args.follow, args.timestamps, args.tail, args.since, args.stream, args.ids) == (
        True, True, ("5", "tail"), "1m", "stderr", ["x"]
    )  # fmt: skip
    assert _parse("event").command == "event" and main.COMMANDS["event"] is container_cmds.cmd_events
    args = _parse("create", "-T", "30s", "--with-pull", "--pt", "1m", "p", "c.yaml", "p.yaml")
    assert (args.cancel_timeout, args.with_pull, args.pull_timeout, args.configs) == (
        ("30s", "T"), True, "1m", ["p", "c.yaml", "p.yaml"]
    )  # fmt: skip
    args = _parse("update", "--memory", "0x100", "--cpuset-cpus", "0-1", "--oom-score-adj", "x", "a")
    assert (args.memory, args.cpuset_cpus, args.oom_score_adj) == (("0x100", "memory"), "0-1", "x")
    assert _parse("run", "-r", "crun", "c", "p").runtime == "crun"
    assert _parse("rm", "-afk").keep_logs


# --- the commands against fake services -----------------------------------------------------------


class FakeRuntime(api_pb2_grpc.RuntimeServiceServicer):
    """Enough of a RuntimeService for the container commands: containers in memory, ID prefixes."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.containers: dict[str, api_pb2.Container] = {}
        self.logs: dict[str, str] = {}
        self.calls: list[tuple[str, Any, float | None]] = []
        self.lock = threading.Lock()
        self.counter = 0
        self.exec_result = api_pb2.ExecSyncResponse(stdout=b"out", stderr=b"err", exit_code=0)
        self.exec_delay = 0.0
        self.events: list[api_pb2.ContainerEventResponse] = []
        self.stats_samples: list[list[api_pb2.ContainerStats]] = []
        self.remove_delay = 0.0
        self.status_calls = 0
        self.exit_after_status_calls: int | None = None

    def _record(self, name: str, request: Any, context: grpc.ServicerContext) -> None:
        with self.lock:
            self.calls.append((name, request, context.time_remaining()))

    def calls_of(self, name: str) -> list[tuple[str, Any, float | None]]:
        return [c for c in self.calls if c[0] == name]

    def _find(self, cid: str, context: grpc.ServicerContext) -> api_pb2.Container:
        found = [c for i, c in self.containers.items() if i.startswith(cid)] if cid else []
        if len(found) != 1:
            context.abort(grpc.StatusCode.NOT_FOUND, f"container '{cid}' not found")
        return found[0]

    def Version(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._record("Version", request, context)
        return api_pb2.VersionResponse(version="0.1.0", runtime_name="fake", runtime_api_version="v1")

    def RunPodSandbox(self, request: api_pb2.RunPodSandboxRequest, context: grpc.ServicerContext) -> Any:
        self._record("RunPodSandbox", request, context)
        return api_pb2.RunPodSandboxResponse(pod_sandbox_id=POD)

    def add(self, name: str, state: int = api_pb2.CONTAINER_RUNNING, **labels: str) -> str:
        with self.lock:
            self.counter += 1
            cid = f"{self.counter:02d}" + "cd" * 31
        self.containers[cid] = _container(cid, name, state, CREATED + self.counter * SECOND, **labels)
        self.logs[cid] = str(self.log_dir / f"{name}.log")
        return cid

    def CreateContainer(self, request: api_pb2.CreateContainerRequest, context: grpc.ServicerContext) -> Any:
        self._record("CreateContainer", request, context)
        if request.config.metadata.name == "no-id":
            return api_pb2.CreateContainerResponse()
        cid = self.add(request.config.metadata.name, api_pb2.CONTAINER_CREATED)
        return api_pb2.CreateContainerResponse(container_id=cid)

    def StartContainer(self, request: api_pb2.StartContainerRequest, context: grpc.ServicerContext) -> Any:
        self._record("StartContainer", request, context)
        self._find(request.container_id, context).state = api_pb2.CONTAINER_RUNNING
        return api_pb2.StartContainerResponse()

    def StopContainer(self, request: api_pb2.StopContainerRequest, context: grpc.ServicerContext) -> Any:
        self._record("StopContainer", request, context)
        self._find(request.container_id, context).state = api_pb2.CONTAINER_EXITED
        return api_pb2.StopContainerResponse()

    def RemoveContainer(self, request: api_pb2.RemoveContainerRequest, context: grpc.ServicerContext) -> Any:
        self._record("RemoveContainer", request, context)
        time.sleep(self.remove_delay)
        del self.containers[self._find(request.container_id, context).id]
        return api_pb2.RemoveContainerResponse()

    def ListContainers(self, request: api_pb2.ListContainersRequest, context: grpc.ServicerContext) -> Any:
        self._record("ListContainers", request, context)
        f = request.filter
        items = [
            c
            for c in self.containers.values()
            if c.id.startswith(f.id)
            and c.pod_sandbox_id.startswith(f.pod_sandbox_id)
            and (not f.HasField("state") or c.state == f.state.state)
            and all(c.labels.get(k) == v for k, v in f.label_selector.items())
        ]
        return api_pb2.ListContainersResponse(containers=items)

    def ContainerStatus(self, request: api_pb2.ContainerStatusRequest, context: grpc.ServicerContext) -> Any:
        self._record("ContainerStatus", request, context)
        c = self._find(request.container_id, context)
        with self.lock:
            self.status_calls += 1
            if self.exit_after_status_calls is not None and self.status_calls >= self.exit_after_status_calls:
                c.state = api_pb2.CONTAINER_EXITED
        status = api_pb2.ContainerStatus(
            id=c.id,
            metadata=c.metadata,
            state=c.state,
            created_at=c.created_at,
            started_at=c.created_at + SECOND if c.state != api_pb2.CONTAINER_CREATED else 0,
            finished_at=c.created_at + 2 * SECOND if c.state == api_pb2.CONTAINER_EXITED else 0,
            image=c.image,
            image_ref=c.image_ref,
            labels=c.labels,
            log_path=self.logs[c.id],
        )
        info = {"info": json.dumps({"pid": 42})} if request.verbose else {}
        return api_pb2.ContainerStatusResponse(status=status, info=info)

    def UpdateContainerResources(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._record("UpdateContainerResources", request, context)
        self._find(request.container_id, context)
        return api_pb2.UpdateContainerResourcesResponse()

    def ReopenContainerLog(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._record("ReopenContainerLog", request, context)
        return api_pb2.ReopenContainerLogResponse()

    def ExecSync(self, request: api_pb2.ExecSyncRequest, context: grpc.ServicerContext) -> Any:
        self._record("ExecSync", request, context)
        self._find(request.container_id, context)
        time.sleep(self.exec_delay)
        if request.timeout and self.exec_delay > request.timeout:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "ExecSync: timed out")
        return self.exec_result

    def Exec(self, request: api_pb2.ExecRequest, context: grpc.ServicerContext) -> Any:
        self._record("Exec", request, context)
        # Nothing listens there: the tests stop before streaming (or see the refusal).
        return api_pb2.ExecResponse(url="http://127.0.0.1:9/exec/abcdefgh")

    def ListContainerStats(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._record("ListContainerStats", request, context)
        return api_pb2.ListContainerStatsResponse(stats=self.stats_samples.pop(0))

    def GetContainerEvents(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        self._record("GetContainerEvents", request, context)
        yield from self.events


class FakeImages(api_pb2_grpc.ImageServiceServicer):
    def __init__(self) -> None:
        self.pulls: list[tuple[api_pb2.PullImageRequest, float | None]] = []
        self.pull_error: tuple[grpc.StatusCode, str] | None = None

    def ImageFsInfo(self, request: Any, context: grpc.ServicerContext) -> Any:
        return api_pb2.ImageFsInfoResponse()

    def ImageStatus(self, request: api_pb2.ImageStatusRequest, context: grpc.ServicerContext) -> Any:
        if request.image.image in ("crib.e2e/busybox:1", IMAGE_ID, IMAGE_ID.removeprefix("sha256:")[:13]):
            image = api_pb2.Image(id=IMAGE_ID, size=10, repo_tags=["crib.e2e/busybox:1"])
            return api_pb2.ImageStatusResponse(image=image)
        if request.image.image == "other:1":
            return api_pb2.ImageStatusResponse(image=api_pb2.Image(id="sha256:" + "0" * 64, size=1))
        return api_pb2.ImageStatusResponse()

    def PullImage(self, request: api_pb2.PullImageRequest, context: grpc.ServicerContext) -> Any:
        self.pulls.append((request, context.time_remaining()))
        if self.pull_error:
            context.abort(*self.pull_error)
        return api_pb2.PullImageResponse(image_ref=IMAGE_ID)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[FakeRuntime, FakeImages, str]]:
    runtime, images = FakeRuntime(tmp_path), FakeImages()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    api_pb2_grpc.add_RuntimeServiceServicer_to_server(runtime, server)
    api_pb2_grpc.add_ImageServiceServicer_to_server(images, server)
    socket = f"unix://{tmp_path}/fake.sock"
    server.add_insecure_port(socket)
    server.start()
    yield runtime, images, socket
    server.stop(None)


Fake = tuple[FakeRuntime, FakeImages, str]


def _run(capsys: pytest.CaptureFixture[str], socket: str, *argv: str) -> tuple[int, str, str]:
    try:
        code = main.main(["-r", socket, *argv])
    except SystemExit as exc:  # exec -s exits with the command's code
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


CONTAINER_CONFIG = (
    "metadata: {name: web}\nimage: {image: crib.e2e/busybox:1}\n"
    "mounts: [{container_path: /m, image: {image: other:1}}]\n"
)
POD_CONFIG = "metadata: {name: p, namespace: n, uid: u}\nlinux: {}\n"
CGROUP_WARNING = "cribctl: cgroup_parent is not set. Use `runtime-config` to get the runtime cgroup driver\n"


def test_create_sends_both_configs_and_uses_the_cancel_timeout(
    fake: Fake, capsys: Any, tmp_path: Path
) -> None:
    runtime, images, socket = fake
    ctr, pod = _write(tmp_path, "c.yaml", CONTAINER_CONFIG), _write(tmp_path, "p.yaml", POD_CONFIG)
    code, out, err = _run(capsys, socket, "--timeout", "3s", "create", POD, ctr, pod)
    assert (code, err) == (0, CGROUP_WARNING)
    assert out == f"{next(iter(runtime.containers))}\n"
    (_, request, remaining) = runtime.calls_of("CreateContainer")[0]
    assert request.pod_sandbox_id == POD and request.sandbox_config.metadata.name == "p"
    assert request.config.image.user_specified_image == "crib.e2e/busybox:1"
    assert 2.0 < remaining <= 3.1 and images.pulls == []
    _run(capsys, socket, "create", "-T", "20s", POD, ctr, "")
    (_, request, remaining) = runtime.calls_of("CreateContainer")[1]
    assert 19.0 < remaining <= 20.1 and not request.HasField("sandbox_config")


def test_create_pulls_the_image_and_mounted_images_when_asked(
    fake: Fake, capsys: Any, tmp_path: Path
) -> None:
    _, images, socket = fake
    ctr, pod = _write(tmp_path, "c.yaml", CONTAINER_CONFIG), _write(tmp_path, "p.yaml", POD_CONFIG)
    code, _, err = _run(
        capsys, socket, "create", "--with-pull", "--creds", "u:p", "--pt", "1m", POD, ctr, pod
    )
    assert code == 0 and "cribctl: Pulling container image: crib.e2e/busybox:1\n" in err
    assert "cribctl: Pulling image other:1 to be mounted to container path: /m\n" in err
    assert [p[0].image.image for p in images.pulls] == ["crib.e2e/busybox:1", "other:1"]
    assert images.pulls[0][0].auth == api_pb2.AuthConfig(username="u", password="p")
    assert images.pulls[0][0].sandbox_config.metadata.uid == "u" and 59 < images.pulls[0][1] <= 60.1
    # pull-image-on-create in crictl.yaml pulls by default; --no-pull overrides it.
    config = _write(tmp_path, "crictl.yaml", "pull-image-on-create: true\n")
    images.pulls.clear()
    _run(capsys, socket, "--config", config, "create", POD, ctr, pod)
    assert len(images.pulls) == 2 and images.pulls[0][1] > 1e9  # no deadline without --pull-timeout
    _run(capsys, socket, "--config", config, "create", "--no-pull", POD, ctr, pod)
    assert len(images.pulls) == 2
    images.pull_error = (grpc.StatusCode.UNKNOWN, "pulling from registry: 401")
    code, _, err = _run(capsys, socket, "create", "--with-pull", POD, ctr, pod)
    assert code == 1 and err.endswith("cribctl: creating container: pulling from registry: 401\n")
    code, _, err = _run(capsys, socket, "create", "--with-pull", "--creds", "u", "--auth", "x", POD, ctr, pod)
    assert err.endswith("cribctl: creating container: both `--creds` and `--auth` are specified\n")


def test_create_errors(fake: Fake, capsys: Any, tmp_path: Path) -> None:
    _, _, socket = fake
    pod = _write(tmp_path, "p.yaml", POD_CONFIG)
    assert _run(capsys, socket, "create", "--no-pull", "--with-pull", "a", "b", "c")[2] == (
        "cribctl: conflict: no-pull and with-pull are both set\n"
    )
    assert _run(capsys, socket, "create", POD, str(tmp_path / "none.yaml"), pod)[2] == (
        f"cribctl: creating container: config at {tmp_path}/none.yaml not found\n"
    )
    no_id = _write(tmp_path, "n.yaml", "metadata: {name: no-id}\nimage: {image: a}\n")
    assert _run(capsys, socket, "create", POD, no_id, "")[2] == (
        'cribctl: creating container: ContainerId is not set for container "name:\\"no-id\\""\n'
    )
    code, out, _ = _run(capsys, socket, "create", POD)
    assert code == 0 and out.startswith("NAME:\n   cribctl create - ")
    assert "does not print the config JSON schemas" in _run(capsys, socket, "create", "js")[2]


def test_run_runs_the_pod_then_creates_and_starts(fake: Fake, capsys: Any, tmp_path: Path) -> None:
    runtime, images, socket = fake
    ctr, pod = _write(tmp_path, "c.yaml", CONTAINER_CONFIG), _write(tmp_path, "p.yaml", POD_CONFIG)
    code, out, err = _run(capsys, socket, "--timeout", "2s", "run", "-r", "crun", "--no-pull", ctr, pod)
    assert code == 0 and err == CGROUP_WARNING * 2  # the pod config is read twice, as crictl does
    (cid,) = runtime.containers
    assert out == f"{cid}\n" and runtime.containers[cid].state == api_pb2.CONTAINER_RUNNING
    (_, request, remaining) = runtime.calls_of("RunPodSandbox")[0]
    assert request.runtime_handler == "crun" and 3.0 < remaining <= 4.1  # twice the timeout
    # Without --no-pull, run pulls, unless disable-pull-on-run.
    _run(capsys, socket, "run", ctr, pod)
    assert len(images.pulls) == 2
    config = _write(tmp_path, "crictl.yaml", "disable-pull-on-run: true\n")
    _run(capsys, socket, "--config", config, "run", ctr, pod)
    assert len(images.pulls) == 2
    _run(capsys, socket, "--config", config, "run", "--with-pull", ctr, pod)
    assert len(images.pulls) == 4
    assert _run(capsys, socket, "run", "--no-pull", str(tmp_path / "x.yaml"), pod)[2].endswith(
        f"cribctl: running container: creating container failed: config at {tmp_path}/x.yaml not found\n"
    )


def test_start_stop_update(fake: Fake, capsys: Any) -> None:
    runtime, _, socket = fake
    a, b = runtime.add("a", api_pb2.CONTAINER_CREATED), runtime.add("b", api_pb2.CONTAINER_CREATED)
    assert _run(capsys, socket, "start", a, b) == (0, f"{a}\n{b}\n", "")
    assert _run(capsys, socket, "start") == (1, "", "cribctl: ID cannot be empty\n")
    assert _run(capsys, socket, "start", "zz")[2] == (
        "cribctl: starting the container \"zz\": rpc error: code = NotFound desc = container 'zz' not found\n"
    )
    assert _run(capsys, socket, "--timeout", "2s", "stop", "-t", "7", a) == (0, f"{a}\n", "")
    (_, request, remaining) = runtime.calls_of("StopContainer")[0]
    assert request.timeout == 7 and 8.0 < remaining <= 9.1  # the grace period on top of the timeout
    assert _run(capsys, socket, "stop", "-a") == (0, f"{b}\n", "")
    assert _run(capsys, socket, "stop", "--all") == (0, "No running containers found.\n", "")
    assert (
        _run(capsys, socket, "stop", "-a", a)[2]
        == "cribctl: cannot specify CONTAINER-ID(s) when using --all\n"
    )
    assert (
        _run(capsys, socket, "stop")[2]
        == "cribctl: you must specify at least one CONTAINER-ID or use --all\n"
    )
    argv = ["update", "--memory", "0x4000000", "--cpu-quota", "50000", "--cpu-period", "100000"]
    argv += ["--cpu-share", "512", "--cpuset-cpus", "0", "--cpuset-mems", "0", "--oom-score-adj", "-500", a]
    assert _run(capsys, socket, *argv) == (0, f"{a}\n", "")
    (_, request, _) = runtime.calls_of("UpdateContainerResources")[0]
    assert request.linux == api_pb2.LinuxContainerResources(
        cpu_period=100000,
        cpu_quota=50000,
        cpu_shares=512,
        cpuset_cpus="0",
        cpuset_mems="0",
        memory_limit_in_bytes=64 << 20,
        oom_score_adj=-500,
    )
    assert (
        _run(capsys, socket, "update", "--memory", "x", a)[2]
        == 'cribctl: invalid value "x" for flag -memory: parse error\n'
    )
    assert _run(capsys, socket, "update")[2] == "cribctl: ID cannot be empty\n"


def test_rm_removes_containers_concurrently_with_their_logs(fake: Fake, capsys: Any, tmp_path: Path) -> None:
    runtime, _, socket = fake
    a = runtime.add("a")
    b = runtime.add("b", api_pb2.CONTAINER_EXITED)
    for suffix in ("", ".1", ".20260101-000000"):
        (tmp_path / f"a.log{suffix}").write_text("x")
        (tmp_path / f"b.log{suffix}").write_text("x")
    code, out, err = _run(capsys, socket, "rm", a, b)
    assert (code, out) == (1, f"{b}\n")
    assert err == f'cribctl: container "{a}" is running, please stop it first\n'
    assert sorted(p.name for p in tmp_path.glob("*.log*")) == ["a.log", "a.log.1", "a.log.20260101-000000"]
    assert _run(capsys, socket, "rm", "-f", "-k", a) == (0, f"{a}\n{a}\n", "")  # stopped, then removed
    assert (tmp_path / "a.log").exists()
    runtime.remove_delay = 0.3
    ids = [runtime.add(f"c{i}", api_pb2.CONTAINER_EXITED) for i in range(4)]
    started = time.monotonic()
    code, out, err = _run(capsys, socket, "rm", "-a")
    assert code == 0 and sorted(out.split()) == sorted(ids) and time.monotonic() - started < 1.0
    assert err.count("removing log file") == 4  # the fake's containers have no log files
    assert f'removing log file {tmp_path}/c0.log for container "{ids[0]}" failed: remove ' in err
    assert _run(capsys, socket, "rm", "-a") == (0, "", "cribctl: No containers to remove\n")
    code, out, _ = _run(capsys, socket, "rm")
    assert code == 0 and out.startswith("NAME:\n   cribctl rm - ")


def test_ps_filters_and_formats(fake: Fake, capsys: Any) -> None:
    runtime, _, socket = fake
    a = runtime.add("a", tier="web")
    b = runtime.add("b", api_pb2.CONTAINER_EXITED, tier="db")
    c = runtime.add("c", api_pb2.CONTAINER_CREATED, tier="web")
    runtime.containers[b].image.image = IMAGE_ID

    def ids(*argv: str) -> list[str]:
        code, out, err = _run(capsys, socket, "ps", "-q", *argv)
        assert (code, err) == (0, ""), err
        return out.split()

    assert ids() == [a]
    assert ids("-a") == [c, b, a]
    assert ids("-s", "Exited") == [b]
    assert ids("-l") == [c] and ids("-n", "2") == [c, b]
    assert ids("-a", "--label", "tier=web") == [c, a]
    assert ids("-a", "--id", b[:4]) == [b]
    assert ids("-a", "--pod", POD[:6]) == [c, b, a]
    assert ids("-a", "--name", "^[bc]$") == [c, b]
    assert ids("-a", "--namespace", "unknown") == [c, b, a]
    assert ids("-a", "--image", "crib.e2e/busybox:1") == [c, b, a]  # b's image ID is the same image
    assert ids("-a", "--image", "other:1") == []
    (_, request, _) = runtime.calls_of("ListContainers")[2]
    assert request.filter.state.state == api_pb2.CONTAINER_EXITED
    table = _run(capsys, socket, "ps", "-a")[1].splitlines()
    assert table[0].split()[:3] == ["CONTAINER", "IMAGE", "CREATED"] and len(table) == 4
    assert table[2].split()[:2] == [b[:13], "85ff7cf95cd2e"]
    assert _run(capsys, socket, "ps", "-a", "-r")[1].splitlines()[2].split()[1] == "crib.e2e/busybox:1"
    doc = json.loads(_run(capsys, socket, "ps", "-a", "-o", "json")[1])
    assert [x["id"] for x in doc["containers"]] == [c, b, a] and doc["containers"][0][
        "state"
    ] == "CONTAINER_CREATED"
    assert _run(capsys, socket, "ps", "-o", "yaml")[1].startswith("containers:\n- annotations: {}\n")
    assert _run(capsys, socket, "ps", "-v")[1].startswith(
        f"ID: {a}\nPodID: {POD}\nNamespace: unknown\nName: a\n"
    )
    assert _run(capsys, socket, "ps", "-s", "paused")[2] == (
        "cribctl: --state should be one of created, running, exited or unknown\n"
    )
    assert (
        _run(capsys, socket, "ps", "-o", "xml")[2]
        == 'cribctl: listing containers: unsupported output format "xml"\n'
    )
    code, out, _ = _run(capsys, socket, "ps", "extra")
    assert code == 0 and out.startswith("NAME:\n   cribctl ps - ")


def test_inspect(fake: Fake, capsys: Any, local_zone: Callable[[str], None]) -> None:
    runtime, _, socket = fake
    a = runtime.add("a", tier="web")
    b = runtime.add("b", api_pb2.CONTAINER_EXITED)
    code, out, err = _run(capsys, socket, "inspect", a[:5])
    doc = json.loads(out)
    assert (code, err) == (0, "") and doc["info"] == {"pid": 42}
    assert doc["status"]["id"] == a and doc["status"]["finishedAt"] == "0001-01-01T00:00:00Z"
    both = json.loads(_run(capsys, socket, "inspect", "-q", a, b)[1])
    assert [d["status"]["state"] for d in both] == [
        "CONTAINER_RUNNING",
        "CONTAINER_EXITED",
    ] and "info" not in both[0]
    assert _run(capsys, socket, "inspect", "-o", "yaml", a)[1].startswith("info:\n  pid: 42\nstatus:\n")
    table = _run(capsys, socket, "inspect", "-o", "table", b)[1]
    assert (
        table.startswith(f"ID: {b}\nName: b\nAttempt: 1\nState: CONTAINER_EXITED\n")
        and "Exit Code: 0\n" in table
    )
    # Without IDs, the list filters pick (running ones unless --all or --state).
    assert json.loads(_run(capsys, socket, "inspect")[1])["status"]["id"] == a
    assert len(json.loads(_run(capsys, socket, "inspect", "-a")[1])) == 2
    assert json.loads(_run(capsys, socket, "inspect", "-a", "--name", "^b$")[1])["status"]["id"] == b
    code, out, err = _run(capsys, socket, "inspect", "-s", "created")
    assert (code, err) == (0, "cribctl: No IDs provided or nothing found per filter\n") and out.startswith(
        "NAME:"
    )
    assert _run(capsys, socket, "inspect", "zz")[2] == (
        "cribctl: get the status of containers: get container status: "
        "rpc error: code = NotFound desc = container 'zz' not found\n"
    )
    assert (
        _run(capsys, socket, "inspect", "-o", "go-template", "--template", "{{.status.id}}", a)[1] == f"{a}\n"
    )
    assert _run(capsys, socket, "inspect", "-o", "xml", a)[2] == (
        'cribctl: get the status of containers: unsupported format: "xml"\n'
    )


def test_exec_sync_prints_as_crictl_and_exits_with_the_commands_code(fake: Fake, capsys: Any) -> None:
    runtime, _, socket = fake
    a = runtime.add("a")
    assert _run(capsys, socket, "exec", "-s", a, "sh", "-c", "x") == (0, "out\nerr\n", "")
    (_, request, remaining) = runtime.calls_of("ExecSync")[0]
    assert list(request.cmd) == ["sh", "-c", "x"] and request.timeout == 0 and remaining > 1e9
    runtime.exec_result = api_pb2.ExecSyncResponse(stdout=b"o\n", stderr=b"e\n", exit_code=3)
    code, out, err = _run(capsys, socket, "--timeout", "2s", "exec", "-s", "--timeout", "5", a, "false")
    assert (code, out) == (3, "o\n\ne\n\n")
    assert (
        err
        == f"cribctl: execing command in container {a} synchronously: command 'false' exited with 3: e\n\n"
    )
    assert 6.0 < runtime.calls_of("ExecSync")[1][2] <= 7.1  # the command's timeout on top of --timeout
    code, _, err = _run(capsys, socket, "exec", "-s", "-e", a, "false")
    assert code == 0 and "--ignore-errors" in err
    runtime.exec_result = api_pb2.ExecSyncResponse(exit_code=300)
    assert _run(capsys, socket, "exec", "-s", a, "x")[0] == 1  # no such process exit code: 1
    runtime.exec_delay = 1.5
    code, _, err = _run(capsys, socket, "exec", "-s", "--timeout", "1", a, "sleep", "5")
    assert (code, err) == (
        1,
        f"cribctl: execing command in container {a} synchronously: "
        'command timed out: "sleep 5" timed out after 1s\n',
    )


def test_exec_over_filtered_containers(fake: Fake, capsys: Any) -> None:
    runtime, _, socket = fake
    a, b = runtime.add("a", app="x"), runtime.add("b", app="x")
    runtime.add("c", api_pb2.CONTAINER_EXITED, app="x")
    code, out, _ = _run(capsys, socket, "exec", "-s", "--label", "app=x", "echo", "hi")
    assert (code, out) == (0, f"{b}:\nout\nerr\n{a}:\nout\nerr\n")
    assert [list(c[1].cmd) for c in runtime.calls_of("ExecSync")] == [["echo", "hi"]] * 2
    assert _run(capsys, socket, "exec", "-s", "-q", "--name", "^a$", "true")[1] == "out\nerr\n"
    code, out, _ = _run(capsys, socket, "exec", "-s", "-x", "-l", "true")
    assert (code, out) == (0, "out\nerr\n")
    runtime.exec_result = api_pb2.ExecSyncResponse(exit_code=2)
    assert _run(capsys, socket, "exec", "-s", "--label", "app=x", "false")[0] == 1  # several: 1, as crictl
    code, out, err = _run(capsys, socket, "exec", "-s", "--name", "nothing", "true")
    assert code == 0 and out.startswith("NAME:") and err == "cribctl: No containers found per filter flags\n"


def test_exec_without_sync_asks_for_a_streaming_url(fake: Fake, capsys: Any) -> None:
    runtime, _, socket = fake
    a = runtime.add("a")
    # -t needs a terminal on stdin: refused after the Exec call, before any streaming.
    code, out, err = _run(capsys, socket, "exec", "-it", a, "sh")
    assert (code, out) == (
        1,
        "",
    ) and err == f"cribctl: execing command in container {a}: input is not a terminal\n"
    (_, request, _) = runtime.calls_of("Exec")[0]
    assert (request.tty, request.stdin, request.stdout, request.stderr) == (True, True, True, False)
    code, out, _ = _run(capsys, socket, "exec", a)
    assert code == 0 and out.startswith("NAME:\n   cribctl exec - ")


def test_stats_samples_twice(fake: Fake, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime, _, socket = fake
    slept: list[float] = []
    monkeypatch.setattr(container_cmds.time, "sleep", slept.append)
    old = [_stats(ID_A, "a", 66_000_000, CREATED, 794_624), _stats(ID_C, "c", 0, 0, 0)]
    new = [_stats(ID_C, "c", 0, 0, 0), _stats(ID_A, "a", 67_400_000, CREATED + SECOND, 794_624)]
    runtime.stats_samples = [old, new]
    code, out, err = _run(capsys, socket, "stats", "-s", "3", "--pod", "p", "--label", "a=b", ID_A[:4])
    assert (code, err, slept) == (0, "", [3])
    assert out == container_cmds.CLEAR_SCREEN + stats_table(old, new, False)
    (_, request, _) = runtime.calls_of("ListContainerStats")[0]
    assert request.filter == api_pb2.ContainerStatsFilter(
        id=ID_A[:4], pod_sandbox_id="p", label_selector={"a": "b"}
    )
    runtime.stats_samples = [old]
    doc = json.loads(_run(capsys, socket, "stats", "-o", "json")[1])
    assert [s["attributes"]["id"] for s in doc["stats"]] == [ID_C, ID_A]  # sorted by ID


def test_events_prints_each_event_as_crictl(fake: Fake, capsys: Any) -> None:
    runtime, _, socket = fake
    runtime.events = [
        api_pb2.ContainerEventResponse(
            container_id=ID_A,
            container_event_type=api_pb2.CONTAINER_STARTED_EVENT,
            created_at=CREATED,
            pod_sandbox_status=api_pb2.PodSandboxStatus(id=POD),
        ),
        api_pb2.ContainerEventResponse(
            container_id=ID_B, container_event_type=api_pb2.CONTAINER_DELETED_EVENT
        ),
    ]
    code, out, err = _run(capsys, socket, "events")
    assert (code, err) == (0, "")  # the runtime ended the stream
    assert out == "".join(render_event(e, "json") for e in runtime.events)
    assert out.startswith(
        "{\n" f'  "containerId": "{ID_A}",\n' '  "containerEventType": "CONTAINER_STARTED_EVENT",\n'
        f'  "createdAt": "{CREATED}",\n' '  "podSandboxStatus": {\n'
    )  # fmt: skip
    yaml_out = _run(capsys, socket, "event", "-o", "yaml")[1]
    assert yaml_out.startswith(f"containerEventType: CONTAINER_STARTED_EVENT\ncontainerId: {ID_A}\n")
    assert yaml_out.count("\n\ncontainerEventType") == 1  # a blank line after each event
    assert _run(capsys, socket, "events", "-o", "xml")[2] == 'cribctl: don\'t support "xml" format\n'
    assert (
        _run(capsys, socket, "events", "--template", "x")[2]
        == 'cribctl: template can\'t be used with "json" format\n'
    )


def test_logs_reads_the_file_named_by_the_status(fake: Fake, capsys: Any, tmp_path: Path) -> None:
    runtime, _, socket = fake
    a = runtime.add("a")
    (tmp_path / "a.log").write_bytes(LOG)
    assert _run(capsys, socket, "logs", a) == (0, "line0\npartline1\nline2\n", "err0\nerr2\n")
    assert _run(capsys, socket, "logs", "--tail", "1", "-t", a)[1] == "2026-11-28T06:43:50.000000003Z line2\n"
    assert _run(capsys, socket, "logs", "-s", "stderr", a)[1:] == ("", "err0\nerr2\n")
    code, out, err = _run(capsys, socket, "logs", "-r", "--since", "2026-11-28T06:43:49.6Z", a)
    assert (code, out) == (0, "line2\n") and err == "cribctl: Container logs reopened\nerr2\n"
    assert len(runtime.calls_of("ReopenContainerLog")) == 1
    # -f: follows until the container is no longer running (the fake stops it on the 3rd status).
    runtime.exit_after_status_calls = runtime.status_calls + 3
    code, out, _ = _run(capsys, socket, "logs", "-f", "--tail", "1", a)
    assert (code, out) == (0, "line2\n")
    runtime.containers[a].metadata.attempt = 2
    (tmp_path / "1.log").write_bytes(LOG.split(b"\n")[0] + b"\n")
    assert _run(capsys, socket, "logs", "-p", a)[1] == "line0\n"
    for argv, error in (
        (["logs"], "ID cannot be empty"),
        (["logs", "-s", "both", a], 'invalid stream "both", must be "stdout" or "stderr"'),
        (["logs", "--tail", "1", "-s", "stdout", a], "--tail and --stream are mutually exclusive"),
        (["logs", "--since", "abc", a], 'failed to parse value as time or duration: "abc"'),
        (["logs", "zz"], "rpc error: code = NotFound desc = container 'zz' not found"),
    ):
        assert _run(capsys, socket, *argv) == (1, "", f"cribctl: {error}\n"), argv
    runtime.containers[a].metadata.attempt = 0
    assert _run(capsys, socket, "logs", "-p", a)[2] == "cribctl: previous terminated container a not found\n"


def test_every_command_checks_the_endpoint_first(tmp_path: Path, capsys: Any) -> None:
    dead = f"unix://{tmp_path}/nothing.sock"
    for argv in (["ps"], ["inspect", "x"], ["start", "x"], ["stop", "x"], ["rm", "x"], ["logs", "x"],
                 ["exec", "-s", "x", "true"], ["stats"], ["update", "x"], ["events"]):  # fmt: skip
        code, _, err = _run(capsys, dead, *argv)
        assert code == 1 and err.startswith(
            f'cribctl: validate service connection: validate CRI v1 runtime API for endpoint "{dead}": '
            "rpc error: code = Unavailable desc = "
        ), argv


def test_since_takes_a_negative_duration() -> None:
    from crib.cribctl.main import join_dash_values

    assert join_dash_values(["logs", "--since", "-1h", "c1"]) == ["logs", "--since=-1h", "c1"]
    assert join_dash_values(["logs", "--since", "5m", "c1"]) == ["logs", "--since", "5m", "c1"]
    assert join_dash_values(["exec", "c1", "--", "--since", "-x"]) == ["exec", "c1", "--", "--since", "-x"]
