"""The archive writers read back with tarfile: every name, digest and diff_id checks out.

No daemon here: these make sure the archives `cribctl load` is tested
with are themselves right, so a load failure points at crib.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from e2e.images import archives, builder
from e2e.images.builder import BuiltImage, BuiltIndex

INDEX_TYPES = {builder.OCI_INDEX, builder.DOCKER_LIST}
MANIFEST_TYPES = {builder.OCI_MANIFEST, builder.DOCKER_MANIFEST}


@pytest.fixture(scope="module")
def amd64() -> BuiltImage:
    return builder.busybox_image(architecture="amd64")


@pytest.fixture(scope="module")
def arm64() -> BuiltImage:
    return builder.busybox_image(architecture="arm64")


@pytest.fixture(scope="module")
def zstd_image() -> BuiltImage:
    return builder.busybox_image(compression="zstd", labels={"variant": "zstd"})


@pytest.fixture(scope="module")
def docker_plain() -> BuiltImage:
    # Docker media types with uncompressed layers: the third decompression path.
    return builder.busybox_image(fmt="docker", compression="none", labels={"variant": "plain"})


@pytest.fixture(scope="module")
def multi(amd64: BuiltImage, arm64: BuiltImage) -> BuiltIndex:
    return builder.build_index([amd64, arm64])


class Archive:
    """A tar read back whole: its members in order and the regular files' bytes."""

    def __init__(self, path: Path) -> None:
        with tarfile.open(path) as tar:
            self.members = tar.getmembers()
            self.files = {m.name: tar.extractfile(m).read() for m in self.members if m.isreg()}  # type: ignore[union-attr]

    def json(self, name: str) -> Any:
        return json.loads(self.files[name])

    def blob(self, descriptor: dict[str, Any]) -> bytes:
        """The blob a descriptor names, checked against its digest and size."""
        algorithm, _, hex_ = descriptor["digest"].partition(":")
        assert algorithm == "sha256"
        data = self.files[f"blobs/sha256/{hex_}"]
        assert hashlib.sha256(data).hexdigest() == hex_
        assert len(data) == descriptor["size"]
        return data

    def walk(self, descriptor: dict[str, Any]) -> set[str]:
        """Resolve a descriptor and everything under it; the blob paths reached."""
        data = self.blob(descriptor)
        reached = {"blobs/sha256/" + descriptor["digest"].removeprefix("sha256:")}
        media_type = descriptor["mediaType"]
        if media_type in INDEX_TYPES:
            doc = json.loads(data)
            assert doc["mediaType"] == media_type
            for child in doc["manifests"]:
                reached |= self.walk(child)
        elif media_type in MANIFEST_TYPES:
            doc = json.loads(data)
            assert doc["schemaVersion"] == 2 and doc["mediaType"] == media_type
            for child in [doc["config"], *doc["layers"]]:
                reached |= self.walk(child)
        return reached

    def check_entries(self) -> None:
        """Plain files and directories only, normalized, each once, parents first."""
        names = [m.name for m in self.members]
        assert len(names) == len(set(names))
        seen_dirs: set[str] = set()
        for m in self.members:
            assert m.isreg() or m.isdir(), m.name
            assert m.mode == (0o755 if m.isdir() else 0o644), m.name
            assert (m.uid, m.gid, m.mtime) == (0, 0, builder.EPOCH), m.name
            parent = m.name.rpartition("/")[0]
            assert not parent or parent in seen_dirs, f"{m.name} before its directory"
            if m.isdir():
                seen_dirs.add(m.name)


def _config(archive: Archive, manifest_descriptor: dict[str, Any]) -> dict[str, Any]:
    manifest = json.loads(archive.blob(manifest_descriptor))
    return json.loads(archive.blob(manifest["config"]))


def _check_layout(archive: Archive) -> list[dict[str, Any]]:
    """Check an OCI layout's skeleton and that its blobs are exactly the reachable ones."""
    archive.check_entries()
    assert archive.json("oci-layout") == {"imageLayoutVersion": "1.0.0"}
    assert {"blobs", "blobs/sha256"} <= {m.name for m in archive.members if m.isdir()}
    index = archive.json("index.json")
    assert index["schemaVersion"] == 2 and index["mediaType"] == builder.OCI_INDEX
    reached: set[str] = set()
    for descriptor in index["manifests"]:
        reached |= archive.walk(descriptor)
    assert reached == {name for name in archive.files if name.startswith("blobs/")}
    return index["manifests"]


