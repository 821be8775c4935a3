"""crictl's pod sandbox commands (its sandbox.go): runp, pods, inspectp, stopp and rmp."""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

from crib.cribctl import output
from crib.cribctl.client import CallError, Command, CommandError, call_error, call_rpc, connect
from crib.cribctl.endpoint import Endpoints
from crib.cribctl.golike import go_quote, go_string_map, human_duration, proto_text
from crib.cribctl.gotime import go_rfc3339_nano, go_time_string, since
from crib.cribctl.output import go_yaml_v2, protojson_text, render_go_statuses
from crib.cribctl.util import (
    GoFlag,
    SliceAppend,
    add_command,
    duration_flag,
    enum_name,
    int_flag,
    matches_regex,
    newest_first,
    parse_labels,
    pod_config,
    say,
    show_help,
    sorted_pairs,
    table,
    truncated_id,
    warn,
)
from crib.proto.cri import api_pb2, api_pb2_grpc

POD_COLUMNS = ["POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME"]


# --- listing and showing pods ---------------------------------------------------------------------


def state_filter(state: str) -> api_pb2.PodSandboxStateValue | None:
    """--state: ready or notready, any case; anything else is fatal in crictl."""
    if not state:
        return None
    lowered = state.lower()
    if lowered == "ready":
        return api_pb2.PodSandboxStateValue(state=api_pb2.SANDBOX_READY)
    if lowered == "notready":
        return api_pb2.PodSandboxStateValue(state=api_pb2.SANDBOX_NOTREADY)
    raise CommandError("--state should be ready or notready")


def pod_filter(
    pod_id: str = "", state: str = "", labels: dict[str, str] | None = None
) -> api_pb2.PodSandboxFilter:
    """The part of the filtering crictl leaves to the runtime: ID (crib: a prefix), state and labels."""
    f = api_pb2.PodSandboxFilter(id=pod_id, label_selector=labels or {})
    st = state_filter(state)
    if st is not None:
        f.state.CopyFrom(st)
    return f


def select_pods(
    pods: list[api_pb2.PodSandbox], name: str = "", namespace: str = "", latest: bool = False, last: int = 0
) -> list[api_pb2.PodSandbox]:
    """crictl's getSandboxesList: name and namespace regexes, newest first, then --latest/--last."""
    kept = [
        p
        for p in pods
        if p.HasField("metadata")
        and matches_regex(name, p.metadata.name)
        and matches_regex(namespace, p.metadata.namespace)
    ]
    return newest_first(kept, latest, last)


def pod_state(state: int) -> str:
    if state == api_pb2.SANDBOX_READY:
        return "Ready"
    if state == api_pb2.SANDBOX_NOTREADY:
        return "NotReady"
    known = api_pb2.PodSandboxState.DESCRIPTOR.values_by_number.get(state)
    raise CommandError(f"Unknown pod state {go_quote(known.name if known else str(state))}")


def runtime_handler(pod: api_pb2.PodSandbox) -> str:
    return pod.runtime_handler or "(default)"


def pods_table(pods: list[api_pb2.PodSandbox], now_ns: int, no_trunc: bool = False) -> str:
    """`crictl pods` as a table (tabwriter 20/1/3), CREATED relative to `now_ns`."""
    rows = [POD_COLUMNS]
    for pod in pods:
        rows.append(
            [
                pod.id if no_trunc else truncated_id(pod.id),
                human_duration(since(pod.created_at, now_ns)) + " ago",
                pod_state(pod.state),
                pod.metadata.name,
                pod.metadata.namespace,
                str(pod.metadata.attempt),
                runtime_handler(pod),
            ]
        )
    return table(rows)


def pod_verbose(pod: api_pb2.PodSandbox) -> str:
    """One pod of `crictl pods -v`, with its trailing blank line."""
    lines = [f"ID: {pod.id}"]
    if pod.HasField("metadata"):
        md = pod.metadata
        lines += [f"Name: {md.name}"] if md.name else []
        lines += [f"UID: {md.uid}"] if md.uid else []
        lines += [f"Namespace: {md.namespace}"] if md.namespace else []
        lines += [f"Attempt: {md.attempt}"] if md.attempt else []
    lines.append(f"Status: {pod_state(pod.state)}")
    lines.append(f"Created: {go_time_string(pod.created_at)}")
    lines += sorted_pairs("Labels", pod.labels)
    lines += sorted_pairs("Annotations", pod.annotations)
    lines.append(f"Runtime: {runtime_handler(pod)}")
    return "\n".join(lines) + "\n\n"


