"""Pod sandbox RPCs: proto ⇄ crib.sandbox, filters, and the status the kubelet reads."""

from __future__ import annotations

import json
import time

from crib.proto.cri import api_pb2
from crib.sandbox.sandboxes import READY, Sandbox, Sandboxes

STREAM_CHUNK = 500


def _state(sandbox: Sandbox) -> int:
    return api_pb2.SANDBOX_READY if sandbox.state == READY else api_pb2.SANDBOX_NOTREADY


def sandbox_item(sandbox: Sandbox) -> api_pb2.PodSandbox:
    config = sandbox.config
    return api_pb2.PodSandbox(
        id=sandbox.id,
        metadata=config.metadata,
        state=_state(sandbox),
        created_at=sandbox.created_at,
        labels=config.labels,
        annotations=config.annotations,
        runtime_handler=sandbox.handler,
    )


def sandbox_status(sandboxes: Sandboxes, sandbox: Sandbox, verbose: bool) -> api_pb2.PodSandboxStatusResponse:
    config = sandbox.config
    network = api_pb2.PodSandboxNetworkStatus()
    if sandbox.ips and not sandbox.host_network:
        network.ip = sandbox.ips[0]
        network.additional_ips.extend(api_pb2.PodIP(ip=ip) for ip in sandbox.ips[1:])
    status = api_pb2.PodSandboxStatus(
        id=sandbox.id,
        metadata=config.metadata,
        state=_state(sandbox),
        created_at=sandbox.created_at,
        network=network,
        linux=api_pb2.LinuxPodSandboxStatus(
            namespaces=api_pb2.Namespace(options=config.linux.security_context.namespace_options)
        ),
        labels=config.labels,
        annotations=config.annotations,
        runtime_handler=sandbox.handler,
    )
    response = api_pb2.PodSandboxStatusResponse(status=status, timestamp=time.time_ns())
    if verbose:
        response.info["info"] = json.dumps(sandboxes.to_status(sandbox))
    return response


def matches(sandbox: Sandbox, f: api_pb2.PodSandboxFilter) -> bool:
    if f.id and not sandbox.id.startswith(f.id):
        return False
    if f.HasField("state") and _state(sandbox) != f.state.state:
        return False
    labels = sandbox.config.labels
    return all(labels.get(k) == v for k, v in f.label_selector.items())


def list_sandboxes(sandboxes: Sandboxes, f: api_pb2.PodSandboxFilter) -> list[api_pb2.PodSandbox]:
    return [sandbox_item(s) for s in sandboxes.list() if matches(s, f)]
