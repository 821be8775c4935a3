"""crib's own image commands, load (a docker save or OCI layout tar) and import (a root
filesystem tar), streamed to CribService.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable, Iterator
from typing import IO, Any

import grpc
from google.protobuf.message import Message

from crib.cribctl.client import (
    Command,
    CommandError,
    call_error,
    check_endpoint,
    crib_stub,
    image_stub,
    wait_for_call,
)
from crib.cribctl.endpoint import Endpoints
from crib.cribctl.golike import go_path_error, go_quote
from crib.cribctl.util import add_command
from crib.proto.crib.v1 import crib_pb2

CHUNK_SIZE = 1 << 20


def parse_command(value: str, flag: str) -> list[str]:
    """--entrypoint/--cmd: a JSON array of strings, or else a string split on whitespace."""
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if isinstance(parsed, list):
        if not all(isinstance(item, str) for item in parsed):
            raise CommandError(f"{flag}: a JSON array must hold only strings: {value}")
        return parsed
    return value.split()


_PROTOCOLS = ("tcp", "udp", "sctp")


def parse_expose(value: str) -> str:
    """PORT[/PROTO] as an image config's ExposedPorts key: "80" → "80/tcp"."""
    port, _, proto = value.partition("/")
    proto = (proto or "tcp").lower()
    if not port.isdigit() or not 0 < int(port) < 65536 or proto not in _PROTOCOLS:
        raise CommandError(f"--expose {go_quote(value)}: expected PORT[/tcp|udp|sctp], PORT 1-65535")
    return f"{int(port)}/{proto}"


def import_config(
    *,
    entrypoint: str | None = None,
    cmd: str | None = None,
    env: list[str] | None = None,
    workdir: str = "",
    user: str = "",
    expose: list[str] | None = None,
    stop_signal: str = "",
    labels: list[str] | None = None,
) -> crib_pb2.ImportConfig:
    config = crib_pb2.ImportConfig(working_dir=workdir, user=user, stop_signal=stop_signal)
    if entrypoint is not None:
        config.entrypoint.extend(parse_command(entrypoint, "--entrypoint"))
    if cmd is not None:
        config.cmd.extend(parse_command(cmd, "--cmd"))
    for item in env or []:
        key, sep, _ = item.partition("=")
        if not sep or not key:
            raise CommandError(f"--env {go_quote(item)}: expected KEY=VALUE")
        config.env.append(item)
    for port in expose or []:
        normalized = parse_expose(port)
        if normalized not in config.exposed_ports:
            config.exposed_ports.append(normalized)
    for item in labels or []:
        # As docker's --label: a value may hold '=', and "k" alone is an empty value.
        key, _, value = item.partition("=")
        if not key:
            raise CommandError(f"--label {go_quote(item)}: the key is empty")
        config.labels[key] = value
    return config


class ChunkStream:
    """Request messages for a client-streaming upload: an optional head, then the data.

    A read error must not end the stream as if the data were complete (the
    daemon would load a truncated archive), so it cancels the call instead and
    is kept for the command to report.
    """

    def __init__(self, src: IO[bytes], make: Callable[[bytes], Message], head: Message | None = None) -> None:
        self.src = src
        self.make = make
        self.head = head
        self.error: OSError | None = None
        self._future: grpc.Future | None = None
        self._armed = threading.Event()

    def arm(self, future: grpc.Future) -> None:
        self._future = future
        self._armed.set()

    def __iter__(self) -> Iterator[Message]:
        if self.head is not None:
            yield self.head
        while True:
            try:
                data = self.src.read(CHUNK_SIZE)
            except OSError as exc:
                self.error = exc
                # gRPC pulls requests on its own thread, maybe before arm() ran.
                self._armed.wait()
                assert self._future is not None
                self._future.cancel()
                return
            if not data:
                return
            yield self.make(data)


def _open_input(path: str | None, what: str) -> tuple[IO[bytes], str]:
    if path is None or path == "-":
        if sys.stdin.isatty():
            raise CommandError(f"requested {what} from stdin, but stdin is empty")
        return sys.stdin.buffer, "stdin"
    try:
        # Closed by the caller, which also handles stdin.
        return open(path, "rb"), path
    except OSError as exc:
        raise CommandError(go_path_error("open", path, exc)) from None


def _upload(call: Any, stream: ChunkStream, source: str, what: str) -> Any:
    future = call.future(iter(stream))
    stream.arm(future)
    try:
        return wait_for_call(future, what)
    except grpc.FutureCancelledError:
        if stream.error is not None:
            raise CommandError(f"{what}: {go_path_error('read', source, stream.error)}") from None
        raise CommandError(f"{what}: canceled") from None
    except grpc.RpcError as exc:
        raise CommandError(f"{what}: {call_error(exc)}") from None


def cmd_load(args: argparse.Namespace, ep: Endpoints) -> None:
    src, source = _open_input(args.input, "load")
    try:
        check_endpoint(image_stub(ep), ep)
        stream = ChunkStream(src, lambda data: crib_pb2.LoadImageRequest(data=data))
        r = _upload(crib_stub(ep).LoadImage, stream, source, "loading image")
    finally:
        if src is not sys.stdin.buffer:
            src.close()
    for image in r.images:
        if image.repo_tags:
            for tag in image.repo_tags:
                print(f"Loaded image: {tag}")
        else:
            print(f"Loaded image ID: {image.id}")


def cmd_import(args: argparse.Namespace, ep: Endpoints) -> None:
    config = import_config(
        entrypoint=args.entrypoint,
        cmd=args.cmd,
        env=args.env,
        workdir=args.workdir or "",
        user=args.user or "",
        expose=args.expose,
        stop_signal=args.stop_signal or "",
        labels=args.label,
    )
    src, source = _open_input(args.file, "import")
    try:
        check_endpoint(image_stub(ep), ep)
        head = crib_pb2.ImportImageRequest(name=args.name, config=config)
        stream = ChunkStream(src, lambda data: crib_pb2.ImportImageRequest(data=data), head)
        r = _upload(crib_stub(ep).ImportImage, stream, source, "importing image")
    finally:
        if src is not sys.stdin.buffer:
            src.close()
    for tag in r.image.repo_tags or [args.name]:
        print(f"Imported image: {tag} ({r.image.id})")


def register(sub: Any) -> dict[str, Command]:
    """Adds load and import; returns {name or alias: command}."""
    p = add_command(sub, "load", "load images from a docker save tar or an OCI layout tar")
    p.add_argument("--input", "-i", metavar="FILE", help="read from FILE instead of stdin")

    p = add_command(sub, "import", "make an image from a root filesystem tar (plain or gzip)")
    p.add_argument("file", metavar="FILE", help="the rootfs tar, or - for stdin")
    p.add_argument("name", metavar="NAME", help="the image's name, e.g. example.com/app:1")
    p.add_argument("--entrypoint", metavar="CMD", help='JSON array (["/bin/sh","-c"]) or a plain string')
    p.add_argument("--cmd", metavar="CMD", help="JSON array or a plain string, split on whitespace")
    p.add_argument("--env", action="append", metavar="KEY=VALUE", help="environment variable (repeatable)")
    p.add_argument("--workdir", metavar="DIR", help="working directory")
    p.add_argument("--user", metavar="USER[:GROUP]", help="user to run as")
    p.add_argument("--expose", action="append", metavar="PORT[/PROTO]", help="exposed port (repeatable)")
    p.add_argument("--stop-signal", metavar="SIGNAL", help="signal that stops the container")
    p.add_argument("--label", action="append", metavar="KEY=VALUE", help="image label (repeatable)")

    return {"load": cmd_load, "import": cmd_import}
