"""The node's images: the one object the ImageService RPCs and the container code use.

Garbage collection keeps every blob and layer an image names, a pull in
flight leases, or a container uses (the container code reports those through
`in_use`); everything else in the content and layer stores goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from crib.config import ImageSection
from crib.errors import FailedPrecondition
from crib.image_service import auth, reference
from crib.image_service.content_store import ContentStore
from crib.image_service.image_store import ImageRecord, ImageStore
from crib.image_service.layer_store import LayerStore
from crib.log_setup import get_logger
from crib.runtime.layer_usage import usage_of_tree
from crib.store.state_store import StateStore

if TYPE_CHECKING:
    import httpx

    from crib.image_service.host_dirs import HostDirs
    from crib.image_service.image_pull import ImagePuller
    from crib.image_service.pull_progress import PullSnapshot
    from crib.image_service.signature_policy import PolicyFile

log = get_logger("crib.images")


def http_client(verify: ssl.SSLContext) -> httpx.AsyncClient:
    import httpx  # noqa: PLC0415  (pull-only; see Images.puller)

    limits = httpx.Limits(max_connections=64, max_keepalive_connections=16, keepalive_expiry=30.0)
    return httpx.AsyncClient(limits=limits, headers={"User-Agent": "crib"}, verify=verify)


def _load_pull_stack() -> ssl.SSLContext:
    """What a pull needs first: its modules imported, and the node's own CA store
    (/etc/ssl/certs), as containerd uses, not certifi's."""
    import httpx  # noqa: F401, PLC0415

    from crib.image_service import host_dirs, image_pull  # noqa: F401, PLC0415

    return ssl.create_default_context()


def _host_dirs(config_path: str) -> HostDirs | None:
    from crib.image_service.host_dirs import HostDirs  # noqa: PLC0415  (pull-only; see Images.puller)

    return HostDirs(config_path, http_client) if config_path else None


@dataclass(frozen=True)
class FsUsage:
    mountpoint: str
    used_bytes: int
    inodes_used: int
    timestamp_ns: int


def _empty_trash(trash: Path) -> None:
    for path in list(trash.iterdir()):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _policy_file(path: str) -> PolicyFile | None:
    if not path:
        return None
    from crib.image_service.signature_policy import PolicyFile  # noqa: PLC0415  (only with a policy)

    policy = PolicyFile(Path(path))
    # Read now to say at once what is wrong with it; cribd serves on either way (the file
    # may be fixed without a restart) and pulls fail until it is.
    try:
        policy.load()
    except FailedPrecondition as exc:
        log.warning("image.signature_policy_unusable", error=exc.message)
    return policy


def pin_matches(pattern: str, name: str) -> bool:
    """CRI-O's pinned_images rules: `*word*` anywhere, `prefix*` at the start, else the whole name."""
    if len(pattern) > 1 and pattern.startswith("*") and pattern.endswith("*"):
        return pattern[1:-1] in name
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return name == pattern


