"""Pulling an image: resolve the name (mirrors first), fetch and verify, unpack, record.

Where from: the registry's folder in the hosts dir (`config_path`, host_dirs.py) when it
has one, else `[image.mirrors]`, then the registry itself. Only hosts that may resolve
turn a tag into a digest; content comes from the hosts that may pull, in order.

Concurrent pulls of one name share one pull; concurrent pulls of different
images share blob downloads and layer unpacks. Layers download in parallel
(`max_concurrent_downloads` per pull) and each is unpacked as soon as it is
complete. Everything a pull touches is leased so a concurrent RemoveImage's
garbage collection leaves it alone; a failed or cancelled pull releases its
leases and the blobs it brought are collected, so nothing partial remains.

Each pull in flight reports its progress to a `PullTracker` (and each blob
download to a `BlobProgress`) that every caller joining it can follow; see
pull_progress.py. Reporting never waits, so a pull without watchers runs as fast.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from crib import failpoints, node_metrics
from crib.config import ImageSection
from crib.errors import (
    CribError,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from crib.image_service import auth, reference, signature_policy
from crib.image_service.content_store import WRITE_BATCH, ContentStore, sha256_digest
from crib.image_service.host_dirs import HostDirs
from crib.image_service.image_store import ImageRecord, ImageStore, LayerRef
from crib.image_service.layer_store import LayerStore, chain_ids
from crib.image_service.manifest import (
    INDEX_TYPES,
    MAX_MANIFEST_BYTES,
    Descriptor,
    ImageManifest,
    choose_platform,
    diff_ids,
    load_json,
    media_type_of,
    node_platform,
)
from crib.image_service.pull_progress import (
    DEFAULT_INTERVAL_S,
    BlobProgress,
    LayerState,
    PullSnapshot,
    PullTracker,
    follow,
)
from crib.image_service.reference import Reference
from crib.image_service.registry import Endpoint, RegistrySession, SessionChain
from crib.log_setup import get_logger
from crib.shared_task import SharedTasks

log = get_logger("crib.pull")

DOCKER_HUB_URL = "https://registry-1.docker.io"
_LOOPBACK = ("127.", "localhost", "[::1]")


@dataclass
class PullStats:
    started: float = field(default_factory=time.monotonic)
    bytes: int = 0
    layers_downloaded: int = 0
    layers_present: int = 0


@dataclass
class Leases:
    """Blobs and layers held by pulls in flight: garbage collection keeps them."""

    blobs: Counter[str] = field(default_factory=Counter)
    layers: Counter[str] = field(default_factory=Counter)


def first_error(group: BaseExceptionGroup) -> BaseException:
    """The first leaf of an exception group, preferring crib's own errors over cancellations."""
    leaves: list[BaseException] = []

    def walk(g: BaseExceptionGroup) -> None:
        for exc in g.exceptions:
            walk(exc) if isinstance(exc, BaseExceptionGroup) else leaves.append(exc)

    walk(group)
    for exc in leaves:
        if isinstance(exc, CribError):
            return exc
    return leaves[0]


