"""Image volumes (`Mount.image`): an OCI image's layers mounted read-only into a container.

The kubelet pulls the image and sends the reference PullImage gave it; crib
mounts that image's layers once per volume, read-only, under the container's
state dir (so removing the container unmounts them), and the spec binds the
mount, or the `image_sub_path` inside it, at the container path. While a
container holds such a mount its image counts as in use: RemoveImage refuses
it and the garbage collector keeps its layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from crib.errors import NotFound
from crib.image_service.image_store import ImageRecord
from crib.image_service.images import Images
from crib.proto.cri import api_pb2
from crib.runtime import rootfs


@dataclass(frozen=True)
class ImageVolume:
    index: int  # in ContainerConfig.mounts
    image: ImageRecord


def resolve(images: Images, config: api_pb2.ContainerConfig) -> list[ImageVolume]:
    """The image of every image mount; NotFound names one that is not pulled."""
    out = []
    for index, m in enumerate(config.mounts):
        if not (m.HasField("image") and m.image.image):
            continue
        record = images.find(m.image.image)
        if record is None:
            raise NotFound(
                f"CreateContainer: image {m.image.image!r} of the image volume at {m.container_path} "
                "is not pulled"
            )
        out.append(ImageVolume(index, record))
    return out


def mount_all(images: Images, volumes: list[ImageVolume], under: Path) -> dict[int, Path]:
    """Mount each volume's layers read-only at `under/<index>`; blocking. The caller unmounts `under`."""
    mounted: dict[int, Path] = {}
    for volume in volumes:
        target = under / str(volume.index)
        lowers = [images.layers.path(layer.chain_id) for layer in reversed(volume.image.layers)]
        rootfs.mount_readonly_layers(lowers, target)
        mounted[volume.index] = target
    return mounted
