"""Interactive exec: a process in a running container with its stdio (or a tty) handed to cribd.

As ExecSync, the process is started with `runc exec --detach` and re-parents
to cribd (a subreaper), which learns its exit through a pidfd. Its stdio are
pipes cribd holds the other ends of; with a tty, runc passes the pty master
over a console socket and cribd resizes it on request.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import socket
import struct
import subprocess
import termios
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crib import spawn
from crib.container.exec_sync import (
    _NOT_FOUND,
    _NOT_RUNNING,
    KILL_GRACE_S,
    START_TIMEOUT_S,
    _adopt,
    _Child,
    _ensure_subreaper,
    _kill_exec_tree,
    _read_pid,
)
from crib.errors import DeadlineExceeded, FailedPrecondition, Internal, NotFound
from crib.runtime.oci_runtime import OCIRuntime, _log_error


@dataclass
class ExecProcess:
    """A started exec: the fds cribd holds and the process's exit."""

    pid: int
    child: _Child
    stdin: int | None = None  # write end
    stdout: int | None = None  # read end
    stderr: int | None = None  # read end
    pty: int | None = None  # master: read output, write input
    _fds: list[int] = field(default_factory=list)

    async def wait(self) -> int:
        return await asyncio.shield(self.child.exit_code)

    def resize(self, width: int, height: int) -> None:
        if self.pty is not None:
            with contextlib.suppress(OSError):
                fcntl.ioctl(self.pty, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    async def kill(self) -> None:
        if not self.child.exit_code.done():
            self.child.kill()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(KILL_GRACE_S):
                    await asyncio.shield(self.child.exit_code)

    def close(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()


def _recv_fd(sock: socket.socket) -> int:
    """The pty master runc sends over the console socket (SCM_RIGHTS)."""
    fds = array.array("i")
    _, ancdata, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    if not fds:
        raise Internal("runc sent no terminal over the console socket")
    return fds[0]


async def _accept_console(
    loop: asyncio.AbstractEventLoop, console: socket.socket, runc: spawn.Child
) -> socket.socket | None:
    """runc's connection to the console socket; None when runc exits without making one."""
    accepting = asyncio.ensure_future(loop.sock_accept(console))
    exiting = asyncio.ensure_future(runc.wait())
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            await asyncio.wait({accepting, exiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        exiting.cancel()
        if not accepting.done():
            accepting.cancel()
    if accepting.done() and not accepting.cancelled():
        return accepting.result()[0]
    # runc has exited; a connection it made before that waits in the backlog.
    try:
        conn, _ = console.accept()
    except BlockingIOError:
        return None
    return conn


def _prepare(work_dir: Path, process: dict[str, Any], tty: bool) -> Path:
    import tempfile  # noqa: PLC0415  (and random, at the first exec: issue 17)

    work_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="exec-", dir=work_dir))
    (tmp / "process.json").write_text(json.dumps({**process, "terminal": tty}))
    return tmp


async def start(
    runtime: OCIRuntime,
    container_id: str,
    process: dict[str, Any],
    work_dir: Path,
    *,
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    width: int = 0,
    height: int = 0,
) -> ExecProcess:
    """Start `process` in the container; the caller pumps the returned fds and closes them."""
    _ensure_subreaper()
    loop = asyncio.get_running_loop()
    tmp = await asyncio.to_thread(_prepare, work_dir, process, tty)
    ours: list[int] = []
    theirs: list[int] = []
    console: socket.socket | None = None
    runc: spawn.Child | None = None
    try:
        # runc's own errors go to its log: its stdio is the process's.
        log_file = tmp / "runc.log"
        args = [
            runtime.binary,
            *runtime.global_args(),
            f"--log={log_file}",
            "--log-format=json",
            "exec",
            "--detach",
        ]
        args += ["--process", str(tmp / "process.json"), "--pid-file", str(tmp / "pid")]
        child_stdio: list[int] = []
        proc_in = proc_out = proc_err = None
        if tty:
            console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            console.bind(str(tmp / "console.sock"))
            console.listen(1)
            console.setblocking(False)
            args += ["--tty", "--console-socket", str(tmp / "console.sock")]
            child_stdio = [subprocess.DEVNULL] * 3
        else:
            for wanted, index in ((stdin, 0), (stdout, 1), (stderr, 2)):
                if not wanted:
                    child_stdio.append(subprocess.DEVNULL)
                    continue
                r, w = os.pipe2(os.O_CLOEXEC)
                if index == 0:
                    theirs.append(r)
                    ours.append(w)
                    proc_in = w
                    child_stdio.append(r)
                else:
                    theirs.append(w)
                    ours.append(r)
                    child_stdio.append(w)
                    if index == 1:
                        proc_out = r
                    else:
                        proc_err = r
        args.append(container_id)
        runc = await spawn.start(args, stdin=child_stdio[0], stdout=child_stdio[1], stderr=child_stdio[2])
        pty = None
        if console is not None:
            try:
                conn = await _accept_console(loop, console, runc)
            except TimeoutError:
                await runc.kill_and_wait()
                raise DeadlineExceeded(f"runc exec in {container_id} did not hand over a terminal") from None
            if conn is not None:  # else runc failed first: its log says why, below
                with conn:
                    # Accepted sockets are non-blocking; runc may send the fd a moment later.
                    conn.settimeout(START_TIMEOUT_S)
                    try:
                        pty = await asyncio.to_thread(_recv_fd, conn)
                    except TimeoutError:
                        await runc.kill_and_wait()
                        raise DeadlineExceeded(
                            f"runc exec in {container_id} did not hand over a terminal"
                        ) from None
                ours.append(pty)
                os.set_blocking(pty, False)
        # Our copies of the child's ends: only the process holds them now.
        for fd in theirs:
            os.close(fd)
        theirs.clear()
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                await runc.wait()
        except TimeoutError:
            await runc.kill_and_wait()
            raise DeadlineExceeded(
                f"runc exec in {container_id} did not start within {START_TIMEOUT_S:g}s"
            ) from None
        pid = _read_pid(tmp / "pid")
        if pid is None:
            message = _log_error(log_file)
            if _NOT_FOUND.search(message):
                raise NotFound(f"container {container_id}: {message}")
            if _NOT_RUNNING.search(message):
                raise FailedPrecondition(f"container {container_id}: {message}")
            raise FailedPrecondition(f"exec in {container_id} failed: {message}")
        child = _adopt(loop, pid)
        if child is None:
            raise Internal(f"exec in {container_id}: the process did not re-parent to cribd")
        for fd in ours:
            if fd != pty:
                os.set_blocking(fd, False)
        process_ = ExecProcess(pid, child, proc_in, proc_out, proc_err, pty, ours)
        if pty is not None and width and height:
            process_.resize(width, height)
        ours = []
        return process_
    except BaseException:
        if runc is not None:
            runc.kill()  # if still there; its reaper collects it
        for fd in ours:
            with contextlib.suppress(OSError):
                os.close(fd)
        pid = _read_pid(tmp / "pid")
        if pid is not None:
            _kill_exec_tree(pid, os.getpid())
        raise
    finally:
        for fd in theirs:
            with contextlib.suppress(OSError):
                os.close(fd)
        if console is not None:
            console.close()
        shutil.rmtree(tmp, ignore_errors=True)
