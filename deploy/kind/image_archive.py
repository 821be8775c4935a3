"""Write a root filesystem as a one-layer image archive that `docker load` and `podman load` read.

    python3 image_archive.py --rootfs DIR --tag REF --config CONFIG.json OUT.tar

The archive has the shape `docker save` writes since Docker 25: an OCI image
layout (`oci-layout`, `index.json`, `blobs/sha256/...`) that also carries the
classic `manifest.json` and `repositories`, both pointing at the same blobs.
Older Docker engines and Podman read `manifest.json`; Docker 25+ with the
containerd image store, skopeo and crib's own `cribctl load` read `index.json`.
The layer is stored uncompressed (as `docker save` does), so its digest is also
its diff ID.

CONFIG.json holds the image config's `config` object (Entrypoint, Env,
StopSignal, ...); the rest (rootfs, history, platform) is filled in here.
Only the standard library: the build host needs nothing else.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

# What is never part of a container image's root: the engine mounts these
# (proc, sysfs, /dev, tmpfs /run and /tmp in a kind node).
EXCLUDED = ("proc/*", "sys/*", "dev/*", "run/*", "tmp/*")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def write_layer(rootfs: Path, out: Path) -> None:
    """The root filesystem as one uncompressed tar, in name order.

    GNU tar rather than Python's tarfile: a node's root is about a gigabyte and
    tar keeps hard links and file capabilities (security.capability) at disk
    speed. Members are named without a "./" prefix, as docker save's are.
    """
    top = sorted(p.name for p in rootfs.iterdir())
    cmd = [
        "tar",
        "--create",
        f"--file={out}",
        f"--directory={rootfs}",
        "--sort=name",
        "--numeric-owner",
        "--format=posix",
        "--pax-option=delete=atime,delete=ctime",
        "--xattrs",
        "--xattrs-include=security.capability",
        # Anchored: only the top-level proc/, sys/... are emptied, not every */proc/*.
        "--anchored",
        *(f"--exclude={p}" for p in EXCLUDED),
        *top,
    ]
    subprocess.run(cmd, check=True)


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _split_tag(ref: str) -> tuple[str, str]:
    name, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        raise SystemExit(f"image_archive: {ref!r} has no tag (NAME:TAG)")
    return name, tag


def build_archive(rootfs: Path, tag: str, config: dict[str, Any], out: Path, created: str) -> str:
    """Write OUT; return the image ID (the config's digest)."""
    name, tag_only = _split_tag(tag)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".image-archive.") as tmp:
        layer = Path(tmp) / "layer.tar"
        write_layer(rootfs, layer)
        layer_hex = sha256_file(layer)
        layer_size = layer.stat().st_size
        image_config = {
            "architecture": "amd64",
            "os": "linux",
            "created": created,
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_hex}"]},
            "history": [{"created": created, "created_by": "crib deploy/kind/build-node-image.sh"}],
        }
        config_bytes = _canonical(image_config)
        config_hex = hashlib.sha256(config_bytes).hexdigest()
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": f"sha256:{config_hex}", "size": len(config_bytes)},
            "layers": [{"mediaType": OCI_LAYER, "digest": f"sha256:{layer_hex}", "size": layer_size}],
        }
        manifest_bytes = _canonical(manifest)
        manifest_hex = hashlib.sha256(manifest_bytes).hexdigest()
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": f"sha256:{manifest_hex}",
                    "size": len(manifest_bytes),
                    "annotations": {
                        "io.containerd.image.name": tag,
                        "org.opencontainers.image.ref.name": tag_only,
                    },
                }
            ],
        }
        docker_manifest = [
            {
                "Config": f"blobs/sha256/{config_hex}",
                "RepoTags": [tag],
                "Layers": [f"blobs/sha256/{layer_hex}"],
            }
        ]
        small = {
            "oci-layout": _canonical({"imageLayoutVersion": "1.0.0"}),
            "index.json": _canonical(index),
            "manifest.json": _canonical(docker_manifest),
            "repositories": _canonical({name: {tag_only: config_hex}}),
            f"blobs/sha256/{config_hex}": config_bytes,
            f"blobs/sha256/{manifest_hex}": manifest_bytes,
        }
        partial = out.with_name(out.name + ".partial")
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as t:
            for d in ("blobs", "blobs/sha256"):
                info = tarfile.TarInfo(d)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                t.addfile(info)
            for path, data in sorted(small.items()):
                info = tarfile.TarInfo(path)
                info.size, info.mode = len(data), 0o644
                t.addfile(info, io.BytesIO(data))
            info = tarfile.TarInfo(f"blobs/sha256/{layer_hex}")
            info.size, info.mode = layer_size, 0o644
            with layer.open("rb") as f:
                t.addfile(info, f)
        partial.replace(out)
    return f"sha256:{config_hex}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rootfs", type=Path, required=True)
    p.add_argument("--tag", required=True, help="NAME:TAG the loaded image gets")
    p.add_argument("--config", type=Path, required=True, help="JSON of the image config's `config` object")
    p.add_argument("--created", default="1970-01-01T00:00:00Z")
    p.add_argument("out", type=Path)
    a = p.parse_args()
    image_id = build_archive(a.rootfs, a.tag, json.loads(a.config.read_text()), a.out, a.created)
    print(image_id)


if __name__ == "__main__":
    main()
