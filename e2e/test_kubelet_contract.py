"""The kubelet 1.36 contract on the real daemon: what crib applies, and what it refuses aloud.

- Image volumes: an image's layers mounted read-only, a sub path inside them, the image
  held while mounted.
- CDI devices from a spec file: the device node, its cgroup rule and the env edits.
- Refusals the kubelet shows as events: user namespaces (runc 1.1.5 has no idmapped
  mounts; a CONTAINER mode is INVALID_ARGUMENT anywhere), SELinux labels (no SELinux here), an AppArmor
  Localhost profile on a node without AppArmor, propagation from a private mount, an
  unknown CDI device, an image volume sub path that is missing or leaves the image.
  Each leaves nothing behind, and the pod takes the next container.
- Status: supplemental_groups_policy advertised, user namespaces not (runc 1.1.5); ContainerStatus
  reports the stop signal actually used.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from crib.proto.cri import api_pb2
from e2e.harness.bind import self_bind
from e2e.harness.cleanup import mounts_under
from e2e.harness.cribd import Cribd
from e2e.harness.network import PodNetwork
from e2e.harness.registry import Registry
from e2e.images import builder
from e2e.pods import (
    container_config,
    container_status,
    create_container,
    exec_sync,
    list_pods,
    pod_config,
    push_and_pull,
    remove_pod,
    run_container,
    run_pod,
)

CDI_DEVICE = "crib.e2e/test=null"


@dataclass
class Bed:
    daemon: Cribd
    cdi_dir: Path
    busybox: str
    data: str  # the image volume's image, by the image_ref PullImage gave


@pytest.fixture
def bed(
    cribd_factory: Callable[..., Cribd], pod_network: PodNetwork, registry: Registry, tmp_path: Path
) -> Bed:
    cdi_dir = tmp_path / "cdi"
    cdi_dir.mkdir()
    daemon = cribd_factory(f'[runtime]\ncdi_spec_dirs = ["{cdi_dir}"]\n')
    pod_network.install(daemon.cni_conf_dir)
    daemon.start()
    busybox, _ = push_and_pull(
        daemon,
        registry.url,
        registry.host,
        "e2e/contract-busybox",
        builder.busybox_image(stop_signal="SIGQUIT"),
    )
    data_image = builder.build_image(
        builder.ImageRecipe(
            [
                builder.LayerSpec(
                    [
                        builder.Entry("data", "dir"),
                        builder.Entry("data/a.txt", data=b"lower\n"),
                        builder.Entry("data/out", "symlink", linkname="/etc"),
                    ]
                ),
                builder.LayerSpec(
                    [builder.Entry("data/a.txt", data=b"upper\n"), builder.Entry("b.txt", data=b"b\n")]
                ),
            ]
        )
    )
    _, data = push_and_pull(daemon, registry.url, registry.host, "e2e/contract-data", data_image)
    return Bed(daemon, cdi_dir, busybox, data)


def _refused(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value  # type: ignore[return-value]


def _containers(daemon: Cribd) -> list[api_pb2.Container]:
    return list(daemon.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers)


def _image_volume(target: str, image: str, sub_path: str = "") -> api_pb2.Mount:
    return api_pb2.Mount(container_path=target, image=api_pb2.ImageSpec(image=image), image_sub_path=sub_path)


def _remove_image(daemon: Cribd, image: str) -> None:
    daemon.images.RemoveImage(api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=image)), timeout=30)


def _image_present(daemon: Cribd, image: str) -> bool:
    status = daemon.images.ImageStatus(
        api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=image)), timeout=10
    )
    return status.HasField("image")


def test_an_image_volume_is_read_only_and_holds_its_image(bed: Bed) -> None:
    daemon = bed.daemon
    pod_id = run_pod(daemon, pod_config("imagevol"))
    try:
        config = container_config(
            "reader",
            ["sleep", "1000"],
            image=bed.busybox,
            mounts=[_image_volume("/vol", bed.data), _image_volume("/sub", bed.data, "data")],
        )
        cid = run_container(daemon, pod_id, config)
        # Both layers, the upper one winning; the sub path is the image's data/ alone.
        assert exec_sync(daemon, cid, ["cat", "/vol/data/a.txt", "/vol/b.txt"]).stdout == b"upper\nb\n"
        assert exec_sync(daemon, cid, ["cat", "/sub/a.txt"]).stdout == b"upper\n"
        assert exec_sync(daemon, cid, ["ls", "/sub"]).stdout.split() == [b"a.txt", b"out"]
        written = exec_sync(daemon, cid, ["touch", "/vol/new"])
        assert written.exit_code != 0 and b"Read-only file system" in written.stderr
        mounted = mounts_under(daemon.state / "containers" / cid / "image-volumes")
        assert len(mounted) == 2

        # Held while mounted, even by tag: the kubelet's image GC gets a clear refusal.
        err = _refused(lambda: _remove_image(daemon, bed.data))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "image volume" in (err.details() or "")
        assert _image_present(daemon, bed.data)

        daemon.runtime.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=5), timeout=30)
        daemon.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid), timeout=30)
        assert mounts_under(daemon.state / "containers" / cid) == []
        _remove_image(daemon, bed.data)
        assert not _image_present(daemon, bed.data)
    finally:
        remove_pod(daemon, pod_id)


def test_image_volume_mistakes_are_refused_and_leave_nothing(bed: Bed) -> None:
    daemon = bed.daemon
    pod_id = run_pod(daemon, pod_config("imagevol-bad"))
    try:
        cases = {
            # A symlink in the image to /etc resolves inside the image, which has no etc/.
            "escape": (
                _image_volume("/v", bed.data, "data/out"),
                grpc.StatusCode.INVALID_ARGUMENT,
                "data/out",
            ),
            "missing": (_image_volume("/v", bed.data, "nope"), grpc.StatusCode.INVALID_ARGUMENT, "nope"),
            "leaves": (_image_volume("/v", bed.data, "../x"), grpc.StatusCode.INVALID_ARGUMENT, "../x"),
            "unpulled": (_image_volume("/v", "example.invalid/never:1"), grpc.StatusCode.NOT_FOUND, "never"),
        }
        for name, (mount, code, named) in cases.items():
            config = container_config(name, ["sleep", "1000"], image=bed.busybox, mounts=[mount])
            err = _refused(lambda config=config: create_container(daemon, pod_id, config))
            assert (err.code(), named in (err.details() or "")) == (code, True), (name, err.details())
        assert _containers(daemon) == []
        # Only the pause container's rootfs is mounted.
        assert mounts_under(daemon.state / "containers") == [
            str(daemon.state / "containers" / pod_id / "bundle" / "rootfs")
        ]
        # The pod is fine: the kubelet's retry with a good config works.
        ok = container_config(
            "good", ["sleep", "1000"], image=bed.busybox, mounts=[_image_volume("/v", bed.data)]
        )
        run_container(daemon, pod_id, ok)
    finally:
        remove_pod(daemon, pod_id)


def _write_cdi_spec(cdi_dir: Path) -> None:
    spec = {
        "cdiVersion": "0.6.0",
        "kind": "crib.e2e/test",
        "devices": [
            {
                "name": "null",
                "containerEdits": {
                    "deviceNodes": [{"path": "/dev/cdi-test", "hostPath": "/dev/null"}],
                    "env": ["CDI_TEST=null-device"],
                },
            }
        ],
        "containerEdits": {"env": ["CDI_VENDOR=crib.e2e"]},
    }
    (cdi_dir / "crib-e2e.json").write_text(json.dumps(spec))


def test_a_cdi_device_reaches_the_container(bed: Bed) -> None:
    daemon = bed.daemon
    _write_cdi_spec(bed.cdi_dir)  # after cribd started: specs are read when asked for
    pod_id = run_pod(daemon, pod_config("cdi"))
    try:
        config = container_config("gpu", ["sleep", "1000"], image=bed.busybox)
        config.CDI_devices.append(api_pb2.CDIDevice(name=CDI_DEVICE))
        cid = run_container(daemon, pod_id, config)
        listing = exec_sync(daemon, cid, ["ls", "-l", "/dev/cdi-test"]).stdout.decode()
        assert listing.startswith("c") and "1,   3" in listing, listing
        # The device cgroup lets it be written, as /dev/null.
        assert exec_sync(daemon, cid, ["sh", "-c", "echo x > /dev/cdi-test"]).exit_code == 0
        env = exec_sync(daemon, cid, ["env"]).stdout.decode().split()
        assert "CDI_TEST=null-device" in env and "CDI_VENDOR=crib.e2e" in env

        unknown = container_config("nogpu", ["sleep", "1000"], image=bed.busybox)
        unknown.CDI_devices.append(api_pb2.CDIDevice(name="crib.e2e/test=absent"))
        err = _refused(lambda: create_container(daemon, pod_id, unknown))
        assert err.code() == grpc.StatusCode.NOT_FOUND and "crib.e2e/test=absent" in (err.details() or "")
        assert [c.id for c in _containers(daemon)] == [cid]
    finally:
        remove_pod(daemon, pod_id)


def test_propagation_from_a_private_mount_is_refused(bed: Bed, tmp_path: Path) -> None:
    daemon = bed.daemon
    source = tmp_path / "private"
    source.mkdir()
    pod_id = run_pod(daemon, pod_config("propagation-private"))
    try:
        with self_bind(source, "private"):
            for mode, word in (
                (api_pb2.PROPAGATION_HOST_TO_CONTAINER, "HostToContainer"),
                (api_pb2.PROPAGATION_BIDIRECTIONAL, "Bidirectional"),
            ):
                mount = api_pb2.Mount(container_path="/data", host_path=str(source), propagation=mode)
                config = container_config("c", ["sleep", "1000"], image=bed.busybox, mounts=[mount])
                err = _refused(lambda config=config: create_container(daemon, pod_id, config))
                details = err.details() or ""
                assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, details
                assert word in details and str(source) in details and "shared" in details
            assert _containers(daemon) == []
    finally:
        remove_pod(daemon, pod_id)


def test_security_requests_crib_cannot_apply_are_refused(bed: Bed) -> None:
    daemon = bed.daemon
    userns = pod_config("userns")
    opts = userns.linux.security_context.namespace_options
    opts.userns_options.mode = api_pb2.POD
    opts.userns_options.uids.append(api_pb2.IDMapping(host_id=100000, container_id=0, length=65536))
    opts.userns_options.gids.append(api_pb2.IDMapping(host_id=100000, container_id=0, length=65536))
    selinux = pod_config("selinux")
    selinux.linux.security_context.selinux_options.level = "s0:c1,c2"
    for config, named in ((userns, "userns_options"), (selinux, "selinux_options")):
        err = _refused(lambda config=config: run_pod(daemon, config))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and named in (err.details() or "")
    # Modes containerd refuses whatever the runtime: a user namespace is per pod or the node's.
    per_container = pod_config("userns-container")
    per_container.linux.security_context.namespace_options.userns_options.mode = api_pb2.CONTAINER
    err = _refused(lambda: run_pod(daemon, per_container))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert "userns_options.mode CONTAINER" in (err.details() or "")
    assert list_pods(daemon) == []
    assert not list((daemon.state / "sandboxes").glob("*/netns"))

    pod_id = run_pod(daemon, pod_config("lsm"))
    try:
        label = container_config("labelled", ["sleep", "1000"], image=bed.busybox)
        label.linux.security_context.selinux_options.type = "container_t"
        refusals = [(label, "selinux_options")]
        if not Path("/sys/module/apparmor").exists():
            profile = container_config("confined", ["sleep", "1000"], image=bed.busybox)
            profile.linux.security_context.apparmor.profile_type = api_pb2.SecurityProfile.Localhost
            profile.linux.security_context.apparmor.localhost_ref = "localhost/my-profile"
            refusals.append((profile, "apparmor profile localhost/my-profile"))
        for config, named in refusals:
            err = _refused(lambda config=config: create_container(daemon, pod_id, config))
            assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and named in (err.details() or "")
        assert _containers(daemon) == []
    finally:
        remove_pod(daemon, pod_id)


def test_status_features_and_the_stop_signal_used(bed: Bed) -> None:
    daemon = bed.daemon
    status = daemon.runtime.Status(api_pb2.StatusRequest(), timeout=10)
    assert status.features.supplemental_groups_policy
    assert status.runtime_handlers and not any(h.features.user_namespaces for h in status.runtime_handlers)
    pod_id = run_pod(daemon, pod_config("stopsignal"))
    try:
        # The image says SIGQUIT and the config nothing: StopContainer sends SIGQUIT, and says so.
        cid = run_container(daemon, pod_id, container_config("c", ["sleep", "1000"], image=bed.busybox))
        assert container_status(daemon, cid).status.stop_signal == api_pb2.SIGQUIT
    finally:
        remove_pod(daemon, pod_id)
