"""The pause image: built on the node from Debian's static catatonit, so pods need no pull.

One layer: `/catatonit` and the directories a rootfs needs; entrypoint
`catatonit -P` (pause: hold the namespaces, reap zombies as PID 1), user
65535 as the upstream pause image. A fixed creation time makes its ID depend
on the catatonit binary alone, the same on every node with the same package.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from crib.errors import FailedPrecondition
from crib.image_service import image_load
from crib.image_service.image_store import ImageRecord
from crib.image_service.images import Images
from crib.log_setup import get_logger

log = get_logger("crib.pause")

CATATONIT = "/usr/bin/catatonit"
ENTRYPOINT = ["/catatonit", "-P"]
USER = "65535:65535"
CREATED = "1970-01-01T00:00:00Z"


def _rootfs_tar(binary: str, dest: Path) -> None:
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("dev", "proc", "sys", "etc", "tmp"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        with open(binary, "rb") as f:
            data = f.read()
        info = tarfile.TarInfo("catatonit")
        info.size = len(data)
        info.mode = 0o755
        tar.addfile(info, io.BytesIO(data))


async def build(images: Images, name: str, binary: str = CATATONIT) -> ImageRecord:
    """Build the pause image under `name` (pinned as the sandbox image)."""
    resolved = shutil.which(binary) if "/" not in binary else binary
    if not resolved or not os.access(resolved, os.X_OK):
        raise FailedPrecondition(
            f"cannot build the pause image: {binary} is not installed (apt-get install catatonit)"
        )
    # The staging directory is made, filled and removed in threads: the first RunPodSandbox
    # builds the image, and its other pods' calls wait on the loop behind it (the rmtree once
    # held the loop 4 ms on a busy machine).
    tmp = Path(await asyncio.to_thread(tempfile.mkdtemp, dir=images.root / "tmp"))
    try:
        tar = tmp / "pause.tar"
        await asyncio.to_thread(_rootfs_tar, resolved, tar)
        settings = {"Entrypoint": ENTRYPOINT, "User": USER}
        record = await image_load.import_rootfs(images, tar, name, settings, created=CREATED)
    finally:
        await asyncio.to_thread(shutil.rmtree, tmp, ignore_errors=True)
    log.info("pause_image.built", image=name, id=record.id)
    return record
