"""An ended container gives back the runtime's state, its cgroup and its rootfs mount at once
(StopContainer waits for that); RemoveContainer then only sets its files aside, and they are
deleted after the reply. A stopped pod's pause does the same right after StopPodSandbox has
answered. Nothing stays."""

from __future__ import annotations

import subprocess

from crib.proto.cri import api_pb2
from e2e.harness.cleanup import mounts_under
from e2e.harness.cribd import Cribd
from e2e.harness.wait import wait_until
from e2e.pods import (
    container_config,
    container_status,
    import_busybox,
    pod_config,
    remove_pod,
    run_container,
    run_pod,
    wait_exited,
)


def _runc_knows(daemon: Cribd, container_id: str) -> bool:
    listed = subprocess.run(
        ["runc", "--root", str(daemon.state / "runtime" / "runc"), "list", "-q"],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.split()
    return container_id in listed


def _trash(daemon: Cribd) -> list[str]:
    dirs = (daemon.state / "containers.trash", daemon.root / "containers.trash")
    return [p.name for d in dirs if d.is_dir() for p in d.iterdir()]


def test_stop_tears_down_and_remove_leaves_nothing(net_cribd: Cribd) -> None:
    daemon = net_cribd
    import_busybox(daemon)
    pod_id = run_pod(daemon, pod_config("teardown"))
    try:
        stopped = run_container(daemon, pod_id, container_config("stopped", ["sleep", "1000"]))
        ended = run_container(daemon, pod_id, container_config("ended", ["true"]))
        daemon.runtime.StopContainer(
            api_pb2.StopContainerRequest(container_id=stopped, timeout=5), timeout=30
        )
        # StopContainer answered after the runtime's state and the rootfs mount went.
        assert not _runc_knows(daemon, stopped)
        assert mounts_under(daemon.state / "containers" / stopped) == []
        # A container that ended by itself is torn down in the background, just as fully.
        wait_exited(daemon, ended)
        wait_until(lambda: not _runc_knows(daemon, ended), 10, "the ended container's teardown")
        wait_until(lambda: mounts_under(daemon.state / "containers" / ended) == [], 10)
        # Its status and log stay until RemoveContainer.
        assert container_status(daemon, ended).status.state == api_pb2.CONTAINER_EXITED
        for cid in (stopped, ended):
            daemon.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid), timeout=30)
            assert not (daemon.state / "containers" / cid).exists()
            assert not (daemon.root / "containers" / cid).exists()
        wait_until(lambda: _trash(daemon) == [], 10, "the removed containers' files to be deleted")
    finally:
        remove_pod(daemon, pod_id)
    wait_until(lambda: _trash(daemon) == [], 10, "the pod's files to be deleted")


def test_a_stopped_pods_pause_is_torn_down_before_its_removal(net_cribd: Cribd) -> None:
    daemon = net_cribd
    import_busybox(daemon)
    pod_id = run_pod(daemon, pod_config("pause-teardown"))
    pause_dirs = (daemon.state / "containers" / pod_id, daemon.root / "containers" / pod_id)
    try:
        assert _runc_knows(daemon, pod_id) and any(mounts_under(d) for d in pause_dirs)  # its rootfs
        daemon.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
        # After the reply, in the background, as containerd deletes a sandbox's task when it ends.
        wait_until(lambda: not _runc_knows(daemon, pod_id), 10, "the pause's runc state to go")
        wait_until(lambda: all(mounts_under(d) == [] for d in pause_dirs), 10, "the pause's rootfs mount")
        status = daemon.runtime.PodSandboxStatus(
            api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id), timeout=10
        ).status
        assert status.state == api_pb2.SANDBOX_NOTREADY
        # Its files stay until RemovePodSandbox, which then has nothing else to undo.
        assert all(d.exists() for d in pause_dirs)
        daemon.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
        assert not any(d.exists() for d in pause_dirs)
    finally:
        remove_pod(daemon, pod_id)
    wait_until(lambda: _trash(daemon) == [], 10, "the pod's files to be deleted")
