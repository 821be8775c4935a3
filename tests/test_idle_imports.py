"""What only some calls need is imported at their first use, not by cribd's start-up (issue 17).

The first test starts a fresh interpreter, as cribd's entry point does, since this test
process has imported everything already. The others check that the deferred parts are
made when first needed and that what runs before then does without them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from crib import first_use
from crib.config import ImageSection
from crib.container.cdi_devices import CDIDevices
from crib.cri_server import pod_metrics
from crib.cri_server.metrics import MetricsService
from crib.image_service.content_store import sha256, sha256_digest
from crib.image_service.images import Images
from crib.proto.cri import api_pb2
from crib.store.state_store import StateStore
from crib.streaming.server import Backend, StreamingServer

REPO = Path(__file__).resolve().parents[1]

# Each is imported on first use: a pull, a layer unpack or a load, a streaming connection,
# a YAML CDI spec, a signature policy, tracing, the metrics endpoint, a CDI device, the
# metrics RPCs, a digest (hashlib), a streaming token or an SELinux level (secrets), an exec
# (tempfile), a container's spec (container_spec and its mounts, user and securejoin), an
# ExecSync, an Exec (termios), the pause container's spec (pause_spec, oci_spec, seccomp),
# a pull (pull_progress). Measured with bench/import_cost.py.
DEFERRED = (
    "httpx",
    "h11",
    "wsproto",
    "zstandard",
    "yaml",
    "cryptography",
    "opentelemetry",
    "prometheus_client",
    "crib.image_service.image_pull",
    "crib.image_service.registry",
    "crib.image_service.host_dirs",
    "crib.image_service.signature_policy",
    "crib.image_service.unpack",
    "crib.streaming.handler",
    "crib.streaming.spdy_session",
    "crib.streaming.wschannel",
    "crib.streaming.wschannel_upgrade",
    "crib.container.cdi",
    "crib.cri_server.pod_metrics",
    "crib.runtime.metric_sources",
    "hashlib",
    "hmac",
    "secrets",
    "random",
    "tempfile",
    "crib.container.container_spec",
    "crib.container.mounts",
    "crib.container.user",
    "crib.container.securejoin",
    "crib.container.exec_sync",
    "crib.container.exec_stream",
    "termios",
    "crib.sandbox.pause_spec",
    "crib.runtime.oci_spec",
    "crib.runtime.seccomp",
    "crib.image_service.pull_progress",
)


def test_cribd_start_up_imports_none_of_the_deferred_modules() -> None:
    code = (
        "import json, sys\n"
        "import crib.cri_server.daemon\n"
        f"print(json.dumps([m for m in {list(DEFERRED)!r} if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(out.stdout) == []


async def test_images_make_the_puller_at_the_first_pull_with_the_config_of_then(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    images = Images(ImageSection(), tmp_path / "root", store)
    try:
        # Garbage collection and queries run before any pull, with no puller.
        await images.collect_garbage()
        assert images.list() == []
        assert images._puller is None
        # A reload before the first pull is what the puller starts with.
        hosts = tmp_path / "certs.d"
        images.reconfigure(dataclasses.replace(ImageSection(), config_path=str(hosts), pinned_images=["x*"]))
        puller = images.puller
        assert images.puller is puller
        assert puller.config.pinned_images == ["x*"]
        assert puller.host_dirs is not None and puller.host_dirs.root == hosts
        # A reload after it reaches the puller, and retires its old host dirs.
        images.reconfigure(ImageSection())
        assert puller.host_dirs is None and puller.config.config_path == ""
        assert images._retired
    finally:
        await images.close()
        store.close()


async def test_concurrent_first_pulls_share_one_puller(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    images = Images(ImageSection(), tmp_path / "root", store)
    try:
        first, second = await asyncio.gather(images._ready_puller(), images._ready_puller())
        assert first is second is images.puller
    finally:
        await images.close()
        store.close()


async def test_images_close_without_a_pull(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    images = Images(ImageSection(), tmp_path / "root", store)
    await images.close()
    store.close()
    assert images._puller is None


async def test_the_streaming_server_makes_its_handler_at_the_first_connection() -> None:
    async def never(*_: object) -> None:
        raise AssertionError("no exec, attach or port-forward here")

    server = StreamingServer("127.0.0.1", 0, Backend(never, never, lambda *_: None, never), idle_timeout=7.0)
    await server.start()
    try:
        assert server._handler is None
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /exec/unknown HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert reply.startswith(b"HTTP/1.1 404 ")
        handler = server._handler
        assert handler is not None and handler.idle_timeout == 7.0 and handler.tokens is server.tokens
    finally:
        await server.close()


async def test_a_container_without_cdi_devices_makes_no_registry(tmp_path: Path) -> None:
    devices = CDIDevices([tmp_path])
    spec: dict = {"process": {"env": ["A=1"]}}
    config = api_pb2.ContainerConfig(annotations={"other.io/x": "y"})
    await devices.apply(config, spec)
    assert devices.registry is None and spec == {"process": {"env": ["A=1"]}}


async def test_the_first_cdi_device_makes_the_registry_of_the_spec_dirs(tmp_path: Path) -> None:
    (tmp_path / "v.json").write_text(
        json.dumps(
            {
                "cdiVersion": "0.6.0",
                "kind": "crib.test/dev",
                "devices": [{"name": n, "containerEdits": {"env": [f"DEV={n}"]}} for n in ("a", "b")],
            }
        )
    )
    devices = CDIDevices([tmp_path])
    spec: dict = {"process": {"env": []}}
    await devices.apply(
        api_pb2.ContainerConfig(CDI_devices=[api_pb2.CDIDevice(name="crib.test/dev=a")]), spec
    )
    registry = devices.registry
    assert registry is not None and registry.spec_dirs == (tmp_path,)
    assert spec["process"]["env"] == ["DEV=a"]
    # Asked for by annotation only, with the same registry.
    spec = {"process": {"env": []}}
    await devices.apply(api_pb2.ContainerConfig(annotations={"cdi.k8s.io/x": "crib.test/dev=b"}), spec)
    assert devices.registry is registry and spec["process"]["env"] == ["DEV=b"]


async def test_the_metrics_rpcs_answer_from_pod_metrics_with_the_families_of_now() -> None:
    service = MetricsService(None, None, ["cpu"])  # type: ignore[arg-type]
    reply = await service.ListMetricDescriptors(api_pb2.ListMetricDescriptorsRequest(), None)  # type: ignore[arg-type]
    assert list(reply.descriptors) == pod_metrics.descriptors(["cpu"])
    service.families = ["memory", "network"]  # a reload
    reply = await service.ListMetricDescriptors(api_pb2.ListMetricDescriptorsRequest(), None)  # type: ignore[arg-type]
    assert list(reply.descriptors) == pod_metrics.descriptors(["memory", "network"])


def test_digests_are_hashlib_sha256() -> None:
    assert sha256_digest(b"crib") == "sha256:" + hashlib.sha256(b"crib").hexdigest()
    h = sha256()
    h.update(b"cr")
    h.update(b"ib")
    assert h.hexdigest() == hashlib.sha256(b"crib").hexdigest()


async def test_first_use_imports_once_off_the_loop_and_then_looks_up() -> None:
    name = "crib.container.exec_sync"
    first_use._imported.pop(name, None)
    first, second = await asyncio.gather(first_use.module(name), first_use.module(name))
    assert first is second is sys.modules[name]
    assert first_use._imported[name] is first
    assert await first_use.module(name) is first
