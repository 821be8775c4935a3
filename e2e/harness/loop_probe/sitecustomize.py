"""Loaded into a test's cribd (PYTHONPATH, e2e/harness/loop_watch.py): how long each event loop
callback and task step keeps the loop, less the time the kernel kept the thread waiting for a
CPU (other processes on a busy machine are not a block). Steps over the budget are reported
on stderr, which the harness copies into cribd's log:

    crib.loop_blocked 0.153 s (wall 0.161 s) by <Task pending coro=<...> at file:line>
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from asyncio import events

BUDGET_S = float(os.environ.get("CRIB_LOOP_BUDGET_S", "0.1"))
_fds: dict[int, int] = {}
_original_run = events.Handle._run


def _runqueue_wait_s() -> float:
    """This thread's time spent runnable but not running (/proc schedstat's second field)."""
    tid = threading.get_native_id()
    fd = _fds.get(tid)
    if fd is None:
        fd = _fds[tid] = os.open(f"/proc/self/task/{tid}/schedstat", os.O_RDONLY | os.O_CLOEXEC)
    return int(os.pread(fd, 128, 0).split()[1]) / 1e9


def _what(handle: events.Handle) -> str:
    owner = getattr(handle._callback, "__self__", None)
    return repr(owner) if isinstance(owner, asyncio.Task) else repr(handle)


def _run(self: events.Handle) -> None:
    started, waited = time.monotonic(), _runqueue_wait_s()
    try:
        _original_run(self)
    finally:
        wall = time.monotonic() - started
        if wall > BUDGET_S:
            blocked = wall - (_runqueue_wait_s() - waited)
            if blocked > BUDGET_S:
                what = _what(self)[:600]
                sys.stderr.write(f"crib.loop_blocked {blocked:.3f} s (wall {wall:.3f} s) by {what}\n")


events.Handle._run = _run  # type: ignore[method-assign]
