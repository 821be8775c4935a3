"""Every step of the pod, container and pull paths failing once, on the real daemon.

cribd runs with CRIB_FAILPOINTS naming each step of a path, each to fail once (`@1`), so
successive attempts of one call fail at successive steps. After each failure: the call
answered a clear gRPC error naming the step, nothing of the attempt is left on the
machine (mounts, processes, netns, addresses, iptables rules, CNI cache, state, blobs),
and the next attempt gets further. Finally the call succeeds and its undoing leaves the
machine as it found it.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from crib.proto.cri import api_pb2
from e2e.harness.cribd import Cribd
from e2e.harness.machine import machine_state
from e2e.harness.network import PodNetwork
from e2e.harness.registry import Registry
from e2e.harness.wait import wait_until
from e2e.images import builder
from e2e.images.registry_client import RegistryClient
from e2e.pods import (
    container_config,
    container_status,
    create_container,
    exec_sync,
    import_busybox,
    list_pods,
    pod_config,
    remove_pod,
    run_pod,
    start_container,
    stop_pod,
)

RUN_POD_STEPS = [
    "sandbox.dir",
    "sandbox.netns",
    "sandbox.cni_add",
    "sandbox.pause_rootfs",
    "sandbox.pause_run",
    "sandbox.state_write",
]
CREATE_STEPS = ["container.rootfs", "container.spec"]
PULL_STEPS = ["image.layer", "image.commit"]


def _failing(cribd_factory: Callable[..., Cribd], net: PodNetwork | None, steps: list[str]) -> Cribd:
    daemon = cribd_factory()
    if net is not None:
        net.install(daemon.cni_conf_dir)
    return daemon.start(env={"CRIB_FAILPOINTS": ",".join(f"{s}=error@1" for s in steps)})


def _fails_at(call: Callable[[], object], step: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == grpc.StatusCode.INTERNAL, err.value.details()
    assert f"failpoint {step}" in (err.value.details() or "")


def _containers(daemon: Cribd) -> list[api_pb2.Container]:
    return list(daemon.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers)


def _without_images(state: dict[str, list[str]]) -> dict[str, list[str]]:
    # The pause image, built at the first attempt, stays: it is the node's, not the pod's.
    return {k: v for k, v in state.items() if k not in ("blobs", "layers")}


@pytest.mark.parametrize("step", RUN_POD_STEPS)
def test_run_pod_sandbox_fails_cleanly_at(
    cribd_factory: Callable[..., Cribd], pod_network: PodNetwork, step: str
) -> None:
    # One step per cribd: the CNI ADD and the pause start run side by side, so two armed
    # steps could both fire in one attempt.
    daemon = _failing(cribd_factory, pod_network, [step])
    empty = _without_images(machine_state(daemon, pod_network))
    _fails_at(lambda: run_pod(daemon, pod_config("flaky")), step)
    assert list_pods(daemon) == []
    assert _without_images(machine_state(daemon, pod_network)) == empty
    pod_id = run_pod(daemon, pod_config("flaky"))
    assert list_pods(daemon)[0].state == api_pb2.SANDBOX_READY
    remove_pod(daemon, pod_id)
    assert _without_images(machine_state(daemon, pod_network)) == empty


def test_container_and_teardown_steps_fail_cleanly(
    cribd_factory: Callable[..., Cribd], pod_network: PodNetwork
) -> None:
    steps = [*CREATE_STEPS, "container.conmon", "container.stop", "container.remove"]
    steps += ["sandbox.cni_del", "sandbox.teardown", "sandbox.remove"]
    daemon = _failing(cribd_factory, pod_network, steps)
    import_busybox(daemon)
    pod_id = run_pod(daemon, pod_config("host"))
    with_pod = machine_state(daemon, pod_network)
    config = container_config("c", ["sleep", "1000"])
    for step in CREATE_STEPS:
        _fails_at(lambda: create_container(daemon, pod_id, config), step)
        assert _containers(daemon) == [] and machine_state(daemon, pod_network) == with_pod, step

    # StartContainer failing after conmon started it: exited with the reason, nothing runs.
    cid = create_container(daemon, pod_id, config)
    _fails_at(lambda: start_container(daemon, cid), "container.conmon")
    status = container_status(daemon, cid).status
    assert (status.state, status.reason) == (api_pb2.CONTAINER_EXITED, "StartError")
    assert "failpoint container.conmon" in status.message
    # conmon follows its killed container out a moment after the call answers.
    wait_until(
        lambda: machine_state(daemon, pod_network)["processes"] == with_pod["processes"],
        10,
        "the failed container's conmon to exit",
    )

    # RemoveContainer fails once, then goes whole.
    remove = api_pb2.RemoveContainerRequest(container_id=cid)
    _fails_at(lambda: daemon.runtime.RemoveContainer(remove, timeout=30), "container.remove")
    daemon.runtime.RemoveContainer(remove, timeout=30)
    assert _containers(daemon) == [] and machine_state(daemon, pod_network) == with_pod

    # A new container of the same name runs; stopping it fails once, then stops it.
    cid = create_container(daemon, pod_id, config)
    start_container(daemon, cid)
    assert container_status(daemon, cid).status.state == api_pb2.CONTAINER_RUNNING
    stop_one = api_pb2.StopContainerRequest(container_id=cid, timeout=5)
    _fails_at(lambda: daemon.runtime.StopContainer(stop_one, timeout=30), "container.stop")
    assert container_status(daemon, cid).status.state == api_pb2.CONTAINER_RUNNING
    daemon.runtime.StopContainer(stop_one, timeout=30)
    assert container_status(daemon, cid).status.state == api_pb2.CONTAINER_EXITED

    stop = api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id)
    with pytest.raises(grpc.RpcError) as err:
        daemon.runtime.StopPodSandbox(stop, timeout=60)
    assert (
        err.value.code() == grpc.StatusCode.UNAVAILABLE and "failpoint sandbox.cni_del" in err.value.details()
    )
    stop_pod(daemon, pod_id)
    assert machine_state(daemon, pod_network)["ipam"] == []
    _fails_at(lambda: remove_pod(daemon, pod_id), "sandbox.remove")
    remove_pod(daemon, pod_id)
    left = machine_state(daemon, pod_network)
    assert left["mounts"] == [] and left["processes"] == [] and left["sandbox_dirs"] == []
    assert left["container_dirs"] == [] and left["cni_cache"] == [] and left["iptables"] == []
    assert left["bridge_ports"] == [] and list_pods(daemon) == [] and _containers(daemon) == []


def test_pull_image_fails_cleanly_mid_layer_and_at_commit(
    cribd_factory: Callable[..., Cribd], registry: Registry
) -> None:
    with RegistryClient(registry.url) as client:
        client.push_image("e2e/failpoint-pull", "1", builder.busybox_image())
    daemon = _failing(cribd_factory, None, PULL_STEPS)
    empty = machine_state(daemon)
    request = api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=f"{registry.host}/e2e/failpoint-pull:1"))
    for step in PULL_STEPS:
        _fails_at(lambda: daemon.images.PullImage(request, timeout=60), step)
        assert list(daemon.images.ListImages(api_pb2.ListImagesRequest(), timeout=10).images) == []
        assert machine_state(daemon) == empty, step
    assert daemon.images.PullImage(request, timeout=60).image_ref


@pytest.mark.parametrize("step", [*RUN_POD_STEPS, *CREATE_STEPS])
def test_a_crash_at_each_step_leaves_a_whole_pod_or_none(
    cribd_factory: Callable[..., Cribd], pod_network: PodNetwork, step: str
) -> None:
    """cribd SIGKILLed inside the step; the next cribd finishes or undoes what it was doing."""
    daemon = cribd_factory()
    pod_network.install(daemon.cni_conf_dir)
    daemon.start(env={"CRIB_FAILPOINTS": f"{step}=crash@1"})
    import_busybox(daemon)
    empty = _without_images(machine_state(daemon, pod_network))
    config = container_config("c", ["sleep", "1000"])
    pod_id = ""
    with pytest.raises(grpc.RpcError) as err:
        if step.startswith("container."):
            pod_id = run_pod(daemon, pod_config("crashy"))
            create_container(daemon, pod_id, config)
        else:
            run_pod(daemon, pod_config("crashy"))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert daemon.stop() == -9  # it killed itself at the step
    daemon.start()
    if step.startswith("container."):
        # The pod was whole before the crash and stays; the half-made container is gone.
        assert [p.id for p in list_pods(daemon)] == [pod_id] and _containers(daemon) == []
        cid = create_container(daemon, pod_id, config)
        start_container(daemon, cid)
        assert container_status(daemon, cid).status.state == api_pb2.CONTAINER_RUNNING
        remove_pod(daemon, pod_id)
    else:
        assert list_pods(daemon) == []
        assert _without_images(machine_state(daemon, pod_network)) == empty
        remove_pod(daemon, run_pod(daemon, pod_config("crashy")))
    assert _without_images(machine_state(daemon, pod_network)) == empty


TEARDOWN_STEPS = [
    "container.stop",
    "container.remove",
    "sandbox.cni_del",
    "sandbox.teardown",
    "sandbox.remove",
]


def _teardown(daemon: Cribd, pod_id: str) -> None:
    """The kubelet's teardown of a pod, from wherever it got to: each call is a retry."""
    for c in _containers(daemon):
        daemon.runtime.StopContainer(api_pb2.StopContainerRequest(container_id=c.id, timeout=5), timeout=60)
        daemon.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=c.id), timeout=60)
    stop_pod(daemon, pod_id)
    remove_pod(daemon, pod_id)


