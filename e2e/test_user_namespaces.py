"""A pod with its own user namespace (hostUsers: false) on the real daemon.

runc 1.1.5 here joins user namespaces but cannot idmap mounts, so crib refuses such pods
with it (test_kubelet_contract). What crib itself builds is tested here under a handler
whose `features` answer claims idmapped mounts (runc 1.2's answer) and which otherwise is
runc 1.1.5: the pinned user namespace with the kubelet's mappings, the pod's netns owned by
it, the pause and the containers in it, the idmapped overlay rootfs (the image's root-owned
files are root's inside and writable), the pod's files readable, and nothing left after,
also when RunPodSandbox fails midway or cribd is killed and restarted in between.
Volumes with uidMappings need runc >= 1.2 to idmap them and are not tried.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import grpc
import pytest

from crib.proto.cri import api_pb2
from e2e.harness.cleanup import mounts_under
from e2e.harness.cribd import Cribd
from e2e.harness.machine import machine_state
from e2e.harness.network import PodNetwork
from e2e.harness.registry import Registry
from e2e.images import builder
from e2e.pods import (
    container_config,
    exec_sync,
    list_pods,
    pod_config,
    push_and_pull,
    remove_pod,
    run_container,
    run_pod,
)

UIDS = api_pb2.IDMapping(container_id=0, host_id=1_000_000, length=65536)
GIDS = api_pb2.IDMapping(container_id=0, host_id=1_000_000, length=65536)
CLAIMS_IDMAP = """#!/bin/sh
# runc 1.1.5 answering `features` as runc 1.2 does (idmapped mounts); otherwise itself.
if [ "$1" = features ]; then
  runc features | {python} -c 'import json, sys
d = json.load(sys.stdin)
d.setdefault("linux", {{}})["mountExtensions"] = {{"idmap": {{"enabled": True}}}}
print(json.dumps(d))'
  exit
