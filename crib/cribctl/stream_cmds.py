"""crictl's attach and port-forward, and the streaming sessions (SPDY/3.1 or WebSocket, through
crib/streaming/client.py) that they and `exec` without -s run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import ssl
import sys
import termios
import threading
import tty as tty_mode
from collections.abc import AsyncIterator
from typing import Any

import grpc

from crib.cribctl.client import Command, CommandError, call_error, runtime_stub
from crib.cribctl.endpoint import Endpoints
from crib.cribctl.util import add_command, show_help
from crib.proto.cri import api_pb2
from crib.streaming import client
from crib.streaming.client import CommandStreams, StreamingError

DETACH_KEYS = b"\x10\x11"  # ctrl-p, ctrl-q
READ_SIZE = 32 * 1024
TRANSPORTS = ("spdy", "websocket")


def add_tls_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tls-sni", "--tls-server-name", default="localhost", help="server name to check")
    p.add_argument("--tls-ca", default="", help="path to the streaming TLS CA certificate")
    p.add_argument("--tls-cert", default="", help="path to the streaming TLS certificate")
    p.add_argument("--tls-key", default="", help="path to the streaming TLS key")


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """crictl's tlsConfigFromFlags: no flags means an unverified TLS (the URL came over the socket)."""
    if not (args.tls_ca or args.tls_cert or args.tls_key):
        return None  # client.py's default: encrypted, not verified
    if not (args.tls_cert and args.tls_key):
        raise CommandError(
            "get TLS config from flags: all two flags --tls-ca and --tls-cert are required for TLS "
            "streaming, only --tls-key is optional"
        )
    context = ssl.create_default_context(cafile=args.tls_ca or None)
    try:
        context.load_cert_chain(args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise CommandError(f"get TLS config from flags: {exc}") from None
    context.check_hostname = bool(args.tls_ca)
    if not args.tls_ca:
        context.verify_mode = ssl.CERT_NONE
    return context


def _transport(args: argparse.Namespace) -> str:
    if args.transport not in TRANSPORTS:
        raise CommandError(f"get executor: unknown transport: {args.transport}")
    return args.transport


# --- the terminal and stdio -----------------------------------------------------------------------


class StdinPump:
    """Stdin read in a daemon thread (a blocking read must not hold up the exit), into a queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, detach: bool) -> None:
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=8)
        self._loop = loop
        self._fd = fd
        self._detach = detach
        self.detached = asyncio.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        previous = b""
        while True:
            try:
                data = os.read(self._fd, READ_SIZE)
            except OSError:
                data = b""
            if self._detach and data:
                seen = previous + data
                if DETACH_KEYS in seen:
                    data = data[: max(0, seen.index(DETACH_KEYS) - len(previous))]
                    self._put(data)
                    self._loop.call_soon_threadsafe(self.detached.set)
                    return
                previous = data[-1:]
            self._put(data)
            if not data:
                return

    def _put(self, data: bytes) -> None:
        if data or not self.detached.is_set():
            future = asyncio.run_coroutine_threadsafe(self._queue.put(data), self._loop)
            with contextlib.suppress(Exception):
                future.result()

    async def read(self) -> bytes:
        return await self._queue.get()


def _write_to(fd: int) -> client.Sink:
    async def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                # A non-blocking stdout (rare): wait until it takes more.
                loop = asyncio.get_running_loop()
                ready = loop.create_future()
                loop.add_writer(fd, ready.set_result, None)
                try:
                    await ready
                finally:
                    loop.remove_writer(fd)

    return write


def _is_terminal(stream: Any) -> bool:
    try:
        return os.isatty(stream.fileno())
    except (OSError, ValueError):  # no fd at all (a test's stdin)
        return False


def _terminal_size(fd: int) -> tuple[int, int]:
    size = os.get_terminal_size(fd)
    return size.columns, size.lines


async def _sizes(fd: int) -> AsyncIterator[tuple[int, int]]:
    """The terminal's size now and after each SIGWINCH."""
    changed = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGWINCH, changed.set)
    try:
        last = None
        while True:
            with contextlib.suppress(OSError):
                size = _terminal_size(fd)
                if size != last:
                    last = size
                    yield size
            await changed.wait()
            changed.clear()
    finally:
        loop.remove_signal_handler(signal.SIGWINCH)


