"""CRI log files as the kubelet reads them (k8s.io/cri-client/pkg/logs), for `cribctl logs`: CRI and
docker JSON lines, --tail, --since, --timestamps, --limit-bytes, --follow and the previous attempt's log.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from crib.cribctl.client import CommandError
from crib.cribctl.golike import go_path_error, go_quote
from crib.cribctl.gotime import (
    RFC3339,
    RFC3339_NANO,
    GoTime,
    GoTimeError,
    days_from_civil,
    go_parse_time,
    go_quote_bytes,
)


class LogError(Exception):
    """A failure reading the log, worded as the kubelet's reader."""


@dataclass
class LogMessage:
    timestamp: GoTime | None  # None: docker JSON without a time (Go's zero time)
    stream: str
    log: bytes


@dataclass
class LogOptions:
    tail: int = -1  # lines from the end; negative: all
    limit_bytes: int = -1  # negative: no limit
    since_ns: int | None = None
    follow: bool = False
    timestamps: bool = False


def parse_cri_log(line: bytes) -> LogMessage:
    """parseCRILog: `TIMESTAMP STREAM TAG[:TAG...] TEXT`; a partial (P) line loses its newline."""
    idx = line.find(b" ")
    if idx < 0:
        raise ValueError("timestamp is not found")
    try:
        stamp = go_parse_time(RFC3339_NANO, line[:idx].decode("utf-8", errors="surrogateescape"))
    except GoTimeError as exc:
        raise ValueError(f'unexpected timestamp format "{RFC3339_NANO}": {exc}') from None
    line = line[idx + 1 :]
    idx = line.find(b" ")
    if idx < 0:
        raise ValueError("stream type is not found")
    stream = line[:idx].decode("utf-8", errors="surrogateescape")
    if stream not in ("stdout", "stderr"):
        raise ValueError(f"unexpected stream type {go_quote(stream)}")
    line = line[idx + 1 :]
    idx = line.find(b" ")
    if idx < 0:
        raise ValueError("log tag is not found")
    partial = line[:idx].split(b":")[0] == b"P"
    if partial and line.endswith(b"\n"):
        line = line[:-1]
    return LogMessage(stamp, stream, line[idx + 1 :])


def parse_docker_json_log(line: bytes) -> LogMessage:
    """parseDockerJSONLog: {"log": ..., "stream": ..., "time": RFC 3339}."""
    try:
        doc = json.loads(line)
        if not isinstance(doc, dict):
            raise ValueError("not an object")
        text, stream, stamp = doc.get("log") or "", doc.get("stream") or "", doc.get("time")
        if not isinstance(text, str) or not isinstance(stream, str):
            raise ValueError("log and stream must be strings")
        parsed = None if stamp is None else go_parse_time(RFC3339, stamp) if isinstance(stamp, str) else None
        if stamp is not None and parsed is None:
            raise ValueError("time must be a string")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"failed with {exc} to unmarshal log") from None
    return LogMessage(parsed, stream, text.encode())


def log_parser(line: bytes) -> Callable[[bytes], LogMessage]:
    """getParseFunc: the format of the first line decides, CRI first."""
    for parse in (parse_cri_log, parse_docker_json_log):
        try:
            parse(line)
        except ValueError:
            continue
        return parse
    raise LogError(f"failed to get parse function: unsupported log format: {go_quote_bytes(line)}")


class LogWriter:
    """logWriter: --since, --timestamps and --limit-bytes; a None stream is not shown."""

    class LimitReached(Exception):
        pass

    def __init__(self, stdout: IO[bytes] | None, stderr: IO[bytes] | None, opts: LogOptions) -> None:
        self.streams = {"stdout": stdout, "stderr": stderr}
        self.opts = opts
        self.remain = opts.limit_bytes if opts.limit_bytes >= 0 else math.inf
        self._last: IO[bytes] | None = None

    def write(self, msg: LogMessage, add_prefix: bool) -> None:
        stamp_ns = msg.timestamp.unix_ns if msg.timestamp is not None else _GO_ZERO_TIME_NS
        if self.opts.since_ns is not None and stamp_ns < self.opts.since_ns:
            return
        line = msg.log
        if self.opts.timestamps and add_prefix:
            stamp = msg.timestamp.format_rfc3339_nano_fixed() if msg.timestamp else _GO_ZERO_TIME_TEXT
            line = stamp.encode() + b" " + line
        if len(line) > self.remain:
            line = line[: int(self.remain)]
        if msg.stream not in self.streams:
            raise LogError(f"unexpected stream type {go_quote(msg.stream)}")
        stream = self.streams[msg.stream]
        if stream is None:
            return
        if self._last is not None and self._last is not stream:
            # Go writes unbuffered: keep stdout and stderr in order when they share a file.
            self._last.flush()
        self._last = stream
        stream.write(line)
        self.remain -= len(line)
        if self.remain <= 0:
            raise LogWriter.LimitReached

    def flush(self) -> None:
        for stream in self.streams.values():
            if stream is not None:
                stream.flush()


_GO_ZERO_TIME_NS = days_from_civil(1, 1, 1) * 86400 * 10**9
_GO_ZERO_TIME_TEXT = "0001-01-01T00:00:00.000000000Z"


