"""cribctl's image commands.

`pull`, `images`, `inspecti`, `rmi` and `imagefsinfo` are crictl's (cri-tools
1.36): the same flags, aliases, output and error texts, so scripts written for
crictl work unchanged. When stderr is a terminal, `pull` also draws a bar per
layer there, following CribService.PullImageWithProgress (plain PullImage on a
daemon without CribService); stdout gets crictl's line either way. `load` and
`import` are crib's own (CribService); load prints docker load's lines.

Deadlines follow crictl: each short call gets the global --timeout, but a pull
has no deadline unless --pull-timeout is given (the kubelet's pulls are not cut
at 2 s either), and load/import have none. Before such an unbounded call the
image endpoint is checked within --timeout, as crictl's connect does, so a
wedged daemon still fails fast.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from typing import IO, Any

import grpc
from google.protobuf.message import Message

from crib.cribctl import output, progress
from crib.cribctl.client import Command, CommandError, crib_stub, image_stub, rpc_error, runtime_stub
from crib.cribctl.endpoint import Endpoints
from crib.cribctl.golike import (
    go_quote,
    go_sort,
    go_string_map,
    human_size,
    parse_go_duration_strict,
    tabwrite,
)
from crib.proto.cri import api_pb2, api_pb2_grpc
from crib.proto.crib.v1 import crib_pb2, crib_pb2_grpc

CHUNK_SIZE = 1 << 20
TRUNCATED_ID_LEN = 13
NONE = "<none>"

# crictl's newDefaultTableDisplay: tabwriter.NewWriter(os.Stdout, 20, 1, 3, ' ', 0).
TABLE_MINWIDTH, TABLE_TABWIDTH, TABLE_PADDING = 20, 1, 3

FILTER_HELP = (
    "Filter output based on provided conditions. Available filters: dangling=(boolean - true or false), "
    "reference=/regular expression/, before=<image-name>[:<tag>]|<image id>|<image@digest>, "
    "since=<image-name>[:<tag>]|<image id>|<image@digest>. Multiple filters can be combined together."
)


# --- pure helpers (unit-tested) ------------------------------------------------


class SliceAppend(argparse.Action):
    """urfave/cli's StringSliceFlag: repeatable, and each value is split on commas and trimmed."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        items = list(getattr(namespace, self.dest) or [])
        items.extend(part.strip() for part in str(values).split(","))
        setattr(namespace, self.dest, items)


def parse_creds(creds: str) -> tuple[str, str]:
    """crictl's parseCreds: USER[:PASS], split at the first colon."""
    if not creds:
        raise CommandError("credentials can't be empty")
    user, sep, password = creds.partition(":")
    if not sep:
        return user, ""
    if not user:
        raise CommandError("username can't be empty")
    return user, password


def get_auth(
    creds: str, auth: str, username: str, read_password: Callable[[], str] = lambda: ""
) -> api_pb2.AuthConfig | None:
    """crictl's getAuth: --username (with a prompted password) beats --creds and --auth."""
    if username:
        return api_pb2.AuthConfig(username=username, password=read_password())
    if creds and auth:
        raise CommandError("both `--creds` and `--auth` are specified")
    if creds:
        user, password = parse_creds(creds)
        return api_pb2.AuthConfig(username=user, password=password)
    if auth:
        # Sent as given: the runtime decodes the base64 USER:PASS.
        return api_pb2.AuthConfig(auth=auth)
    return None


def parse_labels(pairs: list[str]) -> dict[str, str]:
    """crictl's parseLabelStringSlice: exactly one '=' per pair."""
    labels: dict[str, str] = {}
    for pair in pairs:
        parts = pair.split("=")
        if len(parts) != 2:
            raise CommandError(f"incorrectly specified label: {pair}")
        labels[parts[0]] = parts[1]
    return labels


def truncated_id(image_id: str, prefix: str = "sha256:") -> str:
    return image_id.removeprefix(prefix)[:TRUNCATED_ID_LEN]


def normalize_repo_digest(repo_digests: list[str]) -> tuple[str, str]:
    """(repository, digest) of the first repo digest, as crictl splits it."""
    if not repo_digests:
        return NONE, NONE
    parts = repo_digests[0].split("@")
    if len(parts) != 2:
        return "errorName", "errorRepoDigest"
    return parts[0], parts[1]


