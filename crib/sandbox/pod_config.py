"""What a PodSandboxConfig asks for: checked before anything is made (validate), and turned
into the pod's user namespace, the CNI capability args of its ADD and the writes to its own
cgroup (UpdatePodSandboxResources)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crib.errors import InvalidArgument
from crib.log_setup import get_logger
from crib.proto.cri import api_pb2
from crib.runtime import userns
from crib.runtime.cgroup_stats import cgroup_dirs
from crib.sandbox.sysctls import check_sysctls

log = get_logger("crib.sandbox")

_NOT_IN_NAMES = ("\0", "/", ";", "=")


def validate(config: api_pb2.PodSandboxConfig) -> None:
    meta = config.metadata
    for field_name in ("name", "namespace", "uid"):
        value = getattr(meta, field_name)
        if not value:
            raise InvalidArgument(f"RunPodSandbox: metadata.{field_name} is empty")
        # ";" and "=" separate CNI_ARGS' pairs (K8S_POD_NAME=…;K8S_POD_NAMESPACE=…): a plugin
        # would refuse the ADD. No Kubernetes name, namespace or UID holds one.
        if any(c in value for c in _NOT_IN_NAMES) or len(value) > 253:
            raise InvalidArgument(f"RunPodSandbox: metadata.{field_name} {value!r} is not a valid name")
    for pm in config.port_mappings:
        if not 0 <= pm.host_port <= 65535 or not 0 < pm.container_port <= 65535:
            raise InvalidArgument(f"RunPodSandbox: invalid port mapping {pm.host_port}:{pm.container_port}")
    if config.log_directory and not config.log_directory.startswith("/"):
        raise InvalidArgument(f"RunPodSandbox: log_directory {config.log_directory!r} is not absolute")
    sc = config.linux.security_context
    userns.parse(sc.namespace_options, "RunPodSandbox")
    check_sysctls(config.linux.sysctls, sc.namespace_options)


def pod_userns(config: api_pb2.PodSandboxConfig) -> userns.PodUserns | None:
    """The pod's own user namespace (hostUsers: false), None when it uses the node's."""
    return userns.parse(config.linux.security_context.namespace_options, "RunPodSandbox")


def check_userns(config: api_pb2.ContainerConfig, pod: api_pb2.PodSandboxConfig) -> userns.PodUserns | None:
    """The container's user namespace is its pod's: the same mode and mappings, as containerd checks."""
    own = userns.parse(config.linux.security_context.namespace_options, "CreateContainer")
    if own != pod_userns(pod):
        raise InvalidArgument(
            "CreateContainer: namespace_options.userns_options differs from the pod's "
            "(a container runs in its pod's user namespace, with the same mappings)"
        )
    return own


_QUANTITY = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def _bits_per_second(value: str) -> int:
    number = value.rstrip("kMGTi")
    try:
        return int(float(number) * _QUANTITY[value[len(number) :]])
    except (KeyError, ValueError):
        raise InvalidArgument(f"invalid bandwidth {value!r}") from None


def capability_args(config: api_pb2.PodSandboxConfig, pod_cidrs: list[str]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    protocols = {api_pb2.TCP: "tcp", api_pb2.UDP: "udp", api_pb2.SCTP: "sctp"}
    mappings = [
        {
            "hostPort": pm.host_port,
            "containerPort": pm.container_port,
            "protocol": protocols.get(pm.protocol, "tcp"),
            **({"hostIP": pm.host_ip} if pm.host_ip else {}),
        }
        for pm in config.port_mappings
        if pm.host_port > 0
    ]
    if mappings:
        args["portMappings"] = mappings
    dns = config.dns_config
    if dns.servers or dns.searches or dns.options:
        args["dns"] = {
            "servers": list(dns.servers),
            "searches": list(dns.searches),
            "options": list(dns.options),
        }
    bandwidth = {}
    for direction in ("ingress", "egress"):
        if value := config.annotations.get(f"kubernetes.io/{direction}-bandwidth"):
            bandwidth[f"{direction}Rate"] = _bits_per_second(value)
            bandwidth[f"{direction}Burst"] = 2**31 - 1
    if bandwidth:
        args["bandwidth"] = bandwidth
    if pod_cidrs:
        args["ipRanges"] = [[{"subnet": cidr}] for cidr in pod_cidrs]
    return args


def write_pod_cgroup(parent: str, res: api_pb2.LinuxContainerResources) -> None:
    dirs = cgroup_dirs(parent, systemd=False)
    writes: list[tuple[Path | None, str]] = []
    if dirs.mode == "v2":
        base = dirs.unified
        if res.cpu_shares:
            # cgroup v2's weight from v1 shares, as runc converts it.
            writes.append(
                (base / "cpu.weight" if base else None, str(1 + ((res.cpu_shares - 2) * 9999) // 262142))
            )
        if res.cpu_quota:
            writes.append((base / "cpu.max" if base else None, f"{res.cpu_quota} {res.cpu_period or 100000}"))
        if res.memory_limit_in_bytes:
            writes.append((base / "memory.max" if base else None, str(res.memory_limit_in_bytes)))
    else:
        cpu, memory = dirs.controller("cpu"), dirs.controller("memory")
        if res.cpu_shares:
            writes.append((cpu / "cpu.shares" if cpu else None, str(res.cpu_shares)))
        if res.cpu_period:
            writes.append((cpu / "cpu.cfs_period_us" if cpu else None, str(res.cpu_period)))
        if res.cpu_quota:
            writes.append((cpu / "cpu.cfs_quota_us" if cpu else None, str(res.cpu_quota)))
        if res.memory_limit_in_bytes:
            writes.append(
                (memory / "memory.limit_in_bytes" if memory else None, str(res.memory_limit_in_bytes))
            )
    for path, value in writes:
        if path is None or not path.exists():
            continue
        try:
            path.write_text(value)
        except OSError as exc:
            log.warning("sandbox.resources_write_failed", path=str(path), error=exc.strerror)
