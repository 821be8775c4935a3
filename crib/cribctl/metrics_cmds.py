"""cribctl metricdescs and metricsp: crictl 1.36's commands of the same names.

Both print the whole response message the way crictl does (protojson with default
values, 2-space indent, fields in number order; yaml through sigs.k8s.io/yaml), and
both show the command's help, successfully, when given arguments or an output format
other than json or yaml. `metricsp --watch` prints the metrics every 500 ms until
Ctrl-C, like crictl's ticker.
"""

from __future__ import annotations

import argparse
from typing import Any

from crib.cribctl import output
from crib.cribctl.client import Command, CommandError
from crib.cribctl.container_cmds import call_rpc, watch
from crib.cribctl.endpoint import Endpoints
from crib.cribctl.image_cmds import CallError, show_help
from crib.cribctl.pod_cmds import connect, go_yaml_v2, protojson_text
from crib.proto.cri import api_pb2

OUTPUT_FORMATS = ("json", "yaml", "")


def _print_message(msg: Any, fmt: str) -> None:
    # fmt.Println of the marshalled text: one more newline after it.
    if fmt == "yaml":
        print(go_yaml_v2(output.proto_json(msg)), flush=True)
    else:
        print(protojson_text(msg), flush=True)


def _usable(args: argparse.Namespace) -> bool:
    """crictl's checks before it connects: no arguments, a known output format."""
    if args.ignored or args.output not in OUTPUT_FORMATS:
        show_help(args)
        return False
    return True


def cmd_metricdescs(args: argparse.Namespace, ep: Endpoints) -> None:
    if not _usable(args):
        return
    stub = connect(ep)
    try:
        response = call_rpc(stub.ListMetricDescriptors, api_pb2.ListMetricDescriptorsRequest(), ep.timeout)
    except CallError as exc:
        raise CommandError(f"get metric descriptors: list metric descriptors: {exc}") from None
    _print_message(api_pb2.ListMetricDescriptorsResponse(descriptors=response.descriptors), args.output)


def cmd_metricsp(args: argparse.Namespace, ep: Endpoints) -> None:
    if not _usable(args):
        return
    stub = connect(ep)

    def display() -> None:
        try:
            response = call_rpc(
                stub.ListPodSandboxMetrics, api_pb2.ListPodSandboxMetricsRequest(), ep.timeout
            )
        except CallError as exc:
            raise CommandError(f"get pod metrics: list pod sandbox metrics: {exc}") from None
        _print_message(api_pb2.ListPodSandboxMetricsResponse(pod_metrics=response.pod_metrics), args.output)

    if not args.watch:
        display()
        return
    watch(display)


def _add(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=help_text)
    p.set_defaults(subparser=p)
    p.add_argument("ignored", nargs="*", help=argparse.SUPPRESS)  # crictl shows its help for these
    p.add_argument("--output", "-o", default="", help="Output format, One of: json|yaml")
    return p


def register(sub: Any) -> dict[str, Command]:
    _add(
        sub,
        "metricdescs",
        "List metric descriptors. Returns information about the metrics available through the CRI.",
    )
    p = _add(
        sub,
        "metricsp",
        "List pod metrics. Metrics are unstructured key/value pairs gathered by CRI meant to replace "
        "cAdvisor's /metrics/cadvisor endpoint.",
    )
    p.add_argument("--watch", "-w", action="store_true", help="Watch pod metrics")
    return {"metricdescs": cmd_metricdescs, "metricsp": cmd_metricsp}