class ImagePuller:
    def __init__(
        self,
        config: ImageSection,
        content: ContentStore,
        layers: LayerStore,
        images: ImageStore,
        http: httpx.AsyncClient,
        collect_garbage: Callable[[], Awaitable[None]],
        host_dirs: HostDirs | None = None,
        policy: signature_policy.PolicyFile | None = None,
    ) -> None:
        self.config = config
        self.host_dirs = host_dirs
        self.content = content
        self.layers = layers
        self.images = images
        self.http = http
        self.collect_garbage = collect_garbage
        self.leases = Leases()
        self._pulls: SharedTasks[ImageRecord] = SharedTasks()
        self._downloads: SharedTasks[Path] = SharedTasks()
        # Progress of the pulls and blob downloads above, by the same keys.
        self._trackers: dict[str, PullTracker] = {}
        self._blob_progress: dict[str, BlobProgress] = {}
        # `[image] signature_policy`, checked at every pull; None: no policy.
        self.policy = policy

    # --- where to pull from -------------------------------------------------------------------

    def _insecure(self, host: str) -> bool:
        return host in self.config.insecure_registries or host.startswith(_LOOPBACK)

    def _upstream(self, domain: str) -> list[Endpoint]:
        """The registry itself."""
        if domain == reference.DEFAULT_DOMAIN:
            return [Endpoint(DOCKER_HUB_URL, domain)]
        if self._insecure(domain):
            # As docker does for insecure registries: HTTPS first, then plain HTTP.
            return [
                Endpoint(f"https://{domain}", domain, fallback=True),
                Endpoint(f"http://{domain}", domain),
            ]
        return [Endpoint(f"https://{domain}", domain)]

    def endpoints(self, domain: str) -> list[Endpoint]:
        """The hosts dir's, when it has a folder for the registry (it replaces `mirrors` there, as
        containerd's config_path does); else mirrors in order, then the registry itself unless
        the config says mirrors only."""
        upstream = self._upstream(domain)
        if self.host_dirs is not None:
            configured = self.host_dirs.endpoints(domain, upstream)
            if configured is not None:
                return configured
        mirror = self.config.mirrors.get(domain)
        out = []
        if mirror is not None:
            for configured_url in mirror.endpoints:
                url = configured_url.rstrip("/").removesuffix("/v2")
                out.append(Endpoint(url, httpx.URL(url).netloc.decode(), mirror=True, fallback=True))
            if mirror.mirrors_only:
                return out
        return out + upstream

    def _sessions(self, ref: Reference, credentials: auth.Credentials | None) -> list[RegistrySession]:
        """A session per endpoint, on the HTTP client its TLS settings need. A broken hosts.toml
        or certificate file fails the pull here, before any host is asked (as containerd does)."""
        try:
            return [
                RegistrySession(
                    self.host_dirs.client(e.tls) if e.tls and self.host_dirs else self.http,
                    e,
                    ref.path,
                    self._credentials(e, ref.domain, credentials),
                    self.config.stall_timeout,
                )
                for e in self.endpoints(ref.domain)
            ]
        except FailedPrecondition as exc:
            raise FailedPrecondition(f"pull {ref}: {exc.message}") from None

    def _credentials(
        self, endpoint: Endpoint, domain: str, given: auth.Credentials | None
    ) -> auth.Credentials | None:
        # The kubelet's credentials are for the image's own registry; a mirror
        # on another host only gets what the auth file holds for that host.
        if given and not endpoint.mirror:
            return given
        return auth.from_auth_file(self.config.auth_file, domain if not endpoint.mirror else endpoint.host)

    # --- the pull -----------------------------------------------------------------------------

    async def pull(self, text: str, credentials: auth.Credentials | None = None) -> ImageRecord:
        return await self._join(reference.parse(text), credentials)

    async def pull_with_progress(
        self,
        text: str,
        credentials: auth.Credentials | None = None,
        interval: float = DEFAULT_INTERVAL_S,
    ) -> AsyncIterator[PullSnapshot]:
        """The same pull as `pull` (shared with concurrent pulls of the name), as snapshots;
        the last one carries the image ref. Closing the iterator early gives up this
        caller's wait, as a PullImage whose client went away does."""
        ref = reference.parse(text)
        loop = asyncio.get_running_loop()
        got: asyncio.Future[PullTracker] = loop.create_future()
        task = asyncio.ensure_future(self._join(ref, credentials, got.set_result))
        # Retrieved here so an abandoned wait's error is not logged as never retrieved.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        try:
            # The task's first step hands over the tracker; it can only end
            # before that if it was cancelled, which task.result() raises.
            await asyncio.wait([got, task], return_when=asyncio.FIRST_COMPLETED)
            if not got.done():
                task.result()
            async for snapshot in follow(got.result(), task, interval):
                yield snapshot
        finally:
            # This caller's wait only: the shared pull stops when no one else waits.
            task.cancel()

    async def _join(
        self,
        ref: Reference,
        credentials: auth.Credentials | None,
        on_tracker: Callable[[PullTracker], None] | None = None,
    ) -> ImageRecord:
        """Start the pull of `ref`, or join the one in flight, with its progress tracker."""
        key = str(ref)
        # Absent while a pull runs only when it ended an instant ago: then a
        # tracker of our own, which follow() completes from the result.
        tracker = (self._trackers.get(key) if self._pulls.running(key) else None) or PullTracker(key)
        if on_tracker is not None:
            on_tracker(tracker)

        def start() -> asyncio.Task[ImageRecord]:
            # Called by run() only when it starts the pull, with no await since
            # the tracker was chosen: the tracker is this pull's.
            self._trackers[key] = tracker
            task = asyncio.ensure_future(self._pull_leased(ref, credentials, tracker))
            # A done callback, not a finally in the coroutine: a task cancelled
            # before its first step never runs its finally.
            task.add_done_callback(lambda _: _forget(self._trackers, key, tracker))
            return task

        return await self._pulls.run(key, start)

    async def _pull_leased(
        self, ref: Reference, credentials: auth.Credentials | None, tracker: PullTracker
    ) -> ImageRecord:
        stats = PullStats()
        leased_blobs: list[str] = []
        leased_layers: list[str] = []

        def lease(blobs: list[str], layers: list[str] = ()) -> None:  # type: ignore[assignment]
            self.leases.blobs.update(blobs)
            self.leases.layers.update(layers)
            leased_blobs.extend(blobs)
            leased_layers.extend(layers)

        try:
            record = await self._fetch(ref, credentials, stats, lease, tracker)
        except BaseException as exc:
            _record_pull(ref, stats, "cancelled" if isinstance(exc, asyncio.CancelledError) else "error")
            # An unpack of this pull may still run in its thread; it finishes
            # (and records its layer) before collection decides what stays.
            await self.layers.settle(leased_layers)
            self._release(leased_blobs, leased_layers)
            # Blobs this pull brought and no image uses go now: nothing partial stays.
            await self.collect_garbage()
            if isinstance(exc, CribError | asyncio.CancelledError):
                log.info("image.pull_failed", image=str(ref), error=getattr(exc, "message", "cancelled"))
            raise
        self._release(leased_blobs, leased_layers)
        _record_pull(ref, stats, "ok")
        seconds = time.monotonic() - stats.started
        log.info(
            "image.pulled",
            image=str(ref),
            id=record.id,
            bytes=stats.bytes,
            layers=len(record.layers),
            layers_downloaded=stats.layers_downloaded,
            layers_present=stats.layers_present,
            duration_ms=round(seconds * 1000, 1),
            mb_per_s=round(stats.bytes / seconds / 1e6, 2) if seconds > 0 else 0.0,
        )
        return record

    def _release(self, blobs: list[str], layers: list[str]) -> None:
        self.leases.blobs.subtract(blobs)
        self.leases.layers.subtract(layers)
        self.leases.blobs += Counter()  # drop zero counts
        self.leases.layers += Counter()

    async def _resolve(
        self, ref: Reference, credentials: auth.Credentials | None
    ) -> tuple[SessionChain, bytes, str, str]:
        """The first endpoint that has the manifest: (where content comes from, body, media type, digest)."""
        what = f"pull {ref}"
        failures: list[str] = []
        failed: list[RegistrySession] = []
        last: CribError | None = None
        sessions = self._sessions(ref, credentials)
        # Only a host trusted to resolve turns a tag into a digest; what is asked by digest
        # is verified, so any host that may pull can answer it.
        need = "pull" if ref.digest else "resolve"
        for session in [s for s in sessions if need in s.endpoint.capabilities]:
            endpoint = session.endpoint
            try:
                body, content_type, header_digest = await session.manifest(
                    ref.digest or ref.tag or "latest", what
                )
            except CribError as exc:
                failures.append(f"{endpoint.url}: {exc.message}")
                last = exc
                if endpoint.fallback:
                    failed.append(session)
                    log.info(
                        "image.endpoint_failed", image=str(ref), endpoint=endpoint.url, error=exc.message
                    )
                    continue
                if len(failures) > 1:
                    raise type(exc)(f"{exc.message} (tried before: {'; '.join(failures[:-1])})") from None
                raise
            digest = sha256_digest(body)
            if ref.digest and digest != ref.digest:
                raise InvalidArgument(f"{what}: {endpoint.host} sent a manifest with digest {digest}")
            if header_digest and header_digest != digest:
                raise InvalidArgument(
                    f"{what}: {endpoint.host} sent a manifest that does not match its digest"
                )
            media_type, _ = media_type_of(body, content_type, f"{what}: manifest")
            # The hosts that may pull, in order; those that just failed to resolve are left out.
            pulls = [
                s for s in sessions if "pull" in s.endpoint.capabilities and (s is session or s not in failed)
            ]
            if not pulls:
                raise FailedPrecondition(f"{what}: no host in the hosts.toml of {ref.domain} may 'pull'")
            return SessionChain(pulls, session), body, media_type, digest
        if last is None:
            # Only a hosts.toml's capabilities leave no host to ask.
            raise FailedPrecondition(f"{what}: no host in the hosts.toml of {ref.domain} may {need!r}")
        raise type(last)(f"{what}: every endpoint failed ({'; '.join(failures)})")

    async def _fetch(
        self,
        ref: Reference,
        credentials: auth.Credentials | None,
        stats: PullStats,
        lease: Callable[..., None],
        tracker: PullTracker,
    ) -> ImageRecord:
        what = f"pull {ref}"
        # What this pull goes by, taken before its first wait: a reload (SIGHUP) meanwhile
        # changes the next pulls, not this one (its endpoints are chosen in _resolve, at once).
        policy_file, downloads = self.policy, self.config.max_concurrent_downloads
        session, body, media_type, top_digest = await self._resolve(ref, credentials)
        # Before anything is written or fetched: a refused image leaves nothing behind.
        await self._check_policy(policy_file, ref, session, top_digest, what)
        tracker.set_resolved(str(ref.with_digest(top_digest)), session.host)
        extra_blobs: list[str] = []
        if media_type in INDEX_TYPES:
            lease([top_digest])
            await asyncio.to_thread(self.content.write_bytes, top_digest, body)
            extra_blobs.append(top_digest)
            index = load_json(body, f"{what}: index")
            chosen = choose_platform(index, node_platform(), f"{what}: index")
            body, content_type, _ = await session.manifest(chosen.digest, what)
            manifest_digest = sha256_digest(body)
            if manifest_digest != chosen.digest:
                raise InvalidArgument(
                    f"{what}: {session.host} sent manifest {manifest_digest}, not {chosen.digest}"
                )
            media_type, doc = media_type_of(body, content_type, f"{what}: manifest {chosen.digest}")
            if media_type in INDEX_TYPES:
                raise InvalidArgument(f"{what}: nested indexes are not supported")
        else:
            manifest_digest = top_digest
            doc = load_json(body, f"{what}: manifest")
        manifest = ImageManifest.parse(doc, f"{what}: manifest")
        tracker.set_manifest(manifest_digest, [(d.digest, d.size) for d in manifest.layers])
        if manifest.config.size > MAX_MANIFEST_BYTES:
            raise InvalidArgument(f"{what}: image config of {manifest.config.size} bytes is too large")
        lease([manifest_digest, manifest.config.digest])
        await asyncio.to_thread(self.content.write_bytes, manifest_digest, body)

        semaphore = asyncio.Semaphore(downloads)
        await self._download(
            session, manifest.config, f"{what}: config {manifest.config.digest}", semaphore, stats
        )
        config = load_json(self.content.read(manifest.config.digest), f"{what}: image config")
        ids = diff_ids(config, f"{what}: image config")
        if len(ids) != len(manifest.layers):
            raise InvalidArgument(
                f"{what}: manifest has {len(manifest.layers)} layers, config has {len(ids)} diff_ids"
            )
        chains = chain_ids(ids)
        lease([layer.digest for layer in manifest.layers], chains)

        async def one_layer(i: int) -> None:
            desc, chain = manifest.layers[i], chains[i]
            if self.layers.has(chain):
                stats.layers_present += 1
                tracker.set_layer(i, LayerState.ALREADY_PRESENT)
                return
            blob = await self._download(
                session, desc, f"{what}: layer {desc.digest}", semaphore, stats, (tracker, i)
            )
            stats.layers_downloaded += 1
            tracker.set_layer(i, LayerState.EXTRACTING)
            await self.layers.ensure(chain, ids[i], blob, desc.media_type)
            tracker.set_layer(i, LayerState.DONE)

        try:
            async with asyncio.TaskGroup() as group:
                for i in range(len(manifest.layers)):
                    group.create_task(one_layer(i))
        except BaseExceptionGroup as group_error:
            # The first layer that failed says why the pull failed.
            raise first_error(group_error) from None

        tags = [t] if (t := ref.tagged()) else []
        record = ImageRecord(
            id=manifest.config.digest,
            repo_tags=tags,
            repo_digests=[str(ref.with_digest(top_digest))],
            manifest_digest=manifest_digest,
            layers=[
                LayerRef(d.digest, d.media_type, d.size, ids[i], chains[i])
                for i, d in enumerate(manifest.layers)
            ],
            blobs=extra_blobs,
            size=manifest.config.size + sum(d.size for d in manifest.layers),
            config=config,
        )
        await failpoints.hit("image.commit")
        return self.images.add(record)

    async def _check_policy(
        self,
        policy_file: signature_policy.PolicyFile | None,
        ref: Reference,
        session: RegistrySession,
        top_digest: str,
        what: str,
    ) -> None:
        """The signature policy's verdict on the manifest the name resolved to (an index's digest
        for a multi-platform image: what cosign signs), signatures read from the same endpoint."""
        if policy_file is None:
            return
        policy = policy_file.load()
        rule = await signature_policy.check(
            policy,
            policy_file.path,
            ref,
            top_digest,
            lambda: signature_policy.fetch_signatures(session, top_digest, what),
            what,
        )
        log.debug("image.policy_accepted", image=str(ref), digest=top_digest, rule=rule.where)

    async def _download(
        self,
        session: SessionChain,
        desc: Descriptor,
        what: str,
        semaphore: asyncio.Semaphore,
        stats: PullStats,
        layer: tuple[PullTracker, int] | None = None,
    ) -> Path:
        if self.content.has(desc.digest):
            return self.content.path(desc.digest)
        key = desc.digest
        # Joining another pull's download; its progress object is gone only
        # when it ended an instant ago.
        progress = (self._blob_progress.get(key) if self._downloads.running(key) else None) or BlobProgress(
            key, desc.size
        )

        def start() -> asyncio.Task[Path]:
            self._blob_progress[key] = progress
            task = asyncio.ensure_future(self._fetch_blob(session, desc, what, semaphore, stats, progress))
            task.add_done_callback(lambda _: _forget(self._blob_progress, key, progress))
            return task

        if layer is not None:
            layer[0].attach_blob(layer[1], progress)
        try:
            return await self._downloads.run(key, start)
        finally:
            if layer is not None:
                layer[0].detach_blob(layer[1])

    async def _fetch_blob(
        self,
        session: SessionChain,
        desc: Descriptor,
        what: str,
        semaphore: asyncio.Semaphore,
        stats: PullStats,
        progress: BlobProgress,
    ) -> Path:
        async with semaphore:
            progress.set_state(LayerState.DOWNLOADING)
            ingest = self.content.ingest(desc.digest, desc.size)
            try:
                async with session.blob(desc.digest, what) as chunks:
                    batch = bytearray()
                    async for chunk in chunks:
                        await failpoints.hit("image.layer")
                        batch += chunk
                        stats.bytes += len(chunk)
                        progress.add(len(chunk))
                        if len(batch) >= WRITE_BATCH:
                            # Hashing and writing off the loop; the download goes on meanwhile.
                            await asyncio.to_thread(ingest.write, bytes(batch))
                            batch.clear()
                    progress.set_state(LayerState.VERIFYING)
                    if batch:
                        await asyncio.to_thread(ingest.write, bytes(batch))
                path = await asyncio.to_thread(ingest.commit)
            except BaseException:
                ingest.abort()
                raise
            return path


def _record_pull(ref: Reference, stats: PullStats, outcome: str) -> None:
    registry = ref.domain
    node_metrics.PULL_BYTES.labels(registry).inc(stats.bytes)
    node_metrics.PULL_LAYERS.labels(registry, "downloaded").inc(stats.layers_downloaded)
    node_metrics.PULL_LAYERS.labels(registry, "present").inc(stats.layers_present)
    node_metrics.PULL_DURATION.labels(registry, outcome).observe(time.monotonic() - stats.started)


def _forget(registry: dict[str, Any], key: str, value: object) -> None:
    """Drop a finished task's progress object, unless a newer task's has replaced it."""
    if registry.get(key) is value:
        del registry[key]


# Errors a caller may want to tell apart; re-exported for the servicer.
__all__ = ["DeadlineExceeded", "ImagePuller", "NotFound", "PullStats", "Unavailable"]