def test_oci_layout_resolves_every_descriptor(
    tmp_path: Path, amd64: BuiltImage, zstd_image: BuiltImage, docker_plain: BuiltImage, multi: BuiltIndex
) -> None:
    path = tmp_path / "oci.tar"
    archives.oci_layout_tar(
        [
            (amd64, "docker.io/library/busybox:1.0"),
            (zstd_image, "127.0.0.1:5000/x/y:zstd"),
            (docker_plain, "docker.io/library/busybox:docker"),
            (multi, "docker.io/library/busybox:multi"),
            (amd64, None),
        ],
        path,
    )
    archive = Archive(path)
    descriptors = _check_layout(archive)
    expected = [amd64.manifest, zstd_image.manifest, docker_plain.manifest, multi.index, amd64.manifest]
    assert [d["digest"] for d in descriptors] == [b.digest for b in expected]
    assert [d["mediaType"] for d in descriptors] == [b.media_type for b in expected]
    names = [
        "docker.io/library/busybox:1.0",
        "127.0.0.1:5000/x/y:zstd",
        "docker.io/library/busybox:docker",
        "docker.io/library/busybox:multi",
    ]
    for descriptor, name in zip(descriptors, names, strict=False):
        assert descriptor["annotations"] == {archives.CONTAINERD_NAME: name, archives.REF_NAME: name}
    assert "annotations" not in descriptors[-1]
    assert _config(archive, descriptors[1])["config"]["Labels"] == {"variant": "zstd"}


def test_oci_layout_index_round_trips(
    tmp_path: Path, amd64: BuiltImage, arm64: BuiltImage, multi: BuiltIndex
) -> None:
    path = tmp_path / "multi.tar"
    archives.oci_layout_tar([(multi, "docker.io/library/busybox:multi")], path)
    archive = Archive(path)
    (descriptor,) = _check_layout(archive)
    assert descriptor["digest"] == multi.index.digest and descriptor["mediaType"] == builder.OCI_INDEX
    index = json.loads(archive.blob(descriptor))
    platforms = {m["platform"]["architecture"]: m for m in index["manifests"]}
    assert set(platforms) == {"amd64", "arm64"}
    for arch, image in (("amd64", amd64), ("arm64", arm64)):
        assert platforms[arch]["digest"] == image.manifest.digest
        config = _config(archive, platforms[arch])
        assert config["architecture"] == arch
        assert config["rootfs"]["diff_ids"] == list(image.diff_ids)
    # Both platforms share the busybox layer: the layout holds it once.
    assert amd64.layers[0].digest == arm64.layers[0].digest
    blobs = [m.name for m in archive.members if m.name.startswith("blobs/sha256/")]
    assert len(blobs) == 1 + 2 * 2 + 3  # index, 2 manifests + 2 configs, 3 distinct layers


def test_oci_layout_ref_name_as_tag(tmp_path: Path, amd64: BuiltImage) -> None:
    path = tmp_path / "ctr.tar"
    archives.oci_layout_tar([(amd64, "docker.io/library/busybox:1.0")], path, ref_name="tag")
    (descriptor,) = _check_layout(Archive(path))
    assert descriptor["annotations"] == {
        archives.CONTAINERD_NAME: "docker.io/library/busybox:1.0",
        archives.REF_NAME: "1.0",
    }


def test_docker_save_layers_match_diff_ids(
    tmp_path: Path, amd64: BuiltImage, zstd_image: BuiltImage, docker_plain: BuiltImage
) -> None:
    path = tmp_path / "save.tar"
    archives.docker_save_tar(
        [
            (amd64, ["busybox:1.0", "127.0.0.1:5000/x/y:tag"]),
            (zstd_image, ["docker.io/library/busybox:zstd"]),
            (docker_plain, []),
        ],
        path,
    )
    archive = Archive(path)
    archive.check_entries()
    manifest = archive.json("manifest.json")
    assert [entry["RepoTags"] for entry in manifest] == [
        ["busybox:1.0", "127.0.0.1:5000/x/y:tag"],
        ["busybox:zstd"],
        None,
    ]
    tops = []
    for entry, image in zip(manifest, [amd64, zstd_image, docker_plain], strict=True):
        assert entry["Config"] == image.config.digest.removeprefix("sha256:") + ".json"
        config = archive.json(entry["Config"])
        assert archive.files[entry["Config"]] == image.config.data
        diff_ids = config["rootfs"]["diff_ids"]
        layer_hashes = ["sha256:" + hashlib.sha256(archive.files[n]).hexdigest() for n in entry["Layers"]]
        assert layer_hashes == diff_ids == list(image.diff_ids)
        for name in entry["Layers"]:
            assert name.endswith("/layer.tar")
            assert name.split("/")[0] == hashlib.sha256(archive.files[name]).hexdigest()
            # "r:" refuses compressed input: layer.tar must be a plain tar, whatever the blob was.
            with tarfile.open(fileobj=io.BytesIO(archive.files[name]), mode="r:") as layer:
                assert layer.getnames()
        tops.append(entry["Layers"][-1].split("/")[0])
    assert archive.json("repositories") == {
        "busybox": {"1.0": tops[0], "zstd": tops[1]},
        "127.0.0.1:5000/x/y": {"tag": tops[0]},
    }
    # The busybox layer is identical in all three images and stored once.
    assert sum(name.endswith("/layer.tar") for name in archive.files) == 4