@contextlib.contextmanager
def raw_terminal(fd: int) -> Any:
    saved = termios.tcgetattr(fd)
    try:
        tty_mode.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def run_session(
    url: str, *, transport: str, stdin: bool, tty: bool, ssl_context: ssl.SSLContext | None
) -> client.CommandResult | None:
    """Stream this process's stdio through the session; None when detached (ctrl-p,ctrl-q)."""
    loop = asyncio.get_running_loop()
    pump = StdinPump(loop, sys.stdin.fileno(), detach=tty) if stdin else None
    streams = CommandStreams(
        stdin=pump.read if pump is not None else None,
        stdout=_write_to(sys.stdout.fileno()),
        stderr=None if tty else _write_to(sys.stderr.fileno()),
        tty=tty,
        resizes=_sizes(sys.stdout.fileno()) if tty and _is_terminal(sys.stdout) else None,
    )
    session = asyncio.ensure_future(client.stream(url, streams, transport=transport, ssl=ssl_context))
    if pump is None:
        return await session
    detached = asyncio.ensure_future(pump.detached.wait())
    try:
        await asyncio.wait({session, detached}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        detached.cancel()
    if session.done():
        return session.result()
    session.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await session
    return None


def stream_command(url: str, args: argparse.Namespace, stdin: bool, tty: bool, what: str) -> None:
    """Run an exec or attach session for a command; CommandError or SystemExit(code) when it fails."""
    transport = _transport(args)
    ssl_context = tls_context(args)
    if tty:
        if not stdin:
            raise CommandError(f"{what}: tty=true must be specified with interactive=true")
        if not _is_terminal(sys.stdin):
            raise CommandError(f"{what}: input is not a terminal")
    try:
        with raw_terminal(sys.stdin.fileno()) if tty else contextlib.nullcontext():
            result = asyncio.run(
                run_session(url, transport=transport, stdin=stdin, tty=tty, ssl_context=ssl_context)
            )
    except StreamingError as exc:
        raise CommandError(f"{what}: {exc}") from None
    except (ConnectionError, OSError, TimeoutError) as exc:
        raise CommandError(f"{what}: {exc or type(exc).__name__}") from None
    if result is None or (result.exit_code == 0 and not result.error):
        return
    if result.error:
        print(f"cribctl: {what}: {result.error}", file=sys.stderr)
        raise SystemExit(1)
    print(f"cribctl: {what}: command terminated with exit code {result.exit_code}", file=sys.stderr)
    raise SystemExit(result.exit_code if 0 < result.exit_code < 256 else 1)


# --- attach ---------------------------------------------------------------------------------------


def cmd_attach(args: argparse.Namespace, ep: Endpoints) -> None:
    if not args.ids or not args.ids[0]:
        raise CommandError("ID cannot be empty")
    if len(args.ids) != 1:
        show_help(args)
        return
    container_id = args.ids[0]
    request = api_pb2.AttachRequest(
        container_id=container_id, tty=args.tty, stdin=args.stdin, stdout=True, stderr=not args.tty
    )
    what = "attaching running container failed"
    try:
        url = runtime_stub(ep).Attach(request, timeout=ep.timeout).url
    except grpc.RpcError as exc:
        raise CommandError(f"{what}: {call_error(exc)}") from None
    stream_command(url, args, args.stdin, args.tty, what)


# --- port-forward ---------------------------------------------------------------------------------


def parse_port_specs(specs: list[str]) -> list[tuple[int, int]]:
    """client-go's parsePorts: "80", "8080:80" or ":80" (a free local port) → (local, remote)."""
    out = []
    for spec in specs:
        local_text, sep, remote_text = spec.partition(":")
        if not sep:
            local_text = remote_text = spec
        try:
            remote = int(remote_text)
            if not 0 < remote < 65536:
                raise ValueError
        except ValueError:
            raise CommandError(f"port forward: error parsing remote port {remote_text!r}") from None
        local = 0
        if local_text:
            try:
                local = int(local_text)
                if not 0 <= local < 65536:
                    raise ValueError
            except ValueError:
                raise CommandError(f"port forward: error parsing local port {local_text!r}") from None
        out.append((local, remote))
    return out


async def _relay(
    conn: client.PortConnection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    async def upstream() -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(READ_SIZE):
                await conn.write(data)
        with contextlib.suppress(Exception):
            await conn.close_write()

    async def downstream() -> None:
        with contextlib.suppress(Exception):
            while data := await conn.read():
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()

    async def errors() -> None:
        with contextlib.suppress(Exception):
            if message := await conn.error():
                print(f"cribctl: port forward: an error occurred forwarding: {message}", file=sys.stderr)
                writer.close()

    await asyncio.gather(upstream(), downstream(), errors())


async def _listen(
    forwarder: client.SpdyPortForwarder, local: int, remote: int, handlers: set[asyncio.Task[Any]]
) -> list[asyncio.Server]:
    """Listen on `local` (0: a free port) on IPv4 and IPv6 loopback, as client-go does."""
    port = {"local": local}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            print(f"Handling connection for {port['local']}", flush=True)
            conn = await forwarder.open(remote)
            await _relay(conn, reader, writer)
        except StreamingError as exc:
            print(f"cribctl: port forward: {exc}", file=sys.stderr)
            writer.close()
        finally:
            handlers.discard(task)

    servers = []
    for host in ("127.0.0.1", "::1"):
        try:
            server = await asyncio.start_server(handle, host, port["local"])
        except OSError:
            continue
        port["local"] = port["local"] or server.sockets[0].getsockname()[1]
        servers.append(server)
        label = f"[{host}]" if ":" in host else host
        print(f"Forwarding from {label}:{port['local']} -> {remote}", flush=True)
    return servers


async def forward_ports(
    url: str,
    ports: list[tuple[int, int]],
    transport: str,
    ssl_context: ssl.SSLContext | None,
    stop: asyncio.Event,
) -> None:
    forwarder = await client.SpdyPortForwarder.connect(url, transport=transport, ssl=ssl_context)
    servers: list[asyncio.Server] = []
    handlers: set[asyncio.Task[Any]] = set()
    try:
        for local, remote in ports:
            bound = await _listen(forwarder, local, remote, handlers)
            if not bound:
                raise CommandError(f"port forward: unable to listen on port {local}")
            servers += bound
        closed = asyncio.ensure_future(forwarder.session.wait_closed())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({closed, stopped}, return_when=asyncio.FIRST_COMPLETED)
        closed.cancel()
        stopped.cancel()
        if not stop.is_set():
            raise CommandError("port forward: lost connection to pod")
    finally:
        for server in servers:
            server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await forwarder.close()


def cmd_port_forward(args: argparse.Namespace, ep: Endpoints) -> None:
    if len(args.args) < 2:
        show_help(args)
        return
    pod_id, specs = args.args[0], args.args[1:]
    if not pod_id:
        raise CommandError("port forward: ID cannot be empty")
    ports = parse_port_specs(specs)
    transport = _transport(args)
    ssl_context = tls_context(args)
    try:
        url = (
            runtime_stub(ep)
            .PortForward(api_pb2.PortForwardRequest(pod_sandbox_id=pod_id), timeout=ep.timeout)
            .url
        )
    except grpc.RpcError as exc:
        raise CommandError(f"port forward: {call_error(exc)}") from None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await forward_ports(url, ports, transport, ssl_context, stop)

    try:
        asyncio.run(main())
    except StreamingError as exc:
        raise CommandError(f"port forward: {exc}") from None
    except (ConnectionError, OSError, TimeoutError) as exc:
        raise CommandError(f"port forward: {exc or type(exc).__name__}") from None


# --- registration ---------------------------------------------------------------------------------


def register(sub: Any) -> dict[str, Command]:
    """Adds attach and port-forward; returns {name or alias: command}."""
    p = add_command(sub, "attach", "attach to a running container")
    p.add_argument("ids", nargs="*", metavar="CONTAINER-ID")
    p.add_argument("--tty", "-t", action="store_true", help="allocate a pseudo-TTY")
    p.add_argument("--stdin", "-i", action="store_true", help="keep STDIN open")
    p.add_argument("--transport", "-r", default="spdy", help="streaming transport, spdy or websocket")
    add_tls_flags(p)

    p = add_command(sub, "port-forward", "forward local ports to a pod")
    p.add_argument("args", nargs="*", metavar="POD-ID [LOCAL_PORT:]REMOTE_PORT")
    p.add_argument("--transport", "-r", default="spdy", help="streaming transport, spdy or websocket")
    add_tls_flags(p)

    return {"attach": cmd_attach, "port-forward": cmd_port_forward}
