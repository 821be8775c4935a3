"""SELinux labels for pods and containers, computed as containerd and CRI-O compute them.

Where SELinux is on (`/sys/fs/selinux/enforce` present and selinuxfs mounted), every pod gets
a process label and a mount label: the policy's container contexts (`lxc_contexts`:
`container_t` and `container_file_t` in container-selinux) with a unique MCS level unless
the pod names one, then the pod's `selinux_options` laid over them as go-selinux's
InitLabels does (user, role, type and level set the process label; user and level the mount
label). A container takes its pod's process label, field by field overridden by its own
options (CRI-O's SelinuxLabel; containerd uses the pod's when the container gives none), so
it shares the pod's level. The process label goes to `process.selinuxLabel`, the mount label
to `linux.mountLabel`, to the rootfs overlay (`context=`) and to every mount the kubelet marks
`selinux_relabel`, whose host path is relabelled (the `security.selinux` xattr, recursively)
unless it is a system path, as go-selinux refuses. Where SELinux is off, a pod or container
that asks for a label is refused: crib cannot apply it, and it must not run unlabelled.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crib.errors import FailedPrecondition, InvalidArgument
from crib.proto.cri import api_pb2

SELINUX_ENFORCE = Path("/sys/fs/selinux/enforce")
MOUNTINFO = Path("/proc/self/mountinfo")
POLICY_ROOT = Path("/etc/selinux")
XATTR = "security.selinux"
# container-selinux's lxc_contexts, used when the policy has none.
DEFAULT_PROCESS = "system_u:system_r:container_t:s0"
DEFAULT_FILE = "system_u:object_r:container_file_t:s0"
# containerd's checkSelinuxLevel.
LEVEL = re.compile(r"^s\d(-s\d)??(:c\d{1,4}(\.c\d{1,4})?(,c\d{1,4}(\.c\d{1,4})?)*)?$")
CATEGORIES = 1024
FIELDS = ("user", "role", "type", "level")
# Paths go-selinux's Relabel refuses (and the home of the user running cribd).
NO_RELABEL = frozenset(
    {
        "/", "/bin", "/boot", "/dev", "/etc", "/etc/passwd", "/etc/pki", "/etc/shadow", "/home",
        "/lib", "/lib64", "/media", "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys",
        "/tmp", "/usr", "/var", "/var/lib", "/var/log",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Labels:
    process: str  # process.selinuxLabel
    mount: str  # linux.mountLabel, the rootfs's context= and relabelled volumes


def selinux_enabled(enforce: Path = SELINUX_ENFORCE, mountinfo: Path = MOUNTINFO) -> bool:
    """SELinux is on: its enforce knob exists and selinuxfs is mounted."""
    if not enforce.exists():
        return False
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return False
    return any(line.split(" - ", 1)[1].split()[:1] == ["selinuxfs"] for line in lines if " - " in line)


def requested(options: api_pb2.SELinuxOption) -> dict[str, str]:
    """The fields the kubelet set, by name; a malformed level is refused as containerd does."""
    fields = {"user": options.user, "role": options.role, "type": options.type, "level": options.level}
    asked = {name: value for name, value in fields.items() if value}
    level = asked.get("level", "")
    if level and not LEVEL.match(level):
        raise InvalidArgument(f"selinux_options.level {level!r} is not an MLS/MCS level (like s0:c1,c2)")
    return asked


def split(label: str) -> dict[str, str]:
    """user:role:type[:level] into its fields (the level may hold colons)."""
    parts = label.split(":", 3)
    if len(parts) < 3:
        raise InvalidArgument(f"{label!r} is not an SELinux context (user:role:type:level)")
    return dict(zip(FIELDS, parts, strict=False))


def join(fields: dict[str, str]) -> str:
    return ":".join(fields[name] for name in FIELDS if fields.get(name))


def container_contexts(root: Path = POLICY_ROOT) -> tuple[str, str]:
    """(process, file) contexts for containers from the loaded policy's lxc_contexts."""
    policy = "targeted"
    with contextlib.suppress(OSError):
        for line in (root / "config").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "SELINUXTYPE" and value.strip():
                policy = value.strip()
    contexts = {"process": DEFAULT_PROCESS, "file": DEFAULT_FILE}
    with contextlib.suppress(OSError):
        for line in (root / policy / "contexts" / "lxc_contexts").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() in contexts and value.strip():
                contexts[key.strip()] = value.strip().strip('"')
    return contexts["process"], contexts["file"]


