"""OCI runtime specs: the defaults every crib container gets, and the pieces both the
pause container and workload containers share.

Values follow what the kubelet expects from containerd and CRI-O: the default
mounts, masked and read-only paths, the default capability set, and a PID 1
that reaps. Two host facts shape them: a container's `oom_score_adj` is the
kubelet's value where cribd holds CAP_SYS_RESOURCE, and never below cribd's own
where it does not (runc fails to lower it then); and no rlimit is set, so the
runtime keeps the limits it inherits.
"""

from __future__ import annotations

import functools
from typing import Any

from crib.errors import InvalidArgument
from crib.log_setup import get_logger
from crib.proto.cri import api_pb2
from crib.runtime import seccomp

OCI_VERSION = "1.0.2-dev"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

DEFAULT_CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]

ALL_CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]  # fmt: skip


def available_capabilities() -> list[str]:
    """ALL_CAPABILITIES that cribd itself holds (its bounding set): a container cannot get more.

    Here root lacks CAP_SYS_RESOURCE, so "all capabilities" must mean all of cribd's.
    """
    try:
        with open("/proc/self/status") as f:
            line = next(x for x in f if x.startswith("CapBnd:"))
        mask = int(line.split()[1], 16)
    except (OSError, StopIteration, ValueError):
        return list(ALL_CAPABILITIES)
    return [cap for bit, cap in enumerate(ALL_CAPABILITIES) if mask >> bit & 1]


MASKED_PATHS = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def own_oom_score_adj() -> int:
    try:
        with open("/proc/self/oom_score_adj") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 0


CAP_SYS_RESOURCE = 24


def holds_capability(bit: int, status: str = "/proc/self/status") -> bool:
    try:
        with open(status) as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> bit & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


@functools.cache
def oom_score_floor() -> int | None:
    """The lowest oom_score_adj a container can get: None where cribd may set any value.

    Probed once; without CAP_SYS_RESOURCE the kernel refuses values below the one the
    process (cribd, with the unit's OOMScoreAdjust) was given, so they are raised to it."""
    if holds_capability(CAP_SYS_RESOURCE):
        return None
    floor = own_oom_score_adj()
    get_logger("crib.oci_spec").warning(
        "oom_score_adj.clamped",
        floor=floor,
        reason="cribd lacks CAP_SYS_RESOURCE: lower oom_score_adj values are raised to its own",
    )
    return floor


def clamp_oom_score_adj(value: int) -> int:
    value = min(1000, max(-1000, value))
    floor = oom_score_floor()
    return value if floor is None else max(value, floor)


def default_mounts(privileged: bool) -> list[dict[str, Any]]:
    sys_options = ["nosuid", "noexec", "nodev"] + ([] if privileged else ["ro"])
    cgroup_options = ["nosuid", "noexec", "nodev", "relatime"] + ([] if privileged else ["ro"])
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_options},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": cgroup_options},
    ]


def bind_mount(
    source: str, destination: str, readonly: bool, propagation: str = "rprivate"
) -> dict[str, Any]:
    options = ["rbind", propagation] + (["ro"] if readonly else ["rw"])
    return {"destination": destination, "type": "bind", "source": source, "options": options}


def seccomp_profile(
    profile: api_pb2.SecurityProfile | None, deprecated_path: str, capabilities: set[str], privileged: bool
) -> dict[str, Any] | None:
    """The linux.seccomp section, None for unconfined."""
    if privileged:
        return None
    # Callers pass None when the field is unset: a set RuntimeDefault
    # (enum 0, no ref) serializes to nothing, so ByteSize cannot tell.
    if profile is not None:
        kind = profile.profile_type
        if kind == api_pb2.SecurityProfile.Unconfined:
            return None
        if kind == api_pb2.SecurityProfile.Localhost:
            return seccomp.localhost(profile.localhost_ref)
        return seccomp.runtime_default(capabilities)
    # The deprecated string form: "", "unconfined", "runtime/default", "docker/default", "localhost/<path>".
    if deprecated_path in ("", "unconfined"):
        return None
    if deprecated_path in ("runtime/default", "docker/default"):
        return seccomp.runtime_default(capabilities)
    if deprecated_path.startswith("localhost/"):
        return seccomp.localhost(deprecated_path.removeprefix("localhost"))
    raise InvalidArgument(f"unknown seccomp profile {deprecated_path!r}")


def capabilities_section(caps: list[str]) -> dict[str, list[str]]:
    # Ambient stays empty: only a root process keeps capabilities across exec.
    return {"bounding": caps, "effective": caps, "permitted": caps, "inheritable": [], "ambient": []}


def cgroups_path(parent: str, container_id: str, systemd: bool) -> str:
    if systemd:
        # slice:prefix:name, as runc's systemd driver expects.
        slice_name = parent if parent.endswith(".slice") else "system.slice"
        return f"{slice_name}:crib:{container_id}"
    return f"{(parent or '/crib').rstrip('/')}/{container_id}"


def base_spec(
    *,
    args: list[str],
    env: list[str],
    cwd: str,
    uid: int,
    gid: int,
    additional_gids: list[int],
    rootfs: str,
    readonly_rootfs: bool,
    hostname: str,
    capabilities: list[str],
    no_new_privileges: bool,
    oom_score_adj: int,
    cgroups: str,
    namespaces: list[dict[str, str]],
    mounts: list[dict[str, Any]],
    masked_paths: list[str],
    readonly_paths: list[str],
    seccomp_section: dict[str, Any] | None,
    sysctls: dict[str, str],
    resources: dict[str, Any],
    terminal: bool = False,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    process: dict[str, Any] = {
        "terminal": terminal,
        "user": {"uid": uid, "gid": gid, "additionalGids": additional_gids},
        "args": args,
        "env": env,
        "cwd": cwd or "/",
        "capabilities": capabilities_section(capabilities),
        "noNewPrivileges": no_new_privileges,
        "oomScoreAdj": clamp_oom_score_adj(oom_score_adj),
    }
    linux: dict[str, Any] = {
        "resources": {"devices": [{"allow": False, "access": "rwm"}], **resources},
        "cgroupsPath": cgroups,
        "namespaces": namespaces,
        "maskedPaths": masked_paths,
        "readonlyPaths": readonly_paths,
    }
    if sysctls:
        linux["sysctl"] = dict(sysctls)
    if seccomp_section is not None:
        linux["seccomp"] = seccomp_section
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": rootfs, "readonly": readonly_rootfs},
        "mounts": mounts,
        "linux": linux,
    }
    if hostname:
        spec["hostname"] = hostname
    if annotations:
        spec["annotations"] = annotations
    return spec
