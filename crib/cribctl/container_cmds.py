"""crictl's container commands (its container.go): start, stop, rm, ps, inspect, update and
checkpoint, and the container calls and tables that create, run, exec and logs share.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import grpc

from crib.cribctl import output
from crib.cribctl.client import CallError, Command, CommandError, call_error, call_rpc, connect, connect_image
from crib.cribctl.endpoint import Endpoints
from crib.cribctl.golike import (
    go_parse_int,
    go_path_error,
    go_quote,
    go_string_map,
    human_duration,
    proto_text,
)
from crib.cribctl.gotime import go_rfc3339_nano, is_digest, since
from crib.cribctl.image_cmds import image_status
from crib.cribctl.output import go_yaml_v2, protojson_text, render_go_statuses
from crib.cribctl.util import (
    GoFlag,
    SliceAppend,
    add_command,
    enum_name,
    int_flag,
    matches_regex,
    newest_first,
    parse_labels,
    say,
    show_help,
    sorted_pairs,
    table,
    truncated_id,
    warn,
)
from crib.proto.cri import api_pb2, api_pb2_grpc

PS_COLUMNS = ["CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD ID", "POD", "NAMESPACE"]
POD_NAME_LABEL = "io.kubernetes.pod.name"
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"


# --- listing and showing containers ---------------------------------------------------------------

_STATE_NAMES = {
    api_pb2.CONTAINER_CREATED: "Created",
    api_pb2.CONTAINER_RUNNING: "Running",
    api_pb2.CONTAINER_EXITED: "Exited",
    api_pb2.CONTAINER_UNKNOWN: "Unknown",
}

_STATE_FILTERS = {
    "created": api_pb2.CONTAINER_CREATED,
    "running": api_pb2.CONTAINER_RUNNING,
    "exited": api_pb2.CONTAINER_EXITED,
    "unknown": api_pb2.CONTAINER_UNKNOWN,
}


def container_state(state: int) -> str:
    """convertContainerState; an unknown value is fatal in crictl."""
    if state in _STATE_NAMES:
        return _STATE_NAMES[state]
    raise CommandError(f"Unknown container state {go_quote(enum_name(api_pb2.ContainerState, state))}")


def container_filter(
    container_id: str = "",
    pod_id: str = "",
    state: str = "",
    labels: dict[str, str] | None = None,
    show_all: bool = False,
    latest: bool = False,
    last: int = 0,
) -> api_pb2.ContainerFilter:
    """What crictl's ListContainers asks the runtime: running ones only unless --all or --state,
    any state with --latest/--last."""
    f = api_pb2.ContainerFilter(id=container_id, pod_sandbox_id=pod_id, label_selector=labels or {})
    if state:
        wanted = _STATE_FILTERS.get(state.lower())
        if wanted is None:
            raise CommandError("--state should be one of created, running, exited or unknown")
        f.state.state = wanted
    elif not show_all:
        f.state.state = api_pb2.CONTAINER_RUNNING
    if latest or last > 0:
        f.ClearField("state")
    return f


def pod_name(container: api_pb2.Container) -> str:
    return container.labels.get(POD_NAME_LABEL, "unknown")


def pod_namespace(container: api_pb2.Container) -> str:
    return container.labels.get(POD_NAMESPACE_LABEL, "unknown")


def select_containers(
    containers: list[api_pb2.Container],
    name: str = "",
    namespace: str = "",
    latest: bool = False,
    last: int = 0,
    image_matches: Callable[[api_pb2.Container], bool] = lambda c: True,
) -> list[api_pb2.Container]:
    """crictl's getContainersList: image, name and pod namespace, newest first, then --latest/--last."""
    kept = [
        c
        for c in containers
        if image_matches(c)
        and c.HasField("metadata")
        and matches_regex(name, c.metadata.name)
        and matches_regex(namespace, pod_namespace(c))
    ]
    return newest_first(kept, latest, last)


def table_image(image: str, no_trunc: bool) -> str:
    """The IMAGE cell: a digest (an image ID, as the kubelet sets it) is cut to 13 hex digits."""
    if not no_trunc and is_digest(image):
        return truncated_id(image, image.partition(":")[0] + ":")
    return image


def created_ago(created_at: int, now_ns: int) -> str:
    return human_duration(since(created_at, now_ns)) + " ago"


