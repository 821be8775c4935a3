"""One piece of work, many waiters: concurrent pulls of one image share a download.

The work runs as its own task. Each caller waits on it shielded, so one
caller giving up (its gRPC deadline passed) does not cancel it for the
others; when the last waiter gives up, the work is cancelled at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class _Entry(Generic[T]):
    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Task[T]) -> None:
        self.task = task
        self.waiters = 0


class SharedTasks(Generic[T]):
    def __init__(self) -> None:
        self._entries: dict[Hashable, _Entry[T]] = {}

    def running(self, key: Hashable) -> bool:
        return key in self._entries

    async def run(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        entry = self._entries.get(key)
        if entry is None:
            entry = _Entry(asyncio.ensure_future(work()))
            self._entries[key] = entry
            entry.task.add_done_callback(lambda _t, e=entry: self._forget(key, e))
        entry.waiters += 1
        try:
            return await asyncio.shield(entry.task)
        except asyncio.CancelledError:
            if entry.waiters == 1 and not entry.task.done():
                entry.task.cancel()
            raise
        finally:
            entry.waiters -= 1

    def _forget(self, key: Hashable, entry: _Entry[T]) -> None:
        if self._entries.get(key) is entry:
            del self._entries[key]
        # Retrieve the exception so an unwaited failure is not logged as "never retrieved".
        if not entry.task.cancelled():
            entry.task.exception()
