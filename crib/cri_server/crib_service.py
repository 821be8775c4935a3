"""CribService: crib's own RPCs beside the CRI (image load and import, pulls with progress)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import IO, TYPE_CHECKING

import grpc

from crib.cri_server.image import pull_arguments
from crib.errors import InvalidArgument
from crib.image_service import reference
from crib.image_service.image_store import ImageRecord
from crib.image_service.images import Images
from crib.proto.crib.v1 import crib_pb2

if TYPE_CHECKING:
    # Only pulls with progress make snapshots; pull_progress comes with the pull stack (issue 17).
    from crib.image_service.pull_progress import PullSnapshot


def _loaded(record: ImageRecord, names: list[str]) -> crib_pb2.LoadedImage:
    """The image with the names this call gave it, not every name it has."""
    tags = [n for n in names if n in record.repo_tags]
    repos = {t.rsplit(":", 1)[0] for t in tags}
    digests = [d for d in record.repo_digests if d.split("@", 1)[0] in repos]
    return crib_pb2.LoadedImage(id=record.id, repo_tags=tags, repo_digests=digests)


def progress_proto(snapshot: PullSnapshot) -> crib_pb2.PullProgress:
    return crib_pb2.PullProgress(
        reference=snapshot.reference,
        resolved=snapshot.resolved,
        manifest_digest=snapshot.manifest_digest,
        registry=snapshot.registry,
        # pull_progress.LayerState's values are crib.v1.LayerState's.
        layers=[
            crib_pb2.LayerProgress(
                digest=layer.digest, size=layer.size, bytes_done=layer.bytes_done, state=int(layer.state)
            )
            for layer in snapshot.layers
        ],
        bytes_done=snapshot.bytes_done,
        bytes_total=snapshot.bytes_total,
        image_ref=snapshot.image_ref,
    )


async def _image_load() -> ModuleType:
    """The archive reader (tar, gzip, zstd), imported at the first load or import (in a
    worker thread): rare calls, kept out of an idle cribd's memory (issue 17)."""
    return await asyncio.to_thread(importlib.import_module, "crib.image_service.image_load")


async def _spool(first: bytes, rest: AsyncIterator, f: IO[bytes]) -> None:
    """Write the streamed data to a file, off the loop."""
    if first:
        await asyncio.to_thread(f.write, first)
    async for message in rest:
        if message.data:
            await asyncio.to_thread(f.write, message.data)
    await asyncio.to_thread(f.flush)


class CribService:
    def __init__(self, images: Images) -> None:
        self.images = images
        self.spool_dir = images.root / "tmp"
        # Uploads cut short by a crash are never resumed.
        shutil.rmtree(self.spool_dir, ignore_errors=True)
        self.spool_dir.mkdir(parents=True)

    @contextlib.contextmanager
    def _spool_file(self) -> IO[bytes]:
        import tempfile  # noqa: PLC0415  (and random, at the first load or import: issue 17)

        with tempfile.NamedTemporaryFile(dir=self.spool_dir, prefix="upload-") as f:
            yield f

    async def LoadImage(
        self, requests: AsyncIterator[crib_pb2.LoadImageRequest], context: grpc.aio.ServicerContext
    ) -> crib_pb2.LoadImageResponse:
        with self._spool_file() as f:
            await _spool(b"", requests, f)
            if f.tell() == 0:
                raise InvalidArgument("LoadImage: no archive data received")
            image_load = await _image_load()
            records = await image_load.load_archive(self.images, Path(f.name))
        return crib_pb2.LoadImageResponse(images=[_loaded(r, names) for r, names in records])

    async def ImportImage(
        self, requests: AsyncIterator[crib_pb2.ImportImageRequest], context: grpc.aio.ServicerContext
    ) -> crib_pb2.ImportImageResponse:
        first = await anext(aiter(requests), None)
        if first is None or not first.name:
            raise InvalidArgument("ImportImage: the first message must name the image")
        c = first.config
        settings = {
            "Entrypoint": list(c.entrypoint),
            "Cmd": list(c.cmd),
            "WorkingDir": c.working_dir,
            "User": c.user,
            "ExposedPorts": {p: {} for p in c.exposed_ports},
            "StopSignal": c.stop_signal,
            "Labels": dict(c.labels),
        }
        if c.env:
            settings["Env"] = list(c.env)
        with self._spool_file() as f:
            await _spool(first.data, requests, f)
            if f.tell() == 0:
                raise InvalidArgument("ImportImage: no rootfs data received")
            image_load = await _image_load()
            record = await image_load.import_rootfs(self.images, Path(f.name), first.name, settings)
        return crib_pb2.ImportImageResponse(image=_loaded(record, [str(reference.parse(first.name))]))

    async def PullImageWithProgress(
        self, request: crib_pb2.PullImageWithProgressRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[crib_pb2.PullProgress]:
        # PullImage's checks and credentials, so both refuse alike; the pull is
        # the same shared one, so a concurrent PullImage of the name joins it.
        name, credentials = pull_arguments("PullImageWithProgress", request.image, request.auth)
        # aclosing: when this generator is closed at its yield (its client went
        # away while a message was going out), the pull's generator, suspended
        # at its own yield, closes with it: this caller's wait ends now, not
        # whenever the garbage collector gets to it.
        async with contextlib.aclosing(self.images.pull_with_progress(name, credentials)) as snapshots:
            async for snapshot in snapshots:
                yield progress_proto(snapshot)
