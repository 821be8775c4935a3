"""A workload container's OCI spec: the CRI ContainerConfig merged with its image and pod.

Kubernetes semantics: `command` replaces the image's Entrypoint (and then its
Cmd is dropped), `args` replaces Cmd; the config's env overrides the image's;
the user comes from run_as_user/run_as_username/run_as_group or the image's
User, resolved through the image's own /etc/passwd and /etc/group; the
container joins the pause container's network, IPC and UTS namespaces, and
its PID namespace per the pod's mode.
"""

from __future__ import annotations

import contextlib
import os
import signal as signal_mod
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crib.container import securejoin, signals
from crib.container.mounts import pod_mounts, user_mounts
from crib.container.user import ExecUser, resolve_user
from crib.errors import InvalidArgument
from crib.image_service.image_store import ImageRecord
from crib.proto.cri import api_pb2
from crib.runtime import lsm, oci_spec, selinux, userns

HUGETLB_V1 = Path("/sys/fs/cgroup/hugetlb")
MEMSW = Path("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
CGROUP2_ONLY = Path("/sys/fs/cgroup/cgroup.controllers")


@dataclass(frozen=True)
class PodContext:
    """What a container takes from its pod."""

    sandbox_id: str
    pause_pid: int
    netns: str  # "" for host network
    config: api_pb2.PodSandboxConfig
    hostname: str
    files_dir: Path  # resolv.conf, hosts, hostname
    shm: Path | None  # the pod's /dev/shm (None: host IPC)
    cgroup_parent: str
    # The pod's own user namespace (hostUsers: false), which every container joins.
    userns: userns.PodUserns | None = None
    # The pod's runtime handler idmaps mounts (OCI mount uidMappings/gidMappings).
    idmapped_mounts: bool = False


@dataclass(frozen=True)
class BuiltSpec:
    spec: dict[str, Any]
    user: ExecUser
    stop_signal: int


def image_config(image: ImageRecord) -> dict[str, Any]:
    cfg = image.config.get("config")
    return cfg if isinstance(cfg, dict) else {}


def process_args(config: api_pb2.ContainerConfig, img: dict[str, Any]) -> list[str]:
    entrypoint = list(img.get("Entrypoint") or [])
    cmd = list(img.get("Cmd") or [])
    if config.command:
        entrypoint, cmd = list(config.command), list(config.args)
    elif config.args:
        cmd = list(config.args)
    args = entrypoint + cmd
    if not args:
        raise InvalidArgument("CreateContainer: no command: neither the config nor the image gives one")
    return args


def process_env(config: api_pb2.ContainerConfig, img: dict[str, Any], hostname: str) -> list[str]:
    env: dict[str, str] = {}
    if hostname:
        env["HOSTNAME"] = hostname
    for item in img.get("Env") or [oci_spec.DEFAULT_PATH]:
        key, _, value = str(item).partition("=")
        env[key] = value
    for kv in config.envs:
        if not kv.key or "=" in kv.key:
            raise InvalidArgument(f"CreateContainer: invalid environment variable name {kv.key!r}")
        # cri-api 0.36 carries values as bytes; a process environment is text.
        env[kv.key] = kv.value.decode("utf-8", errors="replace")
    return [f"{k}={v}" for k, v in env.items()]


def stop_signal(config: api_pb2.ContainerConfig, img: dict[str, Any]) -> int:
    if config.stop_signal != api_pb2.RUNTIME_DEFAULT:
        try:
            name = api_pb2.Signal.Name(config.stop_signal)
        except ValueError:  # an open enum: any number arrives, not only the named ones
            number = config.stop_signal
            raise InvalidArgument(f"CreateContainer: stop_signal {number} is not a Signal") from None
        value = signals.number(name)
        return int(signal_mod.SIGTERM) if value is None else value
    text = str(img.get("StopSignal") or "")
    if text:
        value = signals.number(text)
        if value is None:
            raise InvalidArgument(f"the image's StopSignal {text!r} is not a signal")
        return value
    return int(signal_mod.SIGTERM)


def _capability(name: str) -> str:
    upper = name.upper()
    return upper if upper.startswith("CAP_") or upper == "ALL" else "CAP_" + upper


def capabilities(sc: api_pb2.LinuxContainerSecurityContext) -> tuple[list[str], list[str]]:
    """(bounding/effective/permitted set, ambient set)."""
    if sc.privileged:
        return oci_spec.available_capabilities(), []
    add = [_capability(c) for c in sc.capabilities.add_capabilities]
    drop = [_capability(c) for c in sc.capabilities.drop_capabilities]
    ambient = [_capability(c) for c in sc.capabilities.add_ambient_capabilities]
    for name in (*add, *drop, *ambient):
        if name != "ALL" and name not in oci_spec.ALL_CAPABILITIES:
            raise InvalidArgument(f"CreateContainer: unknown capability {name!r}")
    caps = list(oci_spec.DEFAULT_CAPABILITIES)
    if "ALL" in add:
        caps = oci_spec.available_capabilities()
    if "ALL" in drop:
        caps = []
    caps += [c for c in add if c != "ALL" and c not in caps]
    caps = [c for c in caps if c not in drop or c in add]
    caps += [c for c in ambient if c not in caps]
    return caps, ambient


def _user_string(sc: api_pb2.LinuxContainerSecurityContext, img: dict[str, Any]) -> str:
    if sc.run_as_username:
        return sc.run_as_username
    if sc.HasField("run_as_user"):
        return str(sc.run_as_user.value)
    return str(img.get("User") or "")


def namespaces(
    pod: PodContext, sc: api_pb2.LinuxContainerSecurityContext, target_pid: int
) -> list[dict[str, str]]:
    opts = sc.namespace_options
    pod_opts = pod.config.linux.security_context.namespace_options
    out: list[dict[str, str]] = [{"type": "mount"}]
    if pod_opts.network != api_pb2.NODE:
        out.append({"type": "network", "path": pod.netns})
        out.append({"type": "uts", "path": f"/proc/{pod.pause_pid}/ns/uts"})
    if pod_opts.ipc != api_pb2.NODE:
        out.append({"type": "ipc", "path": f"/proc/{pod.pause_pid}/ns/ipc"})
    if opts.pid == api_pb2.POD and pod_opts.pid != api_pb2.NODE:
        out.append({"type": "pid", "path": f"/proc/{pod.pause_pid}/ns/pid"})
    elif opts.pid == api_pb2.CONTAINER:
        out.append({"type": "pid"})
    elif opts.pid == api_pb2.TARGET:
        if target_pid <= 0:
            raise InvalidArgument(f"CreateContainer: target container {opts.target_id!r} is not running")
        out.append({"type": "pid", "path": f"/proc/{target_pid}/ns/pid"})
    return out


def devices(
    config: api_pb2.ContainerConfig, privileged: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(linux.devices, device cgroup rules)."""
    specs: list[dict[str, Any]] = []
    rules: list[dict[str, Any]] = []
    wanted = [(d.host_path, d.container_path, d.permissions or "rwm") for d in config.devices]
    if privileged:
        rules.append({"allow": True, "access": "rwm"})
        wanted += [(str(p), str(p), "rwm") for p in _host_devices()]
    seen = set()
    for host, container, perms in wanted:
        try:
            st = os.stat(host)
        except FileNotFoundError:
            raise InvalidArgument(f"CreateContainer: device {host} does not exist") from None
        except (OSError, ValueError) as exc:
            # Longer than PATH_MAX, a NUL, a file taken for a directory, a symlink loop: the
            # request's fault, and no device either way.
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            # The reason first: the error's text is capped, and the path may be kilobytes.
            raise InvalidArgument(
                f"CreateContainer: device path cannot be looked up ({why}): {host!r}"
            ) from None
        if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            raise InvalidArgument(f"CreateContainer: {host} is not a device node")
        if container in seen:
            continue
        seen.add(container)
        kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        specs.append(
            {
                "path": container,
                "type": kind,
                "major": major,
                "minor": minor,
                "fileMode": stat.S_IMODE(st.st_mode),
                "uid": 0,
                "gid": 0,
            }
        )
        if not privileged:
            rules.append({"allow": True, "type": kind, "major": major, "minor": minor, "access": perms})
    return specs, rules


def _host_devices() -> list[Path]:
    out = []
    skip = ("/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/fd", "/dev/console")
    for dirpath, dirnames, filenames in os.walk("/dev"):
        if dirpath.startswith(skip):
            dirnames[:] = []
            continue
        for name in filenames:
            path = Path(dirpath) / name
            with contextlib.suppress(OSError):
                st = path.lstat()
                if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                    out.append(path)
    return out


# What the kernel takes for CFS bandwidth (kernel/sched/core.c): a period of 1 ms to 1 s, a
# quota of at least 1 ms and below 2^44 us, or -1 (none).
CFS_PERIOD_US = (1000, 1_000_000)
CFS_QUOTA_US = (1000, (1 << 44) - 1)
CPU_SHARES = (2, 262144)  # runc's bounds (the kernel's, which it refuses to clamp)


def check_resources(res: api_pb2.LinuxContainerResources) -> None:
    """Refuse values runc cannot read (int64 in the CRI, uint64 in the OCI spec) or the kernel
    refuses, before a runtime call fails on them; 0 means unset."""

    def refuse(name: str, why: str) -> None:
        raise InvalidArgument(f"resources: {name} {getattr(res, name)} {why}")

    if res.cpu_shares and not CPU_SHARES[0] <= res.cpu_shares <= CPU_SHARES[1]:
        refuse("cpu_shares", "must be 2 to 262144")
    if res.cpu_period and not CFS_PERIOD_US[0] <= res.cpu_period <= CFS_PERIOD_US[1]:
        refuse("cpu_period", "must be 1000 to 1000000 (microseconds)")
    if res.cpu_quota not in (0, -1) and not CFS_QUOTA_US[0] <= res.cpu_quota <= CFS_QUOTA_US[1]:
        refuse("cpu_quota", "must be -1 or at least 1000 (microseconds)")
    for name in ("memory_limit_in_bytes", "memory_swap_limit_in_bytes"):
        if getattr(res, name) < -1:
            refuse(name, "must be -1 (no limit) or a number of bytes")


def resources(res: api_pb2.LinuxContainerResources) -> dict[str, Any]:
    check_resources(res)
    out: dict[str, Any] = {}
    cpu: dict[str, Any] = {}
    if res.cpu_shares:
        cpu["shares"] = res.cpu_shares
    if res.cpu_quota:
        cpu["quota"] = res.cpu_quota
    if res.cpu_period:
        cpu["period"] = res.cpu_period
    if res.cpuset_cpus:
        cpu["cpus"] = res.cpuset_cpus
    if res.cpuset_mems:
        cpu["mems"] = res.cpuset_mems
    if cpu:
        out["cpu"] = cpu
    memory: dict[str, Any] = {}
    if res.memory_limit_in_bytes:
        memory["limit"] = res.memory_limit_in_bytes
    # Swap accounting may be off (v1 without memsw): then the limit stands alone.
    if res.memory_swap_limit_in_bytes and (MEMSW.exists() or CGROUP2_ONLY.exists()):
        memory["swap"] = res.memory_swap_limit_in_bytes
    if memory:
        out["memory"] = memory
    # The kubelet sends a limit (often 0) for every page size; only a hugetlb
    # controller that runc's cgroup manager can reach can take them.
    if res.hugepage_limits and (HUGETLB_V1.exists() or CGROUP2_ONLY.exists()):
        out["hugepageLimits"] = [{"pageSize": h.page_size, "limit": h.limit} for h in res.hugepage_limits]
    if res.unified and CGROUP2_ONLY.exists():
        out["unified"] = dict(res.unified)
    return out


def build(
    container_id: str,
    config: api_pb2.ContainerConfig,
    image: ImageRecord,
    pod: PodContext,
    rootfs: Path,
    systemd: bool,
    target_pid: int = 0,
    apparmor: lsm.AppArmor | None = None,
    image_volumes: dict[int, Path] | None = None,
    labels: selinux.Labels | None = None,
) -> BuiltSpec:
    """The OCI spec; blocking (it reads the image's user files and creates the working dir)."""
    img = image_config(image)
    sc = config.linux.security_context
    privileged = sc.privileged
    if privileged and not pod.config.linux.security_context.privileged:
        raise InvalidArgument("CreateContainer: a privileged container needs a privileged pod")
    user_text = _user_string(sc, img)
    run_as_group = sc.run_as_group.value if sc.HasField("run_as_group") else None
    user = resolve_user(
        rootfs,
        user_text,
        run_as_group,
        list(sc.supplemental_groups),
        strict_groups=sc.supplemental_groups_policy == api_pb2.Strict,
    )
    cwd = config.working_dir or str(img.get("WorkingDir") or "") or "/"
    if not cwd.startswith("/"):
        raise InvalidArgument(f"CreateContainer: working dir {cwd!r} is not absolute")
    securejoin.mkdir_all(rootfs, cwd, owner=pod.userns.root() if pod.userns is not None else None)
    caps, ambient = capabilities(sc)
    apparmor_profile = (apparmor or lsm.AppArmor.probe()).profile_for(sc)
    mount_label = labels.mount if labels else ""
    mounts_user, rootfs_propagation = user_mounts(config, image_volumes, pod.idmapped_mounts, mount_label)
    taken = {m["destination"] for m in mounts_user}
    ipc_host = pod.config.linux.security_context.namespace_options.ipc == api_pb2.NODE
    mounts = (
        [m for m in oci_spec.default_mounts(privileged) if m["destination"] not in taken]
        + pod_mounts(pod.files_dir, pod.shm, taken, ipc_host)
        + mounts_user
    )
    device_specs, device_rules = devices(config, privileged)
    seccomp = oci_spec.seccomp_profile(
        sc.seccomp if sc.HasField("seccomp") else None, sc.seccomp_profile_path, set(caps), privileged
    )
    # An empty list means "the defaults", as in containerd (proto3 cannot tell it from unset).
    masked = [] if privileged else (list(sc.masked_paths) or oci_spec.MASKED_PATHS)
    readonly = [] if privileged else (list(sc.readonly_paths) or oci_spec.READONLY_PATHS)
    res = resources(config.linux.resources)
    spec = oci_spec.base_spec(
        args=process_args(config, img),
        env=process_env(config, img, pod.hostname),
        cwd=cwd,
        uid=user.uid,
        gid=user.gid,
        additional_gids=list(user.additional_gids),
        rootfs=str(rootfs),
        readonly_rootfs=sc.readonly_rootfs,
        hostname=pod.hostname if pod.netns else "",
        capabilities=caps,
        no_new_privileges=sc.no_new_privs,
        oom_score_adj=config.linux.resources.oom_score_adj,
        cgroups=oci_spec.cgroups_path(pod.cgroup_parent, container_id, systemd),
        namespaces=namespaces(pod, sc, target_pid),
        mounts=mounts,
        masked_paths=masked,
        readonly_paths=readonly,
        seccomp_section=seccomp,
        sysctls={},
        resources=res,
        terminal=config.tty,
        annotations={
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.container-name": config.metadata.name,
            "io.kubernetes.cri.sandbox-id": pod.sandbox_id,
            "io.kubernetes.cri.image-name": config.image.image,
        },
    )
    process = spec["process"]
    if ambient:
        process["capabilities"]["ambient"] = ambient
        process["capabilities"]["inheritable"] = ambient
    if apparmor_profile:
        process["apparmorProfile"] = apparmor_profile
    if labels is not None:
        process["selinuxLabel"] = labels.process
        spec["linux"]["mountLabel"] = labels.mount
    linux = spec["linux"]
    if device_specs:
        linux["devices"] = device_specs
    linux["resources"]["devices"] += device_rules
    if rootfs_propagation:
        linux["rootfsPropagation"] = rootfs_propagation
    if pod.userns is not None:
        host_network = pod.config.linux.security_context.namespace_options.network == api_pb2.NODE
        userns.apply_to_spec(spec, pod.userns, f"/proc/{pod.pause_pid}/ns/user", host_network)
    return BuiltSpec(spec, user, stop_signal(config, img))
