"""What only some calls need is imported at their first use, not by cribd's start-up (issue 17).

The first test starts a fresh interpreter, as cribd's entry point does, since this test
process has imported everything already. The others check that the deferred parts are
made when first needed and that what runs before then does without them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from crib.config import ImageSection
from crib.image_service.images import Images
from crib.store.state_store import StateStore
from crib.streaming.server import Backend, StreamingServer

REPO = Path(__file__).resolve().parents[1]

# Each is imported on first use: a pull, a layer unpack or a load, a streaming connection,
# a YAML CDI spec, a signature policy, tracing, the metrics endpoint. Measured with bench/import_cost.py.
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
