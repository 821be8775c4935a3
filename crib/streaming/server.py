"""The streaming server: the URLs Exec, Attach and PortForward return.

HTTP/1.1 on 127.0.0.1 (by default) at `/{exec,attach,portforward}/<token>`;
the token names a cached CRI request (single use, one minute). The connection
is then upgraded to SPDY/3.1 — what the kubelet speaks on this leg, even in
Kubernetes 1.36 — or to WebSocket (`v5.channel.k8s.io`, what `crictl
--transport websocket` speaks, and the older channel protocols); handler.py
serves each connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import ssl
from typing import TYPE_CHECKING, Any

from crib.log_setup import get_logger
from crib.streaming.backend import Backend
from crib.streaming.tokens import TokenCache

if TYPE_CHECKING:
    from crib.streaming.handler import StreamHandler

__all__ = ["Backend", "StreamingServer"]

log = get_logger("crib.streaming")


# --- the server -------------------------------------------------------------------------------


class StreamingServer:
    def __init__(
        self,
        address: str,
        port: int,
        backend: Backend,
        *,
        idle_timeout: float = 4 * 3600.0,
        creation_timeout: float = 30.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.address = address
        self.port = port
        self.backend = backend
        self.idle_timeout = idle_timeout
        self.creation_timeout = creation_timeout
        self.tls = tls
        self.tokens = TokenCache()
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[Any]] = set()
        self._handler: StreamHandler | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def url(self, kind: str, request: Any) -> str:
        return f"{self.base_url}/{kind}/{self.tokens.put(kind, request)}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.address, self.port, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("streaming.started", url=self.base_url)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._sessions):
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            if self._handler is None:
                # The first connection's imports (40-90 ms here), off the event loop.
                await asyncio.to_thread(importlib.import_module, "crib.streaming.handler")
            await self.handler().handle(reader, writer)
        finally:
            self._sessions.discard(task)

    def handler(self) -> StreamHandler:
        """What serves a connection, made at the first one.

        HTTP parsing (h11), SPDY/3.1, WebSocket (wsproto) and the exec, attach and
        port-forward plumbing are only for streaming sessions, which most nodes open
        rarely; an idle cribd does without them (about 2 MB resident, issue 17). The first
        connection pays for the imports once.
        """
        if self._handler is None:
            from crib.streaming.handler import StreamHandler  # noqa: PLC0415

            self._handler = StreamHandler(
                self.backend,
                self.tokens,
                idle_timeout=self.idle_timeout,
                creation_timeout=self.creation_timeout,
            )
        return self._handler
