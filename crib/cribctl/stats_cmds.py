"""crictl's resource usage commands: stats and statsp (tables of rates from two samples, or the
reply as JSON or YAML) and metricdescs and metricsp (the reply as it is).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from crib.cribctl import output
from crib.cribctl.client import CallError, Command, CommandError, call_error, call_rpc, connect
from crib.cribctl.endpoint import Endpoints
from crib.cribctl.golike import go_quote, go_sort, human_size
from crib.cribctl.output import go_yaml_v2, protojson_text
from crib.cribctl.util import (
    CLEAR_SCREEN,
    TRUNCATED_ID_LEN,
    GoFlag,
    SliceAppend,
    add_command,
    int_flag,
    parse_labels,
    show_help,
    table,
    truncated_id,
    watch,
)
from crib.proto.cri import api_pb2, api_pb2_grpc

STATS_COLUMNS = ["CONTAINER", "NAME", "CPU %", "MEM", "DISK", "INODES", "SWAP"]
STATSP_COLUMNS = ["POD", "POD ID", "CPU %", "MEM"]


# --- stats and statsp -----------------------------------------------------------------------------


def show_stats(
    fetch: Callable[[], list[Any]],
    response_of: Callable[[list[Any]], Message],
    table_of: Callable[[list[Any], list[Any]], str],
    args: argparse.Namespace,
    seconds: int,
    what: str,
) -> None:
    """stats and statsp: the reply as JSON/YAML, or a table of rates from two samples
    `seconds` apart; once, or again and again with --watch."""
    fmt = args.output or ""

    def display() -> None:
        first = fetch()
        if fmt in ("json", "yaml"):
            response = response_of(first)
            text = protojson_text(response) if fmt == "json" else go_yaml_v2(output.proto_json(response))
            print(text, flush=True)
            return
        if seconds > 0:
            time.sleep(seconds)
        sys.stdout.write(CLEAR_SCREEN + table_of(first, fetch()))
        sys.stdout.flush()

    try:
        if args.watch:
            watch(display)
        else:
            display()
    except CallError as exc:
        raise CommandError(f"{what}: {exc}") from None


def cpu_percent(old: api_pb2.ContainerStats, new: api_pb2.ContainerStats) -> float:
    """CPU % between two samples: core-nanoseconds used per nanosecond passed, as crictl."""
    usage = new.cpu.usage_core_nano_seconds.value
    if usage == 0:
        return 0.0  # only a running container gets a percentage
    duration = new.cpu.timestamp - old.cpu.timestamp
    if duration == 0:
        raise CommandError("cpu stat is not updated during sample")
    # Unsigned in Go: a counter that went back (a restart) wraps around, as there.
    used = (usage - old.cpu.usage_core_nano_seconds.value) % (1 << 64)
    return float(used) / float(duration) * 100


def stats_table(old: list[api_pb2.ContainerStats], new: list[api_pb2.ContainerStats], show_all: bool) -> str:
    """crictl's stats table from two samples: a container not in the first is left out, and
    without --all so is one with no CPU and memory use (not running)."""
    before = {s.attributes.id: s for s in old}
    rows = [STATS_COLUMNS]
    for s in new:
        usage, memory = s.cpu.usage_core_nano_seconds.value, s.memory.working_set_bytes.value
        if not show_all and usage == 0 and memory == 0:
            continue
        if s.attributes.id not in before:
            continue
        rows.append(
            [
                truncated_id(s.attributes.id),
                s.attributes.metadata.name,
                f"{cpu_percent(before[s.attributes.id], s):.2f}",
                human_size(float(memory)),
                human_size(float(s.writable_layer.used_bytes.value)),
                str(s.writable_layer.inodes_used.value),
                human_size(float(s.swap.swap_usage_bytes.value)),
            ]
        )
    return table(rows)


def _stats_once(
    stub: api_pb2_grpc.RuntimeServiceStub, ep: Endpoints, request: api_pb2.ListContainerStatsRequest
) -> list[api_pb2.ContainerStats]:
    stats = list(call_rpc(stub.ListContainerStats, request, ep.timeout).stats)
    go_sort(stats, lambda a, b: a.attributes.id < b.attributes.id)
    return stats


def cmd_stats(args: argparse.Namespace, ep: Endpoints) -> None:
    seconds = int_flag(args.seconds) if args.seconds is not None else 1
    if len(args.ids) > 1:
        show_help(args)
        return
    stub = connect(ep)
    labels = parse_labels(args.label or [])
    container_id = args.id or (args.ids[0] if args.ids else "")
    request = api_pb2.ListContainerStatsRequest(
        filter=api_pb2.ContainerStatsFilter(id=container_id, pod_sandbox_id=args.pod, label_selector=labels)
    )
    show_stats(
        lambda: _stats_once(stub, ep, request),
        lambda stats: api_pb2.ListContainerStatsResponse(stats=stats),
        lambda first, second: stats_table(first, second, args.all),
        args,
        seconds,
        "get container stats",
    )


def _pod_stats(
    stub: api_pb2_grpc.RuntimeServiceStub, ep: Endpoints, flt: api_pb2.PodSandboxStatsFilter
) -> list[api_pb2.PodSandboxStats]:
    try:
        reply = stub.ListPodSandboxStats(api_pb2.ListPodSandboxStatsRequest(filter=flt), timeout=ep.timeout)
    except grpc.RpcError as exc:
        raise CallError(f"list pod sandbox stats: {call_error(exc)}") from None
    stats = list(reply.stats)
    go_sort(stats, lambda a, b: a.attributes.id < b.attributes.id)
    return stats


def _usage(s: api_pb2.PodSandboxStats) -> tuple[int, int, int]:
    """CPU core-nanoseconds, working set bytes and the CPU sample's time, Linux or Windows."""
    if s.HasField("linux") and s.HasField("windows"):
        raise CommandError(
            f"get pod stats: pod {go_quote(s.attributes.id[:TRUNCATED_ID_LEN])} has both linux and "
            "windows stats which is not supported"
        )
    side: Any = s.linux if s.HasField("linux") else s.windows if s.HasField("windows") else None
    if side is None:
        return 0, 0, 0
    return side.cpu.usage_core_nano_seconds.value, side.memory.working_set_bytes.value, side.cpu.timestamp


