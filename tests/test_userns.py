"""User namespaces (hostUsers: false): containerd's validation of the kubelet's mappings, the
specs of the pause and of a container in such a pod, idmapped volumes, what Status advertises,
and (as root) the kernel side: the pinned user namespace owning the pod's netns, and an
idmapped overlay rootfs."""

from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from crib import config as cfg
from crib.container import container_spec
from crib.container.container_spec import PodContext
from crib.container.mounts import user_mounts
from crib.cri_server.runtime import status_response
from crib.errors import FailedPrecondition, InvalidArgument
from crib.image_service.image_store import ImageRecord
from crib.proto.cri import api_pb2
from crib.runtime import rootfs, userns
from crib.runtime.runtime_handler import HandlerInfo, features_from_json
from crib.sandbox import pause_spec
from crib.sandbox.pause_spec import PauseContext
from crib.sandbox.pod_config import check_userns

POD_ID = "p" * 64
CID = "c" * 64
UIDS = api_pb2.IDMapping(container_id=0, host_id=200000, length=65536)
GIDS = api_pb2.IDMapping(container_id=0, host_id=300000, length=65536)
MAPPED = userns.PodUserns(userns.IDMap(0, 200000, 65536), userns.IDMap(0, 300000, 65536))
# A handler that claims what runc >= 1.2 reports (runc 1.1.5 on this host does not).
IDMAPPING = HandlerInfo(
    "runc", "runc", "/usr/sbin/runc", recursive_read_only_mounts=True, user_namespaces=True
)


def _opts(mode: int = api_pb2.POD, uids: list[Any] | None = None, gids: list[Any] | None = None) -> Any:
    opts = api_pb2.NamespaceOption()
    opts.userns_options.mode = mode
    opts.userns_options.uids.extend([UIDS] if uids is None else uids)
    opts.userns_options.gids.extend([GIDS] if gids is None else gids)
    return opts


def test_the_kubelets_mappings_are_validated_as_containerd_does() -> None:
    assert userns.parse(api_pb2.NamespaceOption(), "RunPodSandbox") is None  # not set: the node's
    assert userns.parse(_opts(api_pb2.NODE, [], []), "RunPodSandbox") is None
    assert userns.parse(_opts(), "RunPodSandbox") == MAPPED
    assert MAPPED.root() == (200000, 300000)
    refused = [
        (_opts(api_pb2.NODE), "mode NODE cannot have UID or GID mappings"),
        (_opts(gids=[]), "mode POD needs one UID and one GID mapping"),
        (_opts(uids=[UIDS, UIDS]), r"userns_options.uids: only one mapping line is supported, got 2"),
        (_opts(gids=[api_pb2.IDMapping(host_id=1)]), "userns_options.gids: invalid mapping length 0"),
        (_opts(uids=[api_pb2.IDMapping(host_id=2**32 - 10, length=65536)]), "goes past the last ID"),
        (_opts(api_pb2.CONTAINER), "userns_options.mode CONTAINER is not supported"),
        (_opts(api_pb2.TARGET), "userns_options.mode TARGET is not supported"),
    ]
    for opts, message in refused:
        with pytest.raises(InvalidArgument, match=message):
            userns.parse(opts, "RunPodSandbox")
    # A mapping that leaves out ID 0 has no root to own the pod's files.
    no_root = userns.PodUserns(userns.IDMap(1000, 200000, 10), userns.IDMap(0, 300000, 65536))
    with pytest.raises(InvalidArgument, match="do not map ID 0"):
        no_root.root()


def test_a_handler_without_idmapped_mounts_refuses_them() -> None:
    with pytest.raises(FailedPrecondition, match=r"userns_options .*runtime handler 'runc' has no idmapped"):
        userns.require_support(MAPPED, False, "runc", "RunPodSandbox")
    userns.require_support(MAPPED, True, "runc", "RunPodSandbox")
    userns.require_support(None, False, "runc", "RunPodSandbox")  # the node's: always fine


def test_the_kernel_must_take_idmapped_layers_too(monkeypatch: pytest.MonkeyPatch) -> None:
    runc_12 = {"linux": {"namespaces": ["user"], "mountExtensions": {"idmap": {"enabled": True}}}}
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(("Linux", "n", "5.15.0-1", "", "x86_64")))
    assert features_from_json(runc_12) == (False, False)
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(("Linux", "n", "5.19.0", "", "x86_64")))
    assert features_from_json(runc_12) == (False, True)


def test_status_advertises_user_namespaces_only_for_handlers_that_have_them(tmp_path: Path) -> None:
    c = cfg.Config(cni=cfg.CNISection(bin_dirs=[str(tmp_path)], conf_dir=str(tmp_path / "net.d")))
    c.runtime.handlers["old"] = cfg.RuntimeHandler("runc-1.1")
    handlers = {"runc": IDMAPPING, "old": HandlerInfo("old", "runc-1.1", "/usr/bin/runc-1.1")}
    listed = {
        h.name: h.features.user_namespaces for h in status_response(c, handlers, False).runtime_handlers
    }
    assert listed == {"": True, "old": False, "runc": True}


