"""ExecSync: run a command in a running container and collect its output.

Seen with runc 1.1.5: a plain `runc exec` copies the process's stdio through
pipes of its own and, after the process has exited, waits for EOF on them,
so `sh -c 'sleep 100 &'` keeps it running for 100 s, and killing it then
loses the exit status. So crib does what containerd's shim does:
`runc exec -d --process <file> --pid-file <file> <id>` with stdin /dev/null
and stdout/stderr as pipes read on the event loop; runc hands those very
pipes to the process, starts it and exits. The process, runc's child (it
leads its own session and process group), then re-parents to crib, a child
subreaper, which waits for it through a pidfd and reaps it for its exit
status. Against the failures other runtimes had (containerd#9568, #10094,
kubernetes#92057):

- each stream keeps at most MAX_OUTPUT bytes; the rest is read and dropped,
  so the command never blocks on a full pipe;
- on timeout the process and its descendants are stopped, then SIGKILLed
  with its process group, and reaped (exit code 128 + 9, as runc reports);
- once the process has exited, a background process still holding the pipes
  gets at most `drain_timeout` more seconds, then the pipes are closed;
- cancellation (the gRPC deadline) kills and reaps runc and the process
  before it propagates. Every wait is bounded but the one for the command
  itself when the caller gave no timeout.

runc writes the pid file only once the process has started, so a non-zero
exit of runc is its own failure, and its last logfmt line says why:
`exec failed: container does not exist`, `... cannot exec in a stopped
container`, `... paused container` raise; `exec failed: unable to start
container process: exec: "x": executable file not found in $PATH` is the
command's failure and comes back as runc's exit code (255) and stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crib import spawn
from crib.errors import DeadlineExceeded, FailedPrecondition, Internal, NotFound
from crib.runtime.oci_runtime import OCIRuntime

MAX_OUTPUT = 16 * 1024 * 1024  # per stream, the kubelet's cap

START_TIMEOUT_S = 60.0  # runc exec -d returns once the process runs: milliseconds
KILL_GRACE_S = 0.5  # a SIGKILLed process is gone at once
POST_KILL_DRAIN_S = 0.25  # after a kill the pipes close at once unless a stray process holds them

PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37

_NOT_FOUND = re.compile(
    r"container\b.*\bdoes not exist|invalid container id|container id cannot be empty"
    r"|error opening file `[^`]*/status`: no such file",  # crun 1.8's wording
    re.I,
)
_NOT_RUNNING = re.compile(
    r"cannot exec in a (stopped|paused)|cannot exec a container that has stopped"
    r"|\bis not running\b|container (is )?not running",
    re.I,
)


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool
    truncated: bool  # an output hit MAX_OUTPUT


def detached_exec_args(
    runtime: OCIRuntime, container_id: str, process_file: Path, pid_file: Path
) -> list[str]:
    """The runtime's `exec --detach` of `process_file` (module docstring: why detached)."""
    return [
        runtime.binary,
        *runtime.global_args(),
        "exec",
        "--detach",
        "--process",
        str(process_file),
        "--pid-file",
        str(pid_file),
        container_id,
    ]


class _Collector:
    """Reads both pipes as fast as they fill, keeping at most `limit` bytes of each."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buffers = {1: bytearray(), 2: bytearray()}
        self.truncated = False
        self.open_pipes = {1, 2}
        self.pipes_closed = asyncio.Event()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        buf = self.buffers[fd]
        room = self.limit - len(buf)
        if len(data) > room:
            self.truncated = True
            if room <= 0:
                return
            data = data[:room]
        buf += data

    def pipe_closed(self, fd: int) -> None:
        self.open_pipes.discard(fd)
        if not self.open_pipes:
            self.pipes_closed.set()


class _Child:
    """The exec'd process once it is our child (runc exited, it re-parented to cribd, a
    subreaper): reaped by its pidfd on the loop, however long nobody waits for it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pid: int, pidfd: int) -> None:
        self.pid = pid
        self.exit_code: asyncio.Future[int] = loop.create_future()
        self._reaper = spawn.PidfdReaper(loop, pidfd, _waitid, self._exited)

    def kill(self) -> None:
        if not self._reaper.reaped:
            _kill_exec_tree(self.pid, os.getpid())

    def _exited(self, code: int) -> None:
        if not self.exit_code.done():
            self.exit_code.set_result(code)


