"""A container's mounts: the CRI's host-path and image volumes, and the pod's files.

Propagation is checked as containerd checks it: a Bidirectional mount needs a
shared source mount and a HostToContainer one a shared or slave source, or the
propagation would silently not happen. An image volume (`Mount.image`) is the
image's layers, mounted read-only by the caller before the spec is built; its
`image_sub_path` is resolved inside that mount as inside a rootfs (no symlink
leads out of it) and must exist.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crib.container import securejoin
from crib.errors import FailedPrecondition, InvalidArgument
from crib.proto.cri import api_pb2
from crib.runtime import oci_spec, selinux, userns
from crib.runtime.rootfs import unescape_mountinfo

PROPAGATION = {
    api_pb2.PROPAGATION_PRIVATE: "rprivate",
    api_pb2.PROPAGATION_HOST_TO_CONTAINER: "rslave",
    api_pb2.PROPAGATION_BIDIRECTIONAL: "rshared",
}
MOUNTINFO = Path("/proc/self/mountinfo")


@dataclass(frozen=True)
class MountPoint:
    path: str
    shared: bool
    slave: bool


def mount_points(text: str) -> list[MountPoint]:
    """The mount points of a mountinfo document, with their propagation."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 7 or "-" not in fields[6:]:
            continue
        optional = fields[6 : fields.index("-", 6)]
        out.append(
            MountPoint(
                path=unescape_mountinfo(fields[4]),
                shared=any(o.startswith("shared:") for o in optional),
                slave=any(o.startswith("master:") for o in optional),
            )
        )
    return out


def mount_point_of(path: str, points: list[MountPoint]) -> MountPoint:
    """The mount `path` lies on: the last-mounted one with the longest matching prefix."""
    best: MountPoint | None = None
    for point in points:
        prefix = point.path.rstrip("/") + "/"
        if (path == point.path or path.startswith(prefix) or point.path == "/") and (
            best is None or len(point.path) >= len(best.path)
        ):
            best = point
    if best is None:
        raise FailedPrecondition(f"CreateContainer: no mount holds {path}")
    return best


def check_propagation(source: str, propagation: str, mountinfo: Path = MOUNTINFO) -> None:
    if propagation == "rprivate":
        return
    resolved = os.path.realpath(source)
    point = mount_point_of(resolved, mount_points(mountinfo.read_text()))
    if propagation == "rshared" and not point.shared:
        raise FailedPrecondition(
            f"CreateContainer: Bidirectional mount propagation: {source} is on mount {point.path}, "
            "which is not a shared mount"
        )
    if propagation == "rslave" and not (point.shared or point.slave):
        raise FailedPrecondition(
            f"CreateContainer: HostToContainer mount propagation: {source} is on mount {point.path}, "
            "which is neither a shared nor a slave mount"
        )


def _mount_destination(path: str) -> str:
    if not path.startswith("/"):
        raise InvalidArgument(f"CreateContainer: mount path {path!r} is not absolute")
    if ".." in Path(path).parts or "\0" in path:
        raise InvalidArgument(f"CreateContainer: mount path {path!r} escapes the container's root")
    return os.path.normpath(path)


def image_volume_source(mounted: Path, sub_path: str, image: str) -> str:
    """The host path of `sub_path` inside the mounted image volume; it must exist."""
    if not sub_path:
        return str(mounted)
    if sub_path.startswith("/") or ".." in Path(sub_path).parts:
        raise InvalidArgument(f"CreateContainer: image_sub_path {sub_path!r} leaves the image")
    resolved = securejoin.secure_join(mounted, sub_path)
    if not os.path.lexists(resolved):
        raise InvalidArgument(f"CreateContainer: image_sub_path {sub_path!r} does not exist in image {image}")
    return str(resolved)