def pod_status_table(r: api_pb2.PodSandboxStatusResponse, verbose: bool) -> str:
    """crictl's outputPodSandboxStatusTable."""
    status = r.status
    lines = [f"ID: {status.id}"]
    if status.HasField("metadata"):
        md = status.metadata
        lines += [f"Name: {md.name}"] if md.name else []
        lines += [f"UID: {md.uid}"] if md.uid else []
        lines += [f"Namespace: {md.namespace}"] if md.namespace else []
        lines.append(f"Attempt: {md.attempt}")
    lines.append(f"Status: {enum_name(api_pb2.PodSandboxState, status.state)}")
    lines.append(f"Created: {go_time_string(status.created_at)}")
    if status.HasField("network"):
        lines.append(f"IP Addresses: {status.network.ip}")
        lines += [f"Additional IP: {ip.ip}" for ip in status.network.additional_ips]
    lines += sorted_pairs("Labels", status.labels)
    lines += sorted_pairs("Annotations", status.annotations)
    if verbose:
        lines.append(f"Info: {go_string_map(dict(r.info))}")
    return "\n".join(lines) + "\n"


def status_json(status: api_pb2.PodSandboxStatus) -> dict[str, Any]:
    """crictl's marshalPodSandboxStatus: protojson with createdAt as RFC 3339 in the local zone.

    It re-marshals by the Go struct's fields, so a message field left unset
    comes out as null instead of being left out.
    """
    doc: dict[str, Any] = dict.fromkeys((f.json_name for f in status.DESCRIPTOR.fields), None)
    doc.update(output.proto_json(status))
    doc["createdAt"] = go_rfc3339_nano(status.created_at)
    return doc


def verify_sandbox_status(status: api_pb2.PodSandboxStatus) -> str | None:
    """The CRI client's verifySandboxStatus: what it refuses in a runtime's answer."""
    if not status.id:
        return "status.Id is not set"
    if not status.HasField("metadata"):
        return "status.Metadata is not set"
    md = status.metadata
    if not md.name or not md.namespace or not md.uid:
        return (
            f"metadata.Name, metadata.Namespace or metadata.Uid is not in metadata {go_quote(proto_text(md))}"
        )
    if not status.created_at:
        return "status.CreatedAt is not set"
    return None


# --- calls ----------------------------------------------------------------------------------------


def list_pods(
    stub: api_pb2_grpc.RuntimeServiceStub,
    ep: Endpoints,
    *,
    pod_id: str = "",
    state: str = "",
    labels: dict[str, str] | None = None,
    name: str = "",
    namespace: str = "",
    latest: bool = False,
    last: int = 0,
) -> list[api_pb2.PodSandbox]:
    """crictl's ListPodSandboxes; CallError for a failed call, CommandError for a bad --state."""
    request = api_pb2.ListPodSandboxRequest(filter=pod_filter(pod_id, state, labels))
    try:
        r = call_rpc(stub.ListPodSandbox, request, ep.timeout)
    except CallError as exc:
        raise CallError(f"call list sandboxes RPC: {exc}") from None
    return select_pods(list(r.items), name, namespace, latest, last)


def _list_by_flags(
    stub: api_pb2_grpc.RuntimeServiceStub,
    ep: Endpoints,
    args: argparse.Namespace,
    last: int,
    labels: dict[str, str],
    pod_id: str = "",
) -> list[api_pb2.PodSandbox]:
    """list_pods with the filter flags that pods and inspectp share."""
    return list_pods(
        stub,
        ep,
        pod_id=pod_id,
        state=args.state or "",
        labels=labels,
        name=args.name or "",
        namespace=args.namespace or "",
        latest=args.latest,
        last=last,
    )


def pod_status(
    stub: api_pb2_grpc.RuntimeServiceStub, ep: Endpoints, pod_id: str, verbose: bool
) -> api_pb2.PodSandboxStatusResponse:
    request = api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=verbose)
    r = call_rpc(stub.PodSandboxStatus, request, ep.timeout)
    if r.HasField("status") and (problem := verify_sandbox_status(r.status)):
        raise CallError(problem)
    return r


def stop_pod(stub: api_pb2_grpc.RuntimeServiceStub, ep: Endpoints, pod_id: str) -> None:
    """crictl's StopPodSandbox: prints "Stopped sandbox <id>"; CallError on failure."""
    if not pod_id:
        raise CallError("ID cannot be empty")
    call_rpc(stub.StopPodSandbox, api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id), ep.timeout)
    say(f"Stopped sandbox {pod_id}")


def remove_pod(stub: api_pb2_grpc.RuntimeServiceStub, ep: Endpoints, pod_id: str) -> None:
    if not pod_id:
        raise CallError("ID cannot be empty")
    call_rpc(stub.RemovePodSandbox, api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id), ep.timeout)
    say(f"Removed sandbox {pod_id}")