@pytest.mark.parametrize("store", ["kept", "lost"])
def test_a_crash_inside_start_container_is_finished_by_the_retry(
    cribd_factory: Callable[..., Cribd], pod_network: PodNetwork, store: str
) -> None:
    """cribd SIGKILLed inside StartContainer, after conmon had the runtime create the
    container and before `runc start`: the next cribd has it CREATED (also when it rebuilt
    its state store from what is on disk, where conmon's pidfile alone would say it ran),
    and the kubelet's retried StartContainer starts that container rather than failing on it."""
    daemon = cribd_factory()
    pod_network.install(daemon.cni_conf_dir)
    daemon.start(env={"CRIB_FAILPOINTS": "container.conmon=crash@1"})
    import_busybox(daemon)
    empty = _without_images(machine_state(daemon, pod_network))
    pod_id = run_pod(daemon, pod_config("starting"))
    cid = create_container(daemon, pod_id, container_config("c", ["sleep", "1000"]))
    with pytest.raises(grpc.RpcError) as err:
        start_container(daemon, cid)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert daemon.stop() == -9  # it killed itself at the step
    if store == "lost":
        for suffix in ("", "-wal", "-shm"):
            (daemon.root / f"state.db{suffix}").unlink(missing_ok=True)
    daemon.start()
    status = container_status(daemon, cid).status
    assert (status.state, status.started_at) == (api_pb2.CONTAINER_CREATED, 0)
    start_container(daemon, cid)
    assert container_status(daemon, cid).status.state == api_pb2.CONTAINER_RUNNING
    assert exec_sync(daemon, cid, ["echo", "started"]).stdout == b"started\n"
    _teardown(daemon, pod_id)
    assert _without_images(machine_state(daemon, pod_network)) == empty


