"""Statuses served from cache (ContainerStatus, PodSandboxStatus, ImageStatus, ListImages) are
what a freshly built message would say, after every change a container, pod or image goes
through. (Compared as parsed messages: protobuf leaves the order of map entries open, so two
encodings of one message may differ in bytes.)"""

from __future__ import annotations

import base64
import dataclasses
import signal
from typing import Any

import pytest

from crib.config import ImageSection
from crib.container.containers import CREATED, EXITED, RUNNING, Container
from crib.cri_server import wire
from crib.cri_server.container import ContainerService, container_status, status_bytes
from crib.cri_server.image import ImageService, image_proto
from crib.cri_server.sandbox import SandboxService, pod_status, sandbox_status
from crib.cri_server.sandbox import status_key as sandbox_status_key
from crib.image_service import image_store
from crib.image_service.image_store import ImageRecord
from crib.image_service.images import Images
from crib.proto.cri import api_pb2
from crib.sandbox.sandboxes import NOTREADY, READY, Sandbox

POD = "p" * 64


def _container(cid: str = "c" * 64) -> Container:
    config = api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(name="app", attempt=1),
        image=api_pb2.ImageSpec(image="sha256:" + "1" * 64, user_specified_image="example.com/app:1"),
        labels={"io.kubernetes.container.name": "app", "io.kubernetes.pod.uid": "u" * 36},
        annotations={"io.kubernetes.container.hash": "1234", "b": "2", "a": "1"},
        mounts=[api_pb2.Mount(container_path="/etc/hosts", host_path="/var/lib/kubelet/h", readonly=True)],
        linux=api_pb2.LinuxContainerConfig(resources=api_pb2.LinuxContainerResources(cpu_shares=2)),
    )
    return Container(
        id=cid,
        sandbox_id=POD,
        config_b64=base64.b64encode(config.SerializeToString()).decode(),
        image_id="sha256:" + "1" * 64,
        image_ref="example.com/app@sha256:" + "2" * 64,
        chain_ids=[],
        handler="",
        created_at=1_700_000_000_000_000_000,
        log_path="/var/log/pods/x/app/1.log",
        image_name="example.com/app:1",
    )


def _cached_status(container: Container) -> api_pb2.ContainerStatus:
    return api_pb2.ContainerStatus.FromString(status_bytes(container))


