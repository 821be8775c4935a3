"""Image archive files as other tools write them, for testing `cribctl load`.

Three shapes, all built in-process from `builder` images:
- `oci_layout_tar`: an OCI Image Layout in a tar, like `ctr export`,
  `skopeo copy ... oci-archive:` or `podman save --format oci-archive`.
- `docker_save_tar`: the classic `docker save` (docker < 25): manifest.json,
  `repositories`, `<id>/layer.tar` holding uncompressed layers.
- `docker_save_tar_v25`: what docker >= 25 writes: an OCI layout whose layers
  are uncompressed, plus the classic manifest.json and `repositories`
  pointing into `blobs/sha256/`.

Every tar is deterministic: sorted paths (as docker's directory walk gives),
parent directories included, uid/gid 0, mode 0644 (0755 for directories)
and mtime `builder.EPOCH`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any, Literal

import zstandard

from e2e.images.builder import (
    EPOCH,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Blob,
    BuiltImage,
    BuiltIndex,
)

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
OCI_LAYOUT = {"imageLayoutVersion": "1.0.0"}

RefNameStyle = Literal["name", "tag"]


def _canonical_json(obj: Any) -> bytes:
    # The same canonical form as builder.build_image, so digests are stable.
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _blob_path(digest: str) -> str:
    algorithm, _, hex_ = digest.partition(":")
    return f"blobs/{algorithm}/{hex_}"


def _add_file(files: dict[str, bytes], name: str, data: bytes) -> None:
    # Content-addressed paths may come up more than once (a layer shared by
    # two images); the dict keeps one copy, and equal paths must mean equal bytes.
    if files.setdefault(name, data) != data:
        raise ValueError(f"two different contents for {name}")


def _write_tar(path: Path, files: dict[str, bytes]) -> None:
    """Write `files` as a tar at `path`, adding every parent directory."""
    dirs = {"/".join(name.split("/")[:i]) + "/" for name in files for i in range(1, name.count("/") + 1)}
    # "a/" sorts before "a/b", so each directory precedes its contents.
    with tarfile.open(path, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(dirs | set(files)):
            is_dir = name.endswith("/")
            info = tarfile.TarInfo(name.rstrip("/") if is_dir else name)
            info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
            info.mode = 0o755 if is_dir else 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = EPOCH
            if is_dir:
                tar.addfile(info)
            else:
                info.size = len(files[name])
                tar.addfile(info, io.BytesIO(files[name]))


def decompress_layer(blob: Blob) -> bytes:
    """The uncompressed tar of a layer blob, chosen by its media type."""
    media_type = blob.media_type
    if media_type.endswith(("+gzip", ".gzip")):
        return gzip.decompress(blob.data)
    if media_type.endswith(("+zstd", ".zstd")):
        # decompressobj, unlike decompress(), needs no content size in the frame header.
        return zstandard.ZstdDecompressor().decompressobj().decompress(blob.data)
    if media_type.endswith(".tar"):
        return blob.data
    raise ValueError(f"unknown layer media type {media_type}")


def _uncompressed_layers(image: BuiltImage) -> list[tuple[str, bytes]]:
    """(diff_id hex, tar bytes) per layer, checked against the config's diff_ids."""
    if not image.layers:
        # docker refuses such an export too ("empty export - not implemented").
        raise ValueError("an image without layers cannot be saved")
    out = []
    for blob, diff_id in zip(image.layers, image.diff_ids, strict=True):
        raw = decompress_layer(blob)
        hex_ = hashlib.sha256(raw).hexdigest()
        if f"sha256:{hex_}" != diff_id:
            raise ValueError(f"layer {blob.digest} decompresses to sha256:{hex_}, config says {diff_id}")
        out.append((hex_, raw))
    return out


# --- references -------------------------------------------------------------


def _split_reference(ref: str) -> tuple[str, str]:
    """("repo", "tag") of a tagged reference; no tag means "latest", as docker does."""
    if "@" in ref:
        raise ValueError(f"{ref}: archives name images by tag, not digest")
    slash, colon = ref.rfind("/"), ref.rfind(":")
    # A colon before the last slash belongs to a registry port, not a tag.
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, "latest"


def _domain_and_path(repo: str) -> tuple[str, str]:
    first, _, rest = repo.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = "docker.io", repo
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in path:
        path = "library/" + path
    return domain, path


def normalize_reference(ref: str) -> str:
    """Full form, as docker's ref.String(): busybox:1.0 -> docker.io/library/busybox:1.0."""
    repo, tag = _split_reference(ref)
    domain, path = _domain_and_path(repo)
    return f"{domain}/{path}:{tag}"


def familiar_repository(ref: str) -> str:
    """Short repository, as docker's FamiliarName: docker.io/library/busybox:1.0 -> busybox."""
    domain, path = _domain_and_path(_split_reference(ref)[0])
    if domain != "docker.io":
        return f"{domain}/{path}"
    return path.removeprefix("library/") if path.count("/") == 1 else path


def familiar_reference(ref: str) -> str:
    """Short reference, as RepoTags holds it: docker.io/library/busybox:1.0 -> busybox:1.0."""
    return f"{familiar_repository(ref)}:{_split_reference(ref)[1]}"


def _repositories(images: list[tuple[str, list[str]]]) -> bytes:
    """The legacy `repositories` file: familiar repo -> tag -> top layer id."""
    repos: dict[str, dict[str, str]] = {}
    for top_layer, tags in images:
        for ref in tags:
            repos.setdefault(familiar_repository(ref), {})[_split_reference(ref)[1]] = top_layer
    return _canonical_json(repos)