class SELinux:
    """The node's SELinux: on or off (probed once), and the MCS levels given to pods."""

    def __init__(self, enabled: bool, policy_root: Path = POLICY_ROOT) -> None:
        self.enabled = enabled
        self.policy_root = policy_root
        self._lock = threading.Lock()
        self._levels: set[str] = set()

    @classmethod
    def probe(cls) -> SELinux:
        return cls(selinux_enabled())

    def pod_labels(self, options: api_pb2.SELinuxOption, where: str) -> Labels | None:
        """RunPodSandbox: the pod's labels (None where SELinux is off); the level is reserved."""
        asked = self._asked(options, where)
        if not self.enabled:
            return None
        return self._labels(asked, reserve=True)

    def container_labels(
        self, options: api_pb2.SELinuxOption, pod_process_label: str, where: str
    ) -> Labels | None:
        """CreateContainer: the pod's process label with the container's own fields laid over it."""
        asked = self._asked(options, where)
        if not self.enabled:
            return None
        merged = split(pod_process_label) if pod_process_label else {}
        return self._labels({**merged, **asked}, reserve=False)

    def release(self, process_label: str) -> None:
        """RemovePodSandbox: the pod's level may go to another pod."""
        if process_label:
            with self._lock:
                self._levels.discard(split(process_label).get("level", ""))

    def reserve(self, process_label: str) -> None:
        """Recovery: a pod that still exists keeps its level."""
        if process_label:
            with self._lock:
                self._levels.add(split(process_label).get("level", ""))

    def _asked(self, options: api_pb2.SELinuxOption, where: str) -> dict[str, str]:
        try:
            asked = requested(options)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{where}: {exc.message}") from None
        if asked and not self.enabled:
            raise FailedPrecondition(f"{where}: selinux_options were given, but this node has no SELinux")
        return asked

    def _labels(self, asked: dict[str, str], reserve: bool) -> Labels:
        process, file = container_contexts(self.policy_root)
        pcon, mcon = split(process), split(file)
        with self._lock:
            level = asked.get("level") or self._unique_level(split(process).get("level", "s0"))
            if reserve:
                self._levels.add(level)
        pcon["level"] = mcon["level"] = level
        for key, value in asked.items():
            pcon[key] = value
            if key in ("user", "level"):
                mcon[key] = value
        return Labels(join(pcon), join(mcon))

    def _unique_level(self, base: str) -> str:
        # go-selinux's uniqMcs: two different categories, not given to another pod (lock held).
        sensitivity = base.split(":", 1)[0].split("-", 1)[0] or "s0"
        # Imported here, with hashlib and hmac: only a node with SELinux enforcing labels pods (issue 17).
        import secrets  # noqa: PLC0415

        while True:
            a, b = sorted(secrets.SystemRandom().sample(range(CATEGORIES), 2))
            level = f"{sensitivity}:c{a},c{b}"
            if level not in self._levels:
                return level


def relabel(
    path: str,
    label: str,
    where: str,
    getxattr: Callable[..., bytes] = os.getxattr,
    setxattr: Callable[..., None] = os.setxattr,
) -> None:
    """Give `path` and everything below it `label` (symlinks themselves, never their targets).
    System paths are refused; a file system without xattrs is left alone, as containerd does."""
    excluded = set(NO_RELABEL)
    if home := os.environ.get("HOME"):
        excluded.add(home.rstrip("/") or "/")
    for candidate in {path.rstrip("/") or "/", os.path.realpath(path)}:
        if candidate in excluded:
            raise InvalidArgument(f"{where}: SELinux relabeling of {candidate} is not allowed")
    wanted = label.encode()

    def one(target: str) -> None:
        with contextlib.suppress(OSError):
            if getxattr(target, XATTR, follow_symlinks=False).rstrip(b"\0") == wanted:
                return
        setxattr(target, XATTR, wanted, follow_symlinks=False)

    try:
        one(path)
        if os.path.isdir(path) and not os.path.islink(path):
            for top, dirs, files in os.walk(path):
                for name in (*dirs, *files):
                    one(os.path.join(top, name))
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return
        raise FailedPrecondition(f"{where}: relabeling {path} with {label}: {exc.strerror}") from None