class Images:
    def __init__(
        self,
        config: ImageSection,
        root: Path,
        store: StateStore,
        in_use: Callable[[], tuple[set[str], set[str]]] = lambda: (set(), set()),
        in_volumes: Callable[[], set[str]] = set,
    ) -> None:
        self.config = config
        self.root = root
        self.content = ContentStore(root / "content")
        self.layers = LayerStore(root / "layers", store)
        self.images = ImageStore(store, self.content)
        # Collected files are renamed here at once (their names are free again
        # for a pull that wants them back) and deleted in a thread.
        self.trash = root / "trash"
        shutil.rmtree(self.trash, ignore_errors=True)
        self.trash.mkdir(parents=True)
        self.container_dir = root / "containers"
        self.container_dir.mkdir(parents=True, exist_ok=True)
        # Host dirs a reload replaced: in-flight pulls may still use their clients until cribd stops.
        self._retired: list[HostDirs] = []
        # Read now, to say at once what is wrong with it (see _policy_file).
        self._policy = _policy_file(config.signature_policy)
        self._puller: ImagePuller | None = None
        # (image IDs, chain IDs) that pods and containers use: GC and removal keep them.
        self.in_use = in_use
        # Image IDs a container mounts as an image volume: RemoveImage refuses them.
        self.in_volumes = in_volumes
        self._gc_holds = 0
        self._gc_wanted = False
        sandbox = reference.parse(config.sandbox_image) if config.sandbox_image else None
        self.sandbox_image = str(sandbox) if sandbox else ""

    @property
    def puller(self) -> ImagePuller:
        """The puller, made at the first pull.

        Only pulls need httpx and its HTTP stack, the registry client, the hosts dir and the
        node's CA store loaded into an SSL context: 6-7 MB resident that an idle cribd (most
        of a node's life) does without (issue 17; the unpacker comes with the first unpack).
        The first pull pays for them once (0.1-0.2 s here), in a worker thread: see
        _ready_puller.
        """
        if self._puller is None:
            self._puller = self._make_puller(_load_pull_stack())
        return self._puller

    async def _ready_puller(self) -> ImagePuller:
        if self._puller is None:
            # The imports and the CA store's load, off the event loop.
            verify = await asyncio.to_thread(_load_pull_stack)
            if self._puller is None:  # else a concurrent first pull made it meanwhile
                self._puller = self._make_puller(verify)
        return self._puller

    def _make_puller(self, verify: ssl.SSLContext) -> ImagePuller:
        from crib.image_service.image_pull import ImagePuller  # noqa: PLC0415  (see puller)

        return ImagePuller(
            self.config,
            self.content,
            self.layers,
            self.images,
            http_client(verify),
            self.collect_garbage,
            # Endpoints with TLS settings of their own (config_path) get a client each,
            # with the same limits.
            _host_dirs(self.config.config_path),
            self._policy,
        )

    def reconfigure(self, config: ImageSection) -> None:
        """A reloaded [image] section: the next pulls use it, those in flight keep what they began with."""
        if config.signature_policy != self.config.signature_policy:
            self._policy = _policy_file(config.signature_policy)
        if (puller := self._puller) is not None:
            if config.config_path != self.config.config_path:
                if puller.host_dirs is not None:
                    self._retired.append(puller.host_dirs)
                puller.host_dirs = _host_dirs(config.config_path)
            puller.policy = self._policy
            puller.config = config
        self.config = config
        sandbox = reference.parse(config.sandbox_image) if config.sandbox_image else None
        self.sandbox_image = str(sandbox) if sandbox else ""

    async def close(self) -> None:
        if self._puller is None:
            return
        await self._puller.http.aclose()
        for host_dirs in (self._puller.host_dirs, *self._retired):
            if host_dirs is not None:
                await host_dirs.aclose()

    # --- queries ------------------------------------------------------------------------------

    def find(self, spec: str) -> ImageRecord | None:
        return self.images.resolve(spec)

    def list(self, spec: str = "") -> list[ImageRecord]:
        if spec:
            found = self.images.resolve(spec)
            return [found] if found else []
        return sorted(self.images.images(), key=lambda r: r.id)

    def pinned(self, record: ImageRecord) -> bool:
        # The pause image must survive the kubelet's image GC.
        if self.sandbox_image and self.sandbox_image in record.repo_tags:
            return True
        return self.pinned_by(record) is not None

    def pinned_by(self, record: ImageRecord) -> str | None:
        """The `[image] pinned_images` pattern one of the image's names matches."""
        names = [*record.repo_tags, *record.repo_digests]
        for pattern in self.config.pinned_images:
            if any(pin_matches(pattern, name) for name in names):
                return pattern
        return None

    # --- changes ------------------------------------------------------------------------------

    async def pull(self, image: str, credentials: auth.Credentials | None = None) -> ImageRecord:
        puller = await self._ready_puller()
        return await puller.pull(image, credentials)

    async def pull_with_progress(
        self, image: str, credentials: auth.Credentials | None = None
    ) -> AsyncIterator[PullSnapshot]:
        """The pull `pull` makes (shared with it), as progress snapshots; see ImagePuller."""
        puller = await self._ready_puller()
        async with contextlib.aclosing(puller.pull_with_progress(image, credentials)) as snapshots:
            async for snapshot in snapshots:
                yield snapshot

    async def remove(self, spec: str) -> ImageRecord | None:
        """Remove the image `spec` names, with all its names; None if there is none."""
        record = self.images.resolve(spec)
        if record is None:
            return None
        if record.id in self.in_volumes():
            raise FailedPrecondition(
                f"image {spec!r} is mounted as an image volume by a container: remove that container first"
            )
        pattern = self.pinned_by(record)
        if pattern is not None and not self.config.remove_pinned:
            raise FailedPrecondition(
                f"image {spec!r} is pinned by [image] pinned_images ({pattern!r}); "
                "set [image] remove_pinned = true to allow removing it"
            )
        used_images, _ = self.in_use()
        # Its names go now; its content stays while a container runs it.
        self.images.remove(record, retain=record.id in used_images)
        log.info("image.removed", id=record.id, tags=record.repo_tags, digests=record.repo_digests)
        await self.collect_garbage()
        return record

    @asynccontextmanager
    async def holding_gc(self) -> AsyncIterator[None]:
        """No collection while a load writes blobs it has not recorded yet; one after, whatever happens."""
        self._gc_holds += 1
        try:
            yield
        finally:
            self._gc_holds -= 1
            self._gc_wanted = True
            await self.collect_garbage()

    async def adopt_layers(self) -> None:
        """After a rebuilt state store: the layers that pods, containers and the image records
        still there stand on get their records back; the other unrecorded layer dirs go."""
        _, keep = self.in_use()
        for record in (*self.images.images(), *self.images.retained.values()):
            keep |= {layer.chain_id for layer in record.layers}
        await asyncio.to_thread(self.layers.adopt, keep)

    async def collect_garbage(self) -> None:
        """Forget unused blobs and layers here, on the loop; delete their files in a thread."""
        if self._gc_holds:
            self._gc_wanted = True
            return
        self._gc_wanted = False
        used_images, used_layers = self.in_use()
        self.images.release_retained(keep=used_images)
        # Before the first pull no pull holds anything.
        leases = self._puller.leases if self._puller is not None else None
        keep_blobs = set(leases.blobs) if leases else set()
        keep_layers = (set(leases.layers) if leases else set()) | set(used_layers)
        for record in (*self.images.images(), *self.images.retained.values()):
            keep_blobs |= record.all_blobs()
            keep_layers |= {layer.chain_id for layer in record.layers}
        doomed_blobs = [self.content.path(d) for d in self.content.digests() if d not in keep_blobs]
        doomed_layers = [self.layers.forget(c) for c in list(self.layers.records) if c not in keep_layers]
        if doomed_blobs or doomed_layers:
            for path in (*doomed_blobs, *doomed_layers):
                with contextlib.suppress(FileNotFoundError):
                    path.rename(self.trash / f"{path.name}-{uuid.uuid4().hex[:8]}")
            await asyncio.to_thread(_empty_trash, self.trash)
            log.info("image.gc", blobs=len(doomed_blobs), layers=len(doomed_layers))

    # --- disk use -----------------------------------------------------------------------------

    def image_fs_usage(self) -> FsUsage:
        blob_bytes = blob_inodes = 0
        for path in self.content.blob_dir.iterdir():
            try:
                st = path.stat()
            except FileNotFoundError:  # collected meanwhile
                continue
            blob_bytes += st.st_blocks * 512
            blob_inodes += 1
        layer_bytes, layer_inodes = self.layers.usage()
        return FsUsage(str(self.root), blob_bytes + layer_bytes, blob_inodes + layer_inodes, time.time_ns())

    def container_fs_usage(self) -> FsUsage:
        # The writable layers' walk, as each container's stats walk its own: hard links once,
        # no Path per directory (ImageFsInfo at 100 pods took 35 ms with them, every 10 s).
        used, inodes = usage_of_tree(self.container_dir)
        return FsUsage(str(self.container_dir), used, inodes, time.time_ns())