def _pod_config(host_network: bool = False) -> api_pb2.PodSandboxConfig:
    config = api_pb2.PodSandboxConfig(metadata=api_pb2.PodSandboxMetadata(name="p", namespace="ns", uid="u"))
    config.linux.security_context.namespace_options.CopyFrom(_opts())
    if host_network:
        config.linux.security_context.namespace_options.network = api_pb2.NODE
    return config


def _pause(tmp_path: Path, host_network: bool) -> dict[str, Any]:
    pod = PauseContext(
        sandbox_id=POD_ID, config=_pod_config(host_network), netns="" if host_network else "/run/netns/p",
        files_dir=tmp_path / "files", shm=tmp_path / "shm", rootfs=tmp_path / "rootfs", systemd=False,
        userns=MAPPED, userns_path=tmp_path / "userns",
    )  # fmt: skip
    return pause_spec.build(pod, {"Entrypoint": ["/catatonit", "-P"], "User": "65535:65535"}, "p")


def test_the_pause_joins_the_pinned_user_namespace_with_the_pods_mappings(tmp_path: Path) -> None:
    spec = _pause(tmp_path, host_network=False)
    linux = spec["linux"]
    assert {"type": "user", "path": str(tmp_path / "userns")} in linux["namespaces"]
    assert {"type": "network", "path": "/run/netns/p"} in linux["namespaces"]
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": 200000, "size": 65536}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": 300000, "size": 65536}]
    assert next(m for m in spec["mounts"] if m["destination"] == "/sys")["type"] == "sysfs"
    # On the host's network, sysfs cannot be mounted from the pod's user namespace: /sys is bound.
    host = _pause(tmp_path, host_network=True)
    sys_mount = next(m for m in host["mounts"] if m["destination"] == "/sys")
    assert sys_mount == {
        "destination": "/sys",
        "type": "bind",
        "source": "/sys",
        "options": ["rbind", "rro", "nosuid", "nodev", "noexec"],
    }


def _image() -> ImageRecord:
    return ImageRecord(
        id="sha256:" + "1" * 64, repo_tags=["example.com/app:1"], repo_digests=[], manifest_digest="",
        layers=[], blobs=[], size=0, config={"config": {"Cmd": ["/bin/sh"]}},
    )  # fmt: skip


def _container(
    tmp_path: Path, config: api_pb2.ContainerConfig, own: userns.PodUserns | None
) -> dict[str, Any]:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    pod = PodContext(
        sandbox_id=POD_ID, pause_pid=4242, netns="/run/netns/p", config=_pod_config(), hostname="p",
        files_dir=tmp_path / "files", shm=tmp_path / "shm", cgroup_parent="", userns=own,
        idmapped_mounts=own is not None,
    )  # fmt: skip
    return container_spec.build(CID, config, _image(), pod, root, False).spec


def _config(**kw: Any) -> api_pb2.ContainerConfig:
    config = api_pb2.ContainerConfig(metadata=api_pb2.ContainerMetadata(name="c"), **kw)
    config.image.image = "example.com/app:1"
    config.linux.security_context.namespace_options.CopyFrom(_opts())
    return config


@pytest.mark.skipif(os.geteuid() != 0, reason="chowns to the pod's root")
def test_a_container_joins_the_pause_user_namespace_and_owns_its_new_working_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    volume = api_pb2.Mount(
        container_path="/data", host_path=str(data), uidMappings=[UIDS], gidMappings=[GIDS]
    )
    spec = _container(tmp_path, _config(working_dir="/work/dir", mounts=[volume]), MAPPED)
    linux = spec["linux"]
    assert {"type": "user", "path": "/proc/4242/ns/user"} in linux["namespaces"]
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": 200000, "size": 65536}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": 300000, "size": 65536}]
    mount = next(m for m in spec["mounts"] if m["destination"] == "/data")
    assert "idmap" in mount["options"]
    assert mount["uidMappings"] == [{"containerID": 0, "hostID": 200000, "size": 65536}]
    assert mount["gidMappings"] == [{"containerID": 0, "hostID": 300000, "size": 65536}]
    for made in ("work", "work/dir"):
        st = (tmp_path / "rootfs" / made).stat()
        assert (st.st_uid, st.st_gid) == (200000, 300000), made
    # The rootfs itself was there before: it keeps its owner (the idmapped overlay shows it as root).
    assert (tmp_path / "rootfs").stat().st_uid == 0