def _other(value: Any) -> Any:
    """A value of the same type that differs from `value`."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 7
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [*value, 9]
    raise TypeError(type(value))


# --- ContainerStatus -------------------------------------------------------------------------------


def test_container_status_follows_the_container_through_its_life() -> None:
    c = _container()
    assert _cached_status(c) == container_status(c)
    assert _cached_status(c).state == api_pb2.CONTAINER_CREATED
    # StartContainer.
    c.state, c.started_at, c.pid = RUNNING, c.created_at + 5, 42
    assert _cached_status(c).state == api_pb2.CONTAINER_RUNNING
    assert _cached_status(c) == container_status(c)
    # UpdateContainerResources.
    c.resources_b64 = base64.b64encode(
        api_pb2.LinuxContainerResources(cpu_shares=512, memory_limit_in_bytes=1 << 28).SerializeToString()
    ).decode()
    assert _cached_status(c).resources.linux.cpu_shares == 512
    assert _cached_status(c) == container_status(c)
    # The container exits (or StopContainer stops it): an exit code, a reason, a message.
    c.state, c.finished_at, c.exit_code = EXITED, c.started_at + 9, 137
    c.reason, c.message = "OOMKilled", "oom"
    status = _cached_status(c)
    assert (status.state, status.exit_code, status.reason, status.message) == (
        api_pb2.CONTAINER_EXITED,
        137,
        "OOMKilled",
        "oom",
    )
    assert status == container_status(c)


def test_every_field_a_container_status_shows_refreshes_its_cache() -> None:
    # Each field of the record changed in turn (lists also in place): the cached status is
    # the fresh one, so a field added to the status but not to its key fails here.
    for f in dataclasses.fields(Container):
        if f.name.startswith("_") or f.name in ("id", "config_b64"):
            continue  # the ID and the config are fixed when the container is created
        c = _container()
        status_bytes(c)
        value = getattr(c, f.name)
        if isinstance(value, list):
            value.append(3)
        elif f.name == "stop_signal":
            c.stop_signal = int(signal.SIGQUIT)
        elif f.name == "state":
            c.state = RUNNING if c.state == CREATED else CREATED
        elif f.name == "resources_b64":
            c.resources_b64 = base64.b64encode(
                api_pb2.LinuxContainerResources(cpu_quota=5000).SerializeToString()
            ).decode()
        else:
            setattr(c, f.name, _other(value))
        assert _cached_status(c) == container_status(c), f.name


def test_an_unchanged_container_is_not_serialized_again() -> None:
    c = _container()
    first = status_bytes(c)
    assert status_bytes(c) is first
    c.state = RUNNING
    assert status_bytes(c) is not first


class _Containers:
    def __init__(self, *containers: Container) -> None:
        self.by_id = {c.id: c for c in containers}

    def get(self, container_id: str) -> Container:
        return self.by_id[container_id]

    def in_pod(self, sandbox_id: str) -> list[Container]:
        return [c for c in self.by_id.values() if c.sandbox_id == sandbox_id]


async def test_the_container_status_reply_parses_as_the_fresh_message() -> None:
    c = _container()
    c.state, c.started_at = RUNNING, c.created_at + 1
    service = ContainerService(_Containers(c))  # type: ignore[arg-type]
    reply = await service.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=c.id), None)  # type: ignore[arg-type]
    assert isinstance(reply, bytes)
    expected = api_pb2.ContainerStatusResponse(status=container_status(c))
    assert api_pb2.ContainerStatusResponse.FromString(reply) == expected
    c.state, c.exit_code = EXITED, 2
    reply = await service.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=c.id), None)  # type: ignore[arg-type]
    assert api_pb2.ContainerStatusResponse.FromString(reply).status.exit_code == 2


# --- PodSandboxStatus ------------------------------------------------------------------------------


def _sandbox() -> Sandbox:
    config = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name="web", namespace="default", uid="u" * 36),
        labels={"app": "web"},
        annotations={"kubernetes.io/config.seen": "now"},
    )
    return Sandbox(
        id=POD,
        config_b64=base64.b64encode(config.SerializeToString()).decode(),
        handler="",
        created_at=1_700_000_000_000_000_000,
        state=READY,
        ips=["10.88.0.5", "fd00::5"],
    )


class _Sandboxes:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def get(self, sandbox_id: str) -> Sandbox:
        assert sandbox_id == self.sandbox.id
        return self.sandbox


async def _pod_status(
    service: SandboxService, monkeypatch: pytest.MonkeyPatch
) -> tuple[api_pb2.PodSandboxStatusResponse, api_pb2.PodSandboxStatusResponse]:
    """The cached reply parsed, and the message built afresh at the same instant."""
    monkeypatch.setattr("crib.cri_server.sandbox.time.time_ns", lambda: 1_800_000_000_000_000_000)
    request = api_pb2.PodSandboxStatusRequest(pod_sandbox_id=POD)
    reply = await service.PodSandboxStatus(request, None)  # type: ignore[arg-type]
    assert isinstance(reply, bytes)
    fresh = sandbox_status(service.sandboxes, service.sandboxes.get(POD), False)
    fresh.containers_statuses.extend(container_status(c) for c in service.containers.in_pod(POD))
    return api_pb2.PodSandboxStatusResponse.FromString(reply), fresh


async def test_pod_status_follows_the_pod_and_its_containers(monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox = _sandbox()
    first, second = _container("a" * 64), _container("b" * 64)
    containers = _Containers(first, second)
    service = SandboxService(_Sandboxes(sandbox), containers, ContainerService(containers))  # type: ignore[arg-type]
    parsed, fresh = await _pod_status(service, monkeypatch)
    assert parsed == fresh
    assert parsed.status.network.ip == "10.88.0.5"
    assert [p.ip for p in parsed.status.network.additional_ips] == ["fd00::5"]
    assert [s.id for s in parsed.containers_statuses] == [first.id, second.id]
    assert parsed.timestamp == 1_800_000_000_000_000_000
    # A container starts, another exits.
    first.state, first.started_at = RUNNING, 5
    second.state, second.finished_at, second.exit_code = EXITED, 9, 1
    parsed, fresh = await _pod_status(service, monkeypatch)
    assert parsed == fresh
    states = [s.state for s in parsed.containers_statuses]
    assert states == [api_pb2.CONTAINER_RUNNING, api_pb2.CONTAINER_EXITED]
    # StopPodSandbox: not ready, and the network released.
    sandbox.state, sandbox.ips = NOTREADY, []
    parsed, fresh = await _pod_status(service, monkeypatch)
    assert parsed == fresh
    assert parsed.status.state == api_pb2.SANDBOX_NOTREADY and not parsed.status.network.ip
    # A container removed from the pod is not in its status any more.
    del containers.by_id[second.id]
    parsed, fresh = await _pod_status(service, monkeypatch)
    assert parsed == fresh and len(parsed.containers_statuses) == 1


def test_every_field_a_pod_status_shows_refreshes_its_cache() -> None:
    for f in dataclasses.fields(Sandbox):
        if f.name.startswith("_") or f.name in ("id", "config_b64"):
            continue  # fixed when the pod is made
        s = _sandbox()

        def cached(s: Sandbox = s) -> api_pb2.PodSandboxStatus:
            serialized = wire.status_bytes(s, sandbox_status_key(s), pod_status)
            return api_pb2.PodSandboxStatus.FromString(serialized)

        cached()
        value = getattr(s, f.name)
        if isinstance(value, list):
            value.append("10.88.0.9")
        elif f.name == "state":
            s.state = NOTREADY
        else:
            setattr(s, f.name, _other(value))
        assert cached() == pod_status(s), f.name


async def test_the_verbose_pod_status_still_has_its_info(monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox = _sandbox()

    class Verbose(_Sandboxes):
        def to_status(self, s: Sandbox) -> dict[str, str]:
            return {"pid": "1"}

    containers = _Containers(_container())
    service = SandboxService(Verbose(sandbox), containers, ContainerService(containers))  # type: ignore[arg-type]
    request = api_pb2.PodSandboxStatusRequest(pod_sandbox_id=POD, verbose=True)
    reply = await service.PodSandboxStatus(request, None)  # type: ignore[arg-type]
    assert isinstance(reply, api_pb2.PodSandboxStatusResponse)
    assert reply.info["info"] == '{"pid": "1"}' and len(reply.containers_statuses) == 1


# --- ImageStatus and ListImages --------------------------------------------------------------------


def _record(n: int, tags: list[str]) -> ImageRecord:
    return ImageRecord(
        id=f"sha256:{n:064x}", repo_tags=tags, repo_digests=[f"example.com/app@sha256:{n + 100:064x}"],
        manifest_digest="", layers=[], blobs=[], size=1000 + n, config={"config": {"User": "1000"}},
    )  # fmt: skip


class _Images:
    """The queries ImageService makes, over a dict; pinning is Images' own code."""

    pinned = Images.pinned
    pinned_by = Images.pinned_by

    def __init__(self, *records: ImageRecord) -> None:
        self.by_id = {r.id: r for r in records}
        self.sandbox_image = ""
        self.config = ImageSection()

    def find(self, spec: str) -> ImageRecord | None:
        return next((r for r in self.by_id.values() if spec == r.id or spec in r.repo_tags), None)

    def list(self, spec: str = "") -> list[ImageRecord]:
        if spec:
            found = self.find(spec)
            return [found] if found else []
        return sorted(self.by_id.values(), key=lambda r: r.id)


