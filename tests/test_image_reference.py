"""Image references: normalization and refusals with reasons."""

from __future__ import annotations

import pytest

from crib.errors import InvalidArgument
from crib.image_service.reference import is_digest, parse

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
        ("index.docker.io/library/busybox:1", "docker.io/library/busybox:1"),
        ("bitnami/nginx:1.25", "docker.io/bitnami/nginx:1.25"),
        ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
        ("registry.k8s.io/e2e-test-images/busybox:1.29-2", "registry.k8s.io/e2e-test-images/busybox:1.29-2"),
        ("127.0.0.1:5000/x/y", "127.0.0.1:5000/x/y:latest"),
        ("localhost/x", "localhost/x:latest"),
        ("localhost:5000/x:t", "localhost:5000/x:t"),
        ("[::1]:5000/x:t", "[::1]:5000/x:t"),
        ("Example.com/x", "Example.com/x:latest"),
        (f"busybox@{D}", f"docker.io/library/busybox@{D}"),
        (f"quay.io/a/b:v1@{D}", f"quay.io/a/b:v1@{D}"),
        ("a__b/c.d-e:T_1.0-x", "docker.io/a__b/c.d-e:T_1.0-x"),
    ],
)
def test_normalization(text: str, normalized: str) -> None:
    assert str(parse(text)) == normalized


def test_parts() -> None:
    ref = parse(f"quay.io/a/b:v1@{D}")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("quay.io", "a/b", "v1", D)
    assert ref.name == "quay.io/a/b"
    assert str(ref.with_digest(D)) == f"quay.io/a/b@{D}"
    assert ref.tagged() == "quay.io/a/b:v1"
    assert parse("busybox", default_tag=False).tag is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("Busybox", "lowercase"),
        ("docker.io/Library/busybox", "lowercase"),
        ("busy box", "whitespace"),
        ("busybox:", "invalid tag"),
        ("busybox:-x", "invalid tag"),
        ("busybox:" + "t" * 129, "invalid tag"),
        ("busybox@sha256:abc", "malformed digest"),
        (f"busybox@sha512:{'a' * 128}", "sha256 only"),
        ("a" * 64, "image ID"),
        ("/busybox", "invalid repository"),
        ("quay.io/a//b", "invalid repository"),
        ("quay.io/a/-b", "invalid repository"),
        ("-bad.io/x", "invalid registry host"),
        ("quay.io/" + "a" * 260, "longer than"),
        (":tag", "no repository"),
    ],
)
def test_invalid_references_say_why(text: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse(text)
    assert reason in info.value.message


def test_is_digest() -> None:
    assert is_digest(D)
    assert not is_digest("sha256:abc")
