"""A damaged state store under running pods: truncated, overwritten, or gone.

cribd stops (its pods and containers live on), its `state.db` is damaged, and a new cribd
starts on it. It must start, say what it found (an event naming the file and the fault),
keep the damaged file (moved aside, byte for byte), and find the running pod and its
containers again from the runtime's files (runc's state, conmon's pid and exit files, the
records saved beside them) with their IDs, states, exit codes and IP. A pod whose own
saved record is lost too cannot be recovered: its pause, netns, mounts and address go.
Then the kubelet's stop and remove work, and nothing is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from crib.proto.cri import api_pb2
from e2e.harness.cribd import Cribd
from e2e.harness.machine import machine_state
from e2e.harness.network import PodNetwork
from e2e.harness.wait import alive
from e2e.pods import (
    container_config,
    container_status,
    create_container,
    exec_sync,
    import_busybox,
    list_pods,
    pod_config,
    pod_status,
    remove_pod,
    run_container,
    run_pod,
    start_container,
    wait_exited,
)


def _events(daemon: Cribd, name: str) -> list[dict]:
    lines = daemon.log_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{") and f'"{name}"' in line]


def _damage(db: Path, how: str) -> None:
    if how == "missing":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    elif how == "truncated":
        os.truncate(db, db.stat().st_size // 2)
    elif how == "bad_records":
        # A whole file whose pod records are garbage: the rest (containers, images, layers)
        # is carried over, the pods come back from disk.
        with contextlib.closing(sqlite3.connect(db)) as raw:
            raw.execute("UPDATE records SET data = '{garbage' WHERE kind = 'sandbox'")
            raw.commit()
    elif how == "corrupt":
        data = bytearray(db.read_bytes())
        # The header and the first pages overwritten, as a stray write or a bad sector would.
        data[: min(len(data), 12288)] = bytes((i * 131 + 7) % 256 for i in range(min(len(data), 12288)))
        db.write_bytes(bytes(data))


def _without_images(state: dict[str, list[str]]) -> dict[str, list[str]]:
    return {k: v for k, v in state.items() if k not in ("blobs", "layers")}


@pytest.mark.parametrize("how", ["truncated", "corrupt", "bad_records", "missing"])
def test_cribd_recovers_running_pods_from_disk_when_the_state_store_is(
    cribd_factory: Callable[..., Cribd], pod_network: PodNetwork, how: str
) -> None:
    daemon = cribd_factory()
    pod_network.install(daemon.cni_conf_dir)
    daemon.start()
    import_busybox(daemon)
    empty = _without_images(machine_state(daemon, pod_network))

    pod = run_pod(daemon, pod_config("survivor"))
    ip = pod_status(daemon, pod)[0].network.ip
    running = run_container(daemon, pod, container_config("sleeper", ["sleep", "1000"]))
    ended = run_container(daemon, pod, container_config("ender", ["sh", "-c", "exit 3"]))
    assert wait_exited(daemon, ended).exit_code == 3
    # Created, never started: conmon and runc's init wait for a StartContainer.
    waiting = create_container(daemon, pod, container_config("waiter", ["sleep", "1000"]))
    # Resources the kubelet changed after the create (an in-place pod resize).
    resized = api_pb2.LinuxContainerResources(cpu_shares=512, cpu_period=100000, cpu_quota=50000)
    daemon.runtime.UpdateContainerResources(
        api_pb2.UpdateContainerResourcesRequest(container_id=running, linux=resized), timeout=60
    )
    # A second pod whose saved record goes too: nothing on disk says what it was.
    lost = run_pod(daemon, pod_config("lost"))
    lost_ip = pod_status(daemon, lost)[0].network.ip
    lost_pause = pod_status(daemon, lost)[1]["pid"]
    assert alive(lost_pause)

    # SIGTERM: the store is closed whole first, so the damage is all there is.
    assert daemon.stop(signal.SIGTERM) == 0
    db = daemon.root / "state.db"
    original = db.read_bytes()
    _damage(db, how)
    damaged = db.read_bytes() if db.exists() else b""
    (daemon.state / "sandboxes" / lost / "record.json").unlink()

    daemon.start()
    if how == "missing":
        [found] = _events(daemon, "state_store.missing")
        assert found["file"] == str(db) and found["dirs_on_disk"] >= 4
    else:
        [found] = _events(daemon, "state_store.damaged")
        assert found["file"] == str(db) and found["problem"], found
        # Moved aside, not deleted: what was there is kept byte for byte.
        assert Path(found["moved_to"]).read_bytes() == damaged != original
    assert any(e["pod"] == lost for e in _events(daemon, "sandbox.unrecoverable"))

    images = daemon.images.ListImages(api_pb2.ListImagesRequest(), timeout=10).images
    if how == "bad_records":
        assert found["salvaged_records"] > 0
        assert "crib.e2e/busybox:1" in [tag for i in images for tag in i.repo_tags]

    # The running pod and both containers, as they were.
    [recovered] = list_pods(daemon)
    assert (recovered.id, recovered.state) == (pod, api_pb2.SANDBOX_READY)
    assert pod_status(daemon, pod)[0].network.ip == ip
    status = container_status(daemon, running).status
    assert (status.state, status.metadata.name) == (api_pb2.CONTAINER_RUNNING, "sleeper")
    assert exec_sync(daemon, running, ["echo", "still here"]).stdout == b"still here\n"
    assert status.resources.linux == resized
    status = container_status(daemon, waiting).status
    assert (status.state, status.started_at) == (api_pb2.CONTAINER_CREATED, 0)
    start_container(daemon, waiting)
    assert container_status(daemon, waiting).status.state == api_pb2.CONTAINER_RUNNING
    assert exec_sync(daemon, waiting, ["echo", "started"]).stdout == b"started\n"
    status = container_status(daemon, ended).status
    assert (status.state, status.exit_code) == (api_pb2.CONTAINER_EXITED, 3)
    # The lost pod's pause, netns, mounts and address are gone. (Its pause no longer shows
    # the test's dir once its rootfs is unmounted: machine_state's process scan cannot see it.)
    assert not alive(lost_pause) and not (daemon.state / "runtime" / "runc" / lost).exists()
    left = machine_state(daemon, pod_network)
    assert lost not in left["sandbox_dirs"] and lost not in left["container_dirs"]
    assert not [m for m in left["mounts"] if lost in m], left["mounts"]
    assert lost_ip not in left["ipam"] and lost not in " ".join(left["cni_cache"])

    # The kubelet's teardown, then nothing is left.
    for cid in (running, ended, waiting):
        daemon.runtime.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=1), timeout=60)
        daemon.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid), timeout=60)
    remove_pod(daemon, pod)
    assert _without_images(machine_state(daemon, pod_network)) == empty

    # The rebuilt store is whole: the next start finds nothing wrong, and new pods run (the
    # image records may have gone with the store: the kubelet pulls again, here an import).
    daemon.stop()
    daemon.start()
    assert len(_events(daemon, "state_store.damaged")) == (0 if how == "missing" else 1)
    assert list_pods(daemon) == []
    import_busybox(daemon)
    again = run_pod(daemon, pod_config("again"))
    run_container(daemon, again, container_config("sleeper", ["sleep", "1000"]))
    remove_pod(daemon, again)
    assert _without_images(machine_state(daemon, pod_network)) == empty
