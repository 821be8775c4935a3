"""CribService: crib's own RPCs beside the CRI (image load and import)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import grpc

from crib.errors import InvalidArgument
from crib.image_service import image_load, reference
from crib.image_service.image_store import ImageRecord
from crib.image_service.images import Images
from crib.proto.crib.v1 import crib_pb2


def _loaded(record: ImageRecord, names: list[str]) -> crib_pb2.LoadedImage:
    """The image with the names this call gave it, not every name it has."""
    tags = [n for n in names if n in record.repo_tags]
    repos = {t.rsplit(":", 1)[0] for t in tags}
    digests = [d for d in record.repo_digests if d.split("@", 1)[0] in repos]
    return crib_pb2.LoadedImage(id=record.id, repo_tags=tags, repo_digests=digests)


async def _spool(first: bytes, rest: AsyncIterator, f: IO[bytes]) -> None:
    """Write the streamed data to a file, off the loop."""
    if first:
        await asyncio.to_thread(f.write, first)
    async for message in rest:
        if message.data:
            await asyncio.to_thread(f.write, message.data)
    await asyncio.to_thread(f.flush)


class CribServicer:
    def __init__(self, images: Images) -> None:
        self.images = images
        self.spool_dir = images.root / "tmp"
        # Uploads cut short by a crash are never resumed.
        shutil.rmtree(self.spool_dir, ignore_errors=True)
        self.spool_dir.mkdir(parents=True)

    @contextlib.contextmanager
    def _spool_file(self) -> IO[bytes]:
        with tempfile.NamedTemporaryFile(dir=self.spool_dir, prefix="upload-") as f:
            yield f

    async def LoadImage(
        self, requests: AsyncIterator[crib_pb2.LoadImageRequest], context: grpc.aio.ServicerContext
    ) -> crib_pb2.LoadImageResponse:
        with self._spool_file() as f:
            await _spool(b"", requests, f)
            if f.tell() == 0:
                raise InvalidArgument("LoadImage: no archive data received")
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
            record = await image_load.import_rootfs(self.images, Path(f.name), first.name, settings)
        return crib_pb2.ImportImageResponse(image=_loaded(record, [str(reference.parse(first.name))]))