@pytest.mark.parametrize("step", TEARDOWN_STEPS)
def test_a_crash_in_each_teardown_step_is_finished_by_the_retry(
    cribd_factory: Callable[..., Cribd], pod_network: PodNetwork, step: str
) -> None:
    """cribd SIGKILLed inside StopContainer, RemoveContainer, StopPodSandbox's CNI DEL or
    RemovePodSandbox; after the restart the pod and its container are each whole (in a
    state the kubelet can go on from) or gone, and the kubelet's retried teardown leaves
    the machine as it was before the pod."""
    daemon = cribd_factory()
    pod_network.install(daemon.cni_conf_dir)
    daemon.start(env={"CRIB_FAILPOINTS": f"{step}=crash@1"})
    import_busybox(daemon)
    empty = _without_images(machine_state(daemon, pod_network))
    pod_id = run_pod(daemon, pod_config("dying"))
    cid = create_container(daemon, pod_id, container_config("c", ["sleep", "1000"]))
    start_container(daemon, cid)
    with pytest.raises(grpc.RpcError) as err:
        _teardown(daemon, pod_id)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert daemon.stop() == -9  # it killed itself at the step
    daemon.start()
    pods = list_pods(daemon)
    assert [p.id for p in pods] in ([pod_id], [])
    for c in _containers(daemon):
        # Whole: a state ContainerStatus can tell, nothing half-removed.
        assert c.id == cid
        assert container_status(daemon, cid).status.state in (
            api_pb2.CONTAINER_RUNNING,
            api_pb2.CONTAINER_EXITED,
        )
    if pods:
        _teardown(daemon, pod_id)
    assert list_pods(daemon) == [] and _containers(daemon) == []
    assert _without_images(machine_state(daemon, pod_network)) == empty
    # The node goes on: a new pod runs and goes.
    remove_pod(daemon, run_pod(daemon, pod_config("after")))
    assert _without_images(machine_state(daemon, pod_network)) == empty


@pytest.mark.parametrize("step", PULL_STEPS)
def test_a_crash_inside_a_pull_leaves_no_image_and_the_retry_pulls_it(
    cribd_factory: Callable[..., Cribd], registry: Registry, step: str
) -> None:
    with RegistryClient(registry.url) as client:
        client.push_image("e2e/crash-pull", "1", builder.busybox_image())
    daemon = cribd_factory().start(env={"CRIB_FAILPOINTS": f"{step}=crash@1"})
    empty = machine_state(daemon)
    request = api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=f"{registry.host}/e2e/crash-pull:1"))
    with pytest.raises(grpc.RpcError) as err:
        daemon.images.PullImage(request, timeout=60)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert daemon.stop() == -9
    daemon.start()
    # Never half there: no image, and the blobs and layers of the cut pull are collected.
    assert list(daemon.images.ListImages(api_pb2.ListImagesRequest(), timeout=10).images) == []
    assert machine_state(daemon) == empty
    ref = daemon.images.PullImage(request, timeout=60).image_ref
    status = daemon.images.ImageStatus(
        api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=ref)), timeout=10
    )
    assert status.image.id == ref
