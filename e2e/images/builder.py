"""Test images made in-process: OCI and Docker manifests around busybox-static.

No Docker engine and no internet here, so e2e tests build their images from
Debian's statically linked busybox and push them to the local registry
through its HTTP API (see registry_client.py). Everything is deterministic:
the same recipe gives the same digests.

Layers are lists of `Entry`, so tests can also build hostile layers (`../`
names, absolute paths, links that escape) entry by entry.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

import zstandard

BUSYBOX = "/bin/busybox"
EPOCH = 1_700_000_000

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"

Compression = Literal["gzip", "zstd", "none"]
Format = Literal["oci", "docker"]


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


@dataclass
class Entry:
    """One tar entry. `kind`: file, dir, symlink, hardlink, char, block, fifo."""

    name: str
    kind: str = "file"
    data: bytes = b""
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    linkname: str = ""
    mtime: int = EPOCH
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, str] = field(default_factory=dict)


_TAR_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def tar_bytes(entries: list[Entry]) -> bytes:
    """An uncompressed PAX tar of the entries, names kept exactly as given."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = _TAR_TYPES[e.kind]
            info.mode = e.mode if e.mode is not None else (0o755 if e.kind == "dir" else 0o644)
            info.uid, info.gid = e.uid, e.gid
            info.mtime = e.mtime
            info.linkname = e.linkname
            info.devmajor, info.devminor = e.devmajor, e.devminor
            if e.xattrs:
                info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in e.xattrs.items()}
            if e.kind == "file":
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def compress(data: bytes, compression: Compression) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    return data


PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "www-data:x:33:33:www-data:/var/www:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = "root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\n"


@cache
def _busybox_applets() -> tuple[str, ...]:
    out = subprocess.run([BUSYBOX, "--list-full"], check=True, capture_output=True, text=True, timeout=30)
    return tuple(sorted(line.strip() for line in out.stdout.splitlines() if line.strip()))


@cache
def _busybox_binary() -> bytes:
    with open(BUSYBOX, "rb") as f:
        return f.read()


def busybox_rootfs() -> list[Entry]:
    """A minimal root: busybox with relative applet links, users root, www-data, nobody."""
    dirs = [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "etc",
        "root",
        "tmp",
        "var",
        "var/www",
        "proc",
        "sys",
        "dev",
    ]
    entries = [Entry(d, "dir", mode=0o1777 if d == "tmp" else 0o755) for d in dirs]
    entries.append(Entry("bin/busybox", data=_busybox_binary(), mode=0o755))
    for applet in _busybox_applets():
        if applet == "bin/busybox":
            continue
        target = os.path.relpath("bin/busybox", os.path.dirname(applet) or ".")
        entries.append(Entry(applet, "symlink", linkname=target, mode=0o777))
    entries += [
        Entry("etc/passwd", data=PASSWD.encode()),
        Entry("etc/group", data=GROUP.encode()),
        Entry("etc/hostname", data=b"busybox\n"),
    ]
    return entries


@dataclass
class LayerSpec:
    entries: list[Entry]
    compression: Compression = "gzip"


@dataclass
class ImageRecipe:
    layers: list[LayerSpec]
    entrypoint: list[str] | None = None
    cmd: list[str] | None = field(default_factory=lambda: ["/bin/sh"])
    env: list[str] = field(default_factory=lambda: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
    working_dir: str = ""
    user: str = ""
    exposed_ports: list[str] = field(default_factory=list)
    stop_signal: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""

    def platform(self) -> dict[str, str]:
        p = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            p["variant"] = self.variant
        return p


@dataclass(frozen=True)
class BuiltImage:
    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]
    diff_ids: tuple[str, ...]
    platform: dict[str, str]

    @property
    def blobs(self) -> tuple[Blob, ...]:
        return (self.config, *self.layers)


@dataclass(frozen=True)
class BuiltIndex:
    index: Blob
    images: tuple[BuiltImage, ...]


def _layer_media_type(fmt: Format, compression: Compression) -> str:
    if fmt == "docker" and compression != "zstd":
        return DOCKER_LAYER + (".gzip" if compression == "gzip" else "")
    # Docker has no zstd type of its own: docker buildx writes the OCI one.
    return OCI_LAYER + {"gzip": "+gzip", "zstd": "+zstd", "none": ""}[compression]


def _json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def build_image(recipe: ImageRecipe, fmt: Format = "oci") -> BuiltImage:
    layers, diff_ids = [], []
    for spec in recipe.layers:
        raw = tar_bytes(spec.entries)
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        layers.append(Blob(_layer_media_type(fmt, spec.compression), compress(raw, spec.compression)))
    container_config: dict[str, Any] = {"Env": recipe.env}
    if recipe.entrypoint is not None:
        container_config["Entrypoint"] = recipe.entrypoint
    if recipe.cmd is not None:
        container_config["Cmd"] = recipe.cmd
    if recipe.working_dir:
        container_config["WorkingDir"] = recipe.working_dir
    if recipe.user:
        container_config["User"] = recipe.user
    if recipe.exposed_ports:
        container_config["ExposedPorts"] = {p: {} for p in recipe.exposed_ports}
    if recipe.stop_signal:
        container_config["StopSignal"] = recipe.stop_signal
    if recipe.labels:
        container_config["Labels"] = recipe.labels
    config = {
        **recipe.platform(),
        "created": "2023-11-14T22:13:20Z",
        "config": container_config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": "2023-11-14T22:13:20Z", "created_by": f"crib e2e layer {i}"}
            for i in range(len(layers))
        ],
    }
    config_blob = Blob(OCI_CONFIG if fmt == "oci" else DOCKER_CONFIG, _json(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST if fmt == "oci" else DOCKER_MANIFEST,
        "config": config_blob.descriptor(),
        "layers": [b.descriptor() for b in layers],
    }
    manifest_blob = Blob(manifest["mediaType"], _json(manifest))
    return BuiltImage(manifest_blob, config_blob, tuple(layers), tuple(diff_ids), recipe.platform())


def build_index(images: list[BuiltImage], fmt: Format = "oci") -> BuiltIndex:
    """A multi-platform index (OCI) or manifest list (Docker) over built images."""
    media_type = OCI_INDEX if fmt == "oci" else DOCKER_LIST
    index = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [img.manifest.descriptor(platform=img.platform) for img in images],
    }
    return BuiltIndex(Blob(media_type, _json(index)), tuple(images))


def busybox_image(
    fmt: Format = "oci", compression: Compression = "gzip", architecture: str = "amd64", **config: Any
) -> BuiltImage:
    """The everyday test image: busybox in one layer plus a small second layer."""
    extra = LayerSpec([Entry("etc/crib-e2e", data=f"{architecture} {compression}\n".encode())], compression)
    recipe = ImageRecipe(
        [LayerSpec(busybox_rootfs(), compression), extra], architecture=architecture, **config
    )
    return build_image(recipe, fmt)
