"""Failpoints: named steps that fail, hang or kill cribd on purpose, for the reliability tests.

Off unless the environment variable CRIB_FAILPOINTS is set when cribd starts, which only
the tests do: then a step that calls `hit("sandbox.cni_add")` acts as told, e.g.

    CRIB_FAILPOINTS="sandbox.cni_add=error,container.spec=crash@1"

Actions: `error` (the step raises Internal naming the failpoint), `hang` (the step waits
until its call is cancelled), `crash` (cribd SIGKILLs itself at that instant, to test
recovery from a crash midway). `@N` makes it act the first N times only, so the test's
retry then succeeds. Unset, `hit` is one lookup in an empty dict.
"""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass

from crib.errors import Internal

ENV = "CRIB_FAILPOINTS"
ACTIONS = ("error", "hang", "crash")


@dataclass
class Failpoint:
    action: str
    remaining: int | None  # None: every time


def parse(text: str) -> dict[str, Failpoint]:
    points: dict[str, Failpoint] = {}
    for term in filter(None, (t.strip() for t in text.split(","))):
        name, sep, spec = term.partition("=")
        action, at, count = spec.partition("@")
        if not sep or not name or action not in ACTIONS or (at and not count.isdigit()):
            raise ValueError(f"{ENV}: {term!r} is not name=error|hang|crash[@N]")
        points[name] = Failpoint(action, int(count) if at else None)
    return points


_points: dict[str, Failpoint] = parse(os.environ.get(ENV, ""))


def _fire(name: str) -> str | None:
    point = _points.get(name)
    if point is None:
        return None
    if point.remaining is not None:
        if point.remaining <= 0:
            return None
        point.remaining -= 1
    if point.action == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    if point.action == "error":
        raise Internal(f"failpoint {name}: injected failure")
    return point.action


async def hit(name: str) -> None:
    """The step `name` was reached: act as CRIB_FAILPOINTS says (usually: nothing)."""
    if _points and _fire(name) == "hang":
        await asyncio.Event().wait()


def hit_sync(name: str) -> None:
    """As `hit`, for steps that run in a thread; a hang there is not supported."""
    if _points and _fire(name) == "hang":
        raise Internal(f"failpoint {name}: hang is only for steps on the event loop")