# --- OCI image layout -------------------------------------------------------


def _add_image_blobs(files: dict[str, bytes], image: BuiltImage) -> None:
    for blob in (image.manifest, *image.blobs):
        _add_file(files, _blob_path(blob.digest), blob.data)


def oci_layout_tar(
    images: list[tuple[BuiltImage | BuiltIndex, str | None]],
    path: Path,
    *,
    ref_name: RefNameStyle = "name",
) -> None:
    """An OCI Image Layout tar with one index.json entry per (image, name).

    A named entry carries `io.containerd.image.name` = the name and
    `org.opencontainers.image.ref.name` = the name (skopeo and podman put what
    they are given there); `ref_name="tag"` puts only the tag there instead,
    which is what `ctr export` and buildkit write.
    """
    files: dict[str, bytes] = {}
    descriptors = []
    for item, name in images:
        if isinstance(item, BuiltIndex):
            top = item.index
            _add_file(files, _blob_path(top.digest), top.data)
            for child in item.images:
                _add_image_blobs(files, child)
        else:
            top = item.manifest
            _add_image_blobs(files, item)
        descriptor = top.descriptor()
        if name is not None:
            descriptor["annotations"] = {
                CONTAINERD_NAME: name,
                REF_NAME: name if ref_name == "name" else _split_reference(name)[1],
            }
        descriptors.append(descriptor)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
    _add_file(files, "index.json", _canonical_json(index))
    _add_file(files, "oci-layout", _canonical_json(OCI_LAYOUT))
    _write_tar(path, files)


# --- docker save ------------------------------------------------------------


def _repo_tags(tags: list[str]) -> list[str] | None:
    # docker writes `null`, not [], for an image saved by id: loaders must cope.
    return [familiar_reference(t) for t in tags] or None


def docker_save_tar(images: list[tuple[BuiltImage, list[str]]], path: Path) -> None:
    """The classic `docker save` tar (docker < 25), one manifest.json entry per image.

    Layer directories are named by the layer's diff_id hex (docker used a
    chain-derived v1 id; loaders must treat the names as opaque). Each also
    gets the legacy `VERSION` and `json` files docker wrote next to layer.tar.
    """
    files: dict[str, bytes] = {}
    manifest = []
    tops = []
    for image, tags in images:
        config_name = image.config.digest.removeprefix("sha256:") + ".json"
        _add_file(files, config_name, image.config.data)
        layer_paths = []
        parent = ""
        for hex_, raw in _uncompressed_layers(image):
            _add_file(files, f"{hex_}/layer.tar", raw)
            _add_file(files, f"{hex_}/VERSION", b"1.0")
            v1: dict[str, Any] = {"id": hex_, "created": "1970-01-01T00:00:00Z"}
            if parent:
                v1["parent"] = parent
            _add_file(files, f"{hex_}/json", _canonical_json(v1))
            layer_paths.append(f"{hex_}/layer.tar")
            parent = hex_
        manifest.append({"Config": config_name, "RepoTags": _repo_tags(tags), "Layers": layer_paths})
        tops.append((parent, tags))
    _add_file(files, "manifest.json", _canonical_json(manifest))
    if any(tags for _, tags in tops):
        _add_file(files, "repositories", _repositories(tops))
    _write_tar(path, files)


def docker_save_tar_v25(images: list[tuple[BuiltImage, list[str]]], path: Path) -> None:
    """What `docker save` writes from docker 25 on: an OCI layout plus manifest.json.

    Layers are stored uncompressed (digest = diff_id) under an OCI manifest
    made here; index.json has one entry per tag with `io.containerd.image.name`
    = the full reference and `org.opencontainers.image.ref.name` = the tag, as
    docker writes them, and one bare entry for an untagged image. (Docker also
    stores v1 layer json blobs nothing references; they are left out here.)
    """
    files: dict[str, bytes] = {}
    manifest = []
    descriptors: list[dict[str, Any]] = []
    tops = []
    for image, tags in images:
        config = Blob(OCI_CONFIG, image.config.data)
        _add_file(files, _blob_path(config.digest), config.data)
        layers = []
        for _, raw in _uncompressed_layers(image):
            layer = Blob(OCI_LAYER, raw)
            _add_file(files, _blob_path(layer.digest), raw)
            layers.append(layer)
        oci_manifest = Blob(
            OCI_MANIFEST,
            _canonical_json(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": config.descriptor(),
                    "layers": [layer.descriptor() for layer in layers],
                }
            ),
        )
        _add_file(files, _blob_path(oci_manifest.digest), oci_manifest.data)
        for ref in tags:
            annotations = {CONTAINERD_NAME: normalize_reference(ref), REF_NAME: _split_reference(ref)[1]}
            descriptors.append(oci_manifest.descriptor(annotations=annotations))
        if not tags:
            descriptors.append(oci_manifest.descriptor())
        manifest.append(
            {
                "Config": _blob_path(config.digest),
                "RepoTags": _repo_tags(tags),
                "Layers": [_blob_path(layer.digest) for layer in layers],
            }
        )
        tops.append((layers[-1].digest.removeprefix("sha256:"), tags))
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
    _add_file(files, "index.json", _canonical_json(index))
    _add_file(files, "manifest.json", _canonical_json(manifest))
    _add_file(files, "oci-layout", _canonical_json(OCI_LAYOUT))
    if any(tags for _, tags in tops):
        _add_file(files, "repositories", _repositories(tops))
    _write_tar(path, files)
