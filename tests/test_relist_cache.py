"""PLEG's relist (ListPodSandbox and ListContainers without a filter) answered with the reply
made before while nothing a list shows has changed, and made again after each change: an
object added to or dropped from an index, a listed record's state written (also while a
reply is being made). Replies are compared parsed with the lists built afresh."""

from __future__ import annotations

import dataclasses
import threading

from crib.container.containers import EXITED, RUNNING, Container
from crib.cri_server import wire
from crib.cri_server.container import ContainerService, list_containers
from crib.cri_server.sandbox import SandboxService, list_sandboxes
from crib.proto.cri import api_pb2
from crib.sandbox.sandboxes import NOTREADY, Sandbox
from crib.store.index import LISTED, Index
from tests.test_status_cache import _container, _sandbox


class _Containers:
    def __init__(self) -> None:
        self.index: Index[Container] = Index("container", group=lambda c: c.sandbox_id)

    def list(self) -> list[Container]:
        return list(self.index)


class _Sandboxes:
    def __init__(self) -> None:
        self.index: Index[Sandbox] = Index("pod sandbox")

    def list(self) -> list[Sandbox]:
        return list(self.index)


async def _containers(service: ContainerService, f: api_pb2.ContainerFilter | None = None) -> bytes:
    request = api_pb2.ListContainersRequest(filter=f)
    reply = await service.ListContainers(request, None)  # type: ignore[arg-type]
    fresh = api_pb2.ListContainersResponse(containers=list_containers(service.containers, request.filter))
    assert api_pb2.ListContainersResponse.FromString(reply) == fresh
    return reply


async def _pods(service: SandboxService) -> bytes:
    reply = await service.ListPodSandbox(api_pb2.ListPodSandboxRequest(), None)  # type: ignore[arg-type]
    items = list_sandboxes(service.sandboxes, api_pb2.PodSandboxFilter())  # type: ignore[arg-type]
    fresh = api_pb2.ListPodSandboxResponse(items=items)
    assert api_pb2.ListPodSandboxResponse.FromString(reply) == fresh
    return reply


async def test_the_container_relist_follows_every_change_it_shows() -> None:
    containers = _Containers()
    service = ContainerService(containers)  # type: ignore[arg-type]
    first = _container("a" * 64)
    containers.index.add(first.id, first)
    reply = await _containers(service)
    # Nothing changed: the very reply made before.
    assert await _containers(service) is reply
    # Created.
    second = _container("b" * 64)
    containers.index.add(second.id, second)
    reply = await _containers(service)
    assert len(api_pb2.ListContainersResponse.FromString(reply).containers) == 2
    # Started, then exited: a write of `state` anywhere is seen.
    first.state = RUNNING
    reply = await _containers(service)
    assert api_pb2.ListContainersResponse.FromString(reply).containers[0].state == api_pb2.CONTAINER_RUNNING
    first.state = EXITED
    reply = await _containers(service)
    assert api_pb2.ListContainersResponse.FromString(reply).containers[0].state == api_pb2.CONTAINER_EXITED
    # Removed.
    containers.index.drop(second.id)
    reply = await _containers(service)
    assert [c.id for c in api_pb2.ListContainersResponse.FromString(reply).containers] == [first.id]
    # Recovery puts a new record under the same ID.
    again = dataclasses.replace(first, state=RUNNING)
    containers.index.add(again.id, again)
    reply = await _containers(service)
    assert api_pb2.ListContainersResponse.FromString(reply).containers[0].state == api_pb2.CONTAINER_RUNNING
    assert await _containers(service) is reply


async def test_a_filtered_list_is_made_for_its_filter() -> None:
    containers = _Containers()
    service = ContainerService(containers)  # type: ignore[arg-type]
    running, created = _container("a" * 64), _container("b" * 64)
    running.state = RUNNING
    for c in (running, created):
        containers.index.add(c.id, c)
    everything = await _containers(service)
    only_running = api_pb2.ContainerFilter(state=api_pb2.ContainerStateValue(state=api_pb2.CONTAINER_RUNNING))
    reply = await _containers(service, only_running)
    assert [c.id for c in api_pb2.ListContainersResponse.FromString(reply).containers] == [running.id]
    # The relist made before is still the relist: a filtered list does not replace it.
    assert await _containers(service) is everything


async def test_the_pod_relist_follows_every_change_it_shows() -> None:
    sandboxes = _Sandboxes()
    service = SandboxService(sandboxes, _Containers(), ContainerService(_Containers()))  # type: ignore[arg-type]
    pod = _sandbox()
    sandboxes.index.add(pod.id, pod)
    reply = await _pods(service)
    assert await _pods(service) is reply
    pod.state = NOTREADY
    reply = await _pods(service)
    assert api_pb2.ListPodSandboxResponse.FromString(reply).items[0].state == api_pb2.SANDBOX_NOTREADY
    sandboxes.index.drop(pod.id)
    assert await _pods(service) == b""


async def test_a_state_written_while_the_reply_is_made_is_in_the_next_one() -> None:
    containers = _Containers()
    service = ContainerService(containers)  # type: ignore[arg-type]
    c = _container()
    containers.index.add(c.id, c)
    await _containers(service)
    c.state = RUNNING
    # The generation is read, then another thread writes the state while the reply is made
    # from what it read before: that reply is stale, and the next relist must not reuse it.
    generation = LISTED.value
    stale = api_pb2.ListContainersResponse(containers=list_containers(containers, api_pb2.ContainerFilter()))

    def made_as_the_state_changes() -> bytes:
        writer = threading.Thread(target=setattr, args=(c, "state", EXITED))
        writer.start()
        writer.join()
        return stale.SerializeToString()

    assert service.relist.reply(generation, made_as_the_state_changes) == stale.SerializeToString()
    reply = await _containers(service)
    assert api_pb2.ListContainersResponse.FromString(reply).containers[0].state == api_pb2.CONTAINER_EXITED


def test_a_list_cache_makes_its_reply_once_per_generation() -> None:
    cache, made = wire.ListCache(), []

    def make() -> bytes:
        made.append(1)
        return b"reply %d" % len(made)

    assert cache.reply(7, make) == b"reply 1"
    assert cache.reply(7, make) == b"reply 1"
    assert cache.reply(8, make) == b"reply 2"
    assert len(made) == 2
