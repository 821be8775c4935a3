"""Work started to finish after the call that started it has answered (an ended container's
or pause's teardown): the tasks are held here, since the event loop keeps only weak
references to them and could collect one midway."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from crib.log_setup import get_logger

log = get_logger("crib.background")


class Background:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        # The work's own errors are its to log; one it did not expect would otherwise surface
        # only as asyncio's "exception was never retrieved", outside cribd's structured log.
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("background.failed", task=task.get_coro().__qualname__, error=repr(exc))
