"""The test bed itself: images built here, pushed to the real registry, fetched back."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

import httpx
import pytest
import zstandard

from e2e.conftest import AUTH_PASSWORD, AUTH_USER
from e2e.harness.registry import Registry
from e2e.images import builder
from e2e.images.builder import Entry, ImageRecipe, LayerSpec
from e2e.images.registry_client import RegistryClient


def _untar(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_busybox_rootfs_has_relative_applets_and_users() -> None:
    members = _untar(builder.tar_bytes(builder.busybox_rootfs()))
    assert members["bin/busybox"].mode == 0o755 and members["bin/busybox"].size > 500_000
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "busybox"
    assert members["usr/bin/env"].linkname == "../../bin/busybox"
    assert not any(m.linkname.startswith("/") for m in members.values() if m.issym())
    passwd = builder.PASSWD
    assert passwd.startswith("root:x:0:0:") and "www-data:x:33:33:" in passwd and "nobody:x:65534:" in passwd


@pytest.mark.parametrize(
    ("fmt", "compression"), [("oci", "gzip"), ("oci", "zstd"), ("oci", "none"), ("docker", "gzip")]
)
def test_push_then_fetch_by_tag_and_digest(registry: Registry, fmt: str, compression: str) -> None:
    image = builder.busybox_image(
        fmt,
        compression,
        entrypoint=["/bin/sh", "-c"],
        cmd=["echo hi"],
        working_dir="/var/www",
        user="www-data",
        exposed_ports=["80/tcp"],
        stop_signal="SIGQUIT",
    )
    repo = f"testbed/busybox-{fmt}-{compression}"
    with RegistryClient(registry.url) as client:
        digest = client.push_image(repo, "1.0", image)
        by_tag = client.get_manifest(repo, "1.0")
        by_digest = client.get_manifest(repo, digest)
        assert by_tag.data == by_digest.data == image.manifest.data
        assert by_tag.digest == digest == "sha256:" + hashlib.sha256(by_tag.data).hexdigest()
        assert by_tag.media_type == image.manifest.media_type
        manifest = json.loads(by_digest.data)
        config = json.loads(client.get_blob(repo, manifest["config"]["digest"]))
        assert config["config"]["User"] == "www-data"
        assert config["config"]["ExposedPorts"] == {"80/tcp": {}}
        assert config["config"]["StopSignal"] == "SIGQUIT"
        assert config["config"]["Entrypoint"] == ["/bin/sh", "-c"]
        assert config["config"]["WorkingDir"] == "/var/www"
        layer = client.get_blob(repo, manifest["layers"][0]["digest"])
    raw = {
        "gzip": gzip.decompress,
        "zstd": zstandard.ZstdDecompressor().decompressobj().decompress,
        "none": bytes,
    }[compression](layer)
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == config["rootfs"]["diff_ids"][0]
    assert "bin/busybox" in _untar(raw)


@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_multi_platform_index(registry: Registry, fmt: str) -> None:
    amd64 = builder.busybox_image(fmt, architecture="amd64")
    arm64 = builder.busybox_image(fmt, architecture="arm64", variant="v8")
    index = builder.build_index([arm64, amd64], fmt)
    with RegistryClient(registry.url) as client:
        digest = client.push_index("testbed/multi-" + fmt, "latest", index)
        fetched = client.get_manifest("testbed/multi-" + fmt, "latest")
        assert fetched.digest == digest
        doc = json.loads(fetched.data)
        assert fetched.media_type == (builder.OCI_INDEX if fmt == "oci" else builder.DOCKER_LIST)
        platforms = {m["platform"]["architecture"]: m["digest"] for m in doc["manifests"]}
        assert platforms == {"amd64": amd64.manifest.digest, "arm64": arm64.manifest.digest}
        assert client.get_manifest("testbed/multi-" + fmt, amd64.manifest.digest).data == amd64.manifest.data


def test_hostile_entries_are_written_as_given(registry: Registry) -> None:
    hostile = [
        Entry("../escape", data=b"x"),
        Entry("/abs", data=b"y"),
        Entry("link", "symlink", linkname="/etc"),
    ]
    image = builder.build_image(ImageRecipe([LayerSpec(hostile, "none")]))
    with RegistryClient(registry.url) as client:
        client.push_image("testbed/hostile", "1", image)
        layer = client.get_blob("testbed/hostile", image.layers[0].digest)
    names = list(_untar(layer))
    assert names == ["../escape", "/abs", "link"]


def test_auth_registry_refuses_anonymous_and_serves_users(auth_registry: Registry) -> None:
    image = builder.busybox_image()
    with RegistryClient(auth_registry.url, auth=(AUTH_USER, AUTH_PASSWORD)) as client:
        digest = client.push_image("private/busybox", "v1", image)
        assert client.get_manifest("private/busybox", "v1").digest == digest
        assert client.get_manifest("private/busybox", digest).data == image.manifest.data
        client.get_blob("private/busybox", image.config.digest)

    anonymous = httpx.get(f"{auth_registry.url}/v2/private/busybox/manifests/v1", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
    wrong = httpx.get(
        f"{auth_registry.url}/v2/private/busybox/manifests/{digest}", auth=(AUTH_USER, "nope"), timeout=10
    )
    assert wrong.status_code == 401
