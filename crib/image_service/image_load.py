"""Images from files: `docker save` tarballs, OCI image layout tars, and plain rootfs tars.

Archives are hostile input like registry content: every blob is copied into
the content store with its digest checked, every layer goes through the same
unpacker as a pulled one, and names are parsed as references. Reading the
archive happens in a worker thread; records are made on the loop.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from crib.errors import InvalidArgument
from crib.image_service import reference
from crib.image_service.content_store import ContentStore, sha256_digest
from crib.image_service.image_store import ImageRecord, LayerRef
from crib.image_service.images import Images
from crib.image_service.layer_store import chain_ids
from crib.image_service.manifest import (
    INDEX_TYPES,
    OCI_CONFIG,
    OCI_MANIFEST,
    ImageManifest,
    choose_platform,
    diff_ids,
    load_json,
    media_type_of,
    node_platform,
)
from crib.log_setup import get_logger

log = get_logger("crib.load")

OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
COPY_CHUNK = 1 << 20
_NAME_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")


@dataclass
class LocalImage:
    """An image read from a file, its blobs already in the content store."""

    names: list[str]
    config_digest: str
    manifest_digest: str
    layers: list[tuple[str, str, int]]  # (digest, media type, size)
    digest_names: list[str] = field(default_factory=list)
    extra_blobs: list[str] = field(default_factory=list)


def _compression(head: bytes) -> str:
    if head.startswith(b"\x1f\x8b"):
        return "+gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "+zstd"
    return ""


def _normalize_name(name: str, what: str) -> str:
    try:
        return str(reference.parse(name))
    except InvalidArgument as exc:
        raise InvalidArgument(f"{what}: image name {name!r}: {exc.message}") from None


class _Archive:
    """A tar read by member name, with blob copies into the content store."""

    def __init__(self, path: Path, content: ContentStore, what: str) -> None:
        self.what = what
        self.content = content
        try:
            self.tar = tarfile.open(path, mode="r:*")  # noqa: SIM115 - closed by close()
            self.members = {m.name.removeprefix("./"): m for m in self.tar.getmembers()}
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise InvalidArgument(f"{what}: not a readable tar archive: {exc}") from None

    def close(self) -> None:
        self.tar.close()

    def has(self, name: str) -> bool:
        return name in self.members

    def open(self, name: str) -> IO[bytes]:
        member = self.members.get(name)
        if member is None or not member.isfile():
            raise InvalidArgument(f"{self.what}: the archive has no file {name!r}")
        f = self.tar.extractfile(member)
        assert f is not None
        return f

    def read_json(self, name: str) -> Any:
        with self.open(name) as f:
            data = f.read(4 << 20)
        try:
            return json.loads(data)
        except ValueError:
            raise InvalidArgument(f"{self.what}: {name} is not valid JSON") from None

    def blob_name(self, digest: str) -> str:
        algo, _, hexpart = digest.partition(":")
        return f"blobs/{algo}/{hexpart}"

    def copy_blob(self, digest: str, size: int | None, name: str | None = None) -> None:
        """Copy a member into the content store, checking it hashes to `digest`."""
        if self.content.has(digest):
            return
        ingest = self.content.ingest(digest, size)
        try:
            with self.open(name or self.blob_name(digest)) as f:
                while chunk := f.read(COPY_CHUNK):
                    ingest.write(chunk)
            ingest.commit()
        except BaseException:
            ingest.abort()
            raise

    def digest_of(self, name: str) -> tuple[str, int, str]:
        """(sha256 digest, size, compression suffix) of a member."""
        h = hashlib.sha256()
        size = 0
        with self.open(name) as f:
            head = f.read(4)
            h.update(head)
            size += len(head)
            while chunk := f.read(COPY_CHUNK):
                h.update(chunk)
                size += len(chunk)
        return "sha256:" + h.hexdigest(), size, _compression(head)


def _store_manifest(
    content: ContentStore, config_digest: str, config_size: int, layers: list[tuple[str, str, int]]
) -> str:
    """Write the OCI manifest for a config and layers; returns its digest."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": m, "digest": d, "size": s} for d, m, s in layers],
    }
    body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    digest = sha256_digest(body)
    content.write_bytes(digest, body)
    return digest


