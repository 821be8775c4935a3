"""Races the kubelet and an operator can start at once: each ends consistent, without deadlock.

- 50 concurrent PullImage calls of one image: one image, one set of blobs, 50 answers.
- StopPodSandbox and RemovePodSandbox racing CreateContainer/StartContainer on that pod.
- RemoveImage racing CreateContainer of that image.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc

from crib.proto.cri import api_pb2
from e2e.harness.cribd import Cribd
from e2e.harness.machine import machine_state
from e2e.harness.network import PodNetwork
from e2e.harness.registry import Registry
from e2e.images import builder
from e2e.images.registry_client import RegistryClient
from e2e.pods import (
    container_config,
    create_container,
    import_busybox,
    list_pods,
    pod_config,
    remove_pod,
    run_pod,
    start_container,
)

# Codes a call that lost a race may answer; anything else (INTERNAL, UNKNOWN, a timeout) fails.
LOST_RACE = {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION}
RACE_TIMEOUT_S = 120


def _outcome(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _race(*sides: Callable[[], None]) -> None:
    """Run the sides in threads released together; none may hang."""
    go = threading.Barrier(len(sides))

    def released(side: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            go.wait()
            side()

        return run

    threads = [threading.Thread(target=released(side)) for side in sides]
    for t in threads:
        t.start()
    for t in threads:
        t.join(RACE_TIMEOUT_S)
    assert not any(t.is_alive() for t in threads), "a call hung"


def _containers(daemon: Cribd) -> list[api_pb2.Container]:
    return list(daemon.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers)


def _push(registry: Registry, repo: str, image: builder.BuiltImage) -> api_pb2.PullImageRequest:
    with RegistryClient(registry.url) as client:
        client.push_image(repo, "1", image)
    return api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=f"{registry.host}/{repo}:1"))


def test_fifty_concurrent_pulls_of_one_image(net_cribd: Cribd, registry: Registry) -> None:
    image = builder.busybox_image(working_dir="/fifty")
    request = _push(registry, "e2e/fifty", image)
    with ThreadPoolExecutor(50) as pool:
        refs = list(pool.map(lambda _: net_cribd.images.PullImage(request, timeout=120).image_ref, range(50)))
    assert len(set(refs)) == 1
    listed = net_cribd.images.ListImages(api_pb2.ListImagesRequest(), timeout=10).images
    assert [i.id for i in listed] == refs[:1]
    state = machine_state(net_cribd)
    assert state["ingest"] == []
    digests = [b.digest for b in (*image.blobs, image.manifest)]
    assert sorted(state["blobs"]) == sorted(d.removeprefix("sha256:") for d in digests)


def _create_and_start(daemon: Cribd, pod_id: str, outcomes: list[grpc.StatusCode]) -> None:
    for i in range(4):
        try:
            cid = create_container(daemon, pod_id, container_config(f"c{i}", ["sleep", "1000"]))
        except grpc.RpcError as exc:
            outcomes.append(exc.code())
            continue
        outcomes.append(_outcome(lambda cid=cid: start_container(daemon, cid)))


def _tear_down(daemon: Cribd, pod_id: str, outcomes: list[grpc.StatusCode]) -> None:
    stop = api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id)
    outcomes.append(_outcome(lambda: daemon.runtime.StopPodSandbox(stop, timeout=60)))
    remove = api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id)
    outcomes.append(_outcome(lambda: daemon.runtime.RemovePodSandbox(remove, timeout=60)))


def test_pod_teardown_racing_container_creation(net_cribd: Cribd, pod_network: PodNetwork) -> None:
    import_busybox(net_cribd)
    warm = run_pod(net_cribd, pod_config("warm"))
    remove_pod(net_cribd, warm)
    before = machine_state(net_cribd, pod_network)
    for round_ in range(5):
        pod_id = run_pod(net_cribd, pod_config(f"race{round_}"))
        outcomes: list[grpc.StatusCode] = []
        _race(
            lambda: _create_and_start(net_cribd, pod_id, outcomes),  # noqa: B023 (joined in the round)
            lambda: _tear_down(net_cribd, pod_id, outcomes),  # noqa: B023
        )
        assert set(outcomes) <= LOST_RACE | {grpc.StatusCode.OK}, outcomes
        # A container made while the removal ran is removed with the pod, as the kubelet's
        # next RemovePodSandbox would.
        remove_pod(net_cribd, pod_id)
        assert list_pods(net_cribd) == [] and _containers(net_cribd) == []
    assert machine_state(net_cribd, pod_network) == before


def test_remove_image_racing_create_container(net_cribd: Cribd, registry: Registry) -> None:
    image = builder.busybox_image(working_dir="/racy")
    request = _push(registry, "e2e/racy", image)
    ours = {b.digest.removeprefix("sha256:") for b in image.blobs}
    pod_id = run_pod(net_cribd, pod_config("racy"))
    try:
        for i in range(8):
            ref = net_cribd.images.PullImage(request, timeout=60).image_ref
            config = container_config(f"c{i}", ["sleep", "1000"], image=ref)
            created: list[str] = []
            codes: dict[str, grpc.StatusCode] = {}

            def create(
                config: api_pb2.ContainerConfig = config,
                created: list[str] = created,
                codes: dict[str, grpc.StatusCode] = codes,
            ) -> None:
                codes["create"] = _outcome(
                    lambda: created.append(create_container(net_cribd, pod_id, config))
                )

            def remove(ref: str = ref, codes: dict[str, grpc.StatusCode] = codes) -> None:
                spec = api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=ref))
                codes["remove"] = _outcome(lambda: net_cribd.images.RemoveImage(spec, timeout=30))

            _race(create, remove)
            assert codes["remove"] == grpc.StatusCode.OK
            assert codes["create"] in {grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND}, codes
            # A container that won keeps its image's content: it starts and runs.
            for cid in created:
                start_container(net_cribd, cid)
                remove_container = api_pb2.RemoveContainerRequest(container_id=cid)
                net_cribd.runtime.RemoveContainer(remove_container, timeout=30)
        # Every image removed and every container gone: their blobs go too.
        assert not ours & set(machine_state(net_cribd)["blobs"])
    finally:
        remove_pod(net_cribd, pod_id)