def run_pod_sandbox(
    stub: api_pb2_grpc.RuntimeServiceStub, config: api_pb2.PodSandboxConfig, handler: str, timeout: float
) -> str:
    """crictl's RunPodSandbox: the new pod's ID; CallError on failure."""
    request = api_pb2.RunPodSandboxRequest(config=config, runtime_handler=handler)
    # The CRI client doubles the timeout for sandbox operations.
    pod_id = call_rpc(stub.RunPodSandbox, request, 2 * timeout).pod_sandbox_id
    if not pod_id:
        raise CallError(f"PodSandboxId is not set for sandbox {go_quote(proto_text(config.metadata))}")
    return pod_id


# --- commands -------------------------------------------------------------------------------------


def cmd_runp(args: argparse.Namespace, ep: Endpoints) -> None:
    cancel_timeout = duration_flag(args.cancel_timeout)
    if len(args.pod_config) != 1 or not args.pod_config[0]:
        show_help(args)
        return
    path = args.pod_config[0]
    if path in ("jsonschema", "js") and not Path(path).exists():
        raise CommandError(f"runp {path}: cribctl does not print the PodSandboxConfig JSON schema")
    # The connection timeout, which --cancel-timeout replaces, also sets RunPodSandbox's deadline.
    timeout = cancel_timeout or ep.timeout
    stub = connect(ep, timeout)
    config = pod_config(path)
    try:
        pod_id = run_pod_sandbox(stub, config, args.runtime or "", timeout)
    except CallError as exc:
        raise CommandError(f"run pod sandbox: {exc}") from None
    print(pod_id)


def cmd_pods(args: argparse.Namespace, ep: Endpoints) -> None:
    last = int_flag(args.last)
    stub = connect(ep)
    labels = parse_labels(args.label or [])
    try:
        pods = _list_by_flags(stub, ep, args, last, labels, pod_id=args.id or "")
    except CallError as exc:
        raise CommandError(f"listing pod sandboxes: list pod sandboxes: {exc}") from None
    fmt = args.output
    if fmt == "json":
        print(protojson_text(api_pb2.ListPodSandboxResponse(items=pods)))
        return
    if fmt == "yaml":
        print(go_yaml_v2(output.proto_json(api_pb2.ListPodSandboxResponse(items=pods))))
        return
    if fmt != "table":
        raise CommandError(f"listing pod sandboxes: unsupported output format {go_quote(fmt)}")
    if args.quiet:
        sys.stdout.write("".join(f"{pod.id}\n" for pod in pods))
    elif args.verbose:
        for pod in pods:
            # Printed as it goes, as crictl: earlier pods show before a pod with a bad state.
            sys.stdout.write(pod_verbose(pod))
    else:
        sys.stdout.write(pods_table(pods, time.time_ns(), args.no_trunc))


def cmd_inspectp(args: argparse.Namespace, ep: Endpoints) -> None:
    last = int_flag(args.last)
    stub = connect(ep)
    ids = list(args.ids)
    if not ids:
        try:
            labels = parse_labels(args.label or [])
        except CommandError as exc:
            raise CommandError(f"parse label string slice: {exc}") from None
        try:
            pods = _list_by_flags(stub, ep, args, last, labels)
        except CallError as exc:
            raise CommandError(f"listing pod sandboxes: {exc}") from None
        ids = [pod.id for pod in pods]
    if not ids:
        warn("No IDs provided or nothing found per filter")
        show_help(args)
        return
    verbose = not args.quiet

    def status_of(pod_id: str) -> api_pb2.PodSandboxStatusResponse:
        try:
            return pod_status(stub, ep, pod_id, verbose)
        except CallError as exc:
            raise CommandError(f"get the status of pod sandboxes: get pod sandbox status: {exc}") from None

    output.show_statuses(
        ids,
        status_of,
        lambda r: pod_status_table(r, verbose),
        lambda r: output.status_document(status_json(r.status), r.info),
        args.output or "json",
        lambda docs, fmt: render_go_statuses(docs, fmt, "pod sandboxes"),
    )


def cmd_stopp(args: argparse.Namespace, ep: Endpoints) -> None:
    if not args.ids:
        show_help(args)
        return
    stub = connect(ep)
    for pod_id in args.ids:
        try:
            stop_pod(stub, ep, pod_id)
        except CallError as exc:
            raise CommandError(f"stopping the pod sandbox {go_quote(pod_id)}: {exc}") from None