def containers_table(
    containers: list[api_pb2.Container],
    now_ns: int,
    no_trunc: bool = False,
    resolve_image: Callable[[str], str] | None = None,
) -> str:
    """`crictl ps` as a table (tabwriter 20/1/3)."""
    rows = [PS_COLUMNS]
    for c in containers:
        image = table_image(c.image.image, no_trunc)
        if resolve_image is not None:
            image = resolve_image(image)
        rows.append(
            [
                c.id if no_trunc else truncated_id(c.id),
                image,
                created_ago(c.created_at, now_ns),
                container_state(c.state),
                c.metadata.name,
                str(c.metadata.attempt),
                c.pod_sandbox_id if no_trunc else truncated_id(c.pod_sandbox_id),
                pod_name(c),
                pod_namespace(c),
            ]
        )
    return table(rows)


def container_verbose(c: api_pb2.Container, now_ns: int) -> str:
    """One container of `crictl ps -v`, with its trailing blank line."""
    lines = [f"ID: {c.id}", f"PodID: {c.pod_sandbox_id}", f"Namespace: {pod_namespace(c)}"]
    if c.HasField("metadata"):
        lines += [f"Name: {c.metadata.name}"] if c.metadata.name else []
        lines.append(f"Attempt: {c.metadata.attempt}")
    lines.append(f"State: {container_state(c.state)}")
    if c.HasField("image"):
        lines.append(f"Image: {c.image.image}")
    lines.append(f"Created: {created_ago(c.created_at, now_ns)}")
    lines += sorted_pairs("Labels", c.labels)
    lines += sorted_pairs("Annotations", c.annotations)
    return "\n".join(lines) + "\n\n"


def container_status_table(r: api_pb2.ContainerStatusResponse, verbose: bool, now_ns: int) -> str:
    """crictl's outputContainerStatusTable."""
    st = r.status
    lines = [f"ID: {st.id}"]
    if st.HasField("metadata"):
        lines += [f"Name: {st.metadata.name}"] if st.metadata.name else []
        lines += [f"Attempt: {st.metadata.attempt}"] if st.metadata.attempt else []
    lines.append(f"State: {enum_name(api_pb2.ContainerState, st.state)}")
    lines.append(f"Created: {created_ago(st.created_at, now_ns)}")
    if st.state != api_pb2.CONTAINER_CREATED:
        lines.append(f"Started: {created_ago(st.started_at, now_ns)}")
    if st.state == api_pb2.CONTAINER_EXITED:
        if st.finished_at > 0:
            lines.append(f"Finished: {created_ago(st.finished_at, now_ns)}")
        lines.append(f"Exit Code: {st.exit_code}")
    lines += sorted_pairs("Labels", st.labels)
    lines += sorted_pairs("Annotations", st.annotations)
    if verbose:
        lines.append(f"Info: {go_string_map(dict(r.info))}")
    return "\n".join(lines) + "\n"


_GO_ZERO_TIME_RFC3339 = "0001-01-01T00:00:00Z"


def container_status_json(st: api_pb2.ContainerStatus) -> dict[str, Any]:
    """crictl's marshalContainerStatus: protojson, the three times as RFC 3339 in the local zone
    (Go's zero time for a start or finish that has not happened), unset messages as null."""
    doc: dict[str, Any] = dict.fromkeys((f.json_name for f in st.DESCRIPTOR.fields), None)
    doc.update(output.proto_json(st))
    doc["createdAt"] = go_rfc3339_nano(st.created_at)
    started = st.state != api_pb2.CONTAINER_CREATED
    finished = st.state == api_pb2.CONTAINER_EXITED or (
        st.state == api_pb2.CONTAINER_UNKNOWN and st.finished_at > 0
    )
    doc["startedAt"] = go_rfc3339_nano(st.started_at) if started else _GO_ZERO_TIME_RFC3339
    doc["finishedAt"] = go_rfc3339_nano(st.finished_at) if finished else _GO_ZERO_TIME_RFC3339
    return doc


def verify_container_status(st: api_pb2.ContainerStatus) -> str | None:
    """The CRI client's verifyContainerStatus: what it refuses in a runtime's answer."""
    if not st.id:
        return "status.Id is not set"
    if not st.HasField("metadata"):
        return "status.Metadata is not set"
    if not st.metadata.name:
        return f"metadata.Name is not in metadata {go_quote(proto_text(st.metadata))}"
    if not st.created_at:
        return "status.CreatedAt is not set"
    if not st.HasField("image") or not st.image.image:
        return "status.Image is not set"
    if not st.image_ref:
        return "status.ImageRef is not set"
    return None


