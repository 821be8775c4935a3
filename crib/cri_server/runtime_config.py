"""RuntimeConfig and UpdateRuntimeConfig: the cgroup driver out, the pod CIDR in."""

from __future__ import annotations

import ipaddress

from crib.errors import InvalidArgument
from crib.proto.cri import api_pb2
from crib.store.state_store import StateStore

_SETTINGS = "settings"
_POD_CIDR = "pod_cidr"


def runtime_config_response(cgroup_driver: str) -> api_pb2.RuntimeConfigResponse:
    driver = api_pb2.SYSTEMD if cgroup_driver == "systemd" else api_pb2.CGROUPFS
    return api_pb2.RuntimeConfigResponse(linux=api_pb2.LinuxRuntimeConfiguration(cgroup_driver=driver))


def parse_pod_cidr(value: str) -> list[str]:
    """The kubelet sends one CIDR, or two comma-separated ones on a dual-stack node."""
    cidrs = []
    for part in value.split(","):
        try:
            cidrs.append(str(ipaddress.ip_network(part.strip(), strict=False)))
        except ValueError:
            raise InvalidArgument(f"pod_cidr {value!r}: {part.strip()!r} is not a CIDR") from None
    return cidrs


def update_pod_cidr(store: StateStore, request: api_pb2.UpdateRuntimeConfigRequest) -> list[str] | None:
    """Record the pod CIDR(s) for the CNI calls to come; an empty one changes nothing."""
    value = request.runtime_config.network_config.pod_cidr
    if not value:
        return None
    cidrs = parse_pod_cidr(value)
    store.put(_SETTINGS, _POD_CIDR, {"cidrs": cidrs})
    return cidrs


def stored_pod_cidr(store: StateStore) -> list[str]:
    record = store.get(_SETTINGS, _POD_CIDR)
    return list(record["cidrs"]) if record else []
