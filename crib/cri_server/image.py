"""ImageService: the CRI's image RPCs over crib.image_service.Images."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc

from crib.cri_server import wire
from crib.errors import InvalidArgument
from crib.image_service import auth, reference
from crib.image_service.image_store import ImageRecord
from crib.image_service.images import FsUsage, Images
from crib.proto.cri import api_pb2


def _user_of(record: ImageRecord) -> tuple[int | None, str]:
    """The image's User as the CRI wants it: a numeric uid, or else a user name."""
    user = record.user.split(":", 1)[0]
    if not user:
        return None, ""
    if user.isdigit():
        return int(user), ""
    return None, user


def image_proto(images: Images, record: ImageRecord) -> api_pb2.Image:
    uid, username = _user_of(record)
    image = api_pb2.Image(
        id=record.id,
        repo_tags=record.repo_tags,
        repo_digests=record.repo_digests,
        size=record.size,
        username=username,
        pinned=images.pinned(record),
    )
    if uid is not None:
        image.uid.value = uid
    return image


def image_key(images: Images, record: ImageRecord) -> tuple[Any, ...]:
    """Every value image_proto shows that can change: the names (a pull or a tag moves them), and
    what pinning depends on (a reloaded [image] section). The ID and config (so the user) are fixed."""
    names = (tuple(record.repo_tags), tuple(record.repo_digests))
    return (*names, record.size, images.sandbox_image, tuple(images.config.pinned_images))


def _spec(image: api_pb2.ImageSpec) -> str:
    # image_ref (cri-api 1.36) carries the image ID when the kubelet knows it.
    return image.image or image.image_ref


def pull_arguments(
    rpc: str, image: api_pb2.ImageSpec, auth_config: api_pb2.AuthConfig
) -> tuple[str, auth.Credentials | None]:
    """The name and credentials of a pull; shared by every RPC that pulls, so they
    all refuse the same requests with the same codes."""
    name = image.image
    if not name:
        raise InvalidArgument(f"{rpc}: image.image is empty")
    a = auth_config
    if a.server_address and not _same_registry(a.server_address, name):
        # As containerd: credentials meant for another registry are not sent to this one.
        return name, None
    return name, auth.from_auth_config(a.username, a.password, a.auth, a.identity_token, a.registry_token)


_DOCKER_HUB = {"docker.io", "index.docker.io", "registry-1.docker.io"}


def _same_registry(server_address: str, image: str) -> bool:
    host = server_address.split("://", 1)[-1].split("/", 1)[0].lower()
    try:
        domain = reference.parse(image).domain.lower()
    except InvalidArgument:
        return True  # the pull refuses the name itself
    return host == domain or (host in _DOCKER_HUB and domain in _DOCKER_HUB)


def _fs_usage(usage: FsUsage) -> api_pb2.FilesystemUsage:
    return api_pb2.FilesystemUsage(
        timestamp=usage.timestamp_ns,
        fs_id=api_pb2.FilesystemIdentifier(mountpoint=usage.mountpoint),
        used_bytes=api_pb2.UInt64Value(value=usage.used_bytes),
        inodes_used=api_pb2.UInt64Value(value=usage.inodes_used),
    )


class ImageService:
    def __init__(self, images: Images) -> None:
        self.images = images
        # Image ID -> (image_key, the Image framed as field 1): ImageStatusResponse and
        # ListImagesResponse both hold their images in field 1. An image that is gone is
        # dropped at the next ListImages.
        self._items: dict[str, tuple[tuple[Any, ...], bytes]] = {}

    def item_bytes(self, record: ImageRecord) -> bytes:
        """The image as field 1 of ImageStatus's and ListImages's replies, made again only when
        its image_key changed."""
        key = image_key(self.images, record)
        cached = self._items.get(record.id)
        if cached is None or cached[0] != key:
            cached = (key, wire.field(1, image_proto(self.images, record).SerializeToString()))
            self._items[record.id] = cached
        return cached[1]

    async def PullImage(
        self, request: api_pb2.PullImageRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.PullImageResponse:
        name, credentials = pull_arguments("PullImage", request.image, request.auth)
        record = await self.images.pull(name, credentials)
        # image_ref equals Image.id (and later ContainerStatus.image_id).
        return api_pb2.PullImageResponse(image_ref=record.id)

    async def ImageStatus(
        self, request: api_pb2.ImageStatusRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.ImageStatusResponse | bytes:
        record = self.images.find(_spec(request.image))
        if record is None:
            # A missing image is an empty answer, not an error.
            return api_pb2.ImageStatusResponse()
        if not request.verbose:
            return self.item_bytes(record)
        response = api_pb2.ImageStatusResponse(image=image_proto(self.images, record))
        response.info["info"] = json.dumps(
            {
                "id": record.id,
                "manifestDigest": record.manifest_digest,
                "chainID": record.chain_id,
                "layers": [layer.digest for layer in record.layers],
                "imageSpec": record.config,
            }
        )
        return response

    async def ListImages(
        self, request: api_pb2.ListImagesRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        spec = _spec(request.filter.image)
        records = self.images.list(spec)
        if not spec and len(self._items) > len(records):
            # Every image is here, and fewer than are kept: forget the items of those gone. (An
            # image removed as another came leaves one kept too many until the next list.)
            for gone in self._items.keys() - {r.id for r in records}:
                del self._items[gone]
        return b"".join([self.item_bytes(r) for r in records])

    async def StreamImages(
        self, request: api_pb2.StreamImagesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[api_pb2.StreamImagesResponse]:
        for chunk in wire.chunks(self.images.list(_spec(request.filter.image))):
            yield api_pb2.StreamImagesResponse(images=[image_proto(self.images, r) for r in chunk])

    async def RemoveImage(
        self, request: api_pb2.RemoveImageRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.RemoveImageResponse:
        spec = _spec(request.image)
        if not spec:
            raise InvalidArgument("RemoveImage: image.image is empty")
        # Idempotent: removing what is not there succeeds.
        await self.images.remove(spec)
        return api_pb2.RemoveImageResponse()

    async def ImageFsInfo(
        self, request: api_pb2.ImageFsInfoRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.ImageFsInfoResponse:
        image_fs = await asyncio.to_thread(self.images.image_fs_usage)
        container_fs = await asyncio.to_thread(self.images.container_fs_usage)
        return api_pb2.ImageFsInfoResponse(
            image_filesystems=[_fs_usage(image_fs)], container_filesystems=[_fs_usage(container_fs)]
        )