def _idmapped(mount: dict[str, Any], m: api_pb2.Mount, idmapped_mounts: bool) -> None:
    """The mount's uidMappings/gidMappings, for the OCI runtime to idmap it (runc >= 1.2)."""
    if not (m.uidMappings or m.gidMappings):
        return
    if not idmapped_mounts:
        raise FailedPrecondition(
            f"CreateContainer: mount {m.container_path} has uidMappings/gidMappings, "
            "but the pod's runtime handler cannot idmap mounts"
        )
    uids, gids = userns.mount_mappings(m, "CreateContainer")
    mount["uidMappings"] = [x.oci() for x in uids]
    mount["gidMappings"] = [x.oci() for x in gids]
    mount["options"].append("idmap")


def user_mounts(
    config: api_pb2.ContainerConfig,
    image_volumes: dict[int, Path] | None = None,
    idmapped_mounts: bool = False,
    mount_label: str = "",
) -> tuple[list[dict[str, Any]], str]:
    """The CRI mounts as OCI bind mounts, and the rootfs propagation they need.

    `image_volumes` maps the index of each image mount in config.mounts to where
    its image is mounted read-only on the host. `idmapped_mounts`: the runtime handler
    can idmap a mount with the mappings the kubelet gives it (a pod without host users).
    `mount_label`: the container's SELinux mount label, which a mount the kubelet marks
    `selinux_relabel` gets on its host path ("": SELinux is off, nothing to relabel). Blocking.
    """
    out = []
    rootfs_propagation = ""
    for index, m in enumerate(config.mounts):
        destination = _mount_destination(m.container_path)
        if m.HasField("image") and m.image.image:
            mounted = (image_volumes or {}).get(index)
            if mounted is None:
                raise InvalidArgument(f"CreateContainer: image volume {destination} was not prepared")
            # Always read-only and private, whatever the request says: the layers are shared.
            # Not idmapped (containerd idmaps the layers themselves): a pod with its own user
            # namespace reads them as files of nobody, with their modes.
            source = image_volume_source(mounted, m.image_sub_path, m.image.image)
            out.append(oci_spec.bind_mount(source, destination, readonly=True))
            continue
        if m.image_sub_path:
            raise InvalidArgument(f"CreateContainer: image_sub_path on {destination}, not an image mount")
        if not m.host_path.startswith("/"):
            raise InvalidArgument(f"CreateContainer: mount source {m.host_path!r} is not absolute")
        source = m.host_path
        if not os.path.lexists(source):
            # The kubelet expects missing host paths to be made as directories.
            os.makedirs(source, mode=0o755, exist_ok=True)
        if m.selinux_relabel and mount_label:
            selinux.relabel(source, mount_label, "CreateContainer")
        propagation = PROPAGATION.get(m.propagation, "rprivate")
        check_propagation(source, propagation)
        if propagation == "rshared":
            rootfs_propagation = "rshared"
        elif propagation == "rslave" and rootfs_propagation != "rshared":
            rootfs_propagation = "rslave"
        mount = oci_spec.bind_mount(source, destination, m.readonly, propagation)
        if m.recursive_read_only:
            if not m.readonly or propagation != "rprivate":
                raise InvalidArgument(
                    f"CreateContainer: recursive read-only mount {destination} must be read-only and private"
                )
            mount["options"] = [o for o in mount["options"] if o != "ro"] + ["rro"]
        _idmapped(mount, m, idmapped_mounts)
        out.append(mount)
    return out, rootfs_propagation


def pod_mounts(files_dir: Path, shm: Path | None, taken: set[str], ipc_host: bool) -> list[dict[str, Any]]:
    out = []
    for name in ("hosts", "resolv.conf", "hostname"):
        if f"/etc/{name}" not in taken:
            out.append(oci_spec.bind_mount(str(files_dir / name), f"/etc/{name}", readonly=False))
    if "/dev/shm" not in taken:
        source = "/dev/shm" if ipc_host or shm is None else str(shm)
        out.append(oci_spec.bind_mount(source, "/dev/shm", readonly=False))
    return out
