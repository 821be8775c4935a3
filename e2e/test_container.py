"""Containers over the real socket: runc under conmon in a real pod, checked from inside."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import grpc
import pytest

from crib.proto.cri import api_pb2
from e2e.harness.cribd import Cribd
from e2e.harness.network import PodNetwork
from e2e.harness.wait import wait_until
from e2e.pods import (
    container_config,
    container_status,
    create_container,
    exec_sync,
    grpc_code,
    import_busybox,
    pod_config,
    remove_pod,
    run_container,
    run_pod,
    start_container,
    wait_exited,
)

CRI_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+(?:Z|[+-]\d\d:\d\d)) (stdout|stderr) ([PF]) (.*)$"
)


@pytest.fixture
def pod(net_cribd: Cribd, tmp_path: Path) -> tuple[Cribd, str]:
    import_busybox(net_cribd)
    config = pod_config("ctr-pod")
    config.log_directory = str(tmp_path / "logs")
    config.linux.security_context.namespace_options.pid = api_pb2.POD
    pod_id = run_pod(net_cribd, config)
    yield net_cribd, pod_id
    remove_pod(net_cribd, pod_id)


def _log_lines(path: str) -> list[tuple[str, str, str]]:
    out = []
    for line in Path(path).read_text().splitlines():
        m = CRI_LINE.match(line)
        assert m, f"not a CRI log line: {line!r}"
        out.append((m.group(2), m.group(3), m.group(4)))
    return out


def test_command_args_env_workdir_and_logs(pod: tuple[Cribd, str]) -> None:
    daemon, pod_id = pod
    script = 'echo "args:$0 $1"; echo "env:$GREETING"; pwd; echo oops >&2; printf partial; exit 3'
    cid = run_container(
        daemon,
        pod_id,
        container_config(
            "hello",
            ["/bin/sh", "-c", script],
            args=["first", "second"],
            env={"GREETING": "hi"},
            working_dir="/var/lib/made-for-me",
        ),
    )
    status = wait_exited(daemon, cid)
    assert status.exit_code == 3 and status.reason == "Error"
    assert status.started_at >= status.created_at > 0 and status.finished_at >= status.started_at
    lines = _log_lines(status.log_path)
    assert ("stdout", "F", "args:first second") in lines
    assert ("stdout", "F", "env:hi") in lines
    assert ("stdout", "F", "/var/lib/made-for-me") in lines
    assert ("stderr", "F", "oops") in lines
    assert ("stdout", "P", "partial") in lines
    assert status.image.image == "crib.e2e/busybox:1"
    assert status.image_id.startswith("sha256:") and status.image_ref


def test_user_groups_capabilities_and_readonly_rootfs(pod: tuple[Cribd, str]) -> None:
    daemon, pod_id = pod
    security = api_pb2.LinuxContainerSecurityContext(
        run_as_user=api_pb2.Int64Value(value=33),
        supplemental_groups=[1234],
        readonly_rootfs=True,
        no_new_privs=True,
        capabilities=api_pb2.Capability(add_capabilities=["NET_ADMIN"], drop_capabilities=["CHOWN"]),
    )
    cid = run_container(daemon, pod_id, container_config("sec", ["/bin/sleep", "1000"], security=security))
    assert exec_sync(daemon, cid, ["id", "-u"]).stdout.decode().strip() == "33"
    groups = exec_sync(daemon, cid, ["id", "-G"]).stdout.decode().split()
    assert groups[0] == "33" and "1234" in groups
    status_file = exec_sync(daemon, cid, ["cat", "/proc/self/status"]).stdout.decode()
    fields = dict(line.split(":", 1) for line in status_file.splitlines() if ":" in line)
    assert fields["NoNewPrivs"].strip() == "1"
    bounding = int(fields["CapBnd"].strip(), 16)
    assert bounding & (1 << 12)  # CAP_NET_ADMIN added
    assert not bounding & (1 << 0)  # CAP_CHOWN dropped
    assert bounding & (1 << 1)  # CAP_DAC_OVERRIDE kept from the defaults
    assert fields["Seccomp"].strip() == "0"  # no profile asked for: unconfined, as containerd
    write = exec_sync(daemon, cid, ["touch", "/etc/x"])
    assert write.exit_code != 0 and b"Read-only file system" in write.stderr
    st = container_status(daemon, cid).status
    assert (st.user.linux.uid, st.user.linux.gid) == (33, 33)
    assert 1234 in st.user.linux.supplemental_groups


def test_seccomp_runtime_default_blocks_namespaces(pod: tuple[Cribd, str]) -> None:
    daemon, pod_id = pod
    security = api_pb2.LinuxContainerSecurityContext(
        seccomp=api_pb2.SecurityProfile(profile_type=api_pb2.SecurityProfile.RuntimeDefault)
    )
    cid = run_container(daemon, pod_id, container_config("sc", ["/bin/sleep", "1000"], security=security))
    status = exec_sync(daemon, cid, ["grep", "Seccomp:", "/proc/self/status"]).stdout.decode()
    assert status.split()[-1] == "2"
    assert exec_sync(daemon, cid, ["unshare", "-n", "true"]).exit_code != 0
    assert exec_sync(daemon, cid, ["true"]).exit_code == 0


def test_stop_kills_after_the_timeout_and_names_are_reserved(pod: tuple[Cribd, str]) -> None:
    daemon, pod_id = pod
    config = container_config("stubborn", ["/bin/sh", "-c", 'trap "" TERM; while true; do sleep 1; done'])
    cid = run_container(daemon, pod_id, config)
    assert grpc_code(lambda: create_container(daemon, pod_id, config)) == grpc.StatusCode.ALREADY_EXISTS
    pid = int(json.loads(container_status(daemon, cid, verbose=True).info["info"])["pid"])
    started = time.monotonic()
    daemon.runtime.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=2), timeout=30)
    elapsed = time.monotonic() - started
    # SIGTERM is ignored, so only the SIGKILL after the 2 s timeout ends it: not before 2 s, and
    # within 20 s (10x), far from the endless loop.
    assert 1.9 < elapsed < 20, elapsed
    assert not Path(f"/proc/{pid}").exists()
    status = container_status(daemon, cid).status
    assert status.state == api_pb2.CONTAINER_EXITED and status.exit_code == 137
    daemon.runtime.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=2), timeout=30)
    daemon.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid), timeout=30)
    daemon.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid), timeout=30)
    assert grpc_code(lambda: container_status(daemon, cid)) == grpc.StatusCode.NOT_FOUND
    assert create_container(daemon, pod_id, config)  # the name is free again


def test_exec_sync_timeouts_background_processes_and_caps(pod: tuple[Cribd, str]) -> None:
    daemon, pod_id = pod
    cid = run_container(daemon, pod_id, container_config("execs", ["/bin/sleep", "1000"]))
    r = exec_sync(daemon, cid, ["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert (r.stdout, r.stderr, r.exit_code) == (b"out\n", b"err\n", 7)
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        exec_sync(daemon, cid, ["sleep", "10"], timeout=1)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 10  # 10x the 1 s timeout; the command would take 10 s
    started = time.monotonic()
    r = exec_sync(daemon, cid, ["sh", "-c", "sleep 100 & echo started"])
    # The background sleep would hold it 100 s; 10 s is 10x the 1 s drain.
    assert r.stdout == b"started\n" and time.monotonic() - started < 10
    r = exec_sync(daemon, cid, ["sh", "-c", "yes | head -c 20000000"], timeout=60)
    # Capped to what fits the kubelet's 16 MiB message.
    assert 16 * 1024 * 1024 - 4096 <= len(r.stdout) < 16 * 1024 * 1024


def test_memory_limit_update_and_oom(pod: tuple[Cribd, str]) -> None:
    daemon, pod_id = pod
    limit = 64 * 1024 * 1024
    res = api_pb2.LinuxContainerResources(memory_limit_in_bytes=limit, cpu_shares=512)
    cid = run_container(daemon, pod_id, container_config("mem", ["/bin/sleep", "1000"], resources=res))
    info = __import__("json").loads(container_status(daemon, cid, verbose=True).info["info"])
    cgroup = info["runtimeSpec"]["linux"]["cgroupsPath"]
    limit_file = Path(f"/sys/fs/cgroup/memory{cgroup}/memory.limit_in_bytes")
    if not limit_file.exists():
        limit_file = Path(f"/sys/fs/cgroup{cgroup}/memory.max")
    assert int(limit_file.read_text()) == limit
    daemon.runtime.UpdateContainerResources(
        api_pb2.UpdateContainerResourcesRequest(
            container_id=cid, linux=api_pb2.LinuxContainerResources(memory_limit_in_bytes=2 * limit)
        ),
        timeout=30,
    )
    assert int(limit_file.read_text()) == 2 * limit
    assert container_status(daemon, cid).status.resources.linux.memory_limit_in_bytes == 2 * limit
    stats = daemon.runtime.ContainerStats(api_pb2.ContainerStatsRequest(container_id=cid), timeout=10).stats
    assert stats.memory.working_set_bytes.value > 0 and stats.cpu.usage_core_nano_seconds.value > 0
    assert stats.attributes.id == cid

    hog = run_container(
        daemon,
        pod_id,
        container_config(
            "hog",
            ["/bin/sh", "-c", "x=a; while true; do x=$x$x; done"],
            resources=api_pb2.LinuxContainerResources(memory_limit_in_bytes=32 * 1024 * 1024),
        ),
    )
    status = wait_exited(daemon, hog, timeout=60)
    assert status.reason == "OOMKilled", (status.reason, status.exit_code)


def test_log_rotation_with_reopen(pod: tuple[Cribd, str]) -> None:
    daemon, pod_id = pod
    cid = run_container(
        daemon,
        pod_id,
        container_config(
            "talker", ["/bin/sh", "-c", "i=0; while true; do echo line$i; i=$((i+1)); sleep 0.1; done"]
        ),
    )
    log_path = container_status(daemon, cid).status.log_path
    wait_until(lambda: Path(log_path).exists() and "line3" in Path(log_path).read_text())
    os.rename(log_path, log_path + ".1")
    daemon.runtime.ReopenContainerLog(api_pb2.ReopenContainerLogRequest(container_id=cid), timeout=10)
    wait_until(lambda: Path(log_path).exists() and len(Path(log_path).read_text().splitlines()) >= 3)
    old = {t for _, _, t in _log_lines(log_path + ".1")}
    new = {t for _, _, t in _log_lines(log_path)}
    assert old and new and not old & new


def test_list_filters_and_events(pod: tuple[Cribd, str]) -> None:
    daemon, pod_id = pod
    events: list[api_pb2.ContainerEventResponse] = []
    stream = daemon.runtime.GetContainerEvents(api_pb2.GetEventsRequest(), timeout=60)

    def listen() -> None:
        try:
            for event in stream:
                events.append(event)
        except grpc.RpcError:
            pass

    threading.Thread(target=listen, daemon=True).start()
    # The subscription is live once an event reaches it: make (and remove) a probe container
    # until the stream delivers one of its events.
    probes: list[str] = []
    deadline = time.monotonic() + 20
    while not any(e.container_id in probes for e in events):
        assert time.monotonic() < deadline, "GetContainerEvents never delivered an event"
        probe = create_container(daemon, pod_id, container_config(f"probe{len(probes)}", ["/bin/true"]))
        probes.append(probe)
        daemon.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=probe), timeout=10)
        with contextlib.suppress(AssertionError):
            wait_until(lambda: any(e.container_id in probes for e in events), timeout=1)
    a = run_container(daemon, pod_id, container_config("a", ["/bin/sleep", "1000"]))
    b = create_container(daemon, pod_id, container_config("b", ["/bin/true"]))
    listed = {
        c.id: c for c in daemon.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers
    }
    assert set(listed) == {a, b}
    assert listed[a].state == api_pb2.CONTAINER_RUNNING and listed[b].state == api_pb2.CONTAINER_CREATED

    def ids(f: api_pb2.ContainerFilter) -> set[str]:
        return {
            c.id
            for c in daemon.runtime.ListContainers(
                api_pb2.ListContainersRequest(filter=f), timeout=10
            ).containers
        }

    assert ids(api_pb2.ContainerFilter(id=a[:12])) == {a}
    assert ids(api_pb2.ContainerFilter(pod_sandbox_id=pod_id)) == {a, b}
    assert ids(api_pb2.ContainerFilter(label_selector={"ctr": "b"})) == {b}
    assert ids(
        api_pb2.ContainerFilter(state=api_pb2.ContainerStateValue(state=api_pb2.CONTAINER_RUNNING))
    ) == {a}
    start_container(daemon, b)
    wait_exited(daemon, b)
    wait_until(lambda: sum(e.container_id == b for e in events) >= 3)
    seen = [(e.container_id, e.container_event_type) for e in events]
    assert (b, api_pb2.CONTAINER_CREATED_EVENT) in seen
    assert (b, api_pb2.CONTAINER_STARTED_EVENT) in seen
    assert (b, api_pb2.CONTAINER_STOPPED_EVENT) in seen
    for e in events:
        assert e.pod_sandbox_status.id == pod_id and e.pod_sandbox_status.metadata.name
        assert any(s.id == e.container_id for s in e.containers_statuses)
    stream.cancel()


def test_sigkill_cribd_with_running_and_exiting_containers(pod: tuple[Cribd, str]) -> None:
    daemon, pod_id = pod
    runner = run_container(daemon, pod_id, container_config("runner", ["/bin/sleep", "1000"]))
    quitter = run_container(
        daemon, pod_id, container_config("quitter", ["/bin/sh", "-c", "sleep 2; exit 42"])
    )
    assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    time.sleep(0)  # the quitter ends while cribd is down: wait for its exit file below
    exit_file = daemon.state / "exits" / quitter
    wait_until(exit_file.exists, timeout=15)
    daemon.start()
    assert container_status(daemon, runner).status.state == api_pb2.CONTAINER_RUNNING
    status = container_status(daemon, quitter).status
    assert (status.state, status.exit_code, status.reason) == (api_pb2.CONTAINER_EXITED, 42, "Error")
    assert exec_sync(daemon, runner, ["echo", "still here"]).stdout == b"still here\n"
    events: list[api_pb2.ContainerEventResponse] = []
    stream = daemon.runtime.GetContainerEvents(api_pb2.GetEventsRequest(), timeout=60)

    def listen() -> None:
        with contextlib.suppress(grpc.RpcError):  # ends with the cancel below
            for event in stream:
                events.append(event)

    threading.Thread(target=listen, daemon=True).start()
    daemon.runtime.StopContainer(api_pb2.StopContainerRequest(container_id=runner, timeout=1), timeout=30)
    wait_until(
        lambda: any(
            e.container_id == runner and e.container_event_type == api_pb2.CONTAINER_STOPPED_EVENT
            for e in events
        )
    )
    stream.cancel()


def _criu_reason() -> str | None:
    """Why CRIU cannot checkpoint here, from `criu check` itself (not crib's own probe), or None."""
    criu = shutil.which("criu")
    if criu is None:
        return "criu is not installed"
    check = subprocess.run([criu, "check"], capture_output=True, text=True, timeout=60)
    if check.returncode == 0:
        return None
    return f"criu check exited {check.returncode}: {(check.stderr or check.stdout).strip()[:500]}"


def test_checkpoint_archives_a_running_container_or_says_why_not(
    pod: tuple[Cribd, str], tmp_path: Path
) -> None:
    daemon, pod_id = pod
    out = tmp_path / "checkpoints"
    out.mkdir()
    cid = run_container(
        daemon, pod_id, container_config("cp", ["/bin/sh", "-c", "echo kept > /kept; exec sleep 1000"])
    )
    for location, code in (
        ("relative.tar", grpc.StatusCode.INVALID_ARGUMENT),
        (str(out / "no-dir" / "cp.tar"), grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with pytest.raises(grpc.RpcError) as err:
            daemon.runtime.CheckpointContainer(
                api_pb2.CheckpointContainerRequest(container_id=cid, location=location), timeout=30
            )
        assert err.value.code() == code, location
    with pytest.raises(grpc.RpcError) as err:
        daemon.runtime.CheckpointContainer(
            api_pb2.CheckpointContainerRequest(container_id="f" * 64, location=str(out / "x.tar")),
            timeout=30,
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    location = out / "cp.tar"
    request = api_pb2.CheckpointContainerRequest(container_id=cid, location=str(location))
    reason = _criu_reason()
    if reason is not None:
        # CRIU missing or unable to run on this kernel: the call says so, and no file appears.
        with pytest.raises(grpc.RpcError) as err:
            daemon.runtime.CheckpointContainer(request, timeout=60)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED and "CRIU" in err.value.details()
        assert not location.exists() and list(out.iterdir()) == []
        pytest.skip(f"a real checkpoint needs a working CRIU: {reason}")
    daemon.runtime.CheckpointContainer(request, timeout=120)
    with tarfile.open(location) as archive:
        names = set(archive.getnames())
        assert {"checkpoint", "config.dump", "spec.dump", "rootfs-diff.tar"} <= names
        assert any(n.startswith("checkpoint/") and n.endswith(".img") for n in names)
        diff = archive.extractfile("rootfs-diff.tar")
        assert diff is not None
        with tarfile.open(fileobj=diff) as rootfs:
            kept = rootfs.extractfile("kept")
            assert kept is not None and kept.read() == b"kept\n"
    # --leave-running: the container goes on.
    status = daemon.runtime.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=cid), timeout=10)
    assert status.status.state == api_pb2.CONTAINER_RUNNING


def test_bad_container_requests(pod: tuple[Cribd, str], pod_network: PodNetwork) -> None:
    daemon, pod_id = pod
    for config, code in (
        (container_config("", ["/bin/true"]), grpc.StatusCode.INVALID_ARGUMENT),
        (container_config("noimg", ["/bin/true"], image="no/such:image"), grpc.StatusCode.NOT_FOUND),
        (
            container_config(
                "esc", ["/bin/true"], mounts=[api_pb2.Mount(container_path="/../etc", host_path="/tmp")]
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            container_config(
                "badcap",
                ["/bin/true"],
                security=api_pb2.LinuxContainerSecurityContext(
                    capabilities=api_pb2.Capability(add_capabilities=["NOPE"])
                ),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ):
        assert grpc_code(lambda c=config: create_container(daemon, pod_id, c)) == code
    assert (
        grpc_code(lambda: create_container(daemon, "f" * 64, container_config("x", ["/bin/true"])))
        == grpc.StatusCode.NOT_FOUND
    )
    assert grpc_code(lambda: start_container(daemon, "f" * 64)) == grpc.StatusCode.NOT_FOUND
    assert daemon.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers == []


def test_pod_stats_and_pod_resources(pod: tuple[Cribd, str]) -> None:
    daemon, pod_id = pod
    cid = run_container(daemon, pod_id, container_config("busy", ["/bin/sh", "-c", "while true; do :; done"]))
    wait_until(
        lambda: (
            daemon.runtime.ContainerStats(
                api_pb2.ContainerStatsRequest(container_id=cid), timeout=10
            ).stats.cpu.usage_core_nano_seconds.value
            > 10_000_000
        )
    )
    stats = daemon.runtime.PodSandboxStats(
        api_pb2.PodSandboxStatsRequest(pod_sandbox_id=pod_id), timeout=10
    ).stats
    assert stats.attributes.id == pod_id
    assert stats.linux.cpu.usage_core_nano_seconds.value > 10_000_000
    assert stats.linux.memory.working_set_bytes.value > 0
    assert stats.linux.process.process_count.value >= 2  # the pause and the busy loop
    assert stats.linux.network.default_interface.name == "eth0"
    assert [c.attributes.id for c in stats.linux.containers] == [cid]
    listed = daemon.runtime.ListPodSandboxStats(api_pb2.ListPodSandboxStatsRequest(), timeout=10).stats
    assert [s.attributes.id for s in listed] == [pod_id]
    # The lists fill their items in place in the reply: the pod's containers and interfaces as
    # the single call gives them ("lo" left out), the counters there.
    (item,) = listed
    assert [c.attributes.id for c in item.linux.containers] == [cid]
    assert [i.name for i in item.linux.network.interfaces] == ["eth0"]
    assert item.linux.network.default_interface.name == "eth0"
    assert item.linux.network.default_interface.HasField("rx_bytes")
    assert item.linux.containers[0].writable_layer.inodes_used.value > 0
    containers = daemon.runtime.ListContainerStats(api_pb2.ListContainerStatsRequest(), timeout=10).stats
    assert [c.attributes.id for c in containers] == [cid]
    assert containers[0].cpu.usage_core_nano_seconds.value > 10_000_000
    streamed = daemon.runtime.StreamPodSandboxStats(api_pb2.StreamPodSandboxStatsRequest(), timeout=10)
    assert [s.attributes.id for reply in streamed for s in reply.pod_sandbox_stats] == [pod_id]
    streamed_containers = daemon.runtime.StreamContainerStats(
        api_pb2.StreamContainerStatsRequest(), timeout=10
    )
    assert [c.attributes.id for reply in streamed_containers for c in reply.container_stats] == [cid]
    # Best effort without a pod cgroup: accepted, nothing to write.
    daemon.runtime.UpdatePodSandboxResources(
        api_pb2.UpdatePodSandboxResourcesRequest(
            pod_sandbox_id=pod_id, resources=api_pb2.LinuxContainerResources(cpu_shares=512)
        ),
        timeout=10,
    )


def test_the_writable_layer_in_stats_follows_writes(pod: tuple[Cribd, str]) -> None:
    """Each stats call counts the layer as it is then: a new file, the same file grown in place
    (its directory unchanged, so a kept listing is used again), and its removal."""
    daemon, pod_id = pod
    cid = run_container(daemon, pod_id, container_config("writer", ["/bin/sleep", "1000"]))
    mib = 1024 * 1024

    def layer() -> tuple[int, int]:
        stats = daemon.runtime.ContainerStats(api_pb2.ContainerStatsRequest(container_id=cid), timeout=10)
        listed = daemon.runtime.ListPodSandboxStats(api_pb2.ListPodSandboxStatsRequest(), timeout=10).stats
        (item,) = [c for s in listed for c in s.linux.containers if c.attributes.id == cid]
        assert item.writable_layer.used_bytes.value == stats.stats.writable_layer.used_bytes.value
        w = stats.stats.writable_layer
        return w.used_bytes.value, w.inodes_used.value

    base_bytes, base_inodes = layer()
    assert (
        exec_sync(
            daemon, cid, ["sh", "-c", "mkdir /data && dd if=/dev/zero of=/data/f bs=1M count=1"]
        ).exit_code
        == 0
    )
    used, inodes = layer()
    assert used >= base_bytes + mib and inodes == base_inodes + 2
    assert exec_sync(daemon, cid, ["dd", "if=/dev/zero", "of=/data/f", "bs=1M", "count=4"]).exit_code == 0
    grown, inodes = layer()
    assert grown >= base_bytes + 4 * mib and inodes == base_inodes + 2
    assert exec_sync(daemon, cid, ["rm", "-r", "/data"]).exit_code == 0
    used, inodes = layer()
    assert used < base_bytes + mib and inodes == base_inodes


def test_a_command_that_cannot_start_is_a_start_error(pod: tuple[Cribd, str]) -> None:
    """runc's own reason comes back, and the container is EXITED with StartError and 128, as containerd."""
    daemon, pod_id = pod
    cid = create_container(daemon, pod_id, container_config("missing", ["/no/such/binary"]))
    with pytest.raises(grpc.RpcError) as info:
        start_container(daemon, cid)
    details = info.value.details()  # type: ignore[attr-defined]
    assert "/no/such/binary" in details and "no such file or directory" in details
    assert "level=warning" not in details and "toggle freezer" not in details
    status = container_status(daemon, cid).status
    assert (status.state, status.reason, status.exit_code) == (api_pb2.CONTAINER_EXITED, "StartError", 128)
    assert "/no/such/binary" in status.message and status.finished_at >= status.created_at
    # A second start is refused; removal works.
    assert grpc_code(lambda: start_container(daemon, cid)) == grpc.StatusCode.FAILED_PRECONDITION
    daemon.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid), timeout=30)


def test_the_relist_follows_a_container_that_exits_on_its_own_and_its_pod_stopping(
    pod: tuple[Cribd, str],
) -> None:
    # PLEG's relist (no filter) is answered with the reply made before while nothing it shows
    # has changed: an exit no RPC asked for (conmon reports it, crib's watcher records it)
    # must still reach the next relist, as must a pod's stop.
    daemon, pod_id = pod
    cid = run_container(daemon, pod_id, container_config("quits", ["/bin/sh", "-c", "sleep 2; exit 3"]))

    def relisted() -> dict[str, int]:
        listed = daemon.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers
        return {c.id: c.state for c in listed}

    def pods() -> dict[str, int]:
        listed = daemon.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items
        return {p.id: p.state for p in listed}

    assert relisted() == {cid: api_pb2.CONTAINER_RUNNING}
    assert relisted() == {cid: api_pb2.CONTAINER_RUNNING}
    exited = api_pb2.CONTAINER_EXITED
    wait_until(lambda: relisted().get(cid) == exited, timeout=20, what="the exit in a relist")
    by_id = daemon.runtime.ListContainers(
        api_pb2.ListContainersRequest(filter=api_pb2.ContainerFilter(id=cid)), timeout=10
    ).containers
    assert [c.state for c in by_id] == [api_pb2.CONTAINER_EXITED]
    assert pods() == {pod_id: api_pb2.SANDBOX_READY}
    daemon.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    assert pods() == {pod_id: api_pb2.SANDBOX_NOTREADY}
    daemon.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid), timeout=30)
    assert relisted() == {}
