"""The pause container's OCI spec, a pure function of the pod and the pause image's config.

The pause process holds the pod's namespaces (its own mount, and pid, ipc, uts
and network unless the pod shares the host's), carries the pod's sysctls and
its files (/etc/resolv.conf, hosts, hostname) and runs with no privileges of
its own unless the pod is privileged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crib.proto.cri import api_pb2
from crib.runtime import oci_spec, userns

# The pause process matters more than the containers it holds (as containerd's -998), and
# needs no CPU.
SANDBOX_OOM_SCORE_ADJ = -998
SANDBOX_CPU_SHARES = 2


@dataclass(frozen=True)
class PauseContext:
    sandbox_id: str
    config: api_pb2.PodSandboxConfig
    netns: str  # the pod's network namespace ("" for host network)
    files_dir: Path  # resolv.conf, hosts, hostname
    shm: Path  # the pod's /dev/shm (unused with host IPC)
    rootfs: Path
    systemd: bool
    # The pod's own user namespace (hostUsers: false) and the file that pins it.
    userns: userns.PodUserns | None = None
    userns_path: Path | None = None
    # SELinux: the pod's process and mount labels ("" where SELinux is off).
    process_label: str = ""
    mount_label: str = ""


def build(pod: PauseContext, img: dict[str, Any], hostname: str) -> dict[str, Any]:
    """The OCI spec of a pod's pause container: the pod's namespaces, files and sysctls."""
    config = pod.config
    linux = config.linux
    sc = linux.security_context
    opts = sc.namespace_options
    args = [*(img.get("Entrypoint") or []), *(img.get("Cmd") or [])] or ["/catatonit", "-P"]
    uid, gid = 65535, 65535
    user = str(img.get("User", "") or "")
    if user:
        parts = user.split(":")
        if parts[0].isdigit():
            uid = int(parts[0])
            gid = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else uid
    if sc.HasField("run_as_user"):
        uid = sc.run_as_user.value
        gid = uid
    if sc.HasField("run_as_group"):
        gid = sc.run_as_group.value
    privileged = sc.privileged
    caps = oci_spec.available_capabilities() if privileged else []
    namespaces: list[dict[str, str]] = [{"type": "mount"}]
    if opts.pid != api_pb2.NODE:
        namespaces.append({"type": "pid"})
    if opts.ipc != api_pb2.NODE:
        namespaces.append({"type": "ipc"})
    if opts.network != api_pb2.NODE:
        namespaces.append({"type": "uts"})
        namespaces.append({"type": "network", "path": pod.netns})
    directory = pod.files_dir
    mounts = oci_spec.default_mounts(privileged)
    if opts.ipc != api_pb2.NODE:
        mounts.append(oci_spec.bind_mount(str(pod.shm), "/dev/shm", readonly=False))
    else:
        mounts.append(oci_spec.bind_mount("/dev/shm", "/dev/shm", readonly=False))
    for name in ("resolv.conf", "hosts", "hostname"):
        mounts.append(oci_spec.bind_mount(str(directory / name), f"/etc/{name}", readonly=True))
    seccomp = oci_spec.seccomp_profile(
        sc.seccomp if sc.HasField("seccomp") else None, sc.seccomp_profile_path, set(caps), privileged
    )
    spec = oci_spec.base_spec(
        args=args,
        env=img.get("Env") or [oci_spec.DEFAULT_PATH],
        cwd="/",
        uid=uid,
        gid=gid,
        additional_gids=list(sc.supplemental_groups),
        rootfs=str(pod.rootfs),
        readonly_rootfs=True,
        hostname=hostname if opts.network != api_pb2.NODE else "",
        capabilities=caps,
        no_new_privileges=not privileged,
        oom_score_adj=SANDBOX_OOM_SCORE_ADJ,
        cgroups=oci_spec.cgroups_path(linux.cgroup_parent, pod.sandbox_id, pod.systemd),
        namespaces=namespaces,
        mounts=mounts,
        masked_paths=[] if privileged else oci_spec.MASKED_PATHS,
        readonly_paths=[] if privileged else oci_spec.READONLY_PATHS,
        seccomp_section=seccomp,
        sysctls=dict(linux.sysctls),
        resources={"cpu": {"shares": SANDBOX_CPU_SHARES}},
        annotations={
            "io.kubernetes.cri.container-type": "sandbox",
            "io.kubernetes.cri.sandbox-id": pod.sandbox_id,
            "io.kubernetes.cri.sandbox-name": config.metadata.name,
            "io.kubernetes.cri.sandbox-namespace": config.metadata.namespace,
        },
    )
    if pod.process_label:
        spec["process"]["selinuxLabel"] = pod.process_label
        spec["linux"]["mountLabel"] = pod.mount_label
    if pod.userns is not None:
        userns.apply_to_spec(spec, pod.userns, str(pod.userns_path), opts.network == api_pb2.NODE)
    return spec