def tail_start(f: IO[bytes], lines: int) -> int:
    """findTailLineStartIndex: where the last `lines` newline-ended lines start (an unended last
    line comes on top); negative: 0."""
    if lines < 0:
        return 0
    size = f.seek(0, os.SEEK_END)
    wanted = lines + 1  # the newline before the first line shown
    right = size
    while right > 0:
        left = max(0, right - 65536)
        f.seek(left)
        block = f.read(right - left)
        end = len(block)
        while True:
            nl = block.rfind(b"\n", 0, end)
            if nl < 0:
                break
            wanted -= 1
            if wanted == 0:
                return left + nl + 1
            end = nl
        right = left
    return 0


def _eval_symlinks(path: str) -> str:
    """filepath.EvalSymlinks, with Go's lstat error on the first part that is missing."""
    current = Path()
    for part in Path(path).parts:
        current = current / part
        try:
            os.lstat(current)
        except OSError as exc:
            reason = go_path_error("lstat", str(current), exc)
            raise LogError(f"failed to try resolving symlinks in path {go_quote(path)}: {reason}") from None
    return os.path.realpath(path)


def _open_log(path: str) -> IO[bytes]:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise LogError(
            f"failed to open log file {go_quote(path)}: {go_path_error('open', path, exc)}"
        ) from None


# The kubelet's reader rechecks the container at least this often while waiting for the file.
LOG_FORCE_CHECK_S = 1.0
LOG_POLL_S = 0.05


def _wait_logs(
    f: IO[bytes], path: str, is_running: Callable[[], bool], sleep: Callable[[float], None]
) -> tuple[bool, bool]:
    """waitLogs: (found, recreated). found is False once the container is not running; otherwise
    it returns when the file grows or shrinks, when a new file takes its name, or after a second."""
    if not is_running():
        return False, False
    start_size = os.fstat(f.fileno()).st_size
    deadline = time.monotonic() + LOG_FORCE_CHECK_S
    while time.monotonic() < deadline:
        sleep(LOG_POLL_S)
        mine = os.fstat(f.fileno())
        try:
            named = os.stat(path)
        except FileNotFoundError:
            named = None  # renamed away, not reopened yet: keep reading what we have
        if named is not None and (named.st_ino, named.st_dev) != (mine.st_ino, mine.st_dev):
            return True, True
        if mine.st_size != start_size:
            return True, False
    return True, False


def read_logs(
    path: str,
    opts: LogOptions,
    stdout: IO[bytes] | None,
    stderr: IO[bytes] | None,
    is_running: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
    warn: Callable[[str], None] = lambda message: None,
) -> None:
    """ReadLogs: the CRI log at `path` to the writers; with opts.follow until the container stops.

    The last line without a newline is shown only when not following (the
    kubelet's reader waits for the rest of it otherwise).
    """
    path = _eval_symlinks(path)
    f = _open_log(path)
    try:
        try:
            f.seek(tail_start(f, opts.tail))
        except OSError as exc:
            raise LogError(f"failed to tail {opts.tail} lines of log file {go_quote(path)}: {exc}") from None
        limited = opts.tail >= 0 and not opts.follow
        left = opts.tail
        writer = LogWriter(stdout, stderr, opts)
        parse: Callable[[bytes], LogMessage] | None = None
        new_line = True
        found = True
        waiting = False
        switch_to_new = False
        stop = False
        while True:
            if stop or (limited and left == 0):
                return
            line = f.readline()
            if not line.endswith(b"\n"):
                if opts.follow:
                    if not found:
                        return
                    f.seek(-len(line), os.SEEK_CUR)
                    writer.flush()
                    if switch_to_new:
                        # What the old file had is read: go on with the one that took its name.
                        switch_to_new = False
                        try:
                            new = open(path, "rb")  # noqa: SIM115 - replaces f, closed below
                        except FileNotFoundError:
                            continue
                        f.close()
                        f = new
                        continue
                    if not waiting:
                        waiting = True  # the kubelet's reader reads once more after starting its watch
                        continue
                    found, switch_to_new = _wait_logs(f, path, is_running, sleep)
                    continue
                stop = True
                if not line:
                    continue
            if parse is None:
                parse = log_parser(line)
            try:
                msg = parse(line)
            except ValueError as exc:
                warn(f"failed when parsing line in log file {go_quote(path)}: {exc}: {go_quote_bytes(line)}")
                continue
            try:
                writer.write(msg, new_line)
            except LogWriter.LimitReached:
                return
            if limited:
                left -= 1
            new_line = not msg.log or msg.log.endswith(b"\n")
    finally:
        f.close()
        with contextlib.suppress(BrokenPipeError):
            for stream in (stdout, stderr):
                if stream is not None:
                    stream.flush()


def previous_log_path(log_path: str, attempt: int) -> str:
    """crictl's --previous: the log of attempt-1 next to this one, with its extension."""
    dot = log_path.rfind(".")
    if dot < 0:
        raise CommandError(f"the log path {log_path} has no extension to find the previous log by")
    return f"{log_path[: log_path.rfind('/') + 1]}{attempt - 1}{log_path[dot:]}"
