"""crictl's image commands (its image.go): pull, images, inspecti, rmi and imagefsinfo. On a
terminal, pull also draws its progress on stderr through crib's PullImageWithProgress.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import grpc

from crib.cribctl import output, progress
from crib.cribctl.client import (
    CallError,
    Command,
    CommandError,
    call_error,
    check_endpoint,
    crib_stub,
    image_stub,
    runtime_stub,
    wait_for_call,
)
from crib.cribctl.endpoint import Endpoints
from crib.cribctl.golike import go_quote, go_sort, go_string_map, human_size
from crib.cribctl.gotime import parse_go_duration_strict
from crib.cribctl.output import protojson_text
from crib.cribctl.util import (
    TRUNCATED_ID_LEN,
    SliceAppend,
    add_command,
    parse_labels,
    pod_config,
    show_help,
    table,
    warn,
)
from crib.proto.cri import api_pb2, api_pb2_grpc
from crib.proto.crib.v1 import crib_pb2, crib_pb2_grpc

NONE = "<none>"

FILTER_HELP = (
    "Filter output based on provided conditions. Available filters: dangling=(boolean - true or false), "
    "reference=/regular expression/, before=<image-name>[:<tag>]|<image id>|<image@digest>, "
    "since=<image-name>[:<tag>]|<image id>|<image@digest>. Multiple filters can be combined together."
)


# --- listing and showing images -------------------------------------------------------------------


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


def list_json(images: list[api_pb2.Image]) -> str:
    """protojson (EmitDefaultValues, Indent "  ") of a ListImagesResponse, as `images -o json` prints it."""
    return protojson_text(api_pb2.ListImagesResponse(images=images))


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


# --- calls ----------------------------------------------------------------------------------------


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


# --- commands -------------------------------------------------------------------------------------


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
        sandbox = pod_config(args.pod_config)
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
            image_ref = wait_for_call(future, "pulling image").image_ref
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


# --- registration ---------------------------------------------------------------------------------


def register(sub: Any) -> dict[str, Command]:
    """Adds the image subcommands; returns {name or alias: command}."""
    p = add_command(sub, "pull", "pull an image from a registry")
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

    p = add_command(sub, "images", "list images", aliases=("image", "img"))
    p.add_argument("names", nargs="*", metavar="REPOSITORY[:TAG]")
    p.add_argument("--verbose", "-v", action="store_true", help="show verbose info for images")
    p.add_argument("--quiet", "-q", action="store_true", help="only show image IDs")
    p.add_argument("--filter", "-f", action=SliceAppend, metavar="FILTER", help=FILTER_HELP)
    p.add_argument("--output", "-o", default="", help="output format, one of: json|yaml|table")
    p.add_argument("--digests", action="store_true", help="show digests")
    p.add_argument("--no-trunc", action="store_true", help="show output without truncating the ID")
    p.add_argument("--pinned", action="store_true", help="show whether the image is pinned or not")

    p = add_command(sub, "inspecti", "return the status of one or more images")
    p.add_argument("ids", nargs="*", metavar="IMAGE-ID")
    p.add_argument("--output", "-o", default="", help="output format, one of: json|yaml|table (default json)")
    p.add_argument("--quiet", "-q", action="store_true", help="do not show verbose information")
    p.add_argument("--name", default="", help="filter by image name")
    p.add_argument("--filter", "-f", action=SliceAppend, metavar="FILTER", help=FILTER_HELP)

    p = add_command(sub, "rmi", "remove one or more images")
    p.add_argument("ids", nargs="*", metavar="IMAGE-ID")
    p.add_argument("--all", "-a", action="store_true", help="remove all images")
    p.add_argument("--prune", "-q", action="store_true", help="remove all unused images")

    p = add_command(sub, "imagefsinfo", "return image filesystem info")
    p.add_argument("--output", "-o", default="", help="output format, one of: json|yaml|table (default json)")

    return {
        "pull": cmd_pull,
        "images": cmd_images,
        "image": cmd_images,
        "img": cmd_images,
        "inspecti": cmd_inspecti,
        "rmi": cmd_rmi,
        "imagefsinfo": cmd_imagefsinfo,
    }
