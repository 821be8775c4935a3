"""User namespaces for pods with `hostUsers: false`, built as containerd builds them.

The kubelet sends one UID and one GID mapping per pod (`userns_options`, mode POD). The
pod's user namespace is made with them before the pause container, pinned on a file in
the pod's dir (its network namespace, when the pod has its own, is made inside it: the
namespace must be owned by the pod's user namespace, or the containers could not mount
sysfs or configure their network), and the pause container and every container join it.
Files owned by IDs outside the mappings show up as nobody inside, so the image layers
under each rootfs are idmapped mounts (`mount_setattr(MOUNT_ATTR_IDMAP)`, Linux >= 5.12,
and overlayfs over idmapped layers needs 5.19) and volumes are idmapped by the OCI
runtime (runc >= 1.2, mount `uidMappings`/`gidMappings`).

Mappings are validated by containerd's rules: at most one line each (one range is what
an idmapped rootfs can use), a length of at least 1, both given for POD and none for
NODE; CONTAINER and TARGET modes are refused.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crib import spawn
from crib.errors import FailedPrecondition, Internal, InvalidArgument
from crib.proto.cri import api_pb2

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MAX_ID = 2**32
PIN_TIMEOUT_S = 10.0

# The new mount API (the same numbers on every architecture: the unified syscall table).
SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_MOUNT_SETATTR = 442
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_IDMAP = 0x00100000
MS_BIND = 4096
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


@dataclass(frozen=True)
class IDMap:
    """One line of a uid_map or gid_map: `length` IDs from `container_id` are `host_id` and on."""

    container_id: int
    host_id: int
    length: int

    def oci(self) -> dict[str, int]:
        return {"containerID": self.container_id, "hostID": self.host_id, "size": self.length}

    def to_host(self, container_id: int) -> int | None:
        if self.container_id <= container_id < self.container_id + self.length:
            return self.host_id + container_id - self.container_id
        return None

    def line(self) -> str:
        return f"{self.container_id} {self.host_id} {self.length}\n"


@dataclass(frozen=True)
class PodUserns:
    """A pod's user namespace: its one UID and one GID mapping."""

    uids: IDMap
    gids: IDMap

    def root(self) -> tuple[int, int]:
        """The host uid and gid of the pod's root (what owns its files and rootfs top)."""
        uid, gid = self.uids.to_host(0), self.gids.to_host(0)
        if uid is None or gid is None:
            raise InvalidArgument("namespace_options.userns_options: the mappings do not map ID 0")
        return uid, gid

    def spec(self) -> dict[str, list[dict[str, int]]]:
        """linux.uidMappings and linux.gidMappings of an OCI spec."""
        return {"uidMappings": [self.uids.oci()], "gidMappings": [self.gids.oci()]}


def apply_to_spec(spec: dict[str, Any], userns: PodUserns, userns_path: str, host_network: bool) -> None:
    """Join the pod's user namespace (pinned file or the pause's /proc/<pid>/ns/user) with its
    mappings, as containerd's WithUserNamespace; a pod on the host's network binds the host's /sys
    read-only instead of mounting sysfs, which a user namespace not owning the network namespace
    may not do."""
    linux = spec["linux"]
    linux["namespaces"].append({"type": "user", "path": userns_path})
    linux.update(userns.spec())
    if host_network:
        spec["mounts"] = [
            {
                "destination": "/sys",
                "type": "bind",
                "source": "/sys",
                "options": ["rbind", "rro", "nosuid", "nodev", "noexec"],
            }
            if m["destination"] == "/sys"
            else m
            for m in spec["mounts"]
        ]


def _one_mapping(items: Any, what: str, where: str) -> IDMap | None:
    if len(items) == 0:
        return None
    if len(items) > 1:
        raise InvalidArgument(f"{where}: {what}: only one mapping line is supported, got {len(items)}")
    return _checked(items[0], what, where)


def _checked(m: api_pb2.IDMapping, what: str, where: str) -> IDMap:
    if m.length < 1:
        raise InvalidArgument(f"{where}: {what}: invalid mapping length {m.length}")
    if m.container_id + m.length > MAX_ID or m.host_id + m.length > MAX_ID:
        raise InvalidArgument(f"{where}: {what}: the mapping goes past the last ID ({MAX_ID - 1})")
    return IDMap(m.container_id, m.host_id, m.length)


def parse(opts: api_pb2.NamespaceOption, where: str) -> PodUserns | None:
    """The pod's user namespace from `userns_options`, None for the node's; invalid ones refused."""
    if not opts.HasField("userns_options"):
        return None
    options = opts.userns_options
    field = "namespace_options.userns_options"
    uids = _one_mapping(options.uids, f"{field}.uids", where)
    gids = _one_mapping(options.gids, f"{field}.gids", where)
    mode = options.mode
    if mode == api_pb2.NODE:
        if uids is not None or gids is not None:
            raise InvalidArgument(f"{where}: {field}: mode NODE cannot have UID or GID mappings")
        return None
    if mode == api_pb2.POD:
        if uids is None or gids is None:
            raise InvalidArgument(f"{where}: {field}: mode POD needs one UID and one GID mapping")
        return PodUserns(uids, gids)
    raise InvalidArgument(
        f"{where}: {field}.mode {api_pb2.NamespaceMode.Name(mode)} is not supported "
        "(a user namespace is the pod's, POD, or the node's, NODE)"
    )


