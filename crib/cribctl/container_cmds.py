"""cribctl's container commands: `create`, `start`, `stop`, `rm`, `ps`, `inspect`, `logs`, `exec`,
`stats`, `update`, `events` and `run`.

The flags, aliases, output and error texts are crictl's (cri-tools 1.36), so
scripts written for crictl work unchanged. crictl logs its errors through
logrus; cribctl prints the same message after "cribctl: ". Every command first
checks the runtime endpoint with Version within the timeout, as crictl's CRI
client does; `ps`, `inspect` and `exec` (and `create`/`run` when they pull)
also check the image endpoint with ImageFsInfo.

Deadlines are the CRI client's: each call gets the global --timeout, except
CreateContainer and RunPodSandbox (`--cancel-timeout` replaces the timeout;
RunPodSandbox gets twice it), StopContainer (timeout + `-t` seconds), ExecSync
(timeout + `--timeout` seconds, none when that is 0), pulls (none unless
--pull-timeout) and GetContainerEvents (none: it streams until interrupted).

`logs` reads the CRI log file named by ContainerStatus.log_path itself
(cri_logs.py; Go's time parsing for --since is gotime.py), with the kubelet's
reader semantics (k8s.io/cri-client/pkg/logs): `TIMESTAMP STREAM P|F TEXT` lines
(or docker's JSON lines), partial lines joined, --tail counted in file lines,
--since as a Go duration, an RFC 3339 time or a Unix time (docker's rules), -f
following the file across rotation and ReopenContainerLog until the container
stops running. Following polls the file every 50 ms where the kubelet's reader
uses inotify; it reads what is left of a rotated file before going on with the
new one (the kubelet's reader drops it).

Deliberate differences from crictl 1.36:
- `exec -s` exits with the command's exit code and still prints its output
  (crictl prints nothing and exits 1, because its CRI client turns a non-zero
  exit into an error); the error text crictl prints goes to stderr as usual.
  Several containers (filters) are run one after another unless -x/--parallel
  (crictl always runs them at once, interleaving their output).
- `exec` without -s (the streaming path, stream_cmds.py) also exits with the
  command's exit code (crictl: 1).
- `inspect --name/--namespace` filter (crictl reads the misspelt flags "^name$"
  and "^namespace$", so it never filters by them).
- the `jsonschema` subcommands are refused with a clear error (`-o go-template`
  is main.py's, for every command that has it).
- `create --with-pull` names the mounted image it pulls (crictl names the
  container's image there).
- `logs -r` is crictl's --reopen, and `ps -r` its --resolve-image-path.
Regular expressions (--name, --namespace) are Python's, standing in for Go's RE2.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import glob
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from crib.cribctl import endpoint, output, stream_cmds
from crib.cribctl.client import Command, CommandError, image_stub
from crib.cribctl.cri_logs import LogError, LogOptions, previous_log_path, read_logs
from crib.cribctl.endpoint import ClientConfigError, Endpoints
from crib.cribctl.golike import go_quote, go_sort, go_string_map, human_size
from crib.cribctl.gotime import go_duration_string, is_digest, parse_since
from crib.cribctl.image_cmds import (
    TRUNCATED_ID_LEN,
    CallError,
    SliceAppend,
    call_error,
    get_auth,
    image_status,
    parse_labels,
    pull_timeout,
    show_help,
    table,
    warn,
)

# pod_cmds' config reader is generic underneath (any CRI message), but only its
# PodSandboxConfig entry point is public; these four are that reader's steps.
from crib.cribctl.pod_cmds import (
    ConfigError,
    GoFlag,
    _check_marshalable,
    _decode_message,
    _first_document,
    _to_jsonable,
    connect,
    duration_flag,
    go_parse_int,
    go_path_error,
    go_rfc3339_nano,
    go_yaml_v2,
    human_duration,
    int_flag,
    load_pod_config,
    matches_regex,
    newest_first,
    proto_text,
    protojson_text,
    render_go_statuses,
    say,
    since,
    sorted_pairs,
)
from crib.proto.cri import api_pb2, api_pb2_grpc

PS_COLUMNS = ["CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD ID", "POD", "NAMESPACE"]
STATS_COLUMNS = ["CONTAINER", "NAME", "CPU %", "MEM", "DISK", "INODES", "SWAP"]
POD_NAME_LABEL = "io.kubernetes.pod.name"
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
# display.ClearScreen: crictl clears the terminal before each stats table.
CLEAR_SCREEN = "\033[2J\033[H"
_DEADLINE_EXCEEDED = "rpc error: code = DeadlineExceeded desc = context deadline exceeded"


# --- container configs: pod_cmds' reader (sigs.k8s.io/yaml semantics) on another message ------------


def _upstream_message_class(name: str) -> type[Message]:
    """`name` from crib's api.proto with KeyValue.value as cri-api's `string`.

    crib's proto declares KeyValue.value as bytes; crictl's struct has a
    string there, so `value: 1` must read as "1", not as base64. The wire
    format of the two is the same, so a message decoded against this copy
    parses into crib's own class unchanged.
    """
    fdp = descriptor_pb2.FileDescriptorProto()
    api_pb2.DESCRIPTOR.CopyToProto(fdp)
    for msg in fdp.message_type:
        if msg.name == "KeyValue":
            for field in msg.field:
                if field.name == "value":
                    field.type = descriptor_pb2.FieldDescriptorProto.TYPE_STRING
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{fdp.package}.{name}"))


_UPSTREAM_CONTAINER_CONFIG = _upstream_message_class("ContainerConfig")


def parse_container_config(data: bytes | str) -> api_pb2.ContainerConfig:
    """A ContainerConfig from YAML or JSON text as sigs.k8s.io/yaml.Unmarshal fills crictl's struct."""
    raw = _first_document(data)
    obj = _to_jsonable(raw, ("msg", _UPSTREAM_CONTAINER_CONFIG.DESCRIPTOR))
    _check_marshalable(obj)
    upstream = _UPSTREAM_CONTAINER_CONFIG()
    if obj is not None:  # JSON null into a struct changes nothing
        _decode_message(upstream, obj)
    return api_pb2.ContainerConfig.FromString(upstream.SerializeToString())