def _read_oci_layout(arc: _Archive) -> list[LocalImage]:
    index = arc.read_json("index.json")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise InvalidArgument(f"{arc.what}: index.json has no manifests")
    images = []
    for i, desc in enumerate(index["manifests"]):
        where = f"{arc.what}: index.json manifests[{i}]"
        digest, size = desc.get("digest"), desc.get("size")
        if not isinstance(digest, str):
            raise InvalidArgument(f"{where}: no digest")
        arc.copy_blob(digest, size)
        body = arc.content.read(digest)
        media_type, doc = media_type_of(body, desc.get("mediaType", ""), where)
        extra = []
        top = digest
        if media_type in INDEX_TYPES:
            chosen = choose_platform(doc, node_platform(), where)
            arc.copy_blob(chosen.digest, chosen.size)
            extra.append(digest)
            digest = chosen.digest
            media_type, doc = media_type_of(arc.content.read(digest), chosen.media_type, where)
        manifest = ImageManifest.parse(doc, where)
        arc.copy_blob(manifest.config.digest, manifest.config.size)
        for layer in manifest.layers:
            arc.copy_blob(layer.digest, layer.size)
        annotations = desc.get("annotations") or {}
        names = []
        for key in _NAME_ANNOTATIONS:
            value = annotations.get(key, "")
            # containerd and docker put a bare tag in ref.name; only full names name an image.
            if value and ("/" in value or ":" in value):
                names.append(_normalize_name(value, where))
                break
        images.append(
            LocalImage(
                names=names,
                config_digest=manifest.config.digest,
                manifest_digest=digest,
                layers=[(d.digest, d.media_type, d.size) for d in manifest.layers],
                digest_names=[f"{reference.parse(n).name}@{top}" for n in names],
                extra_blobs=extra,
            )
        )
    return images


def _read_docker_save(arc: _Archive) -> list[LocalImage]:
    entries = arc.read_json("manifest.json")
    if not isinstance(entries, list):
        raise InvalidArgument(f"{arc.what}: manifest.json is not a list")
    images = []
    for i, entry in enumerate(entries):
        where = f"{arc.what}: manifest.json[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise InvalidArgument(f"{where}: no Config")
        with arc.open(entry["Config"]) as f:
            config_bytes = f.read(4 << 20)
        config_digest = sha256_digest(config_bytes)
        arc.content.write_bytes(config_digest, config_bytes)
        layers = []
        for name in entry.get("Layers") or []:
            digest, size, compression = arc.digest_of(name)
            arc.copy_blob(digest, size, name)
            layers.append((digest, OCI_LAYER + compression, size))
        # docker save carries no manifest: make the OCI one a registry would serve.
        manifest_digest = _store_manifest(arc.content, config_digest, len(config_bytes), layers)
        names = [_normalize_name(t, where) for t in entry.get("RepoTags") or []]
        images.append(LocalImage(names, config_digest, manifest_digest, layers))
    return images


def read_archive(path: Path, content: ContentStore, what: str) -> list[LocalImage]:
    arc = _Archive(path, content, what)
    try:
        if arc.has("index.json") and arc.has("oci-layout"):
            images = _read_oci_layout(arc)
            # docker >= 25 writes both; its manifest.json knows tags that
            # index.json may only have as bare ref names.
            if arc.has("manifest.json") and not any(i.names for i in images):
                images = _read_docker_save(arc)
            return images
        if arc.has("manifest.json"):
            return _read_docker_save(arc)
        raise InvalidArgument(
            f"{what}: neither an OCI image layout (index.json) nor a docker save (manifest.json)"
        )
    finally:
        arc.close()