fi
exec runc "$@"
"""


def _daemon(
    cribd_factory: Callable[..., Cribd],
    pod_network: PodNetwork,
    tmp_path: Path,
    failpoints: str = "",
    pass_fds: Sequence[int] = (),
) -> Cribd:
    wrapper = tmp_path / "runc-idmap"
    wrapper.write_text(CLAIMS_IDMAP.format(python=sys.executable))
    wrapper.chmod(0o755)
    daemon = cribd_factory(
        f'[runtime.handlers.runc]\nbinary = "runc"\n[runtime.handlers.idmap]\nbinary = "{wrapper}"\n'
    )
    # runc binds the rootfs from inside the pod's user namespace: the path to the bundles must be
    # searchable by the pod's root, as /run/crib (0755) is and this mkdtemp dir (0700) is not.
    daemon.dir.chmod(0o711)
    pod_network.install(daemon.cni_conf_dir)
    return daemon.start(env={"CRIB_FAILPOINTS": failpoints} if failpoints else None, pass_fds=pass_fds)


@pytest.fixture
def daemon(cribd_factory: Callable[..., Cribd], pod_network: PodNetwork, tmp_path: Path) -> Iterator[Cribd]:
    yield _daemon(cribd_factory, pod_network, tmp_path)


def _userns_pod(name: str, host_network: bool = False) -> api_pb2.PodSandboxConfig:
    config = pod_config(name, host_network=host_network)
    opts = config.linux.security_context.namespace_options
    opts.userns_options.mode = api_pb2.POD
    opts.userns_options.uids.append(UIDS)
    opts.userns_options.gids.append(GIDS)
    return config


def _in_userns(config: api_pb2.ContainerConfig) -> api_pb2.ContainerConfig:
    opts = config.linux.security_context.namespace_options
    opts.userns_options.mode = api_pb2.POD
    opts.userns_options.uids.append(UIDS)
    opts.userns_options.gids.append(GIDS)
    return config


def test_status_advertises_user_namespaces_only_for_the_handler_that_idmaps(daemon: Cribd) -> None:
    status = daemon.runtime.Status(api_pb2.StatusRequest(), timeout=10)
    features = {h.name: h.features.user_namespaces for h in status.runtime_handlers}
    assert features["idmap"] is True and features["runc"] is False


@pytest.mark.parametrize("host_network", [False, True], ids=["pod-network", "host-network"])
def test_a_pod_runs_in_its_own_user_namespace(
    daemon: Cribd, pod_network: PodNetwork, registry: Registry, host_network: bool
) -> None:
    image, _ = push_and_pull(
        daemon, registry.url, registry.host, "e2e/userns-busybox", builder.busybox_image()
    )
    before = _without_images(machine_state(daemon, pod_network))
    pod_id = run_pod(daemon, _userns_pod(f"userns-{int(host_network)}", host_network), handler="idmap")
    try:
        sandbox_dir = daemon.state / "sandboxes" / pod_id
        assert (sandbox_dir / "userns").exists()
        config = _in_userns(container_config("c", ["sleep", "1000"], image=image))
        config.working_dir = "/made/here"
        cid = run_container(daemon, pod_id, config)
        r = exec_sync(daemon, cid, ["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u"])
        assert r.exit_code == 0, r.stderr
        assert r.stdout.decode().split() == ["0", "1000000", "65536", "0", "1000000", "65536", "0"]
        # The image's files are root's inside (the idmapped layers), and root may write.
        script = "stat -c %u:%g /bin /etc; touch /etc/new && stat -c %u /etc/new"
        r = exec_sync(daemon, cid, ["sh", "-c", script])
        assert r.exit_code == 0, r.stderr
        assert r.stdout.decode().split() == ["0:0", "0:0", "0"]
        # Its new working dir is root's inside; the pod's files are readable.
        script = "pwd; stat -c %u /made/here; cat /etc/hostname /etc/hosts /etc/resolv.conf >/dev/null"
        r = exec_sync(daemon, cid, ["sh", "-c", script])
        assert r.exit_code == 0, r.stderr
        assert r.stdout.decode().split() == ["/made/here", "0"]
        # The pause and the container share the pinned namespace.
        request = api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True)
        pause_pid = json.loads(daemon.runtime.PodSandboxStatus(request, timeout=10).info["info"])["pid"]
        pinned = (sandbox_dir / "userns").stat().st_ino
        assert Path(f"/proc/{pause_pid}/ns/user").stat().st_ino == pinned
        # A container whose user namespace is not its pod's is refused, naming the field.
        with pytest.raises(grpc.RpcError) as refused:
            run_container(daemon, pod_id, container_config("host-users", ["sleep", "1000"], image=image))
        err: grpc.Call = refused.value  # type: ignore[assignment]
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "userns_options differs from the pod's" in (err.details() or "")
    finally:
        remove_pod(daemon, pod_id)
    assert list_pods(daemon) == []
    assert not mounts_under(daemon.state) and not mounts_under(daemon.root)
    assert _without_images(machine_state(daemon, pod_network)) == before


def test_pods_start_with_over_1024_descriptors_open(
    cribd_factory: Callable[..., Cribd], pod_network: PodNetwork, registry: Registry, tmp_path: Path
) -> None:
    # At node scale cribd holds thousands of descriptors (the stats calls' cgroup files, the
    # conmons' pipes): every wait on a child's pipe must work past select()'s limit of 1024.
    # Found under a kubelet with 100 pods: StartContainer failed with "filedescriptor out of
    # range in select()" once the stats calls kept their files. The descriptors given to cribd
    # here push every one it opens past 1024: conmon's sync pipe (CreateContainer and
    # StartContainer) and the user namespace helper's pipe (RunPodSandbox).
    held = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
    try:
        daemon = _daemon(cribd_factory, pod_network, tmp_path, pass_fds=held)
    finally:
        for fd in held:
            os.close(fd)
    assert daemon.proc is not None
    assert len(os.listdir(f"/proc/{daemon.proc.pid}/fd")) > 1100
    image, _ = push_and_pull(daemon, registry.url, registry.host, "e2e/fds-busybox", builder.busybox_image())
    pod_id = run_pod(daemon, _userns_pod("many-fds"), handler="idmap")
    try:
        cid = run_container(daemon, pod_id, _in_userns(container_config("c", ["sleep", "1000"], image=image)))
        assert exec_sync(daemon, cid, ["cat", "/proc/self/uid_map"]).stdout.split() == [
            b"0",
            b"1000000",
            b"65536",
        ]
    finally:
        remove_pod(daemon, pod_id)
    assert "select()" not in daemon.log_text()


def _without_images(state: dict[str, list[str]]) -> dict[str, list[str]]:
    # The pause image, built by the first pod, stays: it is the node's.
    return {k: v for k, v in state.items() if k not in ("blobs", "layers")}


def test_a_failed_run_unpins_the_user_namespace(
    cribd_factory: Callable[..., Cribd], pod_network: PodNetwork, tmp_path: Path
) -> None:
    # The pause has run in the pinned namespace when the failpoint fires: the undo takes it all.
    daemon = _daemon(cribd_factory, pod_network, tmp_path, "sandbox.pause_run=error@1")
    before = _without_images(machine_state(daemon, pod_network))
    with pytest.raises(grpc.RpcError) as failed:
        run_pod(daemon, _userns_pod("userns-fails"), handler="idmap")
    assert "failpoint sandbox.pause_run" in (failed.value.details() or "")  # type: ignore[attr-defined]
    assert list_pods(daemon) == []
    assert _without_images(machine_state(daemon, pod_network)) == before
    pod_id = run_pod(daemon, _userns_pod("userns-fails"), handler="idmap")
    remove_pod(daemon, pod_id)
    assert _without_images(machine_state(daemon, pod_network)) == before


def test_the_pinned_namespace_outlives_a_cribd_restart(
    daemon: Cribd, pod_network: PodNetwork, registry: Registry
) -> None:
    image, _ = push_and_pull(
        daemon, registry.url, registry.host, "e2e/userns-busybox", builder.busybox_image()
    )
    before = _without_images(machine_state(daemon, pod_network))
    pod_id = run_pod(daemon, _userns_pod("userns-restart"), handler="idmap")
    try:
        assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
        daemon.start()
        # A container made after the restart gets the idmapped rootfs from the pinned namespace.
        cid = run_container(daemon, pod_id, _in_userns(container_config("c", ["sleep", "1000"], image=image)))
        r = exec_sync(daemon, cid, ["sh", "-c", "head -c 100 /proc/self/uid_map; stat -c %u /etc"])
        assert r.exit_code == 0, r.stderr
        assert r.stdout.decode().split() == ["0", "1000000", "65536", "0"]
    finally:
        remove_pod(daemon, pod_id)
    assert _without_images(machine_state(daemon, pod_network)) == before