# --- calls ----------------------------------------------------------------------------------------


def list_containers(
    stub: api_pb2_grpc.RuntimeServiceStub,
    ep: Endpoints,
    f: api_pb2.ContainerFilter,
) -> list[api_pb2.Container]:
    try:
        r = call_rpc(stub.ListContainers, api_pb2.ListContainersRequest(filter=f), ep.timeout)
    except CallError as exc:
        raise CallError(f"call list containers RPC: {exc}") from None
    return list(r.containers)


def image_matcher(
    images: api_pb2_grpc.ImageServiceStub, ep: Endpoints, image: str
) -> Callable[[api_pb2.Container], bool]:
    """crictl's matchesImage: the same image ID as --image (both looked up for each container)."""

    def matches(c: api_pb2.Container) -> bool:
        if not image:
            return True
        try:
            wanted = image_status(images, ep, image, False)
            have = image_status(images, ep, c.image.image, False)
        except CallError as exc:
            raise CallError(f"check image match: {exc}") from None
        if not wanted.HasField("image") or not have.HasField("image"):
            return False
        return wanted.image.id == have.image.id

    return matches


def find_containers(
    stub: api_pb2_grpc.RuntimeServiceStub,
    images: api_pb2_grpc.ImageServiceStub | None,
    ep: Endpoints,
    *,
    container_id: str = "",
    pod_id: str = "",
    state: str = "",
    labels: dict[str, str] | None = None,
    show_all: bool = False,
    latest: bool = False,
    last: int = 0,
    name: str = "",
    namespace: str = "",
    image: str = "",
) -> list[api_pb2.Container]:
    """crictl's ListContainers with its listOptions; CallError for a failed call."""
    f = container_filter(container_id, pod_id, state, labels, show_all, latest, last)
    found = list_containers(stub, ep, f)
    matcher = image_matcher(images, ep, image) if images is not None else (lambda c: True)
    return select_containers(found, name, namespace, latest, last, matcher)


def _find_by_flags(
    stub: api_pb2_grpc.RuntimeServiceStub,
    images: api_pb2_grpc.ImageServiceStub,
    ep: Endpoints,
    args: argparse.Namespace,
    last: int,
    labels: dict[str, str],
    container_id: str = "",
) -> list[api_pb2.Container]:
    """find_containers with the filter flags that ps and inspect share."""
    return find_containers(
        stub,
        images,
        ep,
        container_id=container_id,
        pod_id=args.pod,
        state=args.state,
        labels=labels,
        show_all=args.all,
        latest=args.latest,
        last=last,
        name=args.name,
        namespace=args.namespace,
        image=args.image,
    )


def container_status(
    stub: api_pb2_grpc.RuntimeServiceStub, ep: Endpoints, container_id: str, verbose: bool
) -> api_pb2.ContainerStatusResponse:
    r = call_rpc(
        stub.ContainerStatus,
        api_pb2.ContainerStatusRequest(container_id=container_id, verbose=verbose),
        ep.timeout,
    )
    if r.HasField("status") and (problem := verify_container_status(r.status)):
        raise CallError(problem)
    return r


def start_container(stub: api_pb2_grpc.RuntimeServiceStub, ep: Endpoints, container_id: str) -> None:
    if not container_id:
        raise CallError("ID cannot be empty")
    call_rpc(stub.StartContainer, api_pb2.StartContainerRequest(container_id=container_id), ep.timeout)
    say(container_id)


def stop_container(
    stub: api_pb2_grpc.RuntimeServiceStub, ep: Endpoints, container_id: str, timeout: int
) -> None:
    if not container_id:
        raise CallError("ID cannot be empty")
    request = api_pb2.StopContainerRequest(container_id=container_id, timeout=timeout)
    # The CRI client leaves the grace period on top of its own timeout for the kill and the reply.
    call_rpc(stub.StopContainer, request, ep.timeout + timeout)
    say(container_id)


def remove_container(stub: api_pb2_grpc.RuntimeServiceStub, ep: Endpoints, container_id: str) -> None:
    if not container_id:
        raise CallError("ID cannot be empty")
    call_rpc(stub.RemoveContainer, api_pb2.RemoveContainerRequest(container_id=container_id), ep.timeout)
    say(container_id)


# --- commands -------------------------------------------------------------------------------------


