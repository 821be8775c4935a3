"""`[image] pinned_images`: matching images report pinned, and RemoveImage keeps them."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from crib.proto.cri import api_pb2
from e2e.harness.cribd import Cribd
from e2e.harness.registry import Registry
from e2e.images import builder
from e2e.pods import push_and_pull


def _status(daemon: Cribd, image: str) -> api_pb2.ImageStatusResponse:
    return daemon.images.ImageStatus(
        api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=image)), timeout=10
    )


def _remove(daemon: Cribd, image: str) -> None:
    daemon.images.RemoveImage(api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=image)), timeout=30)


def _daemon(factory: Callable[..., Cribd], registry: Registry, remove_pinned: bool) -> Cribd:
    config = (
        f'[image]\npinned_images = ["{registry.host}/e2e/pinned*", "*keep-me*"]\n'
        f"remove_pinned = {'true' if remove_pinned else 'false'}\n"
    )
    return factory(config).start()


def _push(daemon: Cribd, registry: Registry, repo: str) -> str:
    # A config of its own, so each repository holds a different image.
    image = builder.busybox_image(working_dir="/" + repo.replace("/", "-"))
    ref, _ = push_and_pull(daemon, registry.url, registry.host, repo, image)
    return ref


def test_pinned_images_are_reported_and_kept(cribd_factory: Callable[..., Cribd], registry: Registry) -> None:
    daemon = _daemon(cribd_factory, registry, remove_pinned=False)
    by_prefix = _push(daemon, registry, "e2e/pinned-app")
    by_keyword = _push(daemon, registry, "e2e/tools-keep-me-please")
    plain = _push(daemon, registry, "e2e/ordinary")
    assert _status(daemon, by_prefix).image.pinned and _status(daemon, by_keyword).image.pinned
    assert not _status(daemon, plain).image.pinned
    listed = {t: i.pinned for i in daemon.images.ListImages(api_pb2.ListImagesRequest(), timeout=10).images
              for t in i.repo_tags}  # fmt: skip
    assert (listed[by_prefix], listed[by_keyword], listed[plain]) == (True, True, False)

    with pytest.raises(grpc.RpcError) as refused:
        _remove(daemon, by_prefix)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"{registry.host}/e2e/pinned*" in (refused.value.details() or "")
    assert _status(daemon, by_prefix).HasField("image")
    _remove(daemon, plain)
    assert not _status(daemon, plain).HasField("image")


def test_remove_pinned_lets_removal_through(cribd_factory: Callable[..., Cribd], registry: Registry) -> None:
    daemon = _daemon(cribd_factory, registry, remove_pinned=True)
    ref = _push(daemon, registry, "e2e/pinned-but-removable")
    assert _status(daemon, ref).image.pinned
    _remove(daemon, ref)
    assert not _status(daemon, ref).HasField("image")


def test_a_wildcard_inside_a_pattern_stops_cribd_naming_the_key(cribd_factory: Callable[..., Cribd]) -> None:
    daemon = cribd_factory('[image]\npinned_images = ["ok*", "bad*pattern"]\n')
    with pytest.raises(Exception, match=r"image\.pinned_images\[1\]"):
        daemon.start()