def normalize_repo_tag_pairs(repo_tags: list[str], image_name: str) -> list[tuple[str, str]]:
    """(repository, tag) rows of an image: an untagged one shows its digest's repository."""
    if not repo_tags:
        return [(image_name, NONE)]
    pairs = []
    for repo_tag in repo_tags:
        name, sep, tag = repo_tag.rpartition(":")
        if not sep:
            pairs.append(("errorRepoTag", "errorRepoTag"))
            continue
        pairs.append((image_name if name == NONE else name, tag))
    return pairs


def image_less(a: api_pb2.Image, b: api_pb2.Image) -> bool:
    """crictl's imageByRef.Less: by first tag, else first digest, else ID."""
    if a.repo_tags and b.repo_tags:
        return a.repo_tags[0] < b.repo_tags[0]
    if a.repo_digests and b.repo_digests:
        return a.repo_digests[0] < b.repo_digests[0]
    return a.id < b.id


def sort_images(images: list[api_pb2.Image]) -> None:
    go_sort(images, image_less)


def _filter_before_since(value: str, images: list[api_pb2.Image]) -> list[api_pb2.Image]:
    """The images up to (not including) the first that matches `value`, as crictl's
    filterByBeforeSince: a name:tag, an ID prefix, or a repo@digest prefix."""
    kept = []
    has_colon, has_at = ":" in value, "@" in value
    for image in images:
        if has_colon and not has_at:
            name, _ = normalize_repo_digest(list(image.repo_digests))
            if ":".join(normalize_repo_tag_pairs(list(image.repo_tags), name)[0]) == value:
                break
            kept.append(image)
        elif not has_colon and not has_at:
            if image.id.startswith(value):
                break
            kept.append(image)
        elif has_colon and has_at and image.repo_digests:
            # An image without digests neither matches nor is kept.
            if image.repo_digests[0].startswith(value):
                break
            kept.append(image)
        # "@" without ":" matches no form, and keeps nothing.
    return kept


def _filter_reference(value: str, images: list[api_pb2.Image]) -> list[api_pb2.Image]:
    try:
        pattern = re.compile(value)
    except re.error as exc:
        # Go's regexp (RE2) words its errors differently; the form is kept.
        raise ValueError(f"error parsing regexp: {exc.msg}: `{value}`") from None
    kept = []
    for image in images:
        name, _ = normalize_repo_digest(list(image.repo_digests))
        # MatchString is unanchored, and the value is compiled as given (slashes included).
        if pattern.search(name) or name == value:
            kept.append(image)
    return kept


def _filter_dangling(value: str, images: list[api_pb2.Image]) -> list[api_pb2.Image]:
    # Anything but "true" or "false" keeps nothing, as in crictl.
    if value == "true":
        return [i for i in images if not i.repo_tags]
    if value == "false":
        return [i for i in images if i.repo_tags]
    return []


def filter_images(images: list[api_pb2.Image], filters: list[str]) -> list[api_pb2.Image]:
    """crictl's filterImagesList, applied in order to an already sorted list.

    Raises ValueError with crictl's text for an unknown filter or a bad regexp.
    """
    kept = list(images)
    for spec in filters:
        if spec.startswith("before="):
            # "before" walks the list from its end, so it keeps what sorts after the match.
            kept = _filter_before_since(spec.removeprefix("before="), kept[::-1])[::-1]
        elif spec.startswith("dangling="):
            kept = _filter_dangling(spec.removeprefix("dangling="), kept)
        elif spec.startswith("reference="):
            kept = _filter_reference(spec.removeprefix("reference="), kept)
        elif spec.startswith("since="):
            kept = _filter_before_since(spec.removeprefix("since="), kept)
        else:
            raise ValueError(f"unknown filter flag: {spec}")
    return kept


def images_table(
    images: list[api_pb2.Image], *, digests: bool = False, no_trunc: bool = False, pinned: bool = False
) -> str:
    """`crictl images` as a table: one row per repo tag."""
    header = ["IMAGE", "TAG"] + (["DIGEST"] if digests else []) + ["IMAGE ID", "SIZE"]
    rows = [header + (["PINNED"] if pinned else [])]
    for image in images:
        name, digest = normalize_repo_digest(list(image.repo_digests))
        image_id = image.id
        if not no_trunc:
            image_id = truncated_id(image_id)
            digest = truncated_id(digest)
        size = human_size(float(image.size), 3)
        for repo, tag in normalize_repo_tag_pairs(list(image.repo_tags), name):
            row = [repo, tag] + ([digest] if digests else []) + [image_id, size]
            if pinned:
                row.append("true" if image.pinned else "false")
            rows.append(row)
    return table(rows)