async def _image_status(service: ImageService, spec: str) -> api_pb2.ImageStatusResponse:
    request = api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=spec))
    reply = await service.ImageStatus(request, None)  # type: ignore[arg-type]
    if isinstance(reply, bytes):
        return api_pb2.ImageStatusResponse.FromString(reply)
    return reply


async def _list(service: ImageService) -> api_pb2.ListImagesResponse:
    reply = await service.ListImages(api_pb2.ListImagesRequest(), None)  # type: ignore[arg-type]
    parsed = api_pb2.ListImagesResponse.FromString(reply)
    assert parsed == api_pb2.ListImagesResponse(
        images=[image_proto(service.images, r) for r in service.images.list()]  # type: ignore[arg-type]
    )
    return parsed


async def test_image_status_and_list_follow_tags_pins_and_removal() -> None:
    app, other = _record(1, ["example.com/app:1"]), _record(2, ["example.com/other:1"])
    images = _Images(app, other)
    service = ImageService(images)  # type: ignore[arg-type]
    status = await _image_status(service, "example.com/app:1")
    assert status.image == image_proto(images, app)  # type: ignore[arg-type]
    assert status.image.uid.value == 1000 and status.image.size == 1001
    assert [i.id for i in (await _list(service)).images] == [app.id, other.id]
    # A pull tags the image again (ImageStore adds names in place).
    app.repo_tags.append("example.com/app:latest")
    status = await _image_status(service, app.id)
    assert list(status.image.repo_tags) == ["example.com/app:1", "example.com/app:latest"]
    assert list((await _list(service)).images[0].repo_tags) == app.repo_tags
    # Another image takes a tag away (ImageStore detaches it in place).
    app.repo_tags.remove("example.com/app:latest")
    assert list((await _image_status(service, app.id)).image.repo_tags) == ["example.com/app:1"]
    # A reloaded [image] section pins it; the sandbox image is pinned too.
    images.config = ImageSection(pinned_images=["example.com/app:*"])
    assert (await _image_status(service, app.id)).image.pinned
    assert not (await _image_status(service, other.id)).image.pinned
    images.sandbox_image = "example.com/other:1"
    assert [i.pinned for i in (await _list(service)).images] == [True, True]
    images.config, images.sandbox_image = ImageSection(), ""
    assert [i.pinned for i in (await _list(service)).images] == [False, False]
    # RemoveImage: gone from both, and its cached item is dropped by the next full list.
    del images.by_id[other.id]
    assert not (await _image_status(service, other.id)).HasField("image")
    assert [i.id for i in (await _list(service)).images] == [app.id]
    assert set(service._items) == {app.id}
    # Pulled again under another name: the new names, not the cached ones.
    again = _record(2, ["example.com/renamed:1"])
    images.by_id[again.id] = again
    assert list((await _image_status(service, again.id)).image.repo_tags) == ["example.com/renamed:1"]