def require_support(userns: PodUserns | None, supported: bool, handler: str, where: str) -> None:
    """A user namespace only with a runtime handler that can idmap mounts: else the pod's root
    would be the host's root, or its files unreadable."""
    if userns is not None and not supported:
        raise FailedPrecondition(
            f"{where}: namespace_options.userns_options asks for a user namespace (hostUsers: false), "
            f"but runtime handler {handler!r} has no idmapped mounts (its OCI runtime needs them, "
            "as runc >= 1.2 has, and Linux >= 5.19)"
        )


def mount_mappings(m: api_pb2.Mount, where: str) -> tuple[list[IDMap], list[IDMap]]:
    """A CRI mount's uidMappings and gidMappings: both or neither, every length at least 1."""
    uids = [_checked(x, f"mount {m.container_path}: uidMappings", where) for x in m.uidMappings]
    gids = [_checked(x, f"mount {m.container_path}: gidMappings", where) for x in m.gidMappings]
    if bool(uids) != bool(gids):
        raise InvalidArgument(f"{where}: mount {m.container_path}: uidMappings and gidMappings go together")
    return uids, gids


# --- the kernel side: pinned namespaces and idmapped mounts (blocking) -----------------------

# Run with the interpreter's own python: a multithreaded cribd cannot unshare CLONE_NEWUSER.
_CHILD = r"""
import ctypes, fcntl, os, socket, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
flags = int(sys.argv[1])
if libc.unshare(flags) != 0:
    print("unshare: " + os.strerror(ctypes.get_errno()), flush=True)
    sys.exit(1)
if flags & 0x40000000:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        up = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), 0x8913, req))[1] | 1
        fcntl.ioctl(s.fileno(), 0x8914, struct.pack("16sH14x", b"lo", up))
print("ready", flush=True)
sys.stdin.read()
"""


def _mount(source: str, target: str) -> None:
    if _libc.mount(source.encode(), target.encode(), b"none", MS_BIND, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bind {source} on {target}: {os.strerror(err)}")


def unpin(target: Path) -> None:
    """Undo a pin; missing is fine."""
    if _libc.umount2(os.fsencode(target), MNT_DETACH) != 0:
        pass  # not mounted (or gone): the unlink below is what matters
    with contextlib.suppress(FileNotFoundError):
        target.unlink()


def _readline(proc: subprocess.Popen[bytes], timeout: float) -> str:
    assert proc.stdout is not None
    if not spawn.readable(proc.stdout.fileno(), timeout):
        return "no answer within the timeout"
    return proc.stdout.readline().decode(errors="replace").strip()


def pin(userns: PodUserns, user_target: Path, net_target: Path | None = None) -> None:
    """Make the pod's user namespace (and a network namespace it owns, at `net_target`), pinned
    by bind mounts on the two files. Blocking, bounded by PIN_TIMEOUT_S."""
    flags = CLONE_NEWUSER | (CLONE_NEWNET if net_target is not None else 0)
    pinned: list[Path] = []
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _CHILD, str(flags)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        answer = _readline(proc, PIN_TIMEOUT_S)
        if answer != "ready":
            raise Internal(f"cannot create the pod's user namespace: {answer or 'the helper died'}")
        Path(f"/proc/{proc.pid}/uid_map").write_text(userns.uids.line())
        Path(f"/proc/{proc.pid}/gid_map").write_text(userns.gids.line())
        for target, kind in ((user_target, "user"), (net_target, "net")):
            if target is None:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(target, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))
            pinned.append(target)
            _mount(f"/proc/{proc.pid}/ns/{kind}", str(target))
    except BaseException:
        for target in pinned:
            unpin(target)
        raise
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()  # type: ignore[union-attr]
        try:
            proc.wait(PIN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with contextlib.suppress(OSError):
            proc.stdout.close()  # type: ignore[union-attr]


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _syscall(number: int, *args: Any) -> int:
    rc = _libc.syscall(number, *args)
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(rc)


def idmapped_bind(source: Path, target: Path, userns_file: Path) -> None:
    """Bind `source` on `target` (an existing dir), its IDs shifted by the user namespace pinned at
    `userns_file`: a file owned by 0 shows as the host ID the namespace maps 0 to."""
    userns_fd = os.open(userns_file, os.O_RDONLY | os.O_CLOEXEC)
    try:
        tree = _syscall(SYS_OPEN_TREE, AT_FDCWD, os.fsencode(source), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)
    except OSError as exc:
        os.close(userns_fd)
        raise OSError(exc.errno, f"open_tree {source}: {exc.strerror}") from None
    try:
        attr = _MountAttr(MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
        try:
            _syscall(SYS_MOUNT_SETATTR, tree, b"", AT_EMPTY_PATH, ctypes.byref(attr), ctypes.sizeof(attr))
        except OSError as exc:
            raise OSError(exc.errno, f"idmapping {source}: {exc.strerror}") from None
        _syscall(SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, os.fsencode(target), MOVE_MOUNT_F_EMPTY_PATH)
    finally:
        os.close(tree)
        os.close(userns_fd)
