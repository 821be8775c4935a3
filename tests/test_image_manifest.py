"""Manifests and indexes: media types, schema 1 refusal, platform choice."""

from __future__ import annotations

import json

import pytest

from crib.errors import InvalidArgument, NotFound
from crib.image_service import manifest as m
from crib.image_service.manifest import Platform

D1, D2, D3 = ("sha256:" + c * 64 for c in "123")


def _index(*platforms: dict) -> dict:
    return {
        "schemaVersion": 2,
        "mediaType": m.OCI_INDEX,
        "manifests": [
            {"mediaType": m.OCI_MANIFEST, "digest": d, "size": 10, "platform": p}
            for d, p in zip((D1, D2, D3), platforms, strict=False)
        ],
    }


def test_media_type_from_body_header_or_shape() -> None:
    body = json.dumps(
        {"schemaVersion": 2, "mediaType": m.DOCKER_MANIFEST, "config": {}, "layers": []}
    ).encode()
    assert m.media_type_of(body, "text/plain", "x")[0] == m.DOCKER_MANIFEST
    body = json.dumps({"schemaVersion": 2, "config": {}, "layers": []}).encode()
    assert m.media_type_of(body, m.OCI_MANIFEST, "x")[0] == m.OCI_MANIFEST
    assert m.media_type_of(body, "", "x")[0] == m.OCI_MANIFEST
    body = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    assert m.media_type_of(body, "application/json", "x")[0] == m.OCI_INDEX


def test_schema1_is_refused_clearly() -> None:
    body = json.dumps({"schemaVersion": 1, "name": "x", "fsLayers": []}).encode()
    with pytest.raises(InvalidArgument, match="schema 1"):
        m.media_type_of(body, m.DOCKER_SCHEMA1[1], "pull x")
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        m.media_type_of(b"<html>", "text/html", "pull x")
    with pytest.raises(InvalidArgument, match="unsupported media type"):
        m.media_type_of(b'{"schemaVersion": 2}', "application/weird", "pull x")


def test_platform_choice() -> None:
    index = _index(
        {"os": "linux", "architecture": "arm64", "variant": "v8"},
        {"os": "linux", "architecture": "amd64"},
        {"os": "windows", "architecture": "amd64"},
    )
    assert m.choose_platform(index, Platform("linux", "amd64"), "x").digest == D2
    assert m.choose_platform(index, Platform("linux", "arm64", "v8"), "x").digest == D1
    with pytest.raises(NotFound, match="linux/s390x"):
        m.choose_platform(index, Platform("linux", "s390x"), "x")


def test_exact_variant_preferred_and_wrong_variant_skipped() -> None:
    index = _index(
        {"os": "linux", "architecture": "arm", "variant": "v6"},
        {"os": "linux", "architecture": "arm"},
        {"os": "linux", "architecture": "arm", "variant": "v7"},
    )
    assert m.choose_platform(index, Platform("linux", "arm", "v7"), "x").digest == D3
    assert m.choose_platform(index, Platform("linux", "arm", "v5"), "x").digest == D2


def test_descriptors_are_checked() -> None:
    with pytest.raises(InvalidArgument, match="unsupported digest"):
        m.Descriptor.parse({"digest": "md5:abc", "size": 1}, "x")
    with pytest.raises(InvalidArgument, match="no valid size"):
        m.Descriptor.parse({"digest": D1, "size": -1}, "x")
    with pytest.raises(InvalidArgument, match="no layers"):
        m.ImageManifest.parse({"config": {"digest": D1, "size": 2}}, "x")
    with pytest.raises(InvalidArgument, match="diff_ids"):
        m.diff_ids({"rootfs": {"diff_ids": ["md5:x"]}}, "x")


def test_node_platform_is_linux() -> None:
    p = m.node_platform()
    assert p.os == "linux" and p.architecture