def _waitid(pidfd: int) -> int | None:
    """Its exit code as a shell says it (128 + a signal), None while not yet waitable."""
    try:
        res = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
    except ChildProcessError:
        return -1  # not ours to reap (no subreaper): the status is lost
    if res is None:
        return None
    return res.si_status if res.si_code == os.CLD_EXITED else 128 + res.si_status


async def exec_sync(
    runtime: OCIRuntime,
    container_id: str,
    process: dict[str, Any],
    timeout: float | None,
    work_dir: Path,
    drain_timeout: float = 1.0,
) -> ExecResult:
    """Run `process` (an OCI runtime-spec process object) in the running container.

    timeout None or <= 0: no timeout. Raises NotFound when the runtime does
    not know the container, FailedPrecondition when it is not running.
    """
    _ensure_subreaper()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout if timeout is not None and timeout > 0 else None
    tmp = _make_dir(work_dir, process)
    process_file = tmp / "process.json"
    pid_file = tmp / "pid"
    runc: spawn.Child | None = None
    proto = _Collector(MAX_OUTPUT)
    child: _Child | None = None
    try:
        try:
            runc = await spawn.start(
                detached_exec_args(runtime, container_id, process_file, pid_file),
                stdout=spawn.PIPE,
                stderr=spawn.PIPE,
            )
        except OSError as exc:
            raise Internal(f"cannot run {runtime.binary}: {exc}") from exc
        # The exec'd process inherits these pipes: they stay open after runc exits.
        await runc.read_pipes(proto.pipe_data_received, proto.pipe_closed)

        # 1. runc starts the process and exits.
        start_by = loop.time() + START_TIMEOUT_S
        timed_out = False
        try:
            async with asyncio.timeout_at(start_by if deadline is None else min(deadline, start_by)):
                await runc.exited.wait()
        except TimeoutError:
            if deadline is None or deadline > start_by:
                raise DeadlineExceeded(
                    f"{runtime.handler} exec in {container_id} did not start within {START_TIMEOUT_S:g}s"
                ) from None
            timed_out = True
            await _stop_runc(runc, pid_file)
        rc = runc.returncode
        pid = _read_pid(pid_file)
        if pid is not None:
            child = _adopt(loop, pid)

        # 2. The process runs until it exits or the deadline passes.
        if child is not None and not timed_out:
            try:
                async with asyncio.timeout_at(deadline):
                    await asyncio.shield(child.exit_code)
            except TimeoutError:
                timed_out = True
        if child is not None and timed_out:
            child.kill()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(KILL_GRACE_S):
                    await asyncio.shield(child.exit_code)
        if child is not None and child.exit_code.done():
            exit_code = child.exit_code.result()
        elif pid is None and not timed_out and rc is not None and rc != 0:
            exit_code = rc  # runc failed: the process never started
        else:
            exit_code = -1

        # 3. What is left in the pipes, briefly: a background process may hold them open.
        drain = min(drain_timeout, POST_KILL_DRAIN_S) if timed_out else drain_timeout
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(drain, 0.0)):
                await proto.pipes_closed.wait()

        stderr = bytes(proto.buffers[2])
        if pid is None and not timed_out and exit_code != 0:
            # No pid file: runc's own error, unless it is the command's (cannot start it).
            message = _runc_message(stderr)
            if _NOT_FOUND.search(message):
                raise NotFound(f"container {container_id}: {message}")
            if _NOT_RUNNING.search(message):
                raise FailedPrecondition(f"container {container_id}: {message}")
        return ExecResult(
            exit_code=exit_code,
            stdout=bytes(proto.buffers[1]),
            stderr=stderr,
            timed_out=timed_out,
            truncated=proto.truncated,
        )
    finally:
        try:
            if runc is not None:
                if runc.returncode is None:
                    # Cancelled or failed while runc exec runs.
                    await _stop_runc(runc, pid_file)
                if child is None and (pid := _read_pid(pid_file)) is not None:
                    child = _adopt(loop, pid)
                if child is not None and not child.exit_code.done():
                    child.kill()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(KILL_GRACE_S):
                            await asyncio.shield(child.exit_code)
                runc.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


