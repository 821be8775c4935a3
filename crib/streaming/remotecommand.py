"""Exec and attach sessions, whatever carries them (SPDY streams or WebSocket channels).

A session has the client's stdin, stdout, stderr and resize (those the
request asked for) and an error stream. It ends with a status on the error
stream: in v4/v5 a JSON Status (Success, or NonZeroExitCode with the exit code
as a cause), in older protocols the error text or nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator
from typing import Any, Protocol

from crib.container import attach as attach_io
from crib.container.exec_stream import ExecProcess
from crib.log_setup import get_logger

log = get_logger("crib.streaming")

READ_SIZE = 32 * 1024
# After the process ends, how long output may still trickle in (a background
# process can hold the pipes open forever).
DRAIN_S = 1.0


class CommandIO(Protocol):
    """The client's side of a session, as a transport presents it."""

    has_stdin: bool
    has_stdout: bool
    has_stderr: bool

    async def read_stdin(self) -> bytes: ...  # b"" at the end of stdin

    async def write_stdout(self, data: bytes) -> None: ...

    async def write_stderr(self, data: bytes) -> None: ...

    def resizes(self) -> AsyncIterator[tuple[int, int]] | None: ...

    async def finish(self, status: dict[str, Any] | None, text: str) -> None: ...

    async def wait_closed(self) -> None: ...  # returns once the client is gone


def success_status() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def exit_status(cmd: list[str], code: int) -> dict[str, Any]:
    return {
        "metadata": {},
        "status": "Failure",
        "message": (
            f"command terminated with non-zero exit code: error executing command {cmd}, exit code {code}"
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def error_status(message: str) -> dict[str, Any]:
    return {"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError", "code": 500}


async def _fd_reader(fd: int) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(os.dup(fd), "rb", buffering=0)
    )
    return reader, transport


async def _fd_writer(fd: int) -> asyncio.StreamWriter:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(os.dup(fd), "wb", buffering=0)
    )
    return asyncio.StreamWriter(transport, protocol, None, loop)


async def _pump_out(reader: asyncio.StreamReader, write: Any) -> None:
    while True:
        try:
            data = await reader.read(READ_SIZE)
        except OSError:
            return  # a pty master reads EIO once the process side is closed
        if not data:
            return
        await write(data)


async def _pump_in(io: CommandIO, writer: asyncio.StreamWriter, close_at_eof: bool) -> None:
    try:
        while data := await io.read_stdin():
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        if close_at_eof:
            writer.close()


async def run_exec(io: CommandIO, proc: ExecProcess, cmd: list[str]) -> int:
    """Pump the process's stdio until it exits; send the status. Returns the exit code."""
    tasks: list[asyncio.Task[Any]] = []
    outputs: list[asyncio.Task[Any]] = []
    transports: list[asyncio.BaseTransport] = []
    try:
        if proc.pty is not None:
            reader, transport = await _fd_reader(proc.pty)
            transports.append(transport)
            outputs.append(asyncio.create_task(_pump_out(reader, io.write_stdout)))
            if io.has_stdin:
                writer = await _fd_writer(proc.pty)
                transports.append(writer.transport)
                # The pty stays open for output after stdin ends.
                tasks.append(asyncio.create_task(_pump_in(io, writer, close_at_eof=False)))
        else:
            for fd, write in ((proc.stdout, io.write_stdout), (proc.stderr, io.write_stderr)):
                if fd is not None:
                    reader, transport = await _fd_reader(fd)
                    transports.append(transport)
                    outputs.append(asyncio.create_task(_pump_out(reader, write)))
            if proc.stdin is not None and io.has_stdin:
                writer = await _fd_writer(proc.stdin)
                transports.append(writer.transport)
                tasks.append(asyncio.create_task(_pump_in(io, writer, close_at_eof=True)))
            if proc.stdin is not None:
                # Only the writer's dup keeps stdin open: its close is the process's EOF.
                os.close(proc.stdin)
                proc._fds.remove(proc.stdin)
                proc.stdin = None
        if (resizes := io.resizes()) is not None:

            async def follow() -> None:
                async for width, height in resizes:
                    proc.resize(width, height)

            tasks.append(asyncio.create_task(follow()))
        exit_wait = asyncio.ensure_future(proc.wait())
        gone = asyncio.ensure_future(io.wait_closed())
        tasks.append(gone)
        await asyncio.wait({exit_wait, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not exit_wait.done():
            # The client left: nothing may outlive its session.
            log.info("exec.client_gone", pid=proc.pid)
            exit_wait.cancel()
            await proc.kill()
            return -1
        code = exit_wait.result()
        if outputs:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_S):
                    await asyncio.gather(*outputs, return_exceptions=True)
        status = success_status() if code == 0 else exit_status(cmd, code)
        text = "" if code == 0 else f"command terminated with exit code {code}"
        await io.finish(status, text)
        return code
    finally:
        for task in (*tasks, *outputs):
            task.cancel()
        await asyncio.gather(*tasks, *outputs, return_exceptions=True)
        for transport in transports:
            transport.close()
        await proc.kill()
        proc.close()


async def run_attach(io: CommandIO, sock: Any, resize: Any) -> None:
    """Relay a container's stdio through its conmon attach socket until either side ends."""
    loop = asyncio.get_running_loop()

    async def from_container() -> None:
        while True:
            try:
                message = await loop.sock_recv(sock, attach_io.MESSAGE_SIZE)
            except OSError:
                return
            if not message:
                return
            if message[0] == attach_io.STDOUT and io.has_stdout:
                await io.write_stdout(message[1:])
            elif message[0] == attach_io.STDERR and io.has_stderr:
                await io.write_stderr(message[1:])

    async def to_container() -> None:
        try:
            while data := await io.read_stdin():
                await loop.sock_sendall(sock, data)
        except (ConnectionError, OSError):
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)  # the end of stdin

    output = asyncio.create_task(from_container())
    others: list[asyncio.Task[Any]] = []
    if io.has_stdin:
        others.append(asyncio.create_task(to_container()))
    if (resizes := io.resizes()) is not None:

        async def follow() -> None:
            async for width, height in resizes:
                resize(width, height)

        others.append(asyncio.create_task(follow()))
    gone = asyncio.ensure_future(io.wait_closed())
    others.append(gone)
    try:
        await asyncio.wait({output, gone}, return_when=asyncio.FIRST_COMPLETED)
        if output.done():
            await io.finish(success_status(), "")
    finally:
        for task in (output, *others):
            task.cancel()
        await asyncio.gather(output, *others, return_exceptions=True)
        sock.close()


def status_json(status: dict[str, Any]) -> bytes:
    return json.dumps(status).encode()