def test_without_a_user_namespace_the_spec_has_none(tmp_path: Path) -> None:
    config = _config()
    config.linux.security_context.namespace_options.ClearField("userns_options")
    spec = _container(tmp_path, config, None)
    assert "user" not in [ns["type"] for ns in spec["linux"]["namespaces"]]
    assert "uidMappings" not in spec["linux"]


def test_idmapped_volumes_need_a_handler_that_idmaps_and_both_mappings() -> None:
    mount = api_pb2.Mount(container_path="/data", host_path="/tmp", uidMappings=[UIDS], gidMappings=[GIDS])
    with pytest.raises(FailedPrecondition, match="mount /data has uidMappings/gidMappings"):
        user_mounts(api_pb2.ContainerConfig(mounts=[mount]), None, idmapped_mounts=False)
    half = api_pb2.Mount(container_path="/data", host_path="/tmp", uidMappings=[UIDS])
    with pytest.raises(InvalidArgument, match="uidMappings and gidMappings go together"):
        user_mounts(api_pb2.ContainerConfig(mounts=[half]), None, idmapped_mounts=True)
    empty = api_pb2.Mount(
        container_path="/data", host_path="/tmp", uidMappings=[api_pb2.IDMapping()], gidMappings=[GIDS]
    )
    with pytest.raises(InvalidArgument, match="uidMappings: invalid mapping length 0"):
        user_mounts(api_pb2.ContainerConfig(mounts=[empty]), None, idmapped_mounts=True)


def test_a_containers_user_namespace_must_be_its_pods() -> None:
    pod = _pod_config()
    assert check_userns(_config(), pod) == MAPPED
    other = _config()
    other.linux.security_context.namespace_options.userns_options.uids[0].host_id = 400000
    unset = _config()
    unset.linux.security_context.namespace_options.ClearField("userns_options")
    for config in (other, unset):
        with pytest.raises(
            InvalidArgument, match=r"namespace_options\.userns_options differs from the pod's"
        ):
            check_userns(config, pod)
    node_pod = api_pb2.PodSandboxConfig()
    assert check_userns(unset, node_pod) is None
    with pytest.raises(InvalidArgument, match="differs from the pod's"):
        check_userns(_config(), node_pod)


# --- the kernel side (root, and a kernel with idmapped mounts) ------------------------------

NS_GET_USERNS = 0xB701


@pytest.fixture
def pinned(tmp_path: Path) -> Any:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    user, net = tmp_path / "userns", tmp_path / "netns"
    userns.pin(MAPPED, user, net)
    yield user, net
    userns.unpin(user)
    userns.unpin(net)


def test_the_pinned_user_namespace_has_the_mappings_and_owns_the_pods_netns(pinned: Any) -> None:
    user, net = pinned
    maps = "cat /proc/self/uid_map /proc/self/gid_map"
    probe = subprocess.run(
        ["nsenter", f"--user={user}", f"--net={net}", "--", "sh", "-c", maps],
        capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    assert probe.stdout.split() == ["0", "200000", "65536", "0", "300000", "65536"]
    fd = os.open(net, os.O_RDONLY)
    try:
        owner = fcntl.ioctl(fd, NS_GET_USERNS)
    finally:
        os.close(fd)
    try:
        assert os.fstat(owner).st_ino == user.stat().st_ino
    finally:
        os.close(owner)
    links = subprocess.run(["nsenter", f"--net={net}", "ip", "-o", "link"], capture_output=True, text=True)
    assert "lo:" in links.stdout and "UP" in links.stdout  # a working loopback, as for every pod


def test_an_idmapped_rootfs_shows_the_layers_as_the_pods_root(pinned: Any, tmp_path: Path) -> None:
    user, _ = pinned
    lower, top = tmp_path / "layer", tmp_path / "top"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc" / "os-release").write_text("ID=test\n")
    top.mkdir()
    target = tmp_path / "rootfs"
    idmap = rootfs.Idmap(user, tmp_path / "scratch", *MAPPED.root())
    try:
        rootfs.mount_overlay([top, lower], tmp_path / "upper", tmp_path / "work", target, idmap)
        for path in (target, target / "etc", target / "etc" / "os-release"):
            assert (path.stat().st_uid, path.stat().st_gid) == (200000, 300000)
        assert not (tmp_path / "scratch").exists()  # the idmapped binds are gone, the overlay stays
        # Root inside the pod writes into the rootfs; the upper layer keeps host IDs.
        # (From inside the rootfs: the dirs above it are the host root's, 0700 for pytest's.)
        write = ["nsenter", f"--user={user}", f"--wd={target}", "--", "sh", "-c", "echo x > etc/new"]
        subprocess.run(write, check=True, timeout=10)
        st = (tmp_path / "upper" / "etc" / "new").stat()
        assert (st.st_uid, st.st_gid) == (200000, 300000)
    finally:
        rootfs.unmount(str(target))
