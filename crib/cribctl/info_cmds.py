"""crictl's runtime commands: version, info, runtime-config and update-runtime-config."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import grpc

from crib.cribctl import output
from crib.cribctl.client import Command, CommandError, call_error, connect, rpc_error
from crib.cribctl.endpoint import Endpoints
from crib.cribctl.golike import go_quote, tabwrite
from crib.cribctl.util import add_command, show_help
from crib.proto.cri import api_pb2


def cmd_version(args: argparse.Namespace, ep: Endpoints) -> None:
    # crictl's getRuntimeService checks the endpoint first, so a dead socket reads as for every command.
    stub = connect(ep)
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
    stub = connect(ep)
    try:
        r = stub.Status(api_pb2.StatusRequest(verbose=not args.quiet), timeout=ep.timeout)
    except grpc.RpcError as exc:
        raise CommandError(f"getting status of runtime: {rpc_error(exc)}") from None
    if args.output not in ("json", "yaml"):
        raise CommandError(f"getting status of runtime: unsupported format: {go_quote(args.output)}")
    print(output.render_status_documents([info_document(r)], args.output))


def cmd_runtime_config(args: argparse.Namespace, ep: Endpoints) -> None:
    try:
        stub = connect(ep)
    except CommandError as exc:
        raise CommandError(f"get runtime client: {exc}") from None
    try:
        r = stub.RuntimeConfig(api_pb2.RuntimeConfigRequest(), timeout=ep.timeout)
    except grpc.RpcError as exc:
        raise CommandError(f"get runtime config: call RuntimeConfig RPC: {call_error(exc)}") from None
    text = ""
    if r.HasField("linux"):
        driver = api_pb2.CgroupDriver.Name(r.linux.cgroup_driver)
        text = f"cgroup driver:\t{driver}\n"
    # tabwriter.NewWriter(os.Stdout, 10, 1, 3, ' ', 0)
    sys.stdout.write(tabwrite(text, 10, 1, 3, " "))


def cmd_update_runtime_config(args: argparse.Namespace, ep: Endpoints) -> None:
    if args.extra or args.pod_cidr is None:
        show_help(args)
        return
    config = api_pb2.RuntimeConfig(network_config=api_pb2.NetworkConfig(pod_cidr=args.pod_cidr))
    stub = connect(ep)
    try:
        stub.UpdateRuntimeConfig(
            api_pb2.UpdateRuntimeConfigRequest(runtime_config=config), timeout=ep.timeout
        )
    except grpc.RpcError as exc:
        raise CommandError(f"update runtime config: {call_error(exc)}") from None
    print("cribctl: runtime config successfully updated", file=sys.stderr)


def register(sub: Any) -> dict[str, Command]:
    """Adds version, info, runtime-config and update-runtime-config; returns {name or alias: command}."""
    add_command(sub, "version", "display runtime version information")

    p = add_command(sub, "info", "display information of the container runtime")
    p.add_argument("--output", "-o", default="json", help="output format, one of: json|yaml")
    p.add_argument("--quiet", "-q", action="store_true", help="do not show verbose information")

    add_command(sub, "runtime-config", "retrieve the container runtime configuration")

    p = add_command(sub, "update-runtime-config", "update the runtime configuration")
    p.add_argument("extra", nargs="*", help=argparse.SUPPRESS)  # crictl shows its help for arguments
    p.add_argument(
        "--pod-cidr",
        "-p",
        metavar="CIDR",
        help="the new Classless Inter-Domain Routing (CIDR) value to be used for pod IP addresses. "
        "If the CIDR is empty, runtimes should omit it.",
    )

    return {
        "version": cmd_version,
        "info": cmd_info,
        "runtime-config": cmd_runtime_config,
        "update-runtime-config": cmd_update_runtime_config,
    }
