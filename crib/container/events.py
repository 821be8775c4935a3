"""Container events for GetContainerEvents subscribers (the kubelet's Evented PLEG).

Each subscriber has a bounded queue. A subscriber that falls a full queue
behind is dropped (its stream ends with an error and the kubelet resubscribes
or relists) rather than slowing every container operation down.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from crib.errors import ResourceExhausted
from crib.log_setup import get_logger

log = get_logger("crib.events")

QUEUE_SIZE = 1000
_CLOSED = object()


class EventBus:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[Any]] = set()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, make_event: Callable[[], Any]) -> None:
        """Build the event only if someone listens."""
        if not self._subscribers:
            return
        event = make_event()
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("events.subscriber_dropped", backlog=queue.qsize())
                self._subscribers.discard(queue)
                # Make room for the marker that ends its stream.
                queue.get_nowait()
                queue.put_nowait(_CLOSED)

    async def subscribe(self) -> AsyncIterator[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(queue)
        try:
            while True:
                event = await queue.get()
                if event is _CLOSED:
                    raise ResourceExhausted(
                        f"event subscriber fell {QUEUE_SIZE} events behind; subscribe again"
                    )
                yield event
        finally:
            self._subscribers.discard(queue)
