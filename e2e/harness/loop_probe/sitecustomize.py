"""Loaded into a test's cribd (PYTHONPATH, e2e/harness/loop_watch.py): how long each event loop
callback and task step keeps the loop, less the time the kernel kept cribd's threads waiting
for a CPU (/proc schedstat's run delay): other processes on a busy machine are not a block,
neither directly nor through a thread of cribd that holds the GIL while it waits for a CPU
(the longest wait of any one thread during the step is subtracted).
Steps over the budget are reported on stderr, which the harness copies into cribd's log,
with where the loop thread was once the step had run past the budget (sampled by a
watchdog thread, which also samples the run delay of all of cribd's threads):

    crib.loop_blocked 0.153 s (wall 0.161 s) by <Task pending coro=<...> at file:line> at <stack>
"""

from __future__ import annotations

import _posixsubprocess
import asyncio
import collections
import os
import subprocess
import sys
import threading
import time
import traceback
from asyncio import events

BUDGET_S = float(os.environ.get("CRIB_LOOP_BUDGET_S", "0.1"))
_fds: dict[int, int] = {}
_original_run = events.Handle._run
# The step running now, per loop thread's ident: (its start, [where the watchdog found it]).
_running: dict[int, tuple[float, list[str]]] = {}


def _runqueue_wait_s() -> float:
    """This thread's time spent runnable but not running (/proc schedstat's second field)."""
    tid = threading.get_native_id()
    fd = _fds.get(tid)
    if fd is None:
        fd = _fds[tid] = os.open(f"/proc/self/task/{tid}/schedstat", os.O_RDONLY | os.O_CLOEXEC)
    return int(os.pread(fd, 128, 0).split()[1]) / 1e9


# (monotonic time, {thread: its run delay so far}), sampled by the watchdog.
_history: collections.deque[tuple[float, dict[str, int]]] = collections.deque(maxlen=1024)


def _threads_wait_ns() -> dict[str, int]:
    out = {}
    for name in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{name}/schedstat", "rb") as f:
                out[name] = int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return out


def _longest_thread_wait_since(started: float) -> float:
    """The most any one thread waited for a CPU from the last sample before `started` until now
    (the GIL's holder is one thread at a time; the span may exceed the step by one watchdog
    period, which only makes this lenient by that much)."""
    base = next((waits for t, waits in reversed(_history) if t <= started), None)
    if base is None:
        return 0.0
    now = _threads_wait_ns()
    return max((now[tid] - base.get(tid, 0) for tid in now), default=0) / 1e9


# Time each thread spent in fork_exec (vfork until the child has exec'd) during its step.
_spawning: dict[int, float] = {}
_fork_exec = _posixsubprocess.fork_exec


def _timed_fork_exec(*args: object) -> int:
    started = time.monotonic()
    try:
        return _fork_exec(*args)
    finally:
        ident = threading.get_ident()
        took = time.monotonic() - started
        _spawning[ident] = _spawning.get(ident, 0.0) + took
        if ident in _running:
            # A fork on the loop thread: vfork holds it until the exec, however long that takes.
            argv = args[0] if args and isinstance(args[0], (list, tuple)) else ["?"]
            program = os.fsdecode(argv[0]) if argv else "?"
            sys.stderr.write(f"crib.loop_forked {program} ({took:.3f} s) on the event loop thread\n")


_posixsubprocess.fork_exec = _timed_fork_exec
subprocess._fork_exec = _timed_fork_exec  # type: ignore[attr-defined]  # what Popen calls


def _what(handle: events.Handle) -> str:
    owner = getattr(handle._callback, "__self__", None)
    return repr(owner) if isinstance(owner, asyncio.Task) else repr(handle)


_native: dict[int, int] = {}  # thread ident -> its kernel tid


def _kernel_wait(ident: int) -> str:
    """Where the loop thread waits in the kernel (futex: most likely the GIL)."""
    tid = _native.get(ident)
    try:
        with open(f"/proc/self/task/{tid}/wchan") as f:
            wchan = f.read()
        with open(f"/proc/self/task/{tid}/syscall") as f:
            syscall = f.read().split(" ", 1)[0]
    except OSError:
        return "?"
    return f"wchan {wchan or '-'}, syscall {syscall}"


def _watchdog() -> None:
    while True:
        time.sleep(BUDGET_S / 4)
        now = time.monotonic()
        _history.append((now, _threads_wait_ns()))
        frames = None
        for ident, (started, sample) in list(_running.items()):
            if now - started > BUDGET_S and not sample:
                frames = frames or sys._current_frames()
                frame = frames.get(ident)
                if frame is not None:
                    calls = traceback.extract_stack(frame)[-8:]
                    stack = " <- ".join(f"{f.name} {f.filename}:{f.lineno}" for f in reversed(calls))
                    sample.append(f"{stack} [kernel: {_kernel_wait(ident)}]")


def _run(self: events.Handle) -> None:
    ident = threading.get_ident()
    _native.setdefault(ident, threading.get_native_id())
    sample: list[str] = []
    started, waited = time.monotonic(), _runqueue_wait_s()
    _running[ident] = (started, sample)
    _spawning[ident] = 0.0
    try:
        _original_run(self)
    finally:
        _running.pop(ident, None)
        wall = time.monotonic() - started
        if wall > BUDGET_S and wall - (_runqueue_wait_s() - waited) > BUDGET_S:
            cpu_waits = max(_runqueue_wait_s() - waited, _longest_thread_wait_since(started))
            blocked = wall - min(wall, cpu_waits)
            if blocked > BUDGET_S:
                what, where = _what(self)[:400], sample[0] if sample else "?"
                spawn = _spawning.get(ident, 0.0)
                times = f"wall {wall:.3f} s, CPU waits {cpu_waits:.3f} s, spawning {spawn:.3f} s"
                head = f"crib.loop_blocked {blocked:.3f} s ({times})"
                sys.stderr.write(f"{head} by {what} at {where}\n")


events.Handle._run = _run  # type: ignore[method-assign]
threading.Thread(target=_watchdog, name="crib-loop-watchdog", daemon=True).start()
