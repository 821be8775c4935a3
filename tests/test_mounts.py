"""Mount propagation checks from mountinfo, and image volume sub paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crib.container import mounts
from crib.errors import FailedPrecondition, InvalidArgument
from crib.proto.cri import api_pb2

MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:30 / /mnt/shared rw shared:7 - tmpfs t rw
31 22 0:31 / /mnt/slave rw master:7 - tmpfs t rw
32 22 0:32 / /mnt/private rw - tmpfs t rw
33 32 0:33 / /mnt/private/inner\\040dir rw shared:9 - tmpfs t rw
"""


def test_mountinfo_gives_each_mount_its_propagation() -> None:
    points = {p.path: p for p in mounts.mount_points(MOUNTINFO)}
    assert points["/mnt/shared"].shared and not points["/mnt/shared"].slave
    assert points["/mnt/slave"].slave and not points["/mnt/slave"].shared
    assert not points["/mnt/private"].shared and not points["/mnt/private"].slave
    assert "/mnt/private/inner dir" in points  # \040 is a space


def test_a_path_lies_on_the_deepest_mount_that_holds_it() -> None:
    points = mounts.mount_points(MOUNTINFO)
    assert mounts.mount_point_of("/mnt/private/x", points).path == "/mnt/private"
    assert mounts.mount_point_of("/mnt/private/inner dir/y", points).path == "/mnt/private/inner dir"
    assert mounts.mount_point_of("/mnt/privateer", points).path == "/"
    assert mounts.mount_point_of("/etc", points).path == "/"


@pytest.mark.parametrize(
    ("source", "propagation", "refused"),
    [
        ("/mnt/shared/a", "rshared", None),
        ("/mnt/shared/a", "rslave", None),
        ("/mnt/slave/a", "rslave", None),
        ("/mnt/slave/a", "rshared", "Bidirectional"),
        ("/mnt/private/a", "rslave", "HostToContainer"),
        ("/mnt/private/a", "rshared", "Bidirectional"),
        ("/mnt/private/a", "rprivate", None),
    ],
)
def test_propagation_needs_a_shared_or_slave_source(
    tmp_path: Path, source: str, propagation: str, refused: str | None
) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)
    if refused is None:
        mounts.check_propagation(source, propagation, info)
        return
    with pytest.raises(FailedPrecondition, match=refused) as exc:
        mounts.check_propagation(source, propagation, info)
    assert source in exc.value.message


def test_an_image_volume_sub_path_stays_inside_the_image(tmp_path: Path) -> None:
    image = tmp_path / "image"
    (image / "data").mkdir(parents=True)
    (image / "data" / "file").write_text("x")
    os.symlink("/etc", image / "data" / "out")
    os.symlink("../../..", image / "data" / "up")
    assert mounts.image_volume_source(image, "", "img") == str(image)
    assert mounts.image_volume_source(image, "data/file", "img") == str(image / "data" / "file")
    # Links resolve inside the image: /etc and ../../.. are the image's own, which has no etc.
    with pytest.raises(InvalidArgument, match="does not exist"):
        mounts.image_volume_source(image, "data/out", "img")
    assert mounts.image_volume_source(image, "data/up", "img") == str(image)
    for bad in ("/data", "../data", "data/../../x"):
        with pytest.raises(InvalidArgument):
            mounts.image_volume_source(image, bad, "img")


def test_image_volumes_are_bound_read_only_and_private_whatever_is_asked(tmp_path: Path) -> None:
    mounted = tmp_path / "vol"
    (mounted / "sub").mkdir(parents=True)
    config = api_pb2.ContainerConfig()
    config.mounts.append(
        api_pb2.Mount(
            container_path="/v",
            image=api_pb2.ImageSpec(image="img"),
            image_sub_path="sub",
            readonly=False,
            propagation=api_pb2.PROPAGATION_BIDIRECTIONAL,
        )
    )
    out, rootfs_propagation = mounts.user_mounts(config, {0: mounted})
    assert out == [
        {
            "destination": "/v",
            "type": "bind",
            "source": str(mounted / "sub"),
            "options": ["rbind", "rprivate", "ro"],
        }
    ]
    assert rootfs_propagation == ""
    with pytest.raises(InvalidArgument, match="was not prepared"):
        mounts.user_mounts(config, {})
    plain = api_pb2.ContainerConfig()
    plain.mounts.append(api_pb2.Mount(container_path="/h", host_path=str(tmp_path), image_sub_path="x"))
    with pytest.raises(InvalidArgument, match="not an image mount"):
        mounts.user_mounts(plain)
