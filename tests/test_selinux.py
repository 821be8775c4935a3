"""SELinux labels with the node's SELinux faked on (this host has none): detection, labels as
go-selinux's InitLabels makes them from the pod's and the container's options, the specs that
carry them, the rootfs context, and relabelling (the real security.selinux xattr on a tmp
dir, which ext4 and tmpfs keep without SELinux); and the refusals where SELinux is off."""

from __future__ import annotations

import errno
import os
import re
import secrets
from pathlib import Path
from typing import Any

import pytest

from crib.container import container_spec
from crib.container.container_spec import PodContext
from crib.errors import FailedPrecondition, InvalidArgument
from crib.image_service.image_store import ImageRecord
from crib.proto.cri import api_pb2
from crib.runtime import rootfs, selinux
from crib.runtime.selinux import Labels, SELinux
from crib.sandbox import pause_spec
from crib.sandbox.pause_spec import PauseContext

LEVELED = r"s0:c(\d+),c(\d+)"


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    root = tmp_path / "selinux"
    (root / "mls" / "contexts").mkdir(parents=True)
    (root / "config").write_text("SELINUX=enforcing\nSELINUXTYPE=mls\n")
    (root / "mls" / "contexts" / "lxc_contexts").write_text(
        'process = "system_u:system_r:container_t:s0"\n'
        'content = "system_u:object_r:virt_var_lib_t:s0"\n'
        'file = "system_u:object_r:container_file_t:s0"\n'
    )
    return root


def test_enabled_means_the_enforce_knob_and_selinuxfs_mounted(tmp_path: Path) -> None:
    enforce, mountinfo = tmp_path / "enforce", tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 0:21 / /sys/fs/selinux rw,relatime shared:9 - selinuxfs selinuxfs rw\n"
        "23 1 0:22 / /proc rw - proc proc rw\n"
    )
    assert not selinux.selinux_enabled(enforce, mountinfo)  # no knob
    enforce.write_text("1")
    assert selinux.selinux_enabled(enforce, mountinfo)
    mountinfo.write_text("23 1 0:22 / /proc rw - proc proc rw\n")
    assert not selinux.selinux_enabled(enforce, mountinfo)  # selinuxfs not mounted
    assert not selinux.selinux_enabled()  # this host


def test_where_selinux_is_off_a_label_is_refused_and_none_is_fine() -> None:
    off = SELinux(enabled=False)
    assert off.pod_labels(api_pb2.SELinuxOption(), "RunPodSandbox") is None
    assert off.container_labels(api_pb2.SELinuxOption(), "", "CreateContainer") is None
    with pytest.raises(FailedPrecondition, match="RunPodSandbox: selinux_options were given, but this node"):
        off.pod_labels(api_pb2.SELinuxOption(type="spc_t"), "RunPodSandbox")
    with pytest.raises(FailedPrecondition, match="CreateContainer: selinux_options"):
        off.container_labels(api_pb2.SELinuxOption(level="s0:c1,c2"), "", "CreateContainer")
    with pytest.raises(InvalidArgument, match="level 'top secret' is not an MLS/MCS level"):
        off.pod_labels(api_pb2.SELinuxOption(level="top secret"), "RunPodSandbox")


def test_a_pod_gets_the_policys_container_contexts_with_a_level_of_its_own(policy: Path) -> None:
    on = SELinux(enabled=True, policy_root=policy)
    first = on.pod_labels(api_pb2.SELinuxOption(), "RunPodSandbox")
    second = on.pod_labels(api_pb2.SELinuxOption(), "RunPodSandbox")
    assert first is not None and second is not None
    match = re.fullmatch(rf"system_u:system_r:container_t:({LEVELED})", first.process)
    assert match, first.process
    a, b = int(match.group(2)), int(match.group(3))
    assert a < b < 1024
    assert first.mount == f"system_u:object_r:container_file_t:{match.group(1)}"
    assert first.process != second.process  # unique levels while both pods exist
    # Options lay over it: user, role, type and level set the process label, user and level the mount's.
    asked = api_pb2.SELinuxOption(user="user_u", role="user_r", type="spc_t", level="s0:c1,c2")
    assert on.pod_labels(asked, "RunPodSandbox") == Labels(
        "user_u:user_r:spc_t:s0:c1,c2", "user_u:object_r:container_file_t:s0:c1,c2"
    )