def table(rows: list[list[str]]) -> str:
    text = "".join("\t".join(row) + "\n" for row in rows)
    return tabwrite(text, TABLE_MINWIDTH, TABLE_TABWIDTH, TABLE_PADDING, " ")


def image_verbose(image: api_pb2.Image) -> str:
    """One image of `crictl images -v`."""
    lines = [f"ID: {image.id}"]
    lines += [f"RepoTags: {tag}" for tag in image.repo_tags]
    lines += [f"RepoDigests: {digest}" for digest in image.repo_digests]
    if image.size:
        lines.append(f"Size: {image.size}")
    if image.HasField("uid"):
        # %v of the *Int64Value message: its compact text form.
        lines.append(f"Uid: value:{image.uid.value}")
    if image.username:
        lines.append(f"Username: {image.username}")
    if image.pinned:
        lines.append("Pinned: true")
    return "\n".join(lines) + "\n\n"


def image_status_table(r: api_pb2.ImageStatusResponse, verbose: bool) -> str:
    """crictl's outputImageStatusTable."""
    lines = [f"ID: {r.image.id}"]
    lines += [f"Tag: {tag}" for tag in r.image.repo_tags]
    lines += [f"Digest: {digest}" for digest in r.image.repo_digests]
    lines.append(f"Size: {human_size(float(r.image.size), 3)}")
    if verbose:
        lines.append(f"Info: {go_string_map(dict(r.info))}")
    return "\n".join(lines) + "\n"


def fs_info_table(r: api_pb2.ImageFsInfoResponse) -> str:
    """crictl's outputImageFsInfoTable (note the space before each section's newline)."""
    lines = []
    for label, filesystems in (("Container", r.container_filesystems), ("Image", r.image_filesystems)):
        lines.append(f"{label} Filesystem ")
        for i, fs in enumerate(filesystems):
            lines.append(f"TimeStamp[{i}]: {fs.timestamp}")
            lines.append(f"Disk[{i}]: {human_size(float(fs.used_bytes.value), 4)}")
            lines.append(f"Inodes[{i}]: {fs.inodes_used.value}")
            lines.append(f"Mountpoint[{i}]: {fs.fs_id.mountpoint}")
    return "\n".join(lines) + "\n"