def test_docker_save_v25_layout_and_manifest_agree(
    tmp_path: Path, amd64: BuiltImage, zstd_image: BuiltImage, docker_plain: BuiltImage
) -> None:
    path = tmp_path / "save25.tar"
    saved = [
        (amd64, ["busybox:1.0", "127.0.0.1:5000/x/y:tag"]),
        (zstd_image, ["busybox:zstd"]),
        (docker_plain, []),
    ]
    archives.docker_save_tar_v25(saved, path)
    archive = Archive(path)
    descriptors = _check_layout(archive)
    manifest = archive.json("manifest.json")
    assert len(manifest) == 3 and len(descriptors) == 4  # one index entry per tag, one bare
    assert [d.get("annotations") for d in descriptors] == [
        {archives.CONTAINERD_NAME: "docker.io/library/busybox:1.0", archives.REF_NAME: "1.0"},
        {archives.CONTAINERD_NAME: "127.0.0.1:5000/x/y:tag", archives.REF_NAME: "tag"},
        {archives.CONTAINERD_NAME: "docker.io/library/busybox:zstd", archives.REF_NAME: "zstd"},
        None,
    ]
    by_image = [descriptors[0], descriptors[2], descriptors[3]]
    assert descriptors[0]["digest"] == descriptors[1]["digest"]
    for entry, descriptor, (image, _) in zip(manifest, by_image, saved, strict=True):
        oci = json.loads(archive.blob(descriptor))
        assert oci["mediaType"] == builder.OCI_MANIFEST
        assert oci["config"]["mediaType"] == builder.OCI_CONFIG
        assert entry["Config"] == "blobs/sha256/" + oci["config"]["digest"].removeprefix("sha256:")
        assert archive.files[entry["Config"]] == image.config.data
        assert {layer["mediaType"] for layer in oci["layers"]} == {builder.OCI_LAYER}
        assert [layer["digest"] for layer in oci["layers"]] == list(image.diff_ids)
        assert entry["Layers"] == ["blobs/sha256/" + d.removeprefix("sha256:") for d in image.diff_ids]
    assert [entry["RepoTags"] for entry in manifest] == [[*saved[0][1]], ["busybox:zstd"], None]
    top = amd64.diff_ids[-1].removeprefix("sha256:")
    assert archive.json("repositories") == {
        "busybox": {"1.0": top, "zstd": zstd_image.diff_ids[-1].removeprefix("sha256:")},
        "127.0.0.1:5000/x/y": {"tag": top},
    }


def test_writers_are_deterministic(tmp_path: Path, amd64: BuiltImage, multi: BuiltIndex) -> None:
    for n in (1, 2):
        archives.oci_layout_tar([(multi, "docker.io/library/busybox:multi")], tmp_path / f"oci{n}.tar")
        archives.docker_save_tar([(amd64, ["busybox:1.0"])], tmp_path / f"save{n}.tar")
        archives.docker_save_tar_v25([(amd64, ["busybox:1.0"])], tmp_path / f"v25-{n}.tar")
    for stem in ("oci", "save", "v25-"):
        assert (tmp_path / f"{stem}1.tar").read_bytes() == (tmp_path / f"{stem}2.tar").read_bytes()


@pytest.mark.parametrize(
    ("ref", "full", "familiar"),
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("busybox:1.0", "docker.io/library/busybox:1.0", "busybox:1.0"),
        ("docker.io/library/busybox:1.0", "docker.io/library/busybox:1.0", "busybox:1.0"),
        ("crib/tools:2", "docker.io/crib/tools:2", "crib/tools:2"),
        ("127.0.0.1:5000/x/y:tag", "127.0.0.1:5000/x/y:tag", "127.0.0.1:5000/x/y:tag"),
        ("localhost/busybox", "localhost/busybox:latest", "localhost/busybox:latest"),
    ],
)
def test_reference_forms(ref: str, full: str, familiar: str) -> None:
    assert archives.normalize_reference(ref) == full
    assert archives.familiar_reference(ref) == familiar


def test_digest_references_are_refused(tmp_path: Path, amd64: BuiltImage) -> None:
    with pytest.raises(ValueError, match="by tag"):
        archives.docker_save_tar([(amd64, [f"busybox@{amd64.manifest.digest}"])], tmp_path / "x.tar")
