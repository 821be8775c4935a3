"""crictl's exec: ExecSync with -s, else a streaming session (stream_cmds.py), in one container or
in each the filter flags select.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import grpc

from crib.cribctl.client import CallError, Command, CommandError, call_error, call_rpc, connect, connect_image
from crib.cribctl.container_cmds import RM_WORKERS, find_containers
from crib.cribctl.endpoint import Endpoints
from crib.cribctl.golike import go_quote
from crib.cribctl.gotime import go_duration_string
from crib.cribctl.stream_cmds import add_tls_flags, stream_command
from crib.cribctl.util import GoFlag, SliceAppend, add_command, int_flag, parse_labels, show_help, warn
from crib.proto.cri import api_pb2, api_pb2_grpc


def _exec_sync(
    stub: api_pb2_grpc.RuntimeServiceStub, ep: Endpoints, container_id: str, cmd: list[str], timeout: int
) -> tuple[bytes, bytes, int]:
    """ExecSync: (stdout, stderr, exit code); CallError when the call fails."""
    request = api_pb2.ExecSyncRequest(container_id=container_id, cmd=cmd, timeout=timeout)
    # The CRI client: no deadline for timeout 0, else the command's timeout on top of its own.
    deadline = ep.timeout + timeout if timeout else None
    try:
        r = call_rpc(stub.ExecSync, request, deadline)
    except CallError as exc:
        if str(exc).startswith("rpc error: code = DeadlineExceeded "):
            raise CallError(
                f"command timed out: {go_quote(' '.join(cmd))} timed out after {go_duration_string(timeout)}"
            ) from None
        raise
    return r.stdout, r.stderr, r.exit_code


@dataclass
class ExecResult:
    container_id: str
    output: bytes
    error: str | None
    exit_code: int


def _exec_one(
    stub: api_pb2_grpc.RuntimeServiceStub,
    ep: Endpoints,
    container_id: str,
    cmd: list[str],
    timeout: int,
    show_id: bool,
) -> ExecResult:
    head = f"{container_id}:\n".encode() if show_id else b""
    try:
        out, err, code = _exec_sync(stub, ep, container_id, cmd, timeout)
    except CallError as exc:
        return ExecResult(
            container_id, head, f"execing command in container {container_id} synchronously: {exc}", 1
        )
    # crictl's fmt.Println of each: the command's stderr goes to stdout too.
    text = head + out + b"\n" + err + b"\n"
    if code == 0:
        return ExecResult(container_id, text, None, 0)
    failure = f"command '{' '.join(cmd)}' exited with {code}: {err.decode(errors='replace')}"
    return ExecResult(
        container_id, text, f"execing command in container {container_id} synchronously: {failure}", code
    )


def exec_stream(
    stub: Any, ep: Endpoints, args: argparse.Namespace, cmd: list[str], container_id: str
) -> None:
    """`exec` without -s: ExecRequest as crictl builds it, then the session."""
    request = api_pb2.ExecRequest(
        container_id=container_id,
        cmd=cmd,
        tty=args.tty,
        stdin=args.interactive,
        stdout=True,
        stderr=not args.tty,
    )
    what = f"execing command in container {container_id}"
    try:
        url = stub.Exec(request, timeout=ep.timeout).url
    except grpc.RpcError as exc:
        raise CommandError(f"{what}: {call_error(exc)}") from None
    stream_command(url, args, args.interactive, args.tty, what)


def cmd_exec(args: argparse.Namespace, ep: Endpoints) -> None:
    timeout = int_flag(args.exec_timeout)
    last = int_flag(args.last)
    argv = list(args.argv)
    if not argv:
        show_help(args)
        return
    stub = connect(ep)
    images = connect_image(ep)
    ids, cmd, show_id = [argv[0]], argv[1:], False
    if args.ignore_errors and not args.quiet:
        warn("The `--ignore-errors` option has been set all errors returned by the command will be ignored.")
    filtered = any(
        value is not None and value is not False
        for value in (args.name, args.pod, args.image, args.state, args.label, args.latest or None, args.last)
    )
    if filtered:
        cmd, show_id = argv, not args.quiet and not args.parallel
        labels = parse_labels(args.label or [])
        try:
            found = find_containers(
                stub,
                images,
                ep,
                pod_id=args.pod or "",
                state=args.state or "",
                labels=labels,
                latest=args.latest,
                last=last,
                name=args.name or "",
                image=args.image or "",
            )
        except CallError as exc:
            raise CommandError(f"listing containers: {exc}") from None
        ids = [c.id for c in found]
        if not ids:
            warn("No containers found per filter flags")
            show_help(args)
            return
    elif len(argv) < 2:
        show_help(args)
        return
    if not args.sync:
        for container_id in ids:
            try:
                exec_stream(stub, ep, args, cmd, container_id)
            except (CommandError, SystemExit):
                if not args.ignore_errors:
                    raise
        return
    results: list[ExecResult] = []
    if args.parallel and len(ids) > 1:
        with ThreadPoolExecutor(max_workers=min(len(ids), RM_WORKERS)) as pool:
            futures = [pool.submit(_exec_one, stub, ep, i, cmd, timeout, show_id) for i in ids]
            for future in as_completed(futures):
                results.append(result := future.result())
                sys.stdout.buffer.write(result.output)
                sys.stdout.buffer.flush()
    else:
        for container_id in ids:
            results.append(result := _exec_one(stub, ep, container_id, cmd, timeout, show_id))
            sys.stdout.buffer.write(result.output)
            sys.stdout.buffer.flush()
    failed = [r for r in results if r.error is not None]
    if not failed or args.ignore_errors:
        return
    print(f"cribctl: {chr(10).join(r.error for r in failed if r.error)}", file=sys.stderr)
    # The command's exit code when one container ran it (1 where a process cannot exit with it);
    # with several containers 1, as crictl for any failure.
    code = failed[0].exit_code
    raise SystemExit(code if len(ids) == 1 and 0 < code < 256 else 1)


def register(sub: Any) -> dict[str, Command]:
    """Adds exec; returns {name or alias: command}."""
    p = add_command(sub, "exec", "run a command in a running container")
    # Everything from the first positional on is the container and its command, as in crictl.
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="[CONTAINER-ID] COMMAND [ARG...]")
    p.add_argument("--sync", "-s", action="store_true", help="run the command synchronously (ExecSync)")
    p.add_argument(
        "--timeout", dest="exec_timeout", action=GoFlag, metavar="SECONDS", help="timeout in seconds"
    )
    p.add_argument("--tty", "-t", action="store_true", help="allocate a pseudo-TTY")
    p.add_argument("--interactive", "-i", action="store_true", help="keep STDIN open")
    p.add_argument("--transport", "-r", default="spdy", help="streaming transport, spdy or websocket")
    p.add_argument("--name", help="exec in all containers whose name matches this regular expression")
    p.add_argument("--pod", "-p", help="exec in all containers of this pod ID")
    p.add_argument("--image", help="exec in all containers of this image")
    p.add_argument("--state", help="exec in all containers in this state")
    p.add_argument(
        "--label", action=SliceAppend, metavar="KEY=VALUE", help="exec in all containers with this label"
    )
    p.add_argument("--latest", "-l", action="store_true", help="exec in the most recently created container")
    p.add_argument(
        "--last", "-n", action=GoFlag, metavar="N", help="exec in the last n containers; 0 for all"
    )
    p.add_argument("--quiet", "-q", action="store_true", help="do not print the container IDs")
    p.add_argument("--ignore-errors", "-e", action="store_true", help="ignore errors of the command")
    p.add_argument("--parallel", "-x", action="store_true", help="run in the selected containers in parallel")
    add_tls_flags(p)

    return {"exec": cmd_exec}
