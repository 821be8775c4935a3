"""Statuses served from cribd's caches are fresh after every change, over the real socket.

ContainerStatus, PodSandboxStatus, ImageStatus and ListImages answer from serialized statuses
kept while nothing they show changes; the verbose calls build theirs afresh. After each change
a container, a pod or an image goes through, the cached answer must say what the fresh one says
(and what the change did)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from crib.proto.cri import api_pb2
from e2e.harness.cribd import Cribd
from e2e.harness.registry import Registry
from e2e.images import builder
from e2e.pods import (
    container_config,
    container_status,
    create_container,
    import_busybox,
    pod_config,
    push_and_pull,
    remove_pod,
    run_container,
    run_pod,
    start_container,
    stop_pod,
    wait_exited,
)


@pytest.fixture
def pod(net_cribd: Cribd, tmp_path: Path) -> Iterator[tuple[Cribd, str]]:
    import_busybox(net_cribd)
    config = pod_config("fresh")
    config.log_directory = str(tmp_path / "logs")
    pod_id = run_pod(net_cribd, config)
    yield net_cribd, pod_id
    remove_pod(net_cribd, pod_id)


def _container(daemon: Cribd, cid: str) -> api_pb2.ContainerStatus:
    """The cached status, checked against the one the verbose call builds afresh."""
    cached = container_status(daemon, cid).status
    assert cached == container_status(daemon, cid, verbose=True).status
    return cached


def _pod(daemon: Cribd, pod_id: str) -> api_pb2.PodSandboxStatusResponse:
    """The cached pod status (with its containers'), checked against the verbose one's."""

    def call(verbose: bool) -> api_pb2.PodSandboxStatusResponse:
        request = api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=verbose)
        return daemon.runtime.PodSandboxStatus(request, timeout=10)

    cached, fresh = call(False), call(True)
    assert cached.status == fresh.status
    assert list(cached.containers_statuses) == list(fresh.containers_statuses)
    assert cached.timestamp > 0 and not cached.info
    return cached


def test_container_and_pod_status_follow_every_change(pod: tuple[Cribd, str]) -> None:
    daemon, pod_id = pod
    assert _pod(daemon, pod_id).status.state == api_pb2.SANDBOX_READY
    assert _pod(daemon, pod_id).status.network.ip
    cid = create_container(daemon, pod_id, container_config("sleeper", ["/bin/sleep", "1000"]))
    assert _container(daemon, cid).state == api_pb2.CONTAINER_CREATED
    assert [c.state for c in _pod(daemon, pod_id).containers_statuses] == [api_pb2.CONTAINER_CREATED]

    start_container(daemon, cid)
    status = _container(daemon, cid)
    assert status.state == api_pb2.CONTAINER_RUNNING and status.started_at >= status.created_at
    assert [c.state for c in _pod(daemon, pod_id).containers_statuses] == [api_pb2.CONTAINER_RUNNING]

    daemon.runtime.UpdateContainerResources(
        api_pb2.UpdateContainerResourcesRequest(
            container_id=cid, linux=api_pb2.LinuxContainerResources(cpu_shares=300)
        ),
        timeout=30,
    )
    assert _container(daemon, cid).resources.linux.cpu_shares == 300

    # A container that exits by itself: its status went from RUNNING (cached) to EXITED.
    quitter = run_container(
        daemon, pod_id, container_config("quitter", ["/bin/sh", "-c", "sleep 0.3; exit 3"])
    )
    assert _container(daemon, quitter).state in (api_pb2.CONTAINER_RUNNING, api_pb2.CONTAINER_EXITED)
    exited = wait_exited(daemon, quitter)
    assert exited.exit_code == 3 and exited.finished_at >= exited.started_at
    assert _container(daemon, quitter) == exited
    assert len(_pod(daemon, pod_id).containers_statuses) == 2

    daemon.runtime.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=5), timeout=60)
    stopped = _container(daemon, cid)
    assert stopped.state == api_pb2.CONTAINER_EXITED and stopped.finished_at > 0
    states = {c.id: c.state for c in _pod(daemon, pod_id).containers_statuses}
    assert states == {cid: api_pb2.CONTAINER_EXITED, quitter: api_pb2.CONTAINER_EXITED}

    daemon.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=quitter), timeout=60)
    assert [c.id for c in _pod(daemon, pod_id).containers_statuses] == [cid]

    stop_pod(daemon, pod_id)
    assert _pod(daemon, pod_id).status.state == api_pb2.SANDBOX_NOTREADY


def _image(daemon: Cribd, spec: str) -> api_pb2.ImageStatusResponse:
    def call(verbose: bool) -> api_pb2.ImageStatusResponse:
        request = api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=spec), verbose=verbose)
        return daemon.images.ImageStatus(request, timeout=10)

    cached, fresh = call(False), call(True)
    assert cached.image == fresh.image and not cached.info
    return cached


def _listed(daemon: Cribd) -> dict[str, api_pb2.Image]:
    return {i.id: i for i in daemon.images.ListImages(api_pb2.ListImagesRequest(), timeout=10).images}


def test_image_status_and_list_follow_pull_tag_and_remove(cribd: Cribd, registry: Registry) -> None:
    image = builder.busybox_image()
    first, image_id = push_and_pull(cribd, registry.url, registry.host, "fresh/status-a", image)
    status = _image(cribd, first).image
    assert status.id == image_id and list(status.repo_tags) == [first]
    assert list(_listed(cribd)[image_id].repo_tags) == [first]

    # The same image pulled under a second name: both names, in both answers.
    second, again = push_and_pull(cribd, registry.url, registry.host, "fresh/status-b", image)
    assert again == image_id
    assert list(_image(cribd, first).image.repo_tags) == sorted([first, second])
    assert list(_image(cribd, image_id).image.repo_tags) == sorted([first, second])
    assert list(_listed(cribd)[image_id].repo_tags) == sorted([first, second])

    cribd.images.RemoveImage(api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=second)), timeout=30)
    assert not _image(cribd, first).HasField("image")
    assert not _image(cribd, image_id).HasField("image")
    assert image_id not in _listed(cribd)

    # Pulled back under the first name only.
    _, back = push_and_pull(cribd, registry.url, registry.host, "fresh/status-a", image)
    assert back == image_id
    assert list(_image(cribd, image_id).image.repo_tags) == [first]
    assert list(_listed(cribd)[image_id].repo_tags) == [first]
