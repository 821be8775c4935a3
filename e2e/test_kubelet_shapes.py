"""CRI calls shaped as the kubelet makes them, which critest and crictl never do.

- The pod cgroup: the kubelet makes `<root>/kubepods/<qos>/pod<uid>` (cgroupfs
  driver) before RunPodSandbox and passes it as `cgroup_parent`; pause and
  containers go under it, PodSandboxStats reads it, UpdatePodSandboxResources
  writes it.
- Host-path mounts with each propagation mode, a device, a privileged
  container, a Localhost seccomp profile, AppArmor where the kernel has it.
- The image comes through PullImage from the test registry, as on a node.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from crib.proto.cri import api_pb2
from e2e.harness.bind import self_bind
from e2e.harness.cribd import Cribd
from e2e.harness.registry import Registry
from e2e.harness.wait import wait_until
from e2e.images import builder
from e2e.kube import host
from e2e.pods import (
    container_config,
    container_status,
    exec_sync,
    pod_config,
    pod_status,
    push_and_pull,
    remove_pod,
    run_container,
    run_pod,
)


@pytest.fixture
def pulled(net_cribd: Cribd, registry: Registry) -> tuple[Cribd, str]:
    """cribd with busybox pulled through PullImage from the test registry; (daemon, image ref)."""
    extra = builder.LayerSpec(
        [
            builder.Entry("etc/crib-e2e", data=b"visible unless masked\n"),
            builder.Entry("usr/local", "dir"),
            builder.Entry("usr/local/bin", "dir"),
            builder.Entry("usr/local/bin/hello", data=b"#!/bin/sh\necho hello\n", mode=0o755),
        ]
    )
    image = builder.build_image(builder.ImageRecipe([builder.LayerSpec(builder.busybox_rootfs()), extra]))
    ref, pulled = push_and_pull(net_cribd, registry.url, registry.host, "e2e/kubelet-busybox", image)
    status = net_cribd.images.ImageStatus(
        api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=ref)), timeout=10
    ).image
    assert status.id == pulled
    return net_cribd, ref


@pytest.fixture
def pod_cgroup() -> Iterator[str]:
    """The pod cgroup as the kubelet makes it (cgroupfs driver), removed afterwards."""
    root = f"crib-e2e-kubepods-{uuid.uuid4().hex[:8]}"
    parent = f"/{root}/kubepods/burstable/pod{uuid.uuid4()}"
    host.make_cgroup_root(root)
    _make_pod_cgroup(parent)
    yield parent
    host.remove_cgroup_root(root)


def _make_pod_cgroup(parent: str) -> None:
    for hierarchy in host.cgroup_hierarchies():
        d = hierarchy / parent.lstrip("/")
        d.mkdir(parents=True, exist_ok=True)
        for key in ("cpuset.cpus", "cpuset.mems"):
            for level in (d.parent.parent, d.parent, d):
                if (level / key).exists() and not (level / key).read_text().strip():
                    (level / key).write_text((hierarchy / key).read_text())


def _cgroup_of(pid: int, controller: str) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    raise KeyError(controller)


def _pid(daemon: Cribd, cid: str) -> int:
    return int(json.loads(container_status(daemon, cid, verbose=True).info["info"])["pid"])


def test_pod_cgroup_as_the_kubelet_sets_it(pulled: tuple[Cribd, str], pod_cgroup: str) -> None:
    daemon, image = pulled
    config = pod_config("cgroups")
    config.linux.cgroup_parent = pod_cgroup
    pod_id = run_pod(daemon, config)
    try:
        status, info = pod_status(daemon, pod_id)
        cid = run_container(
            daemon,
            pod_id,
            # The shell holds 12 MB in x; using x after the sleep keeps ash from exec'ing
            # the sleep in its place, which would free them. 4 MB above the 8 MB looked for: a
            # v1 memory cgroup's usage drops by what each CPU's charge cache held when the
            # caches drain (up to 64 pages a CPU), and a pod at 8.0 MB read 7.93 MB a moment later.
            container_config(
                "main",
                ["/bin/sh", "-c", "x=$(head -c 12000000 /dev/zero | tr '\\0' a); sleep 1000; echo ${#x}"],
                image=image,
            ),
        )
        pid = _pid(daemon, cid)
        # The container and the pause process are both below the pod cgroup, in every controller.
        for controller in ("memory", "cpu", "pids"):
            assert _cgroup_of(pid, controller) == f"{pod_cgroup}/{cid}"
            assert _cgroup_of(info["pid"], controller).startswith(f"{pod_cgroup}/")
        memory = Path("/sys/fs/cgroup/memory") / pod_cgroup.lstrip("/")
        wait_until(lambda: int((memory / "memory.usage_in_bytes").read_text()) > 8_000_000, timeout=20)
        # PodSandboxStats reads the pod cgroup: the whole pod, pause included.
        stats = daemon.runtime.PodSandboxStats(
            api_pb2.PodSandboxStatsRequest(pod_sandbox_id=pod_id), timeout=10
        ).stats
        assert stats.linux.memory.usage_bytes.value > 8_000_000
        assert stats.linux.cpu.usage_core_nano_seconds.value > 0
        assert {c.attributes.id for c in stats.linux.containers} == {cid}
        # UpdatePodSandboxResources writes the pod cgroup's own files, as the kubelet's resize does.
        res = api_pb2.LinuxContainerResources(cpu_shares=512, cpu_quota=50_000, cpu_period=100_000,
                                              memory_limit_in_bytes=256 << 20)  # fmt: skip
        daemon.runtime.UpdatePodSandboxResources(
            api_pb2.UpdatePodSandboxResourcesRequest(pod_sandbox_id=pod_id, resources=res), timeout=10
        )
        cpu = Path("/sys/fs/cgroup/cpu") / pod_cgroup.lstrip("/")
        assert (cpu / "cpu.shares").read_text().strip() == "512"
        assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert (cpu / "cpu.cfs_period_us").read_text().strip() == "100000"
        assert (memory / "memory.limit_in_bytes").read_text().strip() == str(256 << 20)
        assert status.linux.namespaces.options.network == api_pb2.POD
    finally:
        remove_pod(daemon, pod_id)
    # Removal leaves the kubelet's pod cgroup to the kubelet, with nothing running in it.
    for hierarchy in host.cgroup_hierarchies():
        procs = hierarchy / pod_cgroup.lstrip("/") / "cgroup.procs"
        if procs.exists():
            assert procs.read_text() == ""


def _open_under(pid: int, directory: Path) -> list[str]:
    """The files under `directory` that process `pid` holds open."""
    out = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith(f"{directory}/"):
                out.append(target)
    return out


def test_a_pod_cgroup_made_again_is_read_afresh(pulled: tuple[Cribd, str], pod_cgroup: str) -> None:
    # cribd keeps the cgroup files the stats calls read open for the next poll. The kubelet
    # removes a pod's cgroup once the pod is gone, and makes one at the same path when a pod
    # of the same UID comes back: the kept files must neither keep the first from going nor
    # be read for the second.
    daemon, image = pulled
    assert daemon.proc is not None
    memory = Path("/sys/fs/cgroup/memory") / pod_cgroup.lstrip("/")

    def pod_stats(pod_id: str) -> api_pb2.PodSandboxStats:
        return daemon.runtime.PodSandboxStats(
            api_pb2.PodSandboxStatsRequest(pod_sandbox_id=pod_id), timeout=10
        ).stats

    config = pod_config("cgroup-again")
    config.linux.cgroup_parent = pod_cgroup
    first = run_pod(daemon, config)
    try:
        run_container(
            daemon,
            first,
            container_config(
                "big",
                ["/bin/sh", "-c", "x=$(head -c 8000000 /dev/zero | tr '\\0' a); sleep 1000; echo ${#x}"],
                image=image,
            ),
        )
        wait_until(lambda: int((memory / "memory.usage_in_bytes").read_text()) > 8_000_000, timeout=20)
        assert pod_stats(first).linux.memory.usage_bytes.value > 8_000_000
        assert _open_under(daemon.proc.pid, memory), "the pod cgroup's files are read anew each call"
    finally:
        remove_pod(daemon, first)
    # As the kubelet does: the pod cgroup goes, in every hierarchy, while cribd holds its files.
    for hierarchy in host.cgroup_hierarchies():
        (hierarchy / pod_cgroup.lstrip("/")).rmdir()
    _make_pod_cgroup(pod_cgroup)
    second = run_pod(daemon, config)
    try:
        run_container(daemon, second, container_config("small", ["sleep", "1000"], image=image))
        stats = pod_stats(second)
        assert stats.linux.HasField("memory") and stats.linux.memory.HasField("usage_bytes")
        # The new cgroup's usage: a sleep and a pause, not the 8 MB the first pod held.
        assert 0 < stats.linux.memory.usage_bytes.value < 8_000_000
        assert stats.linux.cpu.usage_core_nano_seconds.value > 0
        assert stats.linux.process.process_count.value == 2
    finally:
        remove_pod(daemon, second)


def _mount(source: Path, target: str, propagation: int) -> api_pb2.Mount:
    return api_pb2.Mount(container_path=target, host_path=str(source), propagation=propagation)


def _privileged_pod(name: str) -> api_pb2.PodSandboxConfig:
    # The kubelet runs a privileged container only in a pod it marks privileged.
    config = pod_config(name)
    config.linux.security_context.privileged = True
    return config


def test_host_path_mounts_with_each_propagation(pulled: tuple[Cribd, str], tmp_path: Path) -> None:
    daemon, image = pulled
    dirs = {name: tmp_path / name for name in ("private", "h2c", "bidir")}
    for d in dirs.values():
        d.mkdir()
    pod_id = run_pod(daemon, _privileged_pod("propagation"))
    with self_bind(dirs["h2c"], "shared"), self_bind(dirs["bidir"], "shared"):
        try:
            priv = api_pb2.LinuxContainerSecurityContext(privileged=True)
            cid = run_container(
                daemon,
                pod_id,
                container_config(
                    "main",
                    ["sleep", "1000"],
                    image=image,
                    security=priv,
                    mounts=[
                        _mount(dirs["private"], "/private", api_pb2.PROPAGATION_PRIVATE),
                        _mount(dirs["h2c"], "/h2c", api_pb2.PROPAGATION_HOST_TO_CONTAINER),
                        _mount(dirs["bidir"], "/bidir", api_pb2.PROPAGATION_BIDIRECTIONAL),
                    ],
                ),
            )
            sub = {name: d / "sub" for name, d in dirs.items()}
            for s in sub.values():
                s.mkdir()
            # Mounts the host makes afterwards reach the container only through HostToContainer
            # and Bidirectional; one the container makes reaches the host only through Bidirectional.
            for name in ("private", "h2c"):
                subprocess.run(
                    ["mount", "-t", "tmpfs", f"host-{name}", str(sub[name])], check=True, timeout=30
                )
            try:
                mounts = exec_sync(daemon, cid, ["cat", "/proc/mounts"]).stdout.decode()
                assert " /h2c/sub tmpfs " in mounts
                assert " /private/sub " not in mounts
                r = exec_sync(daemon, cid, ["mount", "-t", "tmpfs", "from-container", "/bidir/sub"])
                assert r.exit_code == 0, r.stderr
                host_mounts = Path("/proc/self/mounts").read_text()
                assert f"from-container {sub['bidir']} tmpfs" in host_mounts
            finally:
                for s in sub.values():
                    subprocess.run(["umount", "-l", str(s)], capture_output=True, timeout=30)
        finally:
            remove_pod(daemon, pod_id)


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[str]:
    """A loop block device over a 1 MiB file of the test's (harmless to write, unlike a real disk)."""
    backing = tmp_path / "loop.img"
    backing.write_bytes(b"L" * (1 << 20))
    dev = subprocess.run(
        ["losetup", "-f", "--show", str(backing)], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    yield dev
    subprocess.run(["losetup", "-d", dev], capture_output=True, timeout=30)


def test_device_and_privileged_container(pulled: tuple[Cribd, str], loop_device: str) -> None:
    daemon, image = pulled
    pod_id = run_pod(daemon, _privileged_pod("devices"))
    try:
        # A block device runc's default rules do not allow, read-only under another name.
        plain = container_config("plain", ["sleep", "1000"], image=image)
        plain.devices.append(
            api_pb2.Device(host_path=loop_device, container_path="/dev/mydisk", permissions="r")
        )
        pid_plain = run_container(daemon, pod_id, plain)
        r = exec_sync(daemon, pid_plain, ["sh", "-c", "head -c 3 /dev/mydisk"])
        assert (r.exit_code, r.stdout) == (0, b"LLL"), r.stderr
        assert exec_sync(daemon, pid_plain, ["ls", "/dev/kmsg"]).exit_code != 0, "no host device but its own"
        # Read-only: the device cgroup refuses writes.
        write = exec_sync(daemon, pid_plain, ["sh", "-c", "echo x > /dev/mydisk"])
        assert write.exit_code != 0 and b"Operation not permitted" in write.stderr
        priv = container_config(
            "priv", ["sleep", "1000"], image=image,
            security=api_pb2.LinuxContainerSecurityContext(privileged=True),
        )  # fmt: skip
        cid = run_container(daemon, pod_id, priv)
        r = exec_sync(
            daemon, cid, ["sh", "-c", "ls /dev/kmsg && mkdir -p /m && mount -t tmpfs t /m && echo ok"]
        )
        assert (r.exit_code, r.stdout.split()[-1]) == (0, b"ok")
        status = exec_sync(daemon, cid, ["cat", "/proc/self/status"]).stdout.decode()
        assert "Seccomp:\t0" in status
    finally:
        remove_pod(daemon, pod_id)


def test_localhost_seccomp_profile(pulled: tuple[Cribd, str], tmp_path: Path) -> None:
    daemon, image = pulled
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(
        json.dumps(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
            }
        )
    )
    pod_id = run_pod(daemon, pod_config("seccomp"))
    try:
        sc = api_pb2.LinuxContainerSecurityContext(
            seccomp=api_pb2.SecurityProfile(
                profile_type=api_pb2.SecurityProfile.Localhost, localhost_ref=str(profile)
            )
        )
        cid = run_container(
            daemon, pod_id, container_config("main", ["sleep", "1000"], image=image, security=sc)
        )
        r = exec_sync(daemon, cid, ["mkdir", "/tmp/denied"])
        assert r.exit_code != 0 and b"Operation not permitted" in r.stderr
        assert exec_sync(daemon, cid, ["touch", "/tmp/allowed"]).exit_code == 0
        assert "Seccomp:\t2" in exec_sync(daemon, cid, ["cat", "/proc/self/status"]).stdout.decode()
    finally:
        remove_pod(daemon, pod_id)


