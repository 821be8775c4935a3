"""conmon: one monitor per container, which outlives cribd.

conmon runs `<runtime> create`, holds the container's stdio, writes the CRI
log, and writes the exit code to `<exit dir>/<id>` when the container ends.
It forks into the background; cribd is a child subreaper, so the daemonized
conmon becomes cribd's child and cribd reaps it when it exits. cribd learns
of that exit through a pidfd on the event loop: no polling, no thread per
container.

Seen with conmon 2.1.6 here: the attach socket dir and the exit dir must
exist before conmon starts; conmon logs a harmless failure to lower its own
oom_score_adj; the sync pipe carries `{"data": <pid>}` once the runtime has
created the container, or a negative value and a message on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crib import spawn, tracing
from crib.errors import DeadlineExceeded, Internal
from crib.log_setup import get_logger
from crib.runtime.oci_runtime import OCIRuntime

log = get_logger("crib.conmon")

CREATE_TIMEOUT_S = 60.0
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Orphaned conmons re-parent to cribd, which reaps them (PID 1 here reaps late)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log.warning("subreaper.failed", errno=ctypes.get_errno())


@dataclass(frozen=True)
class ConmonPaths:
    """Where one container's conmon keeps its files."""

    dir: Path  # <state>/containers/<id>
    exit_dir: Path  # shared: <state>/exits

    @property
    def pidfile(self) -> Path:
        return self.dir / "pidfile"

    @property
    def conmon_pidfile(self) -> Path:
        return self.dir / "conmon.pid"

    @property
    def socket_dir(self) -> Path:
        return self.dir / "sock"

    @property
    def persist_dir(self) -> Path:
        # conmon writes an `oom` file here when the container was OOM killed.
        return self.dir / "persist"

    def exit_file(self, container_id: str) -> Path:
        return self.exit_dir / container_id


@dataclass(frozen=True)
class Created:
    pid: int
    conmon_pid: int


def _read_sync(fd: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"conmon did not report the container within {timeout:g}s")
        if not spawn.readable(fd, left):
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return data
        data += chunk
        if b"\n" in data:
            return data


def _spawn(args: list[str], timeout: float, cwd: str) -> tuple[bytes, str]:
    """Start conmon and wait for its sync message; blocking (run in a thread)."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        os.set_inheritable(write_fd, True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "_OCI_SYNCPIPE": str(write_fd),
        }
        proc = subprocess.Popen(
            args,
            env=env,
            pass_fds=(write_fd,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # Its own session: signals to cribd's process group never reach it.
            start_new_session=True,
            # conmon may drop files (an "oom" marker) in its working directory.
            cwd=cwd,
        )
        os.close(write_fd)
        write_fd = -1
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise DeadlineExceeded("conmon did not fork into the background in time") from None
        return _read_sync(read_fd, timeout), err.decode(errors="replace")
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)


_LOGFMT_ERROR = re.compile(r'level=(?:error|fatal) msg="((?:[^"\\]|\\.)*)"')


def runtime_reason(text: str) -> str:
    """What runc said went wrong: its error lines' messages, without the warnings around them."""
    errors = [m.group(1).replace('\\"', '"') for m in _LOGFMT_ERROR.finditer(text)]
    return "; ".join(errors) if errors else text.strip()


async def create(
    runtime: OCIRuntime,
    container_id: str,
    name: str,
    bundle: Path,
    paths: ConmonPaths,
    log_path: str,
    conmon_binary: str,
    terminal: bool = False,
    stdin: bool = False,
    stdin_once: bool = False,
    systemd_cgroup: bool = False,
) -> Created:
    """Create the container under a new conmon; returns once the runtime created it."""
    for d in (paths.dir, paths.exit_dir, paths.socket_dir, paths.persist_dir):
        d.mkdir(parents=True, exist_ok=True)
    args = [
        conmon_binary,
        "--api-version", "1",
        "-c", container_id,
        "-u", container_id,
        "-n", name,
        "-r", runtime.binary,
        "-b", str(bundle),
        "-p", str(paths.pidfile),
        "-P", str(paths.conmon_pidfile),
        "--exit-dir", str(paths.exit_dir),
        "--socket-dir-path", str(paths.socket_dir),
        "--persist-dir", str(paths.persist_dir),
        "--log-level", "error",
    ]  # fmt: skip
    # No log path (the pause container): conmon's "none" driver discards output.
    args += ["-l", f"k8s-file:{log_path}" if log_path else "none:"]
    for arg in runtime.global_args():
        args += ["--runtime-arg", arg]
    if terminal:
        args.append("-t")
    if stdin:
        args.append("-i")
        if not stdin_once:
            args.append("--leave-stdin-open")
    if systemd_cgroup:
        args.append("-s")
    # Spans conmon's `<runtime> create` too: conmon returns once the runtime created the container.
    attributes = {"crib.container_id": container_id, "crib.runtime_handler": runtime.handler}
    with tracing.span("conmon.create", **attributes):
        data, stderr = await asyncio.to_thread(_spawn, args, CREATE_TIMEOUT_S, str(paths.dir))
        try:
            message = json.loads(data.splitlines()[0]) if data.strip() else {}
        except ValueError:
            message = {}
        pid = message.get("data", -1) if isinstance(message, dict) else -1
        if not isinstance(pid, int) or pid <= 0:
            reason = message.get("message") if isinstance(message, dict) else None
            why = runtime_reason(reason or stderr) or "no reason given"
            raise Internal(f"{runtime.handler} could not create container {container_id}: {why}")
    try:
        conmon_pid = int(paths.conmon_pidfile.read_text().strip())
    except (OSError, ValueError):
        conmon_pid = 0
    return Created(pid, conmon_pid)


class ExitWatcher:
    """Calls back when a conmon exits, from the event loop, through pidfds."""

    def __init__(self) -> None:
        self._fds: dict[int, int] = {}  # conmon pid -> pidfd

    def watch(self, conmon_pid: int, on_exit: Callable[[], None]) -> bool:
        """Returns False when the process is already gone (the caller handles the exit itself)."""
        if conmon_pid <= 0 or conmon_pid in self._fds:
            return conmon_pid in self._fds
        try:
            fd = os.pidfd_open(conmon_pid)
        except ProcessLookupError:
            return False
        self._fds[conmon_pid] = fd
        loop = asyncio.get_running_loop()

        def fired() -> None:
            loop.remove_reader(fd)
            os.close(self._fds.pop(conmon_pid))
            # Our child if it re-parented to us; someone else's after a cribd restart.
            with contextlib.suppress(ChildProcessError):
                os.waitpid(conmon_pid, os.WNOHANG)
            on_exit()

        loop.add_reader(fd, fired)
        return True

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for fd in self._fds.values():
            loop.remove_reader(fd)
            os.close(fd)
        self._fds.clear()
