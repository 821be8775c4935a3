"""Manifests, indexes and image configs: parsing, validation and platform choice."""

from __future__ import annotations

import json
import platform as _platform
from dataclasses import dataclass
from typing import Any

from crib.errors import InvalidArgument, NotFound

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join((*INDEX_TYPES, *MANIFEST_TYPES))
# Manifests and configs are read whole into memory; real ones are a few KB.
MAX_MANIFEST_BYTES = 4 << 20

_ARCH = {
    "x86_64": ("amd64", ""),
    "aarch64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
}


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict[str, Any] | None = None

    @classmethod
    def parse(cls, raw: Any, where: str) -> Descriptor:
        if not isinstance(raw, dict):
            raise InvalidArgument(f"{where}: descriptor is not an object")
        digest, size, media_type = raw.get("digest"), raw.get("size"), raw.get("mediaType", "")
        if not isinstance(digest, str) or not digest.startswith("sha256:") or len(digest) != 71:
            raise InvalidArgument(f"{where}: descriptor has an unsupported digest {digest!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidArgument(f"{where}: descriptor {digest} has no valid size")
        plat = raw.get("platform")
        return cls(str(media_type), digest, size, plat if isinstance(plat, dict) else None)


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def node_platform() -> Platform:
    arch, variant = _ARCH.get(_platform.machine(), (_platform.machine(), ""))
    return Platform("linux", arch, variant)


def load_json(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise InvalidArgument(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{what} is not a JSON object")
    return doc


def media_type_of(data: bytes, header_type: str, what: str) -> tuple[str, dict[str, Any]]:
    """The manifest's own mediaType (else the HTTP header's), refusing schema 1."""
    doc = load_json(data, what)
    media_type = doc.get("mediaType") or header_type.split(";", maxsplit=1)[0].strip()
    if media_type in DOCKER_SCHEMA1 or doc.get("schemaVersion") == 1:
        raise InvalidArgument(
            f"{what} is a Docker schema 1 manifest, which crib does not support; push the image again "
            "with a current client"
        )
    if media_type not in (*MANIFEST_TYPES, *INDEX_TYPES):
        # An OCI manifest may omit mediaType: tell manifest from index by shape.
        if "manifests" in doc:
            media_type = OCI_INDEX
        elif "config" in doc and "layers" in doc:
            media_type = OCI_MANIFEST
        else:
            raise InvalidArgument(f"{what} has unsupported media type {media_type!r}")
    return media_type, doc


def choose_platform(index: dict[str, Any], want: Platform, what: str) -> Descriptor:
    manifests = index.get("manifests")
    if not isinstance(manifests, list):
        raise InvalidArgument(f"{what}: index has no manifests list")
    candidates = []
    for i, raw in enumerate(manifests):
        d = Descriptor.parse(raw, f"{what} manifests[{i}]")
        p = d.platform or {}
        if p.get("os") != want.os or p.get("architecture") != want.architecture:
            continue
        variant = p.get("variant", "")
        # An entry without a variant fits any variant of its architecture;
        # an exact variant match is preferred.
        if variant and want.variant and variant != want.variant:
            continue
        candidates.append((variant == want.variant, d))
    if not candidates:
        raise NotFound(f"{what}: no image for platform {want} in the index")
    candidates.sort(key=lambda c: not c[0])
    return candidates[0][1]


@dataclass(frozen=True)
class ImageManifest:
    config: Descriptor
    layers: tuple[Descriptor, ...]

    @classmethod
    def parse(cls, doc: dict[str, Any], what: str) -> ImageManifest:
        config = Descriptor.parse(doc.get("config"), f"{what} config")
        layers_raw = doc.get("layers")
        if not isinstance(layers_raw, list):
            raise InvalidArgument(f"{what}: manifest has no layers list")
        layers = tuple(Descriptor.parse(raw, f"{what} layers[{i}]") for i, raw in enumerate(layers_raw))
        return cls(config, layers)


def diff_ids(config: dict[str, Any], what: str) -> list[str]:
    rootfs = config.get("rootfs")
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) and i.startswith("sha256:") for i in ids):
        raise InvalidArgument(f"{what}: image config has no valid rootfs.diff_ids")
    return ids
