"""Bounded waits on a condition, for what has no event to wait on (files appearing, bytes flowing)."""

from __future__ import annotations

import time
from collections.abc import Callable

POLL_S = 0.02


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(POLL_S)


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (its parent has not reaped it yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The command name may hold spaces and parentheses: the state follows the last ")".
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
