"""cribctl: crib's crictl-compatible debug client.

Global flags, endpoint rules and output formats follow crictl (cri-tools 1.36);
see endpoint.py for the precedence of flags, environment and crictl.yaml.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

import grpc

from crib import __version__
from crib.cribctl import output
from crib.cribctl.endpoint import ClientConfigError, Endpoints, grpc_target, resolve
from crib.proto.cri import api_pb2, api_pb2_grpc


class CommandError(Exception):
    pass


def _go_code(code: grpc.StatusCode) -> str:
    # Go's codes.Code.String(): DEADLINE_EXCEEDED → DeadlineExceeded.
    return "".join(part.capitalize() for part in code.name.split("_"))


def rpc_error(exc: grpc.RpcError) -> str:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return f"rpc error: code = {_go_code(code)} desc = {details}"


def runtime_stub(ep: Endpoints) -> api_pb2_grpc.RuntimeServiceStub:
    channel = grpc.insecure_channel(grpc_target(ep.runtime))
    return api_pb2_grpc.RuntimeServiceStub(channel)


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
    doc: dict = {"status": output.proto_json(r.status)}
    handlers = [output.go_struct_json(h) for h in r.runtime_handlers]
    if handlers:
        doc["runtimeHandlers"] = handlers
    if r.HasField("features"):
        doc["features"] = output.go_struct_json(r.features)
    for key in sorted(r.info):
        value = r.info[key]
        if value.startswith("{"):
            doc[key] = json.loads(value)
        else:
            doc[key] = value.strip('"')
    return doc


def cmd_info(args: argparse.Namespace, ep: Endpoints) -> None:
    stub = runtime_stub(ep)
    try:
        r = stub.Status(api_pb2.StatusRequest(verbose=not args.quiet), timeout=ep.timeout)
    except grpc.RpcError as exc:
        raise CommandError(f"getting status of runtime: {rpc_error(exc)}") from None
    doc = info_document(r)
    if args.output == "json":
        print(output.go_json_indent(doc))
    elif args.output == "yaml":
        print(output.go_yaml(doc))
    else:
        raise CommandError(f"unsupported format: {args.output!r}")


COMMANDS: dict[str, Callable[[argparse.Namespace, Endpoints], None]] = {
    "version": cmd_version,
    "info": cmd_info,
}


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
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
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
