"""Unpacked layers: each one once, keyed by its chain ID, ready as an overlayfs lower dir.

Directory names are the first 24 hex digits of the chain ID, kept short so a
container with many layers still fits overlayfs's one-page mount options.
A layer's record is written after its directory is complete; start-up removes
directories without a record (a crash mid-unpack) and records without a
directory.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from crib import node_metrics, tracing
from crib.image_service.content_store import sha256
from crib.log_setup import get_logger
from crib.runtime.layer_usage import usage_of_tree
from crib.store.state_store import StateStore

if TYPE_CHECKING:
    from crib.image_service.unpack import UnpackResult

log = get_logger("crib.layers")

_KIND = "layer"
DIR_NAME_HEX = 24


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI image spec: ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append("sha256:" + sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out


@dataclass(frozen=True)
class LayerRecord:
    chain_id: str
    diff_id: str
    size: int
    inodes: int


def _unpack_layer(blob: Path, media_type: str, dest: Path, diff_id: str | None) -> UnpackResult:
    # Imported at the first unpack, in its worker thread: the tar, gzip and zstd readers are
    # for pulls and loads only, not for an idle cribd's memory (issue 17).
    from crib.image_service.unpack import unpack_layer  # noqa: PLC0415

    return unpack_layer(blob, media_type, dest, diff_id)


class LayerStore:
    def __init__(self, root: Path, store: StateStore) -> None:
        self.root = root
        self.store = store
        root.mkdir(parents=True, exist_ok=True)
        self.records: dict[str, LayerRecord] = {}
        self._unpacking: dict[str, asyncio.Future[LayerRecord]] = {}
        self._recover()

    def _recover(self) -> None:
        for chain_id, raw in self.store.items(_KIND):
            record = LayerRecord(**raw)
            if self.path(chain_id).is_dir():
                self.records[chain_id] = record
            else:
                log.warning("layer.missing_dir", chain_id=chain_id)
                self.store.delete(_KIND, chain_id)
        if self.store.rebuilt:
            # Records may be missing, not the layers: running containers' rootfs stand on
            # them. adopt() sorts them out once the containers are known.
            return
        known = {self.path(c).name for c in self.records}
        for entry in self.root.iterdir():
            if entry.name not in known:
                log.info("layer.orphan_removed", dir=entry.name)
                _remove_tree(entry)

    def adopt(self, in_use: set[str]) -> None:
        """After a rebuilt state store: layers in use but unrecorded get a record again (their
        diff ID unknown, their size counted); other unrecorded directories go. Blocking."""
        for chain_id in sorted(in_use - self.records.keys()):
            if self.path(chain_id).is_dir():
                size, inodes = usage_of_tree(self.path(chain_id))
                self.records[chain_id] = record = LayerRecord(chain_id, "", size, inodes)
                self.store.put(_KIND, chain_id, asdict(record))
                log.warning("layer.recovered_from_disk", chain_id=chain_id)
        known = {self.path(c).name for c in self.records}
        for entry in self.root.iterdir():
            if entry.name not in known:
                log.info("layer.orphan_removed", dir=entry.name)
                _remove_tree(entry)

    def path(self, chain_id: str) -> Path:
        return self.root / chain_id.removeprefix("sha256:")[:DIR_NAME_HEX]

    def has(self, chain_id: str) -> bool:
        return chain_id in self.records

    async def ensure(self, chain_id: str, diff_id: str, blob: Path, media_type: str) -> LayerRecord:
        """Unpack the layer unless it already is; concurrent callers share one unpack."""
        record = self.records.get(chain_id)
        if record is not None:
            return record
        pending = self._unpacking.get(chain_id)
        if pending is None:
            pending = asyncio.ensure_future(self._unpack(chain_id, diff_id, blob, media_type))
            self._unpacking[chain_id] = pending
            pending.add_done_callback(lambda _: self._unpacking.pop(chain_id, None))
        # Shielded: a cancelled pull must not abort an unpack another pull waits for.
        return await asyncio.shield(pending)

    async def settle(self, chain_ids: list[str]) -> None:
        """Wait for unpacks of these layers still running in their threads (a thread cannot be cancelled)."""
        pending = [f for c in chain_ids if (f := self._unpacking.get(c)) is not None]
        if pending:
            await asyncio.wait(pending)

    async def _unpack(self, chain_id: str, diff_id: str, blob: Path, media_type: str) -> LayerRecord:
        dest = self.path(chain_id)
        with (
            tracing.span("layer.unpack", **{"crib.chain_id": chain_id, "crib.media_type": media_type}),
            node_metrics.timed(node_metrics.UNPACK_DURATION),
        ):
            result = await asyncio.to_thread(_unpack_layer, blob, media_type, dest, diff_id)
        record = LayerRecord(chain_id, result.diff_id, result.size, result.inodes)
        self.store.put(_KIND, chain_id, asdict(record))
        self.records[chain_id] = record
        return record

    def forget(self, chain_id: str) -> Path:
        """Drop the layer's record; the caller deletes the returned directory (off the loop)."""
        self.records.pop(chain_id, None)
        self.store.delete(_KIND, chain_id)
        return self.path(chain_id)

    def usage(self) -> tuple[int, int]:
        return sum(r.size for r in self.records.values()), sum(r.inodes for r in self.records.values())


def _remove_tree(path: Path) -> None:
    # cribd runs as root: modes such as 0555 do not stop it.
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