def statsp_table(old: list[api_pb2.PodSandboxStats], new: list[api_pb2.PodSandboxStats]) -> str:
    """crictl's statsp table from two samples: a pod without CPU and memory use, or not in
    the first sample, is left out."""
    before = {s.attributes.id: s for s in old}
    rows = [STATSP_COLUMNS]
    for s in new:
        cpu, mem, ts = _usage(s)
        if cpu == 0 and mem == 0:
            continue
        if s.attributes.id not in before:
            continue
        old_cpu, _, old_ts = _usage(before[s.attributes.id])
        percent = 0.0
        if cpu != 0:
            if ts == old_ts:
                raise CommandError("get pod stats: cpu stat is not updated during sample")
            # Unsigned in Go: a counter that went back wraps around, as there.
            percent = float((cpu - old_cpu) % (1 << 64)) / float(ts - old_ts) * 100
        rows.append(
            [
                s.attributes.metadata.name,
                s.attributes.id[:TRUNCATED_ID_LEN],
                f"{percent:.2f}",
                human_size(float(mem)),
            ]
        )
    return table(rows)


def cmd_statsp(args: argparse.Namespace, ep: Endpoints) -> None:
    pod_id = args.id or (args.ids[0] if args.ids else "")
    if len(args.ids) > 1:
        show_help(args)
        return
    try:
        stub = connect(ep)
    except CommandError as exc:
        raise CommandError(f"get runtime service: {exc}") from None
    seconds = int_flag(args.seconds) if args.seconds is not None else 1
    try:
        labels = parse_labels(args.label or [])
    except CommandError as exc:
        raise CommandError(f"parse pod labels: {exc}") from None
    flt = api_pb2.PodSandboxStatsFilter(id=pod_id, label_selector=labels)
    show_stats(
        lambda: _pod_stats(stub, ep, flt),
        lambda stats: api_pb2.ListPodSandboxStatsResponse(stats=stats),
        statsp_table,
        args,
        seconds,
        "get pod stats",
    )


# --- metricdescs and metricsp ---------------------------------------------------------------------

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


# --- registration ---------------------------------------------------------------------------------


def _metrics_command(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    p = add_command(sub, name, help_text)
    p.add_argument("ignored", nargs="*", help=argparse.SUPPRESS)  # crictl shows its help for these
    p.add_argument("--output", "-o", default="", help="Output format, One of: json|yaml")
    return p


def register(sub: Any) -> dict[str, Command]:
    """Adds stats, statsp, metricdescs and metricsp; returns {name or alias: command}."""
    p = add_command(sub, "stats", "list container resource usage statistics")
    p.add_argument("ids", nargs="*", metavar="ID")
    p.add_argument("--all", "-a", action="store_true", help="show all containers (default: running ones)")
    p.add_argument("--id", default="", help="filter by container id")
    p.add_argument("--pod", "-p", default="", help="filter by pod id")
    p.add_argument("--label", action=SliceAppend, metavar="KEY=VALUE", help="filter by key=value label")
    p.add_argument("--output", "-o", default="", help="output format, one of: json|yaml|table")
    p.add_argument(
        "--seconds", "-s", action=GoFlag, metavar="N", help="sample duration for CPU usage (default 1)"
    )
    p.add_argument("--watch", "-w", action="store_true", help="watch the statistics")

    p = add_command(
        sub,
        "statsp",
        "list pod statistics. Stats represent a structured API that will fulfill the "
        "Kubelet's /stats/summary endpoint.",
    )
    p.add_argument("ids", nargs="*", metavar="ID")
    p.add_argument("--id", default="", help="filter by pod id")
    p.add_argument("--label", action=SliceAppend, metavar="KEY=VALUE", help="filter by key=value label")
    p.add_argument("--output", "-o", default="", help="output format, one of: json|yaml|table")
    p.add_argument(
        "--seconds",
        "-s",
        action=GoFlag,
        metavar="N",
        help="sample duration for CPU usage in seconds (default 1)",
    )
    p.add_argument("--watch", "-w", action="store_true", help="watch pod resources")

    _metrics_command(
        sub,
        "metricdescs",
        "List metric descriptors. Returns information about the metrics available through the CRI.",
    )

    p = _metrics_command(
        sub,
        "metricsp",
        "List pod metrics. Metrics are unstructured key/value pairs gathered by CRI meant to replace "
        "cAdvisor's /metrics/cadvisor endpoint.",
    )
    p.add_argument("--watch", "-w", action="store_true", help="Watch pod metrics")

    return {
        "stats": cmd_stats,
        "statsp": cmd_statsp,
        "metricdescs": cmd_metricdescs,
        "metricsp": cmd_metricsp,
    }