def cmd_start(args: argparse.Namespace, ep: Endpoints) -> None:
    if not args.ids:
        raise CommandError("ID cannot be empty")
    stub = connect(ep)
    for container_id in args.ids:
        try:
            start_container(stub, ep, container_id)
        except CallError as exc:
            raise CommandError(f"starting the container {go_quote(container_id)}: {exc}") from None


def cmd_stop(args: argparse.Namespace, ep: Endpoints) -> None:
    grace = int_flag(args.stop_timeout)
    stub = connect(ep)
    if args.all and args.ids:
        raise CommandError("cannot specify CONTAINER-ID(s) when using --all")
    if args.all:
        try:
            running = list_containers(stub, ep, container_filter(state="running"))
        except CallError as exc:
            raise CommandError(f"listing containers: {exc}") from None
        if not running:
            print("No running containers found.")
            return
        ids = [c.id for c in select_containers(running)]
    elif not args.ids:
        raise CommandError("you must specify at least one CONTAINER-ID or use --all")
    else:
        ids = list(args.ids)
    for container_id in ids:
        try:
            stop_container(stub, ep, container_id, grace)
        except CallError as exc:
            raise CommandError(f"stopping the container {go_quote(container_id)}: {exc}") from None


def _remove_logs(container_id: str, log_path: str) -> None:
    """crictl removes the log file and its rotations (LOG.*) itself after RemoveContainer."""
    if not log_path:
        return
    for path in [*sorted(glob.glob(log_path + ".*")), log_path]:
        try:
            os.remove(path)
        except OSError as exc:
            warn(
                f"removing log file {path} for container {go_quote(container_id)} failed: "
                f"{go_path_error('remove', path, exc)}"
            )


def _remove_one(
    stub: api_pb2_grpc.RuntimeServiceStub, ep: Endpoints, container_id: str, force: bool, keep_logs: bool
) -> str | None:
    """One container of rm: the error text, or None."""
    quoted = go_quote(container_id)
    try:
        r = container_status(stub, ep, container_id, False)
    except CallError as exc:
        return f"getting container status {quoted}: {exc}"
    if r.status.state == api_pb2.CONTAINER_RUNNING:
        if not force:
            return f"container {quoted} is running, please stop it first"
        try:
            stop_container(stub, ep, container_id, 0)
        except CallError as exc:
            return f"stopping the container {quoted}: {exc}"
    try:
        remove_container(stub, ep, container_id)
    except CallError as exc:
        return f"removing container {quoted}: {exc}"
    if not keep_logs:
        _remove_logs(container_id, r.status.log_path)
    return None


# crictl removes every container at once; a bound keeps a huge --all from opening thousands of threads.
RM_WORKERS = 16


def cmd_rm(args: argparse.Namespace, ep: Endpoints) -> None:
    stub = connect(ep)
    ids = list(args.ids)
    if args.all:
        try:
            listed = call_rpc(stub.ListContainers, api_pb2.ListContainersRequest(), ep.timeout)
        except CallError as exc:
            raise CommandError(str(exc)) from None
        ids = [c.id for c in listed.containers]
    if not ids:
        if args.all:
            warn("No containers to remove")
            return
        show_help(args)
        return
    # Concurrently, as crictl: output and errors come in the order the containers finish.
    errors: list[str] = []
    with ThreadPoolExecutor(max_workers=min(len(ids), RM_WORKERS)) as pool:
        futures = [pool.submit(_remove_one, stub, ep, i, args.force, args.keep_logs) for i in ids]
        for future in as_completed(futures):
            if error := future.result():
                errors.append(error)
    if errors:
        raise CommandError("\n".join(errors))


def cmd_ps(args: argparse.Namespace, ep: Endpoints) -> None:
    last = int_flag(args.last)
    if args.extra:
        show_help(args)
        return
    stub = connect(ep)
    images = connect_image(ep)
    labels = parse_labels(args.label or [])
    try:
        containers = _find_by_flags(stub, images, ep, args, last, labels, container_id=args.id)
    except CallError as exc:
        raise CommandError(f"listing containers: list containers: {exc}") from None
    fmt = args.output
    response = api_pb2.ListContainersResponse(containers=containers)
    if fmt == "json":
        print(protojson_text(response))
        return
    if fmt == "yaml":
        print(go_yaml_v2(output.proto_json(response)))
        return
    if fmt != "table":
        raise CommandError(f"listing containers: unsupported output format {go_quote(fmt)}")
    now = time.time_ns()
    if args.quiet:
        sys.stdout.write("".join(f"{c.id}\n" for c in containers))
    elif args.verbose:
        for c in containers:
            # Printed as it goes, as crictl: earlier containers show before one with a bad state.
            sys.stdout.write(container_verbose(c, now))
    else:

        def resolve(image: str) -> str:
            try:
                r = image_status(images, ep, image, False)
            except CallError as exc:
                raise CommandError(f"listing containers: failed to fetch repo image {exc}") from None
            return r.image.repo_tags[0] if r.image.repo_tags else image

        resolver = resolve if args.resolve_image_path else None
        sys.stdout.write(containers_table(containers, now, args.no_trunc, resolver))