def _remove_one(stub: api_pb2_grpc.RuntimeServiceStub, ep: Endpoints, pod_id: str, force: bool) -> str | None:
    """One pod of rmp: the error text, or None."""
    quoted = go_quote(pod_id)
    try:
        r = pod_status(stub, ep, pod_id, False)
    except CallError as exc:
        return f"getting sandbox status of pod {quoted}: {exc}"
    if r.status.state == api_pb2.SANDBOX_READY:
        if not force:
            return f"pod sandbox {quoted} is running, please stop it first"
        try:
            stop_pod(stub, ep, pod_id)
        except CallError as exc:
            return f"stopping the pod sandbox {quoted} failed: {exc}"
    try:
        remove_pod(stub, ep, pod_id)
    except CallError as exc:
        return f"removing the pod sandbox {quoted}: {exc}"
    return None


# crictl removes every pod at once; a bound keeps a huge --all from opening thousands of threads.
RMP_WORKERS = 16


def cmd_rmp(args: argparse.Namespace, ep: Endpoints) -> None:
    stub = connect(ep)
    ids = list(args.ids)
    if args.all:
        try:
            r = stub.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=ep.timeout)
        except grpc.RpcError as exc:
            raise CommandError(call_error(exc)) from None
        ids = [pod.id for pod in r.items]
    if not ids:
        if args.all:
            warn("No pods to remove")
            return
        show_help(args)
        return
    # Concurrently, as crictl: output and errors come in the order the pods finish.
    errors: list[str] = []
    with ThreadPoolExecutor(max_workers=min(len(ids), RMP_WORKERS)) as pool:
        futures = [pool.submit(_remove_one, stub, ep, pod_id, args.force) for pod_id in ids]
        for future in futures:
            error = future.result()
            if error:
                errors.append(error)
    if errors:
        raise CommandError("\n".join(errors))


# --- registration ---------------------------------------------------------------------------------


def _list_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default="", help="filter by pod name regular expression pattern")
    p.add_argument("--namespace", default="", help="filter by pod namespace regular expression pattern")
    p.add_argument("--state", "-s", default="", help="filter by pod state")
    p.add_argument("--label", action=SliceAppend, metavar="KEY=VALUE", help="filter by key=value label")
    p.add_argument("--latest", "-l", action="store_true", help="show the most recently created pod")
    p.add_argument(
        "--last",
        "-n",
        action=GoFlag,
        metavar="N",
        help="show last n recently created pods. Set 0 for unlimited",
    )


def register(sub: Any) -> dict[str, Command]:
    """Adds the pod subcommands; returns {name or alias: command}."""
    p = add_command(sub, "runp", "run a new pod")
    p.add_argument("pod_config", nargs="*", metavar="pod-config.[json|yaml]")
    p.add_argument(
        "--runtime", "-r", default="", help="runtime handler to use, as the container runtime defines them"
    )
    p.add_argument(
        "--cancel-timeout",
        "-T",
        action=GoFlag,
        metavar="DURATION",
        help="how long to wait for the pod before cancelling the request, e.g. 2m (default: --timeout)",
    )

    p = add_command(sub, "pods", "list pods")
    p.add_argument("ignored", nargs="*", help=argparse.SUPPRESS)  # crictl ignores arguments here
    p.add_argument("--id", default="", help="filter by pod id")
    _list_filters(p)
    p.add_argument("--verbose", "-v", action="store_true", help="show verbose info for pods")
    p.add_argument("--quiet", "-q", action="store_true", help="list only pod IDs")
    p.add_argument("--output", "-o", default="table", help="output format, one of: json|yaml|table")
    p.add_argument("--no-trunc", action="store_true", help="show output without truncating the ID")

    p = add_command(sub, "inspectp", "display the status of one or more pods")
    p.add_argument("ids", nargs="*", metavar="POD-ID")
    p.add_argument("--output", "-o", default="", help="output format, one of: json|yaml|table (default json)")
    p.add_argument("--quiet", "-q", action="store_true", help="do not show verbose information")
    p.add_argument("--template", default="", help=argparse.SUPPRESS)  # main.py shows it
    _list_filters(p)

    p = add_command(sub, "stopp", "stop one or more running pods")
    p.add_argument("ids", nargs="*", metavar="POD-ID")

    p = add_command(sub, "rmp", "remove one or more pods")
    p.add_argument("ids", nargs="*", metavar="POD-ID")
    p.add_argument(
        "--force", "-f", action="store_true", help="force removal of the pod sandbox, disregarding if running"
    )
    p.add_argument("--all", "-a", action="store_true", help="remove all pods")

    return {
        "runp": cmd_runp,
        "pods": cmd_pods,
        "inspectp": cmd_inspectp,
        "stopp": cmd_stopp,
        "rmp": cmd_rmp,
    }