def _in_field_order(msg: Message, doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` (proto_json of `msg`) with its keys in field-number order, maps sorted by key.

    MessageToDict puts the fields left at their defaults after the set ones;
    protojson keeps field order, and this text is printed as it is, unsorted.
    """
    ordered: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        if field.json_name not in doc:
            continue
        value = doc[field.json_name]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = dict(sorted(value.items()))
        elif field.message_type is not None and field.is_repeated:
            value = [_in_field_order(m, v) for m, v in zip(getattr(msg, field.name), value, strict=True)]
        elif field.message_type is not None:
            value = _in_field_order(getattr(msg, field.name), value)
        ordered[field.json_name] = value
    return ordered


def list_json(images: list[api_pb2.Image]) -> str:
    """protojson (EmitDefaultValues, Indent "  ") of a ListImagesResponse, as `images -o json` prints it."""
    response = api_pb2.ListImagesResponse(images=images)
    doc = _in_field_order(response, output.proto_json(response))
    return json.dumps(doc, indent=2, ensure_ascii=False)


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


def pull_timeout(flag: str | None, env: str | None) -> float:
    """--pull-timeout (or CRICTL_PULL_TIMEOUT) in seconds; 0 means no deadline."""
    if flag is not None:
        try:
            return parse_go_duration_strict(flag)
        except ValueError:
            raise CommandError(
                f"invalid value {go_quote(flag)} for flag -pull-timeout: parse error"
            ) from None
    if env:
        try:
            return parse_go_duration_strict(env)
        except ValueError as exc:
            raise CommandError(
                f"could not parse {go_quote(env)} as duration value from env var "
                f'"CRICTL_PULL_TIMEOUT" for flag pull-timeout: {exc}'
            ) from None
    return 0.0


# --- calls -------------------------------------------------------------------------


class CallError(Exception):
    """The message of a failed call as crictl's client words it, before the command's prefix."""


def call_error(exc: grpc.RpcError) -> str:
    code = exc.code() if hasattr(exc, "code") else None
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and exc.details() == "Deadline Exceeded":
        # A deadline that expired in this client: Go's context error text.
        return "rpc error: code = DeadlineExceeded desc = context deadline exceeded"
    return rpc_error(exc)


def warn(message: str) -> None:
    print(f"cribctl: {message}", file=sys.stderr)


def show_help(args: argparse.Namespace) -> None:
    # crictl's ShowSubcommandHelp: usage on stdout, and success.
    args.subparser.print_help()


def check_endpoint(stub: api_pb2_grpc.ImageServiceStub, ep: Endpoints) -> None:
    """crictl's connect: one ImageFsInfo within --timeout, before calls without a deadline."""
    try:
        stub.ImageFsInfo(api_pb2.ImageFsInfoRequest(), timeout=ep.timeout)
    except grpc.RpcError as exc:
        raise CommandError(
            f"validate CRI v1 image API for endpoint {go_quote(ep.image)}: {call_error(exc)}"
        ) from None


def list_images(
    stub: api_pb2_grpc.ImageServiceStub, ep: Endpoints, name: str, filters: list[str]
) -> list[api_pb2.Image]:
    """crictl's ListImages: the runtime filters by name, crictl sorts then applies --filter."""
    request = api_pb2.ListImagesRequest(filter=api_pb2.ImageFilter(image=api_pb2.ImageSpec(image=name)))
    try:
        r = stub.ListImages(request, timeout=ep.timeout)
    except grpc.RpcError as exc:
        raise CommandError(f"listing images: {call_error(exc)}") from None
    images = list(r.images)
    sort_images(images)
    if filters and images:
        try:
            images = filter_images(images, filters)
        except ValueError as exc:
            raise CommandError(f"listing images: filter images: {exc}") from None
    return images


def image_status(
    stub: api_pb2_grpc.ImageServiceStub, ep: Endpoints, image: str, verbose: bool
) -> api_pb2.ImageStatusResponse:
    request = api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=image), verbose=verbose)
    try:
        r = stub.ImageStatus(request, timeout=ep.timeout)
    except grpc.RpcError as exc:
        raise CallError(call_error(exc)) from None
    # The CRI client refuses an answer that names an image without ID or size.
    if r.HasField("image") and (not r.image.id or not r.image.size):
        raise CallError(f"Id or size of image {go_quote(image)} is not set")
    return r


def _wait(future: grpc.Future, what: str) -> Any:
    """The result of a call without deadline; Ctrl-C cancels it, as crictl's InterruptableRPC."""
    try:
        return future.result()
    except KeyboardInterrupt:
        future.cancel()
        raise CommandError(f"{what}: interrupted: context canceled") from None


# --- commands ------------------------------------------------------------------------


def _pull_error(exc: grpc.RpcError) -> CommandError:
    # The CRI client drops the code of an Unknown error and keeps its message.
    if exc.code() == grpc.StatusCode.UNKNOWN:
        return CommandError(f"pulling image: {exc.details()}")
    return CommandError(f"pulling image: {call_error(exc)}")


def pull_with_progress(
    stub: crib_pb2_grpc.CribServiceStub,
    request: api_pb2.PullImageRequest,
    timeout: float,
    view: progress.ProgressView,
) -> str | None:
    """The pull through CribService, drawing its progress; its image ref, or None
    when the daemon has no CribService (containerd, CRI-O): then PullImage does it."""
    stream_request = crib_pb2.PullImageWithProgressRequest(
        image=request.image,
        auth=request.auth if request.HasField("auth") else None,
        sandbox_config=request.sandbox_config if request.HasField("sandbox_config") else None,
    )
    call = stub.PullImageWithProgress(stream_request, timeout=timeout or None)
    last: crib_pb2.PullProgress | None = None
    try:
        for message in call:
            last = message
            view.update(message)
    except KeyboardInterrupt:
        call.cancel()
        view.finish()
        raise CommandError("pulling image: interrupted: context canceled") from None
    except grpc.RpcError as exc:
        if last is None and exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            return None
        view.finish()
        raise _pull_error(exc) from None
    view.finish()
    return last.image_ref if last is not None else ""


def cmd_pull(args: argparse.Namespace, ep: Endpoints) -> None:
    timeout = pull_timeout(args.pull_timeout, os.environ.get("CRICTL_PULL_TIMEOUT"))
    name = args.image[0] if args.image else ""
    if not name:
        raise CommandError("image name cannot be empty")
    if len(args.image) > 1:
        show_help(args)
        return
    stub = image_stub(ep)
    check_endpoint(stub, ep)
    creds = args.creds if args.creds is not None else os.environ.get("CRICTL_CREDS", "")
    auth_string = args.auth if args.auth is not None else os.environ.get("CRICTL_AUTH", "")
    auth = get_auth(creds, auth_string, args.username or "", lambda: getpass.getpass("Enter Password:"))
    sandbox = None
    if args.pod_config:
        # Imported here: pod_cmds builds on this module.
        from crib.cribctl.pod_cmds import ConfigError, load_pod_config

        try:
            sandbox, warnings = load_pod_config(args.pod_config)
        except ConfigError as exc:
            raise CommandError(f"load podSandboxConfig: {exc}") from None
        for warning in warnings:
            warn(warning)
    annotations = parse_labels(args.annotation) if args.annotation is not None else {}
    if timeout < 0:
        raise CommandError("pulling image: timeout should be bigger than 0")
    spec = api_pb2.ImageSpec(image=name, annotations=annotations)
    request = api_pb2.PullImageRequest(image=spec, auth=auth, sandbox_config=sandbox)
    image_ref = None
    if progress.wanted(sys.stderr):
        # Bars on the terminal; stdout still gets exactly crictl's line below.
        image_ref = pull_with_progress(crib_stub(ep), request, timeout, progress.ProgressView(sys.stderr))
    if image_ref is None:
        # No deadline unless --pull-timeout: --timeout bounds the connect, not the pull.
        future = stub.PullImage.future(request, timeout=timeout or None)
        try:
            image_ref = _wait(future, "pulling image").image_ref
        except grpc.RpcError as exc:
            raise _pull_error(exc) from None
    if not image_ref:
        raise CommandError(f"pulling image: imageRef of image {go_quote(name)} is not set")
    print(f"Image is up to date for {image_ref}")


def cmd_images(args: argparse.Namespace, ep: Endpoints) -> None:
    if len(args.names) > 1:
        show_help(args)
        return
    stub = image_stub(ep)
    images = list_images(stub, ep, args.names[0] if args.names else "", args.filter or [])
    if args.output == "json":
        print(list_json(images))
        return
    if args.output == "yaml":
        print(output.go_yaml(output.proto_json(api_pb2.ListImagesResponse(images=images))))
        return
    # Anything else is a table, as in crictl.
    if args.quiet:
        sys.stdout.write("".join(f"{image.id}\n" for image in images))
    elif args.verbose:
        sys.stdout.write("".join(image_verbose(image) for image in images))
    else:
        sys.stdout.write(
            images_table(images, digests=args.digests, no_trunc=args.no_trunc, pinned=args.pinned)
        )


def cmd_inspecti(args: argparse.Namespace, ep: Endpoints) -> None:
    stub = image_stub(ep)
    verbose = not args.quiet
    fmt = args.output or "json"
    ids = list(args.ids)
    if not ids:
        ids = [image.id for image in list_images(stub, ep, args.name or "", args.filter or [])]
    if not ids:
        warn("No IDs provided or nothing found per filter")
        show_help(args)
        return

    def status_of(image: str) -> api_pb2.ImageStatusResponse:
        try:
            r = image_status(stub, ep, image, verbose)
        except CallError as exc:
            raise CommandError(f"image status for {go_quote(image)} request: {exc}") from None
        if not r.HasField("image"):
            raise CommandError(f"no such image {go_quote(image)} present")
        return r

    def render(docs: list[dict[str, Any]], fmt: str) -> str:
        if fmt not in ("json", "yaml"):
            raise CommandError(f"unsupported format: {go_quote(fmt)}")
        return output.render_status_documents(docs, fmt)

    output.show_statuses(
        ids,
        status_of,
        lambda r: image_status_table(r, verbose),
        lambda r: output.status_document(output.proto_json(r.image), r.info),
        fmt,
        render,
    )


def cmd_rmi(args: argparse.Namespace, ep: Endpoints) -> None:
    stub = image_stub(ep)
    # Ordered, so removals and their output follow the arguments (crictl's map has no order).
    selected: dict[str, bool] = dict.fromkeys(args.ids, True)
    if args.all or args.prune:
        try:
            listed = stub.ListImages(api_pb2.ListImagesRequest(), timeout=ep.timeout).images
        except grpc.RpcError as exc:
            raise CommandError(call_error(exc)) from None
        for image in listed:
            if args.prune and image.pinned:
                continue
            selected[image.id] = True
    if args.prune:
        for container_image in _container_images(ep):
            try:
                r = image_status(stub, ep, container_image, False)
            except CallError as exc:
                warn(f"image status request for {go_quote(container_image)} failed: {exc}")
                continue
            selected[r.image.id] = False
    if not selected:
        if args.all or args.prune:
            warn("No images to remove")
            return
        show_help(args)
        return
    errors = []
    for image, remove in selected.items():
        if remove:
            error = _remove_one(stub, ep, image, args.prune)
            if error:
                errors.append(error)
    if errors:
        raise CommandError("\n".join(errors))


def _container_images(ep: Endpoints) -> list[str]:
    """The images of all containers, for --prune; a runtime without containers yet has none."""
    try:
        r = runtime_stub(ep).ListContainers(api_pb2.ListContainersRequest(), timeout=ep.timeout)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            return []
        raise CommandError(call_error(exc)) from None
    return [c.image.image for c in r.containers]


def _remove_one(stub: api_pb2_grpc.ImageServiceStub, ep: Endpoints, image: str, prune: bool) -> str | None:
    try:
        status = image_status(stub, ep, image, False)
    except CallError as exc:
        return f"image status request for {go_quote(image)} failed: {exc}"
    if not status.HasField("image"):
        return f"no such image {image}"
    tags = list(status.image.repo_tags)
    looks_like_tag = not image.startswith("sha256:") and (":" in image or "/" in image)
    if len(tags) > 1 and looks_like_tag:
        # The CRI removes an image, not a tag: say which other tags go with it.
        warn(
            f"Image {go_quote(image)} has multiple tags. Removing this image will delete all of the "
            "following tags:"
        )
        for tag in tags:
            warn(f"  {tag}")
    try:
        stub.RemoveImage(api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=image)), timeout=ep.timeout)
    except grpc.RpcError as exc:
        # Prune ignores failures: another client may have removed the image meanwhile.
        return None if prune else f"error of removing image {go_quote(image)}: {call_error(exc)}"
    # An image pulled by digest has no tags: its digests name it.
    for name in tags or list(status.image.repo_digests):
        print(f"Deleted: {name}")
    return None


def cmd_imagefsinfo(args: argparse.Namespace, ep: Endpoints) -> None:
    stub = image_stub(ep)
    fmt = args.output or "json"
    try:
        r = stub.ImageFsInfo(api_pb2.ImageFsInfoRequest(), timeout=ep.timeout)
    except grpc.RpcError as exc:
        raise CommandError(f"image filesystem info request: {call_error(exc)}") from None
    if fmt == "table":
        sys.stdout.write(fs_info_table(r))
        return
    if fmt not in ("json", "yaml"):
        raise CommandError(f"unsupported format: {go_quote(fmt)}")
    both = api_pb2.ImageFsInfoResponse(
        image_filesystems=r.image_filesystems, container_filesystems=r.container_filesystems
    )
    print(output.render_status_documents([output.status_document(output.proto_json(both), {})], fmt))


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


def _go_os_error(op: str, path: str, exc: OSError) -> str:
    # Go's *PathError: "open x: no such file or directory".
    reason = exc.strerror or str(exc)
    return f"{op} {path}: {reason[:1].lower()}{reason[1:]}"


def _open_input(path: str | None, what: str) -> tuple[IO[bytes], str]:
    if path is None or path == "-":
        if sys.stdin.isatty():
            raise CommandError(f"requested {what} from stdin, but stdin is empty")
        return sys.stdin.buffer, "stdin"
    try:
        # Closed by the caller, which also handles stdin.
        return open(path, "rb"), path
    except OSError as exc:
        raise CommandError(_go_os_error("open", path, exc)) from None


def _upload(call: Any, stream: ChunkStream, source: str, what: str) -> Any:
    future = call.future(iter(stream))
    stream.arm(future)
    try:
        return _wait(future, what)
    except grpc.FutureCancelledError:
        if stream.error is not None:
            raise CommandError(f"{what}: {_go_os_error('read', source, stream.error)}") from None
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


# --- registration ----------------------------------------------------------------------


def _add(sub: Any, name: str, help_text: str, aliases: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    p = sub.add_parser(name, aliases=list(aliases), help=help_text, description=help_text)
    p.set_defaults(subparser=p)
    return p


def register(sub: Any) -> dict[str, Command]:
    """Add the image subcommands to cribctl's subparsers; returns {name or alias: command}."""
    p = _add(sub, "pull", "pull an image from a registry")
    p.add_argument("image", nargs="*", metavar="NAME[:TAG|@DIGEST]")
    p.add_argument("--creds", metavar="USERNAME[:PASSWORD]", help="registry credentials (env CRICTL_CREDS)")
    p.add_argument(
        "--auth",
        metavar="AUTH_STRING",
        help="base64 of 'USERNAME[:PASSWORD]' for the registry (env CRICTL_AUTH)",
    )
    p.add_argument("--username", "-u", metavar="USERNAME", help="registry user; the password is prompted for")
    p.add_argument(
        "--pod-config",
        metavar="pod-config.[json|yaml]",
        help="use pod-config.[json|yaml] to override the pull context",
    )
    p.add_argument(
        "--annotation", "-a", action=SliceAppend, metavar="KEY=VALUE", help="annotation to set on the image"
    )
    p.add_argument(
        "--pull-timeout",
        "--pt",
        metavar="DURATION",
        help="maximum time for the pull, e.g. 5m; 0s (default) disables it (env CRICTL_PULL_TIMEOUT)",
    )

    p = _add(sub, "images", "list images", aliases=("image", "img"))
    p.add_argument("names", nargs="*", metavar="REPOSITORY[:TAG]")
    p.add_argument("--verbose", "-v", action="store_true", help="show verbose info for images")
    p.add_argument("--quiet", "-q", action="store_true", help="only show image IDs")
    p.add_argument("--filter", "-f", action=SliceAppend, metavar="FILTER", help=FILTER_HELP)
    p.add_argument("--output", "-o", default="", help="output format, one of: json|yaml|table")
    p.add_argument("--digests", action="store_true", help="show digests")
    p.add_argument("--no-trunc", action="store_true", help="show output without truncating the ID")
    p.add_argument("--pinned", action="store_true", help="show whether the image is pinned or not")

    p = _add(sub, "inspecti", "return the status of one or more images")
    p.add_argument("ids", nargs="*", metavar="IMAGE-ID")
    p.add_argument("--output", "-o", default="", help="output format, one of: json|yaml|table (default json)")
    p.add_argument("--quiet", "-q", action="store_true", help="do not show verbose information")
    p.add_argument("--name", default="", help="filter by image name")
    p.add_argument("--filter", "-f", action=SliceAppend, metavar="FILTER", help=FILTER_HELP)

    p = _add(sub, "rmi", "remove one or more images")
    p.add_argument("ids", nargs="*", metavar="IMAGE-ID")
    p.add_argument("--all", "-a", action="store_true", help="remove all images")
    p.add_argument("--prune", "-q", action="store_true", help="remove all unused images")

    p = _add(sub, "imagefsinfo", "return image filesystem info")
    p.add_argument("--output", "-o", default="", help="output format, one of: json|yaml|table (default json)")

    p = _add(sub, "load", "load images from a docker save tar or an OCI layout tar")
    p.add_argument("--input", "-i", metavar="FILE", help="read from FILE instead of stdin")

    p = _add(sub, "import", "make an image from a root filesystem tar (plain or gzip)")
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

    return {
        "pull": cmd_pull,
        "images": cmd_images,
        "image": cmd_images,
        "img": cmd_images,
        "inspecti": cmd_inspecti,
        "rmi": cmd_rmi,
        "imagefsinfo": cmd_imagefsinfo,
        "load": cmd_load,
        "import": cmd_import,
    }