def cmd_inspect(args: argparse.Namespace, ep: Endpoints) -> None:
    last = int_flag(args.last)
    stub = connect(ep)
    images = connect_image(ep)
    ids = list(args.ids)
    if not ids:
        labels = parse_labels(args.label or [])
        try:
            found = _find_by_flags(stub, images, ep, args, last, labels)
        except CallError as exc:
            raise CommandError(f"listing containers: {exc}") from None
        ids = [c.id for c in found]
    if not ids:
        warn("No IDs provided or nothing found per filter")
        show_help(args)
        return
    verbose = not args.quiet

    def status_of(container_id: str) -> api_pb2.ContainerStatusResponse:
        try:
            return container_status(stub, ep, container_id, verbose)
        except CallError as exc:
            raise CommandError(f"get the status of containers: get container status: {exc}") from None

    output.show_statuses(
        ids,
        status_of,
        lambda r: container_status_table(r, verbose, time.time_ns()),
        lambda r: output.status_document(container_status_json(r.status), r.info),
        args.output or "json",
        lambda docs, fmt: render_go_statuses(docs, fmt, "containers"),
    )


def _go_int_text(text: str | None) -> int:
    """urfave/cli's Int64 of a string flag (--oom-score-adj): ParseInt base 0, 0 when it fails."""
    if not text:
        return 0
    try:
        return go_parse_int(text)
    except ValueError:
        return 0


def cmd_update(args: argparse.Namespace, ep: Endpoints) -> None:
    values = {
        name: int_flag(getattr(args, name))
        for name in ("cpu_count", "cpu_maximum", "cpu_period", "cpu_quota", "cpu_share", "memory")
    }
    if not args.ids:
        raise CommandError("ID cannot be empty")
    stub = connect(ep)
    resources = api_pb2.LinuxContainerResources(
        cpu_period=values["cpu_period"],
        cpu_quota=values["cpu_quota"],
        cpu_shares=values["cpu_share"],
        cpuset_cpus=args.cpuset_cpus or "",
        cpuset_mems=args.cpuset_mems or "",
        memory_limit_in_bytes=values["memory"],
        oom_score_adj=_go_int_text(args.oom_score_adj),
    )
    for container_id in args.ids:
        try:
            if not container_id:
                raise CallError("ID cannot be empty")
            request = api_pb2.UpdateContainerResourcesRequest(container_id=container_id, linux=resources)
            call_rpc(stub.UpdateContainerResources, request, ep.timeout)
        except CallError as exc:
            raise CommandError(f"updating container resources for {go_quote(container_id)}: {exc}") from None
        print(container_id)


def cmd_checkpoint(args: argparse.Namespace, ep: Endpoints) -> None:
    if not args.ids:
        raise CommandError("ID cannot be empty")
    if not args.export:
        raise CommandError(
            "cannot checkpoint a container without specifying the checkpoint destination. "
            "Use --export=/path/to/checkpoint.tar"
        )
    stub = connect(ep)
    for container_id in args.ids:
        try:
            if not container_id:
                raise CallError("ID cannot be empty")
            request = api_pb2.CheckpointContainerRequest(container_id=container_id, location=args.export)
            try:
                # No deadline of its own: a checkpoint may take long, crictl waits for it too.
                stub.CheckpointContainer(request)
            except grpc.RpcError as exc:
                raise CallError(call_error(exc)) from None
        except CallError as exc:
            raise CommandError(
                f"checkpointing the container {go_quote(container_id)} failed: {exc}"
            ) from None
        print(container_id)


# --- registration ---------------------------------------------------------------------------------


