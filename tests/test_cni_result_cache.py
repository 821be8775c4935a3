"""The CNI result cache is written off the event loop, and a cancelled ADD undoes after it.

The e2e fuzzer's loop probe caught RunPodSandbox's ADD blocking the loop for 100 ms: the
cache's fsync ran on it. The plugin here is a shell script that answers ADD with a result and
logs each command, so the calls are real processes and the cache a real directory."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from crib.cni import network as cni
from crib.cni.config import NetworkConfigList

PLUGIN = """#!/bin/sh
echo "$CNI_COMMAND" >> "{log}"
cat > /dev/null
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{{"cniVersion": "1.0.0", "ips": [{{"address": "10.9.0.2/24"}}]}}'
fi
"""


class GatedCache(cni.CNICache):
    """Records which thread saved, and holds the save until the test opens the gate."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.saved_on: int | None = None

    def save(self, net: NetworkConfigList, att: cni.Attachment, result: dict[str, Any]) -> None:
        self.saved_on = threading.get_ident()
        self.entered.set()
        self.gate.wait(10)  # bounded: on the loop thread (the old code) it would block it
        super().save(net, att, result)


def _network(tmp_path: Path) -> tuple[NetworkConfigList, list[str], Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    plugin = bin_dir / "recorder"
    plugin.write_text(PLUGIN.format(log=log))
    plugin.chmod(0o755)
    raw = {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "recorder"}]}
    return NetworkConfigList("n", "1.0.0", tmp_path / "n.conflist", raw["plugins"], raw), [str(bin_dir)], log


def test_the_result_is_saved_off_the_loop_thread(tmp_path: Path) -> None:
    net, bins, log = _network(tmp_path)
    cache = GatedCache(tmp_path / "cache")
    cache.gate.set()
    att = cni.Attachment(container_id="c1", netns="/nonexistent")

    async def go() -> int:
        await cni.add(net, att, bins, cache)
        return threading.get_ident()

    loop_thread = asyncio.run(go())
    assert cache.saved_on is not None and cache.saved_on != loop_thread
    assert cache.load("n", att) is not None
    assert log.read_text().split() == ["ADD"]


def test_a_cancelled_add_undoes_after_its_save_so_no_entry_is_left(tmp_path: Path) -> None:
    net, bins, log = _network(tmp_path)
    cache = GatedCache(tmp_path / "cache")
    att = cni.Attachment(container_id="c2", netns="/nonexistent")

    async def go() -> None:
        task = asyncio.ensure_future(cni.add(net, att, bins, cache))
        assert await asyncio.to_thread(cache.entered.wait, 10)
        task.cancel()
        await asyncio.sleep(0)  # the cancel reaches the task while its save still waits
        cache.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    # The save finished before the undo's DEL removed the entry: nothing cached, the plugin
    # told ADD then DEL.
    assert cache.load("n", att) is None
    assert list((tmp_path / "cache").iterdir()) == []
    assert log.read_text().split() == ["ADD", "DEL"]
