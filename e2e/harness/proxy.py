"""A TCP proxy in front of a test registry, to make pulls slow, stall or break midway.

It runs its own event loop in a thread. Downstream (registry → client) bytes
are counted and can be throttled, held back (a stall: the connection stays
open, nothing arrives), or cut after a given count with a callback (the test
kills the registry there). Upstream request lines are recorded, so a test can
count how often a blob was fetched.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.downstream_bytes = 0
        self.requests: list[str] = []
        self.rate: float | None = None  # bytes per second, None for full speed
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.cut_after: int | None = None
        self.on_cut: Callable[[], None] | None = None
        self.cut_done = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Proxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stall(self) -> None:
        """Hold every downstream byte from now on; connections stay open."""
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def resume(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.set)

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for w in list(self._writers):
                w.close()
            # Ended before the loop stops: a handler left pending is destroyed with the loop
            # ("Task was destroyed but it is pending" at the test run's end).
            for task in list(self._handlers):
                task.cancel()
            if self._handlers:
                await asyncio.wait(list(self._handlers), timeout=5)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._relay(client_r, client_w)
        finally:
            self._handlers.discard(task)

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.close()
            return
        self._writers |= {client_w, up_w}
        await asyncio.gather(
            self._pump_up(client_r, up_w), self._pump_down(up_r, client_w), return_exceptions=True
        )
        for w in (client_w, up_w):
            w.close()
            self._writers.discard(w)

    async def _pump_up(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            for line in data.split(b"\r\n"):
                if line.startswith((b"GET ", b"HEAD ", b"POST ", b"PUT ")):
                    self.requests.append(line.decode(errors="replace"))
            writer.write(data)
            await writer.drain()
        writer.write_eof()

    async def _pump_down(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        chunk = 16384
        while data := await reader.read(chunk):
            await self._flowing.wait()
            if self.cut_after is not None and self.downstream_bytes + len(data) >= self.cut_after:
                data = data[: max(0, self.cut_after - self.downstream_bytes)]
                writer.write(data)
                self.downstream_bytes += len(data)
                await writer.drain()
                if self.on_cut is not None and not self.cut_done.is_set():
                    self.on_cut()
                self.cut_done.set()
                for w in list(self._writers):
                    w.close()
                return
            writer.write(data)
            self.downstream_bytes += len(data)
            await writer.drain()
            if self.rate:
                await asyncio.sleep(len(data) / self.rate)
