"""The image name ContainerStatus gives, which the kubelet shows as a container's image."""

from __future__ import annotations

from crib.container.containers import image_name
from crib.proto.cri import api_pb2

TAGS = ["registry.k8s.io/e2e-test-images/agnhost:2.55", "registry.k8s.io/e2e-test-images/agnhost:2.63.0"]


def test_the_tag_the_pod_asked_for() -> None:
    # The kubelet creates containers by image ID and sends what the user wrote beside it.
    spec = api_pb2.ImageSpec(image="sha256:" + "a" * 64, user_specified_image=TAGS[1])
    assert image_name(spec, TAGS) == TAGS[1]


def test_short_names_are_normalized_before_matching() -> None:
    tags = ["docker.io/library/busybox:1.36"]
    assert image_name(api_pb2.ImageSpec(user_specified_image="busybox:1.36"), tags) == tags[0]
    assert image_name(api_pb2.ImageSpec(image="busybox:1.36"), tags) == tags[0]


def test_otherwise_the_first_tag_or_nothing() -> None:
    by_digest = "registry.k8s.io/e2e-test-images/agnhost@sha256:" + "b" * 64
    assert image_name(api_pb2.ImageSpec(user_specified_image=by_digest), TAGS) == TAGS[0]
    assert image_name(api_pb2.ImageSpec(image="sha256:" + "a" * 64), TAGS) == TAGS[0]
    assert image_name(api_pb2.ImageSpec(image="not a reference"), []) == ""
