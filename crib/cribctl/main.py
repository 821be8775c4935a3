"""cribctl: crib's crictl-compatible debug client.

Global flags, endpoint rules and output formats follow crictl (cri-tools 1.36);
see endpoint.py for the precedence of flags, environment and crictl.yaml.
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc

from crib import __version__
from crib.cribctl import container_cmds, image_cmds, metrics_cmds, node_cmds, output, pod_cmds, stream_cmds
from crib.cribctl.client import Command, CommandError, rpc_error, runtime_stub
from crib.cribctl.endpoint import ClientConfigError, Endpoints, resolve
from crib.proto.cri import api_pb2


def cmd_version(args: argparse.Namespace, ep: Endpoints) -> None:
    stub = runtime_stub(ep)
    try:
        r = stub.Version(api_pb2.VersionRequest(version="v1"), timeout=ep.timeout)
    except grpc.RpcError as exc:
        raise CommandError(f"getting the runtime version: {rpc_error(exc)}") from None
    # fmt.Println("Version: ", v) puts two spaces after the colon.
    print("Version: ", r.version)
    print("RuntimeName: ", r.runtime_name)
    print("RuntimeVersion: ", r.runtime_version)
    print("RuntimeApiVersion: ", r.runtime_api_version)


def info_document(r: api_pb2.StatusResponse) -> dict:
    """The object `crictl info` prints for one StatusResponse."""
    extra: dict = {}
    handlers = [output.go_struct_json(h) for h in r.runtime_handlers]
    if handlers:
        extra["runtimeHandlers"] = handlers
    if r.HasField("features"):
        extra["features"] = output.go_struct_json(r.features)
    return output.status_document(output.proto_json(r.status), r.info, **extra)


def cmd_info(args: argparse.Namespace, ep: Endpoints) -> None:
    stub = runtime_stub(ep)
    try:
        r = stub.Status(api_pb2.StatusRequest(verbose=not args.quiet), timeout=ep.timeout)
    except grpc.RpcError as exc:
        raise CommandError(f"getting status of runtime: {rpc_error(exc)}") from None
    print(output.render_status_documents([info_document(r)], args.output))


COMMANDS: dict[str, Command] = {
    "version": cmd_version,
    "info": cmd_info,
}


# Modules that add subcommands: each has register(subparsers) -> {name: command}.
COMMAND_MODULES: list = [image_cmds, pod_cmds, container_cmds, stream_cmds, metrics_cmds, node_cmds]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cribctl", description="crib's crictl-compatible CRI client")
    p.add_argument(
        "--config", "-c", help="client config file (env CRI_CONFIG_FILE, default /etc/crictl.yaml)"
    )
    p.add_argument("--runtime-endpoint", "-r", help="CRI runtime endpoint (env CONTAINER_RUNTIME_ENDPOINT)")
    p.add_argument("--image-endpoint", "-i", help="CRI image endpoint (env IMAGE_SERVICE_ENDPOINT)")
    p.add_argument("--timeout", "-t", help="timeout of connecting and of each call, e.g. 2s (default 2s)")
    p.add_argument("--debug", "-D", action="store_true", default=None, help="enable debug output")
    p.add_argument("--version", "-v", action="version", version=f"cribctl version {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("version", help="display runtime version information")
    info = sub.add_parser("info", help="display information of the container runtime")
    info.add_argument("--output", "-o", default="json", choices=("json", "yaml"), help="output format")
    info.add_argument("--quiet", "-q", action="store_true", help="do not show verbose information")
    for module in COMMAND_MODULES:
        COMMANDS.update(module.register(sub))
    return p


# Options whose values may start with "-" (crictl takes "--since -1h"); argparse would read the
# value as an option, so such pairs are joined into "--since=-1h" first.
DASH_VALUE_OPTIONS = frozenset({"--since"})


def join_dash_values(argv: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--":
            return out + argv[i:]
        if argv[i] in DASH_VALUE_OPTIONS and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(join_dash_values(sys.argv[1:] if argv is None else argv))
    if not args.command:
        p.print_help()
        return 1
    try:
        ep = resolve(
            runtime_endpoint=args.runtime_endpoint or os.environ.get("CONTAINER_RUNTIME_ENDPOINT") or None,
            image_endpoint=args.image_endpoint or os.environ.get("IMAGE_SERVICE_ENDPOINT") or None,
            timeout=args.timeout,
            debug=args.debug,
            config_path=args.config or os.environ.get("CRI_CONFIG_FILE") or None,
        )
        COMMANDS[args.command](args, ep)
    except (CommandError, ClientConfigError) as exc:
        print(f"cribctl: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