async def _stop_runc(runc: spawn.Child, pid_file: Path) -> None:
    """runc exec has not returned in time: kill what it started, then runc itself. Bounded."""
    pid = _read_pid(pid_file)
    if pid is not None:
        _kill_exec_tree(pid, runc.pid)
    if await _wait(runc.exited, KILL_GRACE_S):
        return
    runc.kill()
    await _wait(runc.exited, KILL_GRACE_S)


def _adopt(loop: asyncio.AbstractEventLoop, pid: int) -> _Child | None:
    """The exec'd process as our child, once runc has exited; None if it is not ours (or gone)."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    st = _stat(pid)
    if st is None or st[0] != os.getpid():
        # Not re-parented to us (no subreaper) or already reaped and the pid reused.
        os.close(pidfd)
        return None
    return _Child(loop, pid, pidfd)


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()


def _ensure_subreaper() -> None:
    """The exec'd process must re-parent to this process when runc exec -d exits. cribd is one already."""
    libc = ctypes.CDLL(None, use_errno=True)
    flag = ctypes.c_int(0)
    if libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) == 0 and flag.value:
        return
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise Internal(f"cannot become a child subreaper: errno {ctypes.get_errno()}")


def _make_dir(work_dir: Path, process: dict[str, Any]) -> Path:
    """A fresh private dir under work_dir holding the process file; the pid file goes next to it."""
    import tempfile  # noqa: PLC0415  (and random, at the first exec: issue 17)

    work_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="exec-", dir=work_dir))
    try:
        (tmp / "process.json").write_text(json.dumps({**process, "terminal": False}))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def _read_pid(pid_file: Path) -> int | None:
    try:
        text = pid_file.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, process group) from /proc/<pid>/stat, None if the process is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[1]), int(fields[2])


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        with contextlib.suppress(OSError, ValueError):
            found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return found


def _signal(pidfd: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(pidfd, sig)


def _kill_exec_tree(pid: int, parent: int) -> bool:
    """SIGKILL the exec'd process, its descendants and its process group.

    Every process is held by a pidfd and checked to be its parent's child
    before it is signalled, so a reused pid is never hit (an unreaped child
    keeps its pid). The tree is stopped top-down first so nothing forks past
    the walk. False if `pid` is not `parent`'s child (any more).
    """
    try:
        root_fd = os.pidfd_open(pid)
    except OSError:
        return False
    pidfds = {pid: root_fd}
    verified = False
    try:
        st = _stat(pid)
        if st is None or st[0] != parent:
            return False
        verified = True
        _signal(root_fd, signal.SIGSTOP)
        queue = [pid]
        while queue:
            here = queue.pop()
            for child in _children(here):
                if child in pidfds:
                    continue
                try:
                    fd = os.pidfd_open(child)
                except OSError:
                    continue
                cst = _stat(child)
                if cst is None or cst[0] != here:
                    os.close(fd)
                    continue
                pidfds[child] = fd
                _signal(fd, signal.SIGSTOP)
                queue.append(child)
        # The group also holds members whose parent already ended (re-parented to the container's init).
        if st[1] == pid:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        return True
    finally:
        for fd in pidfds.values():
            if verified:
                _signal(fd, signal.SIGKILL)
            os.close(fd)


def _runc_message(stderr: bytes) -> str:
    """The last error runc logged: the msg of its logfmt line, or the last line as is."""
    lines = [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    if not lines:
        return "no error output"
    line = lines[-1]
    match = re.search(r'msg="((?:[^"\\]|\\.)*)"', line)
    if match:
        return match.group(1).replace('\\"', '"')
    return line.strip()
