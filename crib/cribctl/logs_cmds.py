"""crictl's logs: the CRI log file ContainerStatus.log_path names, read by cri_logs.py as the
kubelet reads it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from crib.cribctl.client import CallError, Command, CommandError, call_rpc, connect
from crib.cribctl.container_cmds import container_status
from crib.cribctl.cri_logs import LogError, LogOptions, previous_log_path, read_logs
from crib.cribctl.endpoint import Endpoints
from crib.cribctl.golike import go_quote
from crib.cribctl.gotime import parse_since
from crib.cribctl.util import GoFlag, add_command, int_flag, interruptible, show_help, warn
from crib.proto.cri import api_pb2


def _local_offset(now_ns: int) -> int:
    # FixedZone(time.Now().Zone()): the local offset now, also for dates in another season.
    return time.localtime(now_ns // 10**9).tm_gmtoff or 0


def cmd_logs(args: argparse.Namespace, ep: Endpoints) -> None:
    tail = int_flag(args.tail) if args.tail is not None else -1
    limit_bytes = int_flag(args.limit_bytes) if args.limit_bytes is not None else -1
    if not args.ids or not args.ids[0]:
        raise CommandError("ID cannot be empty")
    if len(args.ids) > 1:
        show_help(args)
        return
    container_id = args.ids[0]
    stub = connect(ep)
    if args.reopen:
        try:
            call_rpc(
                stub.ReopenContainerLog,
                api_pb2.ReopenContainerLogRequest(container_id=container_id),
                ep.timeout,
            )
        except CallError as exc:
            raise CommandError(f"reopen container logs: {exc}") from None
        warn("Container logs reopened")
    now = time.time_ns()
    try:
        since_ns = parse_since(args.since or "", now, _local_offset(now))
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    stream = args.stream or ""
    if stream not in ("stdout", "stderr", ""):
        raise CommandError(f'invalid stream {go_quote(stream)}, must be "stdout" or "stderr"')
    if args.tail is not None and args.stream is not None:
        raise CommandError("--tail and --stream are mutually exclusive")
    try:
        r = container_status(stub, ep, container_id, False)
    except CallError as exc:
        raise CommandError(str(exc)) from None
    log_path = r.status.log_path
    if not log_path:
        raise CommandError("the container has not set log path")
    if args.previous:
        attempt = r.status.metadata.attempt
        if attempt == 0:
            raise CommandError(f"previous terminated container {r.status.metadata.name} not found")
        log_path = previous_log_path(log_path, attempt)
    opts = LogOptions(
        tail=tail, limit_bytes=limit_bytes, since_ns=since_ns, follow=args.follow, timestamps=args.timestamps
    )
    out = None if stream == "stderr" else sys.stdout.buffer
    err = None if stream == "stdout" else sys.stderr.buffer

    def is_running() -> bool:
        try:
            st = container_status(stub, ep, r.status.id, False)
        except CallError as exc:
            if str(exc).startswith("rpc error: code = Unavailable "):
                return True  # the runtime restarting: keep following
            raise LogError(str(exc)) from None
        return st.status.state == api_pb2.CONTAINER_RUNNING

    sys.stdout.flush()
    try:
        with interruptible():
            read_logs(log_path, opts, out, err, is_running, warn=warn)
    except LogError as exc:
        raise CommandError(str(exc)) from None
    except KeyboardInterrupt:
        return  # crictl ends a followed log quietly on Ctrl-C
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as Go does on SIGPIPE.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def register(sub: Any) -> dict[str, Command]:
    """Adds logs; returns {name or alias: command}."""
    p = add_command(sub, "logs", "fetch the logs of a container")
    p.add_argument("ids", nargs="*", metavar="CONTAINER-ID")
    p.add_argument("--follow", "-f", action="store_true", help="follow log output")
    p.add_argument(
        "--previous",
        "-p",
        action="store_true",
        help="print the logs of the previous instance of the container",
    )
    p.add_argument("--reopen", "-r", action="store_true", help="reopen the container logs first")
    p.add_argument("--tail", action=GoFlag, metavar="N", help="number of lines from the end (default: all)")
    p.add_argument(
        "--limit-bytes", action=GoFlag, metavar="N", help="maximum bytes of logs (default: no limit)"
    )
    p.add_argument(
        "--since",
        default="",
        help="show logs since a timestamp (e.g. 2013-01-02T13:23:37) or a relative time (e.g. 42m)",
    )
    p.add_argument("--timestamps", "-t", action="store_true", help="show timestamps")
    p.add_argument("--stream", "-s", help="show only this stream (stdout or stderr); default both")

    return {"logs": cmd_logs}
