"""Child processes started off the event loop, waited for and read on it.

asyncio starts a subprocess on the loop's own thread, and CPython forks with vfork: the
calling thread is suspended until the child has exec'd. On a loaded node that took up to
177 ms for runc (seen by the fuzzer's loop probe), and every RPC, stream and exit watch
waited with it. Here the fork and exec happen on a small pool of worker threads; the loop
then waits for the exit through a pidfd and reads the pipes as they fill, so a slow exec
costs a worker thread, never the loop.

A child is reaped by its own pidfd reader, which stays on the loop until the exit has been
collected: giving up on a child (a timeout, a cancelled call) never leaves a zombie.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

# A spawn holds a thread only for the fork and exec (milliseconds); four keep up with the
# kubelet's bursts on a busy node, and an idle pool costs no thread at all.
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="crib-spawn")

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT
# After SIGKILL a process is gone within milliseconds unless the kernel holds it (D state).
KILL_GRACE_S = 5.0

Stdio = int | IO[Any] | None


def readable(fd: int, timeout_s: float) -> bool:
    """Whether a child's pipe has data (or its end) within the timeout. Blocking.

    poll, not select: select fails for a descriptor numbered 1024 or more ("filedescriptor
    out of range"), and cribd keeps thousands open at node scale (the stats calls' cgroup
    files, conmons' pipes and sockets)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0, int(timeout_s * 1000 + 0.999))))


class PidfdReaper:
    """Collects a process's exit when its pidfd turns readable, then closes the pidfd.

    `collect` reaps and returns the exit code, or None while the process is readable but
    not yet waitable (its other threads still exiting): then it looks again soon. It stays
    on the loop until the exit is collected, so giving up on a process never leaves a
    zombie or an open pidfd.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        pidfd: int,
        collect: Callable[[int], int | None],
        on_exit: Callable[[int], None],
    ) -> None:
        self._loop = loop
        self.pidfd = pidfd
        self._collect = collect
        self._on_exit = on_exit
        loop.add_reader(pidfd, self._readable)

    @property
    def reaped(self) -> bool:
        return self.pidfd < 0

    def _readable(self) -> None:
        code = self._collect(self.pidfd)
        self._loop.remove_reader(self.pidfd)
        if code is None:
            self._loop.call_later(0.01, self._loop.add_reader, self.pidfd, self._readable)
            return
        os.close(self.pidfd)
        self.pidfd = -1
        self._on_exit(code)


class Child:
    """A started process. Its exit is collected on the loop; its pipes are ours to read."""

    def __init__(self, loop: asyncio.AbstractEventLoop, popen: subprocess.Popen[bytes], pidfd: int) -> None:
        self._loop = loop
        self._popen = popen
        self.pid = popen.pid
        self.exited = asyncio.Event()
        self._pipes: list[asyncio.BaseTransport] = []
        PidfdReaper(loop, pidfd, lambda _: popen.poll(), lambda _: self.exited.set())

    @property
    def returncode(self) -> int | None:
        """As subprocess reports it: negative for a signal; None while it runs."""
        return self._popen.returncode if self.exited.is_set() else None

    @property
    def stdin(self) -> IO[bytes] | None:
        return self._popen.stdin

    async def wait(self) -> int:
        await self.exited.wait()
        assert self._popen.returncode is not None
        return self._popen.returncode

    def send_signal(self, signum: int) -> None:
        if not self.exited.is_set():
            with contextlib.suppress(ProcessLookupError):
                # Not reaped yet, so the pid is still this process's.
                os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    async def kill_and_wait(self) -> None:
        """SIGKILL, then its exit; bounded (a process stuck in the kernel is left to its reaper)."""
        self.kill()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(KILL_GRACE_S):
                await self.exited.wait()

    async def read_pipes(
        self, on_data: Callable[[int, bytes], None], on_closed: Callable[[int], None]
    ) -> None:
        """Feed what stdout (1) and stderr (2) carry to on_data as it comes; on_closed at each EOF."""
        for fd, pipe in ((1, self._popen.stdout), (2, self._popen.stderr)):
            if pipe is None:
                continue
            transport, _ = await self._loop.connect_read_pipe(
                lambda fd=fd: _Sink(fd, on_data, on_closed), pipe
            )
            self._pipes.append(transport)

    async def communicate(self, data: bytes | None = None) -> tuple[bytes, bytes]:
        """Write `data` to stdin and close it, read stdout and stderr to their ends, wait for the exit."""
        out: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}
        open_pipes = {fd for fd, p in ((1, self._popen.stdout), (2, self._popen.stderr)) if p is not None}
        closed = asyncio.Event()
        if not open_pipes:
            closed.set()

        def on_closed(fd: int) -> None:
            open_pipes.discard(fd)
            if not open_pipes:
                closed.set()

        await self.read_pipes(lambda fd, chunk: out[fd].extend(chunk), on_closed)
        if self._popen.stdin is not None:
            await self._feed(self._popen.stdin, data or b"")
        await closed.wait()
        await self.exited.wait()
        return bytes(out[1]), bytes(out[2])

    async def _feed(self, pipe: IO[bytes], data: bytes) -> None:
        transport, protocol = await self._loop.connect_write_pipe(_Drain, pipe)
        self._pipes.append(transport)
        if data:
            transport.write(data)
        # Closed once written; a child that exits without reading loses what it did not read.
        transport.close()
        await protocol.closed

    def close(self) -> None:
        """Our ends of its pipes. Its reaper stays until it has exited."""
        for transport in self._pipes:
            transport.close()
        self._pipes.clear()
        for pipe in (self._popen.stdin, self._popen.stdout, self._popen.stderr):
            if pipe is not None and not pipe.closed:
                with contextlib.suppress(OSError):
                    pipe.close()


class _Sink(asyncio.Protocol):
    def __init__(
        self, fd: int, on_data: Callable[[int, bytes], None], on_closed: Callable[[int], None]
    ) -> None:
        self.fd = fd
        self.on_data = on_data
        self.on_closed = on_closed

    def data_received(self, data: bytes) -> None:
        self.on_data(self.fd, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_closed(self.fd)


class _Drain(asyncio.Protocol):
    def __init__(self) -> None:
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        # EPIPE (the child did not read its stdin) is the child's business, as with communicate().
        if not self.closed.done():
            self.closed.set_result(None)


def _popen(argv: Sequence[str], kwargs: dict[str, Any]) -> tuple[subprocess.Popen[bytes], int]:
    """On a pool thread: fork, exec and open the child's pidfd (it cannot be reaped before: only we wait)."""
    popen = subprocess.Popen(list(argv), **kwargs)
    try:
        return popen, os.pidfd_open(popen.pid)
    except OSError:
        _abandon(popen)
        raise


def _abandon(popen: subprocess.Popen[bytes]) -> None:
    """A child nobody will wait for on the loop: killed and reaped here. Blocking, bounded."""
    with contextlib.suppress(OSError):
        popen.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        popen.wait(KILL_GRACE_S)
    for pipe in (popen.stdin, popen.stdout, popen.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


async def start(
    argv: Sequence[str],
    *,
    stdin: Stdio = DEVNULL,
    stdout: Stdio = DEVNULL,
    stderr: Stdio = DEVNULL,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    pass_fds: Sequence[int] = (),
    start_new_session: bool = False,
) -> Child:
    """Start argv on a worker thread. OSError as subprocess raises it (no such binary...)."""
    loop = asyncio.get_running_loop()
    kwargs: dict[str, Any] = {
        "stdin": stdin,
        "stdout": stdout,
        "stderr": stderr,
        "env": env,
        "cwd": cwd,
        "pass_fds": tuple(pass_fds),
        "start_new_session": start_new_session,
    }
    future = loop.run_in_executor(_POOL, _popen, argv, kwargs)
    try:
        popen, pidfd = await asyncio.shield(future)
    except asyncio.CancelledError:
        # The spawn goes on without us: whatever it starts is killed and reaped off the loop.
        future.add_done_callback(_abandon_when_started)
        raise
    return Child(loop, popen, pidfd)


def _abandon_when_started(future: asyncio.Future[tuple[subprocess.Popen[bytes], int]]) -> None:
    if future.cancelled() or future.exception() is not None:
        return
    popen, pidfd = future.result()
    os.close(pidfd)
    _POOL.submit(_abandon, popen)


async def run(
    argv: Sequence[str],
    *,
    timeout: float,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    stdout: Stdio = PIPE,
    stderr: Stdio = PIPE,
) -> tuple[int, bytes, bytes]:
    """Run argv to its end: (returncode, stdout, stderr), an output not piped reads as b"".

    A pipe is read to its end, so a child whose descendants keep it (a detached container
    inherits runc's stdio) needs DEVNULL there. On a timeout (TimeoutError) or a
    cancellation the child is killed and reaped before this returns."""
    child = await start(
        argv, stdin=PIPE if input is not None else DEVNULL, stdout=stdout, stderr=stderr, env=env
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await child.communicate(input)
    except BaseException:
        await asyncio.shield(child.kill_and_wait())
        raise
    finally:
        child.close()
    assert child.returncode is not None
    return child.returncode, out, err


__all__ = ["DEVNULL", "PIPE", "STDOUT", "Child", "PidfdReaper", "run", "start"]