def load_container_config(path: str) -> api_pb2.ContainerConfig:
    """crictl's loadContainerConfig; ConfigError with its text."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config at {path} not found") from None
    except IsADirectoryError as exc:
        raise ConfigError(go_path_error("read", path, exc)) from None
    except OSError as exc:
        raise ConfigError(go_path_error("open", path, exc)) from None
    config = parse_container_config(data)
    if not config.HasField("metadata"):
        raise ConfigError("metadata is not set")
    if not config.metadata.name:
        raise ConfigError(f"name is not in metadata {go_quote(proto_text(config.metadata))}")
    if not config.HasField("image"):
        raise ConfigError("image is not set")
    if not config.image.image:
        raise ConfigError(f"image field is not set in image {go_quote(proto_text(config.image))}")
    return config


def pull_settings(config_path: str | None) -> tuple[bool, bool]:
    """(pull-image-on-create, disable-pull-on-run) from crictl.yaml, by endpoint.resolve's rules:
    a file named explicitly must load (resolve has checked that), a broken default one counts as none."""
    explicit = config_path is not None
    path = Path(config_path) if explicit else endpoint.DEFAULT_CONFIG_PATH
    if not explicit and not path.exists():
        return False, False
    try:
        config = endpoint.read_client_config(path)
    except ClientConfigError:
        if explicit:
            raise
        return False, False
    return config.pull_image_on_create, config.disable_pull_on_run


# --- listing and showing containers ------------------------------------------------------------------

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


def _enum_name(enum: Any, value: int) -> str:
    known = enum.DESCRIPTOR.values_by_number.get(value)
    return known.name if known else str(value)


def container_state(state: int) -> str:
    """convertContainerState; an unknown value is fatal in crictl."""
    if state in _STATE_NAMES:
        return _STATE_NAMES[state]
    raise CommandError(f"Unknown container state {go_quote(_enum_name(api_pb2.ContainerState, state))}")


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


def truncated_id(value: str, prefix: str = "") -> str:
    return value.removeprefix(prefix)[:TRUNCATED_ID_LEN]


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
    lines.append(f"State: {_enum_name(api_pb2.ContainerState, st.state)}")
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


# --- stats ---------------------------------------------------------------------------------------------


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


# --- calls ---------------------------------------------------------------------------------------------


def connect_image(ep: Endpoints) -> api_pb2_grpc.ImageServiceStub:
    """crictl's getImageService: the CRI client checks the image endpoint with ImageFsInfo."""
    stub = image_stub(ep)
    try:
        stub.ImageFsInfo(api_pb2.ImageFsInfoRequest(), timeout=ep.timeout)
    except grpc.RpcError as exc:
        raise CommandError(
            f"validate service connection: validate CRI v1 image API for endpoint {go_quote(ep.image)}: "
            f"{call_error(exc)}"
        ) from None
    return stub


