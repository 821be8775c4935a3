"""crictl's events: GetContainerEvents streamed as JSON or YAML until interrupted."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import grpc

from crib.cribctl import output
from crib.cribctl.client import Command, CommandError, call_error, connect
from crib.cribctl.endpoint import Endpoints
from crib.cribctl.golike import go_quote
from crib.cribctl.output import go_yaml_v2, protojson_text
from crib.cribctl.util import add_command, interruptible, show_help
from crib.proto.cri import api_pb2


def render_event(event: api_pb2.ContainerEventResponse, fmt: str) -> str:
    """One event as crictl prints it (fmt.Println of protojson, or of its YAML)."""
    if fmt == "yaml":
        return go_yaml_v2(output.proto_json(event)) + "\n"
    return protojson_text(event) + "\n"


def cmd_events(args: argparse.Namespace, ep: Endpoints) -> None:
    if args.extra:
        show_help(args)
        return
    fmt = args.output
    if fmt in ("json", "yaml"):
        if args.template:
            raise CommandError(f"template can't be used with {go_quote(fmt)} format")
    else:
        raise CommandError(f"don't support {go_quote(fmt)} format")
    stub = connect(ep)
    # No deadline: the stream lasts until the runtime ends it or the user interrupts.
    stream = stub.GetContainerEvents(api_pb2.GetEventsRequest())
    try:
        with interruptible():
            for event in stream:
                sys.stdout.write(render_event(event, fmt))
                sys.stdout.flush()
    except KeyboardInterrupt:
        stream.cancel()
        raise CommandError("getting container events: interrupted: context canceled") from None
    except grpc.RpcError as exc:
        raise CommandError(f"getting container events: {call_error(exc)}") from None


def register(sub: Any) -> dict[str, Command]:
    """Adds events; returns {name or alias: command}."""
    p = add_command(sub, "events", "stream the events of containers", aliases=("event",))
    p.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("--output", "-o", default="json", help="output format, one of: json|yaml|go-template")
    p.add_argument("--template", default="", help=argparse.SUPPRESS)  # main.py shows it

    return {"events": cmd_events, "event": cmd_events}