def _apparmor_enabled() -> bool:
    try:
        return Path("/sys/module/apparmor/parameters/enabled").read_text().strip() == "Y"
    except OSError:
        return False


@pytest.mark.skipif(not _apparmor_enabled(), reason="this kernel has no AppArmor (/sys/module/apparmor)")
def test_apparmor_runtime_default(pulled: tuple[Cribd, str]) -> None:
    daemon, image = pulled
    pod_id = run_pod(daemon, pod_config("apparmor"))
    try:
        sc = api_pb2.LinuxContainerSecurityContext(
            apparmor=api_pb2.SecurityProfile(profile_type=api_pb2.SecurityProfile.RuntimeDefault)
        )
        cid = run_container(
            daemon, pod_id, container_config("main", ["sleep", "1000"], image=image, security=sc)
        )
        label = exec_sync(daemon, cid, ["cat", "/proc/self/attr/current"]).stdout.decode()
        assert label.strip() not in ("", "unconfined")
    finally:
        remove_pod(daemon, pod_id)


def test_masked_and_readonly_paths(pulled: tuple[Cribd, str]) -> None:
    """What critest's MaskedPaths spec means to check, without a shell that runs `ls` in-process."""
    daemon, image = pulled
    pod_id = run_pod(daemon, pod_config("masks"))
    try:
        # (runc follows links to mask their targets: busybox's applet links would mask busybox.)
        sc = api_pb2.LinuxContainerSecurityContext(
            masked_paths=["/usr/local/bin/hello", "/etc/crib-e2e", "/var"], readonly_paths=["/tmp"]
        )
        cid = run_container(
            daemon, pod_id, container_config("main", ["sleep", "1000"], image=image, security=sc)
        )
        # A masked file reads empty and cannot be run; a masked directory is empty.
        assert exec_sync(daemon, cid, ["cat", "/etc/crib-e2e"]).stdout == b""
        denied = exec_sync(daemon, cid, ["sh", "-c", "/usr/local/bin/hello"])
        assert denied.exit_code != 0 and b"Permission denied" in denied.stderr
        assert exec_sync(daemon, cid, ["ls", "-A", "/var"]).stdout == b""
        ro = exec_sync(daemon, cid, ["touch", "/tmp/x"])
        assert ro.exit_code != 0 and b"Read-only file system" in ro.stderr
        # Without the masks the same image shows the file and runs the script.
        other = run_container(daemon, pod_id, container_config("other", ["sleep", "1000"], image=image))
        assert exec_sync(daemon, other, ["cat", "/etc/crib-e2e"]).stdout == b"visible unless masked\n"
        assert exec_sync(daemon, other, ["/usr/local/bin/hello"]).stdout == b"hello\n"
    finally:
        remove_pod(daemon, pod_id)