async def _register(images: Images, local: LocalImage, what: str) -> ImageRecord:
    config = load_json(images.content.read(local.config_digest), f"{what}: image config")
    ids = diff_ids(config, f"{what}: image config")
    if len(ids) != len(local.layers):
        raise InvalidArgument(f"{what}: {len(local.layers)} layers but {len(ids)} diff_ids in the config")
    chains = chain_ids(ids)
    for (digest, media_type, _), diff_id, chain in zip(local.layers, ids, chains, strict=True):
        await images.layers.ensure(chain, diff_id, images.content.path(digest), media_type)
    record = ImageRecord(
        id=local.config_digest,
        repo_tags=local.names,
        repo_digests=local.digest_names,
        manifest_digest=local.manifest_digest,
        layers=[LayerRef(d, m, s, ids[i], chains[i]) for i, (d, m, s) in enumerate(local.layers)],
        blobs=local.extra_blobs,
        size=images.content.size(local.config_digest) + sum(s for _, _, s in local.layers),
        config=config,
    )
    return images.images.add(record)


async def load_archive(images: Images, path: Path) -> list[tuple[ImageRecord, list[str]]]:
    """Every image of the archive, with the names the archive gave it."""
    what = "load"
    started = time.monotonic()
    async with images.holding_gc():
        found = await asyncio.to_thread(read_archive, path, images.content, what)
        records = []
        for local in found:
            record = await _register(images, local, f"{what} {', '.join(local.names) or local.config_digest}")
            records.append((record, local.names))
    log.info(
        "image.loaded",
        images=[names or record.id for record, names in records],
        duration_ms=round((time.monotonic() - started) * 1000, 1),
    )
    return records


def _zstandard() -> Any:
    """zstd, imported at the first archive that needs it: loads are rare, an idle cribd's memory is not."""
    import zstandard  # noqa: PLC0415

    return zstandard


def _open_rootfs(path: Path) -> IO[bytes]:
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rb")
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return _zstandard().ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)
    return open(path, "rb")


def _rootfs_blob(path: Path, content: ContentStore) -> tuple[str, str, int, str]:
    """Store the rootfs tar as a layer blob: (digest, media type, size, diff_id)."""
    h = hashlib.sha256()
    try:
        with _open_rootfs(path) as f:
            while chunk := f.read(COPY_CHUNK):
                h.update(chunk)
    except (OSError, EOFError, _zstandard().ZstdError) as exc:
        raise InvalidArgument(f"import: the rootfs archive cannot be decompressed: {exc}") from None
    diff_id = "sha256:" + h.hexdigest()
    raw = hashlib.sha256()
    with open(path, "rb") as f:
        head = f.read(4)
        raw.update(head)
        while chunk := f.read(COPY_CHUNK):
            raw.update(chunk)
    digest = "sha256:" + raw.hexdigest()
    size = path.stat().st_size
    if not content.has(digest):
        ingest = content.ingest(digest, size)
        try:
            with open(path, "rb") as f:
                while chunk := f.read(COPY_CHUNK):
                    ingest.write(chunk)
            ingest.commit()
        except BaseException:
            ingest.abort()
            raise
    return digest, OCI_LAYER + _compression(head), size, diff_id


async def import_rootfs(
    images: Images, path: Path, name: str, settings: dict[str, Any], created: str | None = None
) -> ImageRecord:
    """A one-layer image from a rootfs tar; `settings` are OCI config fields (Cmd, Env, …).

    A fixed `created` makes the image ID depend on the content alone.
    """
    ref_name = _normalize_name(name, "import")
    async with images.holding_gc():
        digest, media_type, size, diff_id = await asyncio.to_thread(_rootfs_blob, path, images.content)
        plat = node_platform()
        created = created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        container_config = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}
        container_config.update({k: v for k, v in settings.items() if v})
        config = {
            "architecture": plat.architecture,
            "os": plat.os,
            **({"variant": plat.variant} if plat.variant else {}),
            "created": created,
            "config": container_config,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": created, "created_by": "cribctl import"}],
        }
        config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        config_digest = sha256_digest(config_bytes)
        images.content.write_bytes(config_digest, config_bytes)
        layers = [(digest, media_type, size)]
        manifest_digest = _store_manifest(images.content, config_digest, len(config_bytes), layers)
        local = LocalImage([ref_name], config_digest, manifest_digest, layers)
        record = await _register(images, local, f"import {ref_name}")
    log.info("image.imported", image=ref_name, id=record.id)
    return record