def test_a_container_starts_from_its_pods_label_field_by_field(policy: Path) -> None:
    on = SELinux(enabled=True, policy_root=policy)
    pod = on.pod_labels(api_pb2.SELinuxOption(level="s0:c7,c9"), "RunPodSandbox")
    assert pod is not None
    same = on.container_labels(api_pb2.SELinuxOption(), pod.process, "CreateContainer")
    assert same == pod
    typed = on.container_labels(
        api_pb2.SELinuxOption(type="container_init_t"), pod.process, "CreateContainer"
    )
    assert typed == Labels(
        "system_u:system_r:container_init_t:s0:c7,c9", "system_u:object_r:container_file_t:s0:c7,c9"
    )
    leveled = on.container_labels(api_pb2.SELinuxOption(level="s0:c3"), pod.process, "CreateContainer")
    assert leveled is not None and leveled.mount == "system_u:object_r:container_file_t:s0:c3"


def test_a_released_level_may_be_given_again_and_recovery_keeps_them(
    policy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on = SELinux(enabled=True, policy_root=policy)
    picks = iter([[1, 2], [1, 2], [3, 4], [1, 2]])
    monkeypatch.setattr(secrets.SystemRandom, "sample", lambda self, r, k: next(picks))
    first = on.pod_labels(api_pb2.SELinuxOption(), "RunPodSandbox")
    assert first is not None and first.process.endswith("s0:c1,c2")
    second = on.pod_labels(api_pb2.SELinuxOption(), "RunPodSandbox")
    assert second is not None and second.process.endswith("s0:c3,c4")  # c1,c2 was taken
    on.release(first.process)
    third = on.pod_labels(api_pb2.SELinuxOption(), "RunPodSandbox")
    assert third is not None and third.process.endswith("s0:c1,c2")
    fresh = SELinux(enabled=True, policy_root=policy)
    fresh.reserve(third.process)
    assert "s0:c1,c2" in fresh._levels


def test_the_defaults_when_the_policy_has_no_lxc_contexts(tmp_path: Path) -> None:
    assert selinux.container_contexts(tmp_path) == (selinux.DEFAULT_PROCESS, selinux.DEFAULT_FILE)


@pytest.mark.skipif(os.geteuid() != 0, reason="security.* xattrs need CAP_SYS_ADMIN")
def test_relabel_sets_the_xattr_on_the_tree_but_not_through_symlinks(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    (volume / "sub").mkdir(parents=True)
    (volume / "sub" / "f").write_text("x")
    outside = tmp_path / "outside"
    outside.write_text("y")
    (volume / "link").symlink_to(outside)
    label = "system_u:object_r:container_file_t:s0:c1,c2"
    selinux.relabel(str(volume), label, "CreateContainer")
    for path in (volume, volume / "sub", volume / "sub" / "f"):
        assert os.getxattr(path, selinux.XATTR) == label.encode()
    with pytest.raises(OSError):
        os.getxattr(outside, selinux.XATTR)


def test_relabel_refuses_system_paths_and_skips_what_is_labelled(tmp_path: Path) -> None:
    for path in ("/", "/usr", "/etc/", "/var/lib", "/home"):
        with pytest.raises(InvalidArgument, match=r"SELinux relabeling of /\S* is not allowed"):
            selinux.relabel(path, "l", "CreateContainer")
    sneaky = tmp_path / "etc"
    sneaky.symlink_to("/etc")
    with pytest.raises(InvalidArgument, match="relabeling of /etc is not allowed"):
        selinux.relabel(str(sneaky), "l", "CreateContainer")
    calls: list[str] = []
    target = tmp_path / "file"
    target.write_text("")

    def labelled(path: str, name: str, follow_symlinks: bool) -> bytes:
        return b"l\0"

    selinux.relabel(
        str(target), "l", "CreateContainer", getxattr=labelled, setxattr=lambda *a, **k: calls.append(a[0])
    )
    assert calls == []

    def unsupported(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EOPNOTSUPP, "not supported")

    selinux.relabel(str(target), "other", "CreateContainer", setxattr=unsupported)  # left alone


def _image() -> ImageRecord:
    return ImageRecord(
        id="sha256:" + "1" * 64, repo_tags=["example.com/app:1"], repo_digests=[], manifest_digest="",
        layers=[], blobs=[], size=0, config={"config": {"Cmd": ["/bin/sh"]}},
    )  # fmt: skip


def test_the_specs_carry_the_labels_and_relabelled_mounts_get_the_mount_label(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    labels = Labels("system_u:system_r:container_t:s0:c1,c2", "system_u:object_r:container_file_t:s0:c1,c2")
    relabelled: list[tuple[str, str]] = []
    monkeypatch.setattr(selinux, "relabel", lambda path, label, where: relabelled.append((path, label)))
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    config = api_pb2.ContainerConfig(metadata=api_pb2.ContainerMetadata(name="c"))
    config.image.image = "example.com/app:1"
    for name, relabel in (("a", True), ("b", False)):
        (tmp_path / name).mkdir()
        config.mounts.append(
            api_pb2.Mount(container_path=f"/{name}", host_path=str(tmp_path / name), selinux_relabel=relabel)
        )
    pod_config = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name="p", namespace="n", uid="u")
    )
    pod = PodContext(
        sandbox_id="p" * 64, pause_pid=4242, netns="/run/netns/p", config=pod_config, hostname="p",
        files_dir=tmp_path / "files", shm=tmp_path / "shm", cgroup_parent="",
    )  # fmt: skip
    spec = container_spec.build("c" * 64, config, _image(), pod, root, False, labels=labels).spec
    assert spec["process"]["selinuxLabel"] == labels.process
    assert spec["linux"]["mountLabel"] == labels.mount
    assert relabelled == [(str(tmp_path / "a"), labels.mount)]
    relabelled.clear()
    plain = container_spec.build("c" * 64, config, _image(), pod, root, False).spec
    assert "selinuxLabel" not in plain["process"] and "mountLabel" not in plain["linux"]
    assert relabelled == []  # SELinux off: selinux_relabel has nothing to do
    pause = pause_spec.build(
        PauseContext(
            sandbox_id="p" * 64, config=pod_config, netns="/run/netns/p", files_dir=tmp_path / "files",
            shm=tmp_path / "shm", rootfs=tmp_path / "pause", systemd=False,
            process_label=labels.process, mount_label=labels.mount,
        ),
        {"Entrypoint": ["/catatonit", "-P"]},
        "p",
    )  # fmt: skip
    assert pause["process"]["selinuxLabel"] == labels.process
    assert pause["linux"]["mountLabel"] == labels.mount


def test_the_rootfs_overlay_has_the_mount_label_as_its_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mounted: list[str] = []
    monkeypatch.setattr(
        rootfs, "mount", lambda source, target, fstype, flags=0, data="": mounted.append(data)
    )
    label = "system_u:object_r:container_file_t:s0:c1,c2"
    rootfs.mount_overlay([tmp_path / "l"], tmp_path / "u", tmp_path / "w", tmp_path / "t", mount_label=label)
    assert mounted[0].endswith(f',index=off,context="{label}"')
    rootfs.mount_overlay([tmp_path / "l"], tmp_path / "u", tmp_path / "w", tmp_path / "t")
    assert "context=" not in mounted[1]
