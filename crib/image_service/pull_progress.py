"""Progress of image pulls: what the puller reports and how watchers follow it.

The puller feeds one `PullTracker` per pull in flight (shared, like the pull,
by every caller that joins it) and one `BlobProgress` per blob download in
flight (shared by every pull that wants that blob, whatever the image). Feeding
is plain attribute updates plus a wake-up of whoever watches; nothing waits on
a watcher, so a slow client can never slow a pull.

A watcher does not receive events: it reads whole snapshots (`follow`). A
change only marks the watcher's event; the watcher builds the snapshot when it
is ready to send one, at most once per interval, so any number of changes
between two sends coalesce into the second one. The final snapshot (with the
image ref) is always sent, after the pull has ended.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crib.image_service.image_store import ImageRecord

# Intermediate snapshots a watcher gets at most this often: docker redraws at
# about this rate, and it keeps a many-layer pull's stream small.
DEFAULT_INTERVAL_S = 0.1


class LayerState(enum.IntEnum):
    # The values are crib.v1.LayerState's, so the servicer maps them 1:1.
    WAITING = 1
    DOWNLOADING = 2
    VERIFYING = 3
    EXTRACTING = 4
    DONE = 5
    ALREADY_PRESENT = 6


class BlobProgress:
    """One blob download in flight; the pulls that wait for it read it live."""

    __slots__ = ("digest", "done", "size", "state", "trackers")

    def __init__(self, digest: str, size: int) -> None:
        self.digest = digest
        self.size = size
        self.done = 0
        self.state = LayerState.WAITING
        # A list, not a set: an image may name one blob twice (empty layers).
        self.trackers: list[PullTracker] = []

    def _changed(self) -> None:
        for tracker in self.trackers:
            tracker.changed()

    def set_state(self, state: LayerState) -> None:
        self.state = state
        self._changed()

    def add(self, n: int) -> None:
        """Bytes arrived; called per received chunk, so it must stay cheap."""
        self.done += n
        self._changed()


@dataclass
class LayerProgress:
    digest: str
    size: int
    state: LayerState = LayerState.WAITING
    done: int = 0
    # While this layer's blob is being downloaded: the (maybe shared) download.
    blob: BlobProgress | None = None

    def current(self) -> tuple[LayerState, int]:
        if self.blob is not None:
            return self.blob.state, self.blob.done
        return self.state, self.done


@dataclass(frozen=True)
class LayerSnapshot:
    digest: str
    size: int
    bytes_done: int
    state: LayerState


@dataclass(frozen=True)
class PullSnapshot:
    reference: str
    resolved: str = ""
    manifest_digest: str = ""
    registry: str = ""
    layers: tuple[LayerSnapshot, ...] = ()
    image_ref: str = ""

    @property
    def bytes_done(self) -> int:
        return sum(layer.bytes_done for layer in self.layers)

    @property
    def bytes_total(self) -> int:
        return sum(layer.size for layer in self.layers)


@dataclass
class PullTracker:
    """The live state of one pull; the puller writes it, watchers snapshot it."""

    reference: str
    resolved: str = ""
    manifest_digest: str = ""
    registry: str = ""
    layers: list[LayerProgress] = field(default_factory=list)
    image_ref: str = ""
    _watchers: list[Callable[[], None]] = field(default_factory=list)

    # --- watchers -----------------------------------------------------------------------------

    def subscribe(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call `wake` (cheap, never blocking) on every change; returns the unsubscribe."""
        self._watchers.append(wake)
        return lambda: self._watchers.remove(wake)

    def changed(self) -> None:
        for wake in self._watchers:
            wake()

    # --- the puller's reports -----------------------------------------------------------------

    def set_resolved(self, resolved: str, registry: str) -> None:
        self.resolved, self.registry = resolved, registry
        self.changed()

    def set_manifest(self, manifest_digest: str, layers: list[tuple[str, int]]) -> None:
        self.manifest_digest = manifest_digest
        self.layers = [LayerProgress(digest, size) for digest, size in layers]
        self.changed()

    def set_layer(self, index: int, state: LayerState) -> None:
        layer = self.layers[index]
        layer.state = state
        if state not in (LayerState.WAITING, LayerState.DOWNLOADING):
            # Past downloading (or never needing it), a layer counts whole.
            layer.done = layer.size
        self.changed()

    def attach_blob(self, index: int, blob: BlobProgress) -> None:
        """The layer's bytes now come from this download (maybe another pull's)."""
        self.layers[index].blob = blob
        blob.trackers.append(self)
        self.changed()

    def detach_blob(self, index: int) -> None:
        layer = self.layers[index]
        if layer.blob is not None:
            layer.blob.trackers.remove(self)
            layer.blob = None

    def complete(self, record: ImageRecord) -> None:
        """The pull succeeded. Fills in what a tracker that saw none of it lacks
        (a caller that joined a pull in the instant it ended)."""
        if not self.manifest_digest:
            self.manifest_digest = record.manifest_digest
            # The image may have digests under other names too; this pull's is its repo's.
            repo = self.reference.split("@", 1)[0]
            if ":" in repo.rsplit("/", 1)[-1]:
                repo = repo.rsplit(":", 1)[0]
            self.resolved = next((d for d in record.repo_digests if d.split("@", 1)[0] == repo), "")
            self.layers = [
                LayerProgress(layer.digest, layer.size, LayerState.DONE, layer.size)
                for layer in record.layers
            ]
        self.image_ref = record.id
        self.changed()

    def snapshot(self) -> PullSnapshot:
        layers = []
        for layer in self.layers:
            state, done = layer.current()
            layers.append(LayerSnapshot(layer.digest, layer.size, min(done, layer.size), state))
        return PullSnapshot(
            reference=self.reference,
            resolved=self.resolved,
            manifest_digest=self.manifest_digest,
            registry=self.registry,
            layers=tuple(layers),
            image_ref=self.image_ref,
        )


async def follow(
    tracker: PullTracker, pull: asyncio.Future[ImageRecord], interval: float = DEFAULT_INTERVAL_S
) -> AsyncIterator[PullSnapshot]:
    """Snapshots of `tracker` while `pull` runs, then the final one; the pull's error if it fails.

    The first snapshot comes at once (a watcher joining a running pull sees
    where it is), then one per change but at most one per `interval`; the
    pull's end cuts an interval short, so the final snapshot is never late.
    Every wait here ends when the pull ends, and the pull's own timeouts
    (connect, stall) bound that.
    """
    changed = asyncio.Event()
    changed.set()
    unsubscribe = tracker.subscribe(changed.set)
    pull.add_done_callback(lambda _: changed.set())
    try:
        while True:
            await changed.wait()
            if pull.done():
                break
            changed.clear()
            # Suspends while the consumer (a slow client) is busy: the changes
            # made meanwhile only mark `changed` and fold into the next snapshot.
            yield tracker.snapshot()
            await asyncio.wait([pull], timeout=interval)
    finally:
        unsubscribe()
    record = pull.result()  # a failed pull raises here, ending the stream with its error
    tracker.complete(record)
    yield tracker.snapshot()
