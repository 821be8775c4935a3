"""crictl's create and run (its container.go): a container from its config files, its images
pulled first when the flags or crictl.yaml's pull-image-on-create and disable-pull-on-run ask for it.
"""

from __future__ import annotations

import argparse
import getpass
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from crib.cribctl import endpoint
from crib.cribctl.client import CallError, Command, CommandError, call_error, call_rpc, connect, connect_image
from crib.cribctl.container_cmds import start_container
from crib.cribctl.cri_config import ConfigError, load_container_config, load_pod_config
from crib.cribctl.endpoint import ClientConfigError, Endpoints
from crib.cribctl.golike import go_quote, proto_text
from crib.cribctl.image_cmds import get_auth, pull_timeout
from crib.cribctl.sandbox_cmds import run_pod_sandbox
from crib.cribctl.util import GoFlag, add_command, duration_flag, pod_config, show_help, warn
from crib.proto.cri import api_pb2, api_pb2_grpc


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


def _config_path(args: argparse.Namespace) -> str | None:
    # As main.main hands it to endpoint.resolve.
    return getattr(args, "config", None) or os.environ.get("CRI_CONFIG_FILE") or None


# --- calls ----------------------------------------------------------------------------------------


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


def _pull_options(args: argparse.Namespace, with_pull: bool, timeout: float) -> PullOptions:
    return PullOptions(
        with_pull=with_pull,
        creds=args.creds or "",
        auth=args.auth or "",
        username=args.username or "",
        timeout=timeout,
    )


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
        sandbox = None
        if pod_config_path:
            sandbox, warnings = load_pod_config(pod_config_path)
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
            _pull(images, name, auth, sandbox, config.image.annotations, pull.timeout)
    request = api_pb2.CreateContainerRequest(pod_sandbox_id=pod_id, config=config, sandbox_config=sandbox)
    r = call_rpc(stub.CreateContainer, request, timeout)
    if not r.container_id:
        raise CallError(f"ContainerId is not set for container {go_quote(proto_text(config.metadata))}")
    return r.container_id


# --- commands -------------------------------------------------------------------------------------


def _refuse_jsonschema(args: argparse.Namespace, positionals: list[str]) -> None:
    if len(positionals) == 1 and positionals[0] in ("jsonschema", "js") and not Path(positionals[0]).exists():
        raise CommandError(
            f"{args.subcommand} {positionals[0]}: cribctl does not print the config JSON schemas"
        )


def _prepare(
    args: argparse.Namespace, ep: Endpoints, configs: int
) -> tuple[api_pb2_grpc.RuntimeServiceStub, api_pb2_grpc.ImageServiceStub | None, PullOptions, float] | None:
    """create and run up to their calls: the flags, whether to pull, the endpoints checked; the runtime,
    the image service when pulling, the pull options and the call timeout, or None after the help."""
    cancel_timeout = duration_flag(args.cancel_timeout)
    pull_wait = pull_timeout(args.pull_timeout, os.environ.get("CRICTL_PULL_TIMEOUT"))
    _refuse_jsonschema(args, args.configs)
    if len(args.configs) != configs:
        show_help(args)
        return None
    if args.no_pull and args.with_pull:
        raise CommandError("conflict: no-pull and with-pull are both set")
    pull_on_create, disable_pull_on_run = pull_settings(_config_path(args))
    if args.subcommand == "run":
        with_pull = (not disable_pull_on_run and not args.no_pull) or args.with_pull
    else:
        with_pull = (not args.no_pull and pull_on_create) or args.with_pull
    pull = _pull_options(args, with_pull, pull_wait)
    images = connect_image(ep) if with_pull else None
    timeout = cancel_timeout or ep.timeout
    return connect(ep, timeout), images, pull, timeout


def cmd_create(args: argparse.Namespace, ep: Endpoints) -> None:
    prepared = _prepare(args, ep, 3)
    if prepared is None:
        return
    stub, images, pull, timeout = prepared
    pod_id, config_path, pod_config_path = args.configs
    try:
        container_id = create_container(stub, images, pod_id, config_path, pod_config_path, pull, timeout)
    except CallError as exc:
        raise CommandError(f"creating container: {exc}") from None
    print(container_id)


def cmd_run(args: argparse.Namespace, ep: Endpoints) -> None:
    prepared = _prepare(args, ep, 2)
    if prepared is None:
        return
    stub, images, pull, timeout = prepared
    config_path, pod_config_path = args.configs
    sandbox = pod_config(pod_config_path, "running container: ")
    try:
        pod_id = run_pod_sandbox(stub, sandbox, args.runtime or "", timeout)
    except CallError as exc:
        raise CommandError(f"running container: run pod sandbox: {exc}") from None
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


# --- registration ---------------------------------------------------------------------------------


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


def register(sub: Any) -> dict[str, Command]:
    """Adds create and run; returns {name or alias: command}."""
    p = add_command(sub, "create", "create a new container")
    p.add_argument("configs", nargs="*", metavar="POD container-config.[json|yaml] pod-config.[json|yaml]")
    _pull_flags(p, run=False)

    p = add_command(sub, "run", "run a new container inside a sandbox")
    p.add_argument("configs", nargs="*", metavar="container-config.[json|yaml] pod-config.[json|yaml]")
    _pull_flags(p, run=True)
    p.add_argument("--runtime", "-r", default="", help="runtime handler to use, as the runtime defines them")

    return {"create": cmd_create, "run": cmd_run}
