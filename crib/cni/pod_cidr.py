"""The node's pod CIDRs: set by the kubelet through UpdateRuntimeConfig, kept across restarts.

CNI ADD hands them to the IPAM plugin as the `ipRanges` capability, and Status
shows them; both read them from here.
"""

from __future__ import annotations

import ipaddress

from crib.errors import InvalidArgument
from crib.log_setup import get_logger
from crib.store.state_store import StateStore

log = get_logger("crib.cni")

_SETTINGS = "settings"
_POD_CIDR = "pod_cidr"


def parse_pod_cidr(value: str) -> list[str]:
    """The kubelet sends one CIDR, or two comma-separated ones on a dual-stack node."""
    cidrs = []
    for part in value.split(","):
        try:
            cidrs.append(str(ipaddress.ip_network(part.strip(), strict=False)))
        except ValueError:
            raise InvalidArgument(f"pod_cidr {value!r}: {part.strip()!r} is not a CIDR") from None
    return cidrs


class PodCIDRs:
    def __init__(self, store: StateStore) -> None:
        self.store = store
        record = store.get(_SETTINGS, _POD_CIDR)
        self.cidrs: list[str] = list(record["cidrs"]) if record else []

    def __call__(self) -> list[str]:
        return list(self.cidrs)

    def update(self, value: str) -> None:
        """Record the pod CIDR(s) for the CNI calls to come; an empty value changes nothing."""
        if not value:
            return
        cidrs = parse_pod_cidr(value)
        if cidrs == self.cidrs:
            return
        self.store.put(_SETTINGS, _POD_CIDR, {"cidrs": cidrs})
        log.info("pod_cidr.updated", pod_cidrs=cidrs, previous=self.cidrs)
        self.cidrs = cidrs
