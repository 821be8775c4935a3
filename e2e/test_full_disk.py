"""Full disks: crib's root and state dirs on small file systems that fill up.

Each dir is a size-limited tmpfs of the test's own (unmounted at the end, also on failure),
filled up to a few bytes by a filler file at the moment that matters: during a pull's
download, during a layer's unpack, during CreateContainer and while the state store
writes a record. Each call answers RESOURCE_EXHAUSTED naming what ran out, leaves nothing
half-made (no ingest file, layer, container dir, mount or record), a restart after
space is freed finds the stores whole (nothing damaged, images, pods and containers
whole or gone), and the same call then succeeds.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from crib.proto.cri import api_pb2
from e2e.harness.cribd import Cribd, CribdFailed
from e2e.harness.machine import machine_state
from e2e.harness.registry import Registry
from e2e.images import builder
from e2e.images.registry_client import RegistryClient
from e2e.pods import (
    container_config,
    container_status,
    create_container,
    import_busybox,
    list_pods,
    pod_config,
    run_container,
    run_pod,
)

ROOT_SIZE = "48m"
STATE_SIZE = "8m"
FILLER = ".filler"
_libc = ctypes.CDLL(None, use_errno=True)
MNT_DETACH = 2


@pytest.fixture
def small_cribd(cribd_factory: Callable[..., Cribd]) -> Iterator[Cribd]:
    """A cribd (not started) whose root and state dirs are small tmpfs mounts."""
    daemon = cribd_factory()
    mounted = []
    try:
        for path, size in ((daemon.root, ROOT_SIZE), (daemon.state, STATE_SIZE)):
            path.mkdir(parents=True, exist_ok=True)
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0711", "tmpfs", str(path)],
                           check=True, timeout=30)  # fmt: skip
            mounted.append(path)
        yield daemon
    finally:
        # Containers, netns and overlay mounts live on these file systems: they go first.
        daemon.destroy()
        for path in reversed(mounted):
            _libc.umount2(str(path).encode(), MNT_DETACH)


def fill(fs: Path, leave: int = 0) -> None:
    """Take all but `leave` bytes of the file system (at page granularity) with a filler file."""
    st = os.statvfs(fs)
    free = st.f_bavail * st.f_frsize
    with open(fs / FILLER, "ab", buffering=0) as f:
        if free - leave > 0:
            os.posix_fallocate(f.fileno(), f.seek(0, os.SEEK_END), free - leave)
        if leave == 0:
            # What fallocate left in a partial page: write until nothing fits.
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 4096)


def free(fs: Path) -> None:
    (fs / FILLER).unlink(missing_ok=True)


def _exhausted(call: Callable[[], object]) -> str:
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
    details = err.value.details() or ""
    assert "out of disk space" in details, details
    return details


def _restart_finds_the_stores_whole(daemon: Cribd) -> None:
    daemon.stop()
    daemon.start()
    events = [json.loads(line)["event"] for line in daemon.log_text().splitlines() if line.startswith("{")]
    assert "state_store.damaged" not in events and "state_store.missing" not in events


def _images(daemon: Cribd) -> list[str]:
    listed = daemon.images.ListImages(api_pb2.ListImagesRequest(), timeout=10).images
    return sorted(tag for image in listed for tag in image.repo_tags)


def _pull(daemon: Cribd, ref: str) -> str:
    request = api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=ref))
    return daemon.images.PullImage(request, timeout=120).image_ref


def _image_with(layer: bytes, registry: Registry, repo: str) -> str:
    entries = [builder.Entry("data", data=layer)]
    image = builder.build_image(builder.ImageRecipe([builder.LayerSpec(entries)]))
    with RegistryClient(registry.url) as client:
        client.push_image(repo, "1", image)
    return f"{registry.host}/{repo}:1"


def _stores(daemon: Cribd) -> dict[str, list[str]]:
    return {k: v for k, v in machine_state(daemon).items() if k != "processes"}


@pytest.mark.parametrize("stage", ["download", "unpack"])
def test_a_pull_that_fills_the_disk(small_cribd: Cribd, registry: Registry, stage: str) -> None:
    if stage == "download":
        # 3 MB that do not compress: the blob itself does not fit.
        layer = random.Random(7).randbytes(3 << 20)
        leave = 1 << 20
    else:
        # 12 MB of zeros: a blob of a few KB that fits, a layer that does not.
        layer = bytes(12 << 20)
        leave = 2 << 20
    ref = _image_with(layer, registry, f"e2e/full-disk-{stage}")
    daemon = small_cribd.start()
    before = _stores(daemon)
    fill(daemon.root, leave)
    details = _exhausted(lambda: _pull(daemon, ref))
    assert str(daemon.root) in details
    # Nothing half-made: no image, no ingest file, blob or layer of the attempt.
    assert _images(daemon) == [] and _stores(daemon) == before

    free(daemon.root)
    _restart_finds_the_stores_whole(daemon)
    assert _images(daemon) == [] and _stores(daemon) == before
    assert _pull(daemon, ref)
    assert _images(daemon) == [ref]


def test_create_container_on_a_full_disk(small_cribd: Cribd) -> None:
    daemon = small_cribd.start()
    import_busybox(daemon)
    pod = run_pod(daemon, pod_config("full", host_network=True))
    before = _stores(daemon)
    config = container_config("c", ["sleep", "1000"])
    fill(daemon.state)
    fill(daemon.root)
    details = _exhausted(lambda: create_container(daemon, pod, config))
    assert str(daemon.state) in details or str(daemon.root) in details, details
    listed = daemon.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers
    assert list(listed) == [] and _stores(daemon) == before

    free(daemon.state)
    free(daemon.root)
    _restart_finds_the_stores_whole(daemon)
    assert [(p.id, p.state) for p in list_pods(daemon)] == [(pod, api_pb2.SANDBOX_READY)]
    assert _stores(daemon) == before
    cid = run_container(daemon, pod, config)
    assert container_status(daemon, cid).status.state == api_pb2.CONTAINER_RUNNING


def test_a_state_store_write_on_a_full_disk(small_cribd: Cribd) -> None:
    daemon = small_cribd.start()
    first = run_pod(daemon, pod_config("first", host_network=True))  # builds the pause image
    before = _stores(daemon)
    # The store's WAL is emptied (as a checkpoint does), so the next record needs new space.
    with contextlib.closing(sqlite3.connect(daemon.root / "state.db")) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    fill(daemon.root)
    config = pod_config("second", host_network=True)
    details = _exhausted(lambda: run_pod(daemon, config))
    assert "state store" in details, details
    assert [p.id for p in list_pods(daemon)] == [first] and _stores(daemon) == before

    # A restart on the full disk serves what it has (or, when SQLite cannot even make its
    # shared-memory file, refuses to start, saying why); the store is never taken for a
    # damaged one and moved aside, which would lose its records.
    daemon.stop()
    try:
        daemon.start()
    except CribdFailed as exc:
        assert "its file system is full" in str(exc), str(exc)
    else:
        assert [p.id for p in list_pods(daemon)] == [first]
        _exhausted(lambda: run_pod(daemon, config))
        daemon.stop()
    assert not list(daemon.root.glob("state.db.*")), list(daemon.root.iterdir())

    free(daemon.root)
    _restart_finds_the_stores_whole(daemon)
    assert [p.id for p in list_pods(daemon)] == [first] and _stores(daemon) == before
    second = run_pod(daemon, config)
    assert {p.id: p.state for p in list_pods(daemon)} == {
        first: api_pb2.SANDBOX_READY,
        second: api_pb2.SANDBOX_READY,
    }