def call_rpc(method: Callable[..., Any], request: Message, timeout: float | None) -> Any:
    """One unary call with the CRI client's deadline; a deadline already over fails as Go's context."""
    if timeout is not None and timeout <= 0:
        raise CallError(_DEADLINE_EXCEEDED)
    try:
        return method(request, timeout=timeout)
    except grpc.RpcError as exc:
        raise CallError(call_error(exc)) from None


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


def _pull(
    images: api_pb2_grpc.ImageServiceStub,
    image: str,
    auth: api_pb2.AuthConfig | None,
    sandbox: api_pb2.PodSandboxConfig | None,
    annotations: Any,
    timeout: float,
) -> None:
    """crictl's PullImageWithSandbox: no deadline unless --pull-timeout."""
    if timeout < 0:
        raise CallError("timeout should be bigger than 0")
    request = api_pb2.PullImageRequest(
        image=api_pb2.ImageSpec(image=image, annotations=annotations), auth=auth, sandbox_config=sandbox
    )
    future = images.PullImage.future(request, timeout=timeout or None)
    try:
        r = future.result()
    except KeyboardInterrupt:
        future.cancel()
        raise CallError("interrupted: context canceled") from None
    except grpc.RpcError as exc:
        # The CRI client drops the code of an Unknown error and keeps its message.
        if exc.code() == grpc.StatusCode.UNKNOWN:
            raise CallError(exc.details() or "") from None
        raise CallError(call_error(exc)) from None
    if not r.image_ref:
        raise CallError(f"imageRef of image {go_quote(image)} is not set")


@dataclass
class PullOptions:
    with_pull: bool
    creds: str
    auth: str
    username: str
    timeout: float


def create_container(
    stub: api_pb2_grpc.RuntimeServiceStub,
    images: api_pb2_grpc.ImageServiceStub | None,
    pod_id: str,
    config_path: str,
    pod_config_path: str,
    pull: PullOptions,
    timeout: float,
) -> str:
    """crictl's CreateContainer: configs, the optional pulls, then the call; CallError on failure."""
    try:
        config = load_container_config(config_path)
        pod_config = None
        if pod_config_path:
            pod_config, warnings = load_pod_config(pod_config_path)
            for warning in warnings:
                warn(warning)
    except ConfigError as exc:
        raise CallError(str(exc)) from None
    image = config.image.image
    if not config.image.user_specified_image:
        config.image.user_specified_image = image
    if pull.with_pull:
        assert images is not None
        try:
            auth = get_auth(pull.creds, pull.auth, pull.username, lambda: getpass.getpass("Enter Password:"))
        except CommandError as exc:
            raise CallError(str(exc)) from None
        warn(f"Pulling container image: {image}")
        wanted = [image]
        for mount in config.mounts:
            if mount.HasField("image") and mount.image.image:
                target = mount.container_path
                warn(f"Pulling image {mount.image.image} to be mounted to container path: {target}")
                wanted.append(mount.image.image)
        for name in wanted:
            _pull(images, name, auth, pod_config, config.image.annotations, pull.timeout)
    request = api_pb2.CreateContainerRequest(pod_sandbox_id=pod_id, config=config, sandbox_config=pod_config)
    r = call_rpc(stub.CreateContainer, request, timeout)
    if not r.container_id:
        raise CallError(f"ContainerId is not set for container {go_quote(proto_text(config.metadata))}")
    return r.container_id


# --- flags and helpers -----------------------------------------------------------------------------