async def test_verbose_image_status_still_has_its_info() -> None:
    app = _record(1, ["example.com/app:1"])
    service = ImageService(_Images(app))  # type: ignore[arg-type]
    request = api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=app.id), verbose=True)
    reply = await service.ImageStatus(request, None)  # type: ignore[arg-type]
    assert isinstance(reply, api_pb2.ImageStatusResponse) and '"id": "sha256:' in reply.info["info"]
    filtered = await service.ListImages(
        api_pb2.ListImagesRequest(filter=api_pb2.ImageFilter(image=api_pb2.ImageSpec(image="none:1"))),
        None,  # type: ignore[arg-type]
    )
    assert filtered == b""


def test_reference_keys_are_kept_only_for_names_of_a_names_length() -> None:
    image_store._kept_ref_key.cache_clear()
    assert image_store._ref_key("example.com/app:1") == "example.com/app:1"
    assert image_store._ref_key("busybox") == "docker.io/library/busybox:latest"
    assert image_store._ref_key("Not A Name") is None
    assert image_store._ref_key("example.com/app:1") == "example.com/app:1"
    info = image_store._kept_ref_key.cache_info()
    assert (info.hits, info.misses) == (1, 3)
    # A request may name megabytes: those are parsed, not kept.
    assert image_store._ref_key("a" * 100_000) is None
    assert image_store._kept_ref_key.cache_info().currsize == 3


async def test_an_image_gone_as_another_came_is_forgotten_by_the_next_list() -> None:
    app, other, third = (_record(n, [f"example.com/app{n}:1"]) for n in (1, 2, 3))
    images = _Images(app, other)
    service = ImageService(images)  # type: ignore[arg-type]
    await _list(service)
    # One removed, one pulled between two lists: as many images as items kept, one stale.
    del images.by_id[other.id]
    images.by_id[third.id] = third
    assert [i.id for i in (await _list(service)).images] == [app.id, third.id]
    assert set(service._items) == {app.id, other.id, third.id}
    assert [i.id for i in (await _list(service)).images] == [app.id, third.id]
    assert set(service._items) == {app.id, third.id}