def _filter_flags(p: argparse.ArgumentParser, state_short: bool = True) -> None:
    p.add_argument("--name", default="", help="filter by container name regular expression pattern")
    p.add_argument("--namespace", default="", help="filter by pod namespace regular expression pattern")
    p.add_argument("--pod", "-p", default="", help="filter by pod id")
    p.add_argument("--image", default="", help="filter by container image")
    states = ("--state", "-s") if state_short else ("--state",)
    p.add_argument(*states, default="", help="filter by container state")
    p.add_argument("--label", action=SliceAppend, metavar="KEY=VALUE", help="filter by key=value label")
    p.add_argument(
        "--latest", "-l", action="store_true", help="show the most recently created container (all states)"
    )
    p.add_argument(
        "--last",
        "-n",
        action=GoFlag,
        metavar="N",
        help="show the last n recently created containers (all states); 0 for unlimited",
    )
    p.add_argument("--all", "-a", action="store_true", help="show all containers")


def register(sub: Any) -> dict[str, Command]:
    """Adds the container subcommands; returns {name or alias: command}."""
    p = add_command(sub, "start", "start one or more created containers")
    p.add_argument("ids", nargs="*", metavar="CONTAINER-ID")

    p = add_command(sub, "stop", "stop one or more running containers")
    p.add_argument("ids", nargs="*", metavar="CONTAINER-ID")
    p.add_argument(
        "--timeout",
        "-t",
        dest="stop_timeout",
        action=GoFlag,
        metavar="SECONDS",
        help="seconds to wait before killing the container after a graceful stop is requested",
    )
    p.add_argument("--all", "-a", action="store_true", help="stop all running containers")

    p = add_command(sub, "rm", "remove one or more containers")
    p.add_argument("ids", nargs="*", metavar="CONTAINER-ID")
    p.add_argument("--force", "-f", action="store_true", help="force removal, disregarding if running")
    p.add_argument(
        "--keep-logs", "-k", action="store_true", help="keep the container log file and its rotations"
    )
    p.add_argument("--all", "-a", action="store_true", help="remove all containers")

    p = add_command(sub, "ps", "list containers")
    p.add_argument("extra", nargs="*", help=argparse.SUPPRESS)  # crictl shows its help for arguments
    p.add_argument("--id", default="", help="filter by container id")
    _filter_flags(p)
    p.add_argument("--verbose", "-v", action="store_true", help="show verbose information for containers")
    p.add_argument("--quiet", "-q", action="store_true", help="only display container IDs")
    p.add_argument("--output", "-o", default="table", help="output format, one of: json|yaml|table")
    p.add_argument("--no-trunc", action="store_true", help="show output without truncating the ID")
    p.add_argument(
        "--resolve-image-path", "-r", action="store_true", help="show image path instead of image id"
    )

    p = add_command(sub, "inspect", "display the status of one or more containers")
    p.add_argument("ids", nargs="*", metavar="CONTAINER-ID")
    p.add_argument("--output", "-o", default="", help="output format, one of: json|yaml|table (default json)")
    p.add_argument("--quiet", "-q", action="store_true", help="do not show verbose information")
    p.add_argument("--template", default="", help=argparse.SUPPRESS)  # main.py shows it
    _filter_flags(p)

    p = add_command(sub, "update", "update one or more running containers")
    p.add_argument("ids", nargs="*", metavar="CONTAINER-ID")
    for flag, text in (
        ("--cpu-count", "(Windows only) number of CPUs available to the container"),
        ("--cpu-maximum", "(Windows only) portion of CPU cycles as a percentage * 100"),
        ("--cpu-period", "CPU CFS period (usecs); 0 for the system default"),
        ("--cpu-quota", "CPU CFS hard cap (usecs) per period"),
        ("--cpu-share", "CPU shares (relative weight)"),
        ("--memory", "memory limit in bytes"),
    ):
        p.add_argument(flag, action=GoFlag, metavar="N", help=text)
    p.add_argument("--cpuset-cpus", help="CPUs to use")
    p.add_argument("--cpuset-mems", help="memory nodes to use")
    p.add_argument("--oom-score-adj", help="OOM killer score adjustment")

    p = add_command(sub, "checkpoint", "checkpoint one or more running containers")
    p.add_argument("ids", nargs="*", metavar="CONTAINER-ID")
    p.add_argument(
        "--export",
        "-e",
        default="",
        metavar="FILE",
        help="specify the name of the tar archive (/path/to/checkpoint.tar) used to export the "
        "checkpoint image.",
    )

    return {
        "start": cmd_start,
        "stop": cmd_stop,
        "rm": cmd_rm,
        "ps": cmd_ps,
        "inspect": cmd_inspect,
        "update": cmd_update,
        "checkpoint": cmd_checkpoint,
    }