def _go_int_text(text: str | None) -> int:
    """urfave/cli's Int64 of a string flag (--oom-score-adj): ParseInt base 0, 0 when it fails."""
    if not text:
        return 0
    try:
        return go_parse_int(text)
    except ValueError:
        return 0


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM interrupts like Ctrl-C while a command streams (crictl's shutdown signals)."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


WATCH_INTERVAL_S = 0.5


def watch(display: Callable[[], None], interval: float = WATCH_INTERVAL_S) -> None:
    """crictl's `--watch` ticker: a display every interval (the first after one), or right
    after the previous one when that took longer; Ctrl-C or SIGTERM ends it, successfully."""
    try:
        with interruptible():
            next_tick = time.monotonic() + interval
            while True:
                time.sleep(max(0.0, next_tick - time.monotonic()))
                display()
                next_tick = max(next_tick + interval, time.monotonic())
    except KeyboardInterrupt:
        return


def _pull_options(args: argparse.Namespace, with_pull: bool, timeout: float) -> PullOptions:
    return PullOptions(
        with_pull=with_pull,
        creds=args.creds or "",
        auth=args.auth or "",
        username=args.username or "",
        timeout=timeout,
    )


def _config_path(args: argparse.Namespace) -> str | None:
    # As main.main hands it to endpoint.resolve.
    return getattr(args, "config", None) or os.environ.get("CRI_CONFIG_FILE") or None


# --- commands --------------------------------------------------------------------------------------------


def _refuse_jsonschema(args: argparse.Namespace, positionals: list[str]) -> None:
    if len(positionals) == 1 and positionals[0] in ("jsonschema", "js") and not Path(positionals[0]).exists():
        raise CommandError(
            f"{args.subcommand} {positionals[0]}: cribctl does not print the config JSON schemas"
        )


def cmd_create(args: argparse.Namespace, ep: Endpoints) -> None:
    cancel_timeout = duration_flag(args.cancel_timeout)
    pull_wait = pull_timeout(args.pull_timeout, os.environ.get("CRICTL_PULL_TIMEOUT"))
    _refuse_jsonschema(args, args.configs)
    if len(args.configs) != 3:
        show_help(args)
        return
    if args.no_pull and args.with_pull:
        raise CommandError("conflict: no-pull and with-pull are both set")
    pull_on_create, _ = pull_settings(_config_path(args))
    with_pull = (not args.no_pull and pull_on_create) or args.with_pull
    pull = _pull_options(args, with_pull, pull_wait)
    images = connect_image(ep) if with_pull else None
    timeout = cancel_timeout or ep.timeout
    stub = connect(ep, timeout)
    pod_id, config_path, pod_config_path = args.configs
    try:
        container_id = create_container(stub, images, pod_id, config_path, pod_config_path, pull, timeout)
    except CallError as exc:
        raise CommandError(f"creating container: {exc}") from None
    print(container_id)


def cmd_run(args: argparse.Namespace, ep: Endpoints) -> None:
    cancel_timeout = duration_flag(args.cancel_timeout)
    pull_wait = pull_timeout(args.pull_timeout, os.environ.get("CRICTL_PULL_TIMEOUT"))
    _refuse_jsonschema(args, args.configs)
    if len(args.configs) != 2:
        show_help(args)
        return
    if args.no_pull and args.with_pull:
        raise CommandError("conflict: no-pull and with-pull are both set")
    _, disable_pull_on_run = pull_settings(_config_path(args))
    with_pull = (not disable_pull_on_run and not args.no_pull) or args.with_pull
    pull = _pull_options(args, with_pull, pull_wait)
    images = connect_image(ep) if with_pull else None
    timeout = cancel_timeout or ep.timeout
    stub = connect(ep, timeout)
    config_path, pod_config_path = args.configs
    try:
        pod_config, warnings = load_pod_config(pod_config_path)
    except ConfigError as exc:
        raise CommandError(f"running container: load podSandboxConfig: {exc}") from None
    for warning in warnings:
        warn(warning)
    request = api_pb2.RunPodSandboxRequest(config=pod_config, runtime_handler=args.runtime or "")
    try:
        # The CRI client doubles the timeout for sandbox operations.
        pod_id = call_rpc(stub.RunPodSandbox, request, 2 * timeout).pod_sandbox_id
    except CallError as exc:
        raise CommandError(f"running container: run pod sandbox: {exc}") from None
    if not pod_id:
        raise CommandError(
            "running container: run pod sandbox: PodSandboxId is not set for sandbox "
            f"{go_quote(proto_text(pod_config.metadata))}"
        )
    try:
        container_id = create_container(stub, images, pod_id, config_path, pod_config_path, pull, timeout)
    except CallError as exc:
        raise CommandError(f"running container: creating container failed: {exc}") from None
    try:
        start_container(stub, ep, container_id)
    except CallError as exc:
        raise CommandError(
            f"running container: starting the container {go_quote(container_id)}: {exc}"
        ) from None


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
                stream_cmds.exec_stream(stub, ep, args, cmd, container_id)
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


# --- registration ----------------------------------------------------------------------------------------


def _add(sub: Any, name: str, help_text: str, aliases: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    p = sub.add_parser(name, aliases=list(aliases), help=help_text, description=help_text)
    p.set_defaults(subparser=p, subcommand=name)
    return p


def _pull_flags(p: argparse.ArgumentParser, run: bool) -> None:
    config_key = "disable-pull-on-run" if run else "pull-image-on-create"
    p.add_argument("--no-pull", action="store_true", help=f"do not pull the image (overrides {config_key})")
    p.add_argument("--with-pull", action="store_true", help=f"pull the image (overrides {config_key})")
    p.add_argument("--creds", metavar="USERNAME[:PASSWORD]", help="registry credentials")
    p.add_argument("--auth", metavar="AUTH_STRING", help="base64 of 'USERNAME[:PASSWORD]' for the registry")
    p.add_argument("--username", metavar="USERNAME", help="registry user; the password is prompted for")
    p.add_argument(
        "--cancel-timeout",
        "-T",
        action=GoFlag,
        metavar="DURATION",
        help="how long to wait for the create request before cancelling it, e.g. 2m (default: --timeout)",
    )
    p.add_argument(
        "--pull-timeout",
        "--pt",
        metavar="DURATION",
        help="maximum time for pulling the image; 0s (default) disables it (env CRICTL_PULL_TIMEOUT)",
    )


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
    """Add the container subcommands to cribctl's subparsers; returns {name or alias: command}."""
    p = _add(sub, "create", "create a new container")
    p.add_argument("configs", nargs="*", metavar="POD container-config.[json|yaml] pod-config.[json|yaml]")
    _pull_flags(p, run=False)

    p = _add(sub, "run", "run a new container inside a sandbox")
    p.add_argument("configs", nargs="*", metavar="container-config.[json|yaml] pod-config.[json|yaml]")
    _pull_flags(p, run=True)
    p.add_argument("--runtime", "-r", default="", help="runtime handler to use, as the runtime defines them")

    p = _add(sub, "start", "start one or more created containers")
    p.add_argument("ids", nargs="*", metavar="CONTAINER-ID")

    p = _add(sub, "stop", "stop one or more running containers")
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

    p = _add(sub, "rm", "remove one or more containers")
    p.add_argument("ids", nargs="*", metavar="CONTAINER-ID")
    p.add_argument("--force", "-f", action="store_true", help="force removal, disregarding if running")
    p.add_argument(
        "--keep-logs", "-k", action="store_true", help="keep the container log file and its rotations"
    )
    p.add_argument("--all", "-a", action="store_true", help="remove all containers")

    p = _add(sub, "ps", "list containers")
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

    p = _add(sub, "inspect", "display the status of one or more containers")
    p.add_argument("ids", nargs="*", metavar="CONTAINER-ID")
    p.add_argument("--output", "-o", default="", help="output format, one of: json|yaml|table (default json)")
    p.add_argument("--quiet", "-q", action="store_true", help="do not show verbose information")
    p.add_argument("--template", default="", help=argparse.SUPPRESS)  # main.py shows it
    _filter_flags(p)

    p = _add(sub, "logs", "fetch the logs of a container")
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

    p = _add(sub, "exec", "run a command in a running container")
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
    stream_cmds.add_tls_flags(p)

    p = _add(sub, "stats", "list container resource usage statistics")
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

    p = _add(sub, "update", "update one or more running containers")
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

    p = _add(sub, "events", "stream the events of containers", aliases=("event",))
    p.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("--output", "-o", default="json", help="output format, one of: json|yaml|go-template")
    p.add_argument("--template", default="", help=argparse.SUPPRESS)  # main.py shows it

    return {
        "create": cmd_create,
        "run": cmd_run,
        "start": cmd_start,
        "stop": cmd_stop,
        "rm": cmd_rm,
        "ps": cmd_ps,
        "inspect": cmd_inspect,
        "logs": cmd_logs,
        "exec": cmd_exec,
        "stats": cmd_stats,
        "update": cmd_update,
        "events": cmd_events,
        "event": cmd_events,
    }
