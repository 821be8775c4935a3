"""cribctl's container commands against in-process fake services.

Expected texts marked "crictl" were printed by crictl 1.36 against cribd and are
pasted here: these tests need neither Go nor crictl.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from crib.cribctl import main, stats_cmds, util
from crib.cribctl.events_cmds import render_event
from crib.cribctl.stats_cmds import stats_table
from crib.proto.cri import api_pb2, api_pb2_grpc
from tests.cribctl_samples import (
    CREATED,
    ID_A,
    ID_B,
    ID_C,
    IMAGE_ID,
    LOG,
    POD,
    SECOND,
    sample_container,
    sample_stats,
)

pytestmark = pytest.mark.usefixtures("no_crictl_config")


# --- the commands against fake services -----------------------------------------------------------


class FakeRuntime(api_pb2_grpc.RuntimeServiceServicer):
    """Enough of a RuntimeService for the container commands: containers in memory, ID prefixes."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.containers: dict[str, api_pb2.Container] = {}
        self.logs: dict[str, str] = {}
        self.calls: list[tuple[str, Any, float | None]] = []
        self.lock = threading.Lock()
        self.counter = 0
        self.exec_result = api_pb2.ExecSyncResponse(stdout=b"out", stderr=b"err", exit_code=0)
        self.exec_delay = 0.0
        self.events: list[api_pb2.ContainerEventResponse] = []
        self.stats_samples: list[list[api_pb2.ContainerStats]] = []
        self.remove_delay = 0.0
        self.status_calls = 0
        self.exit_after_status_calls: int | None = None

    def _record(self, name: str, request: Any, context: grpc.ServicerContext) -> None:
        with self.lock:
            self.calls.append((name, request, context.time_remaining()))

    def calls_of(self, name: str) -> list[tuple[str, Any, float | None]]:
        return [c for c in self.calls if c[0] == name]

    def _find(self, cid: str, context: grpc.ServicerContext) -> api_pb2.Container:
        found = [c for i, c in self.containers.items() if i.startswith(cid)] if cid else []
        if len(found) != 1:
            context.abort(grpc.StatusCode.NOT_FOUND, f"container '{cid}' not found")
        return found[0]

    def Version(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._record("Version", request, context)
        return api_pb2.VersionResponse(version="0.1.0", runtime_name="fake", runtime_api_version="v1")

    def RunPodSandbox(self, request: api_pb2.RunPodSandboxRequest, context: grpc.ServicerContext) -> Any:
        self._record("RunPodSandbox", request, context)
        return api_pb2.RunPodSandboxResponse(pod_sandbox_id=POD)

    def add(self, name: str, state: int = api_pb2.CONTAINER_RUNNING, **labels: str) -> str:
        with self.lock:
            self.counter += 1
            cid = f"{self.counter:02d}" + "cd" * 31
        self.containers[cid] = sample_container(cid, name, state, CREATED + self.counter * SECOND, **labels)
        self.logs[cid] = str(self.log_dir / f"{name}.log")
        return cid

    def CreateContainer(self, request: api_pb2.CreateContainerRequest, context: grpc.ServicerContext) -> Any:
        self._record("CreateContainer", request, context)
        if request.config.metadata.name == "no-id":
            return api_pb2.CreateContainerResponse()
        cid = self.add(request.config.metadata.name, api_pb2.CONTAINER_CREATED)
        return api_pb2.CreateContainerResponse(container_id=cid)

    def StartContainer(self, request: api_pb2.StartContainerRequest, context: grpc.ServicerContext) -> Any:
        self._record("StartContainer", request, context)
        self._find(request.container_id, context).state = api_pb2.CONTAINER_RUNNING
        return api_pb2.StartContainerResponse()

    def StopContainer(self, request: api_pb2.StopContainerRequest, context: grpc.ServicerContext) -> Any:
        self._record("StopContainer", request, context)
        self._find(request.container_id, context).state = api_pb2.CONTAINER_EXITED
        return api_pb2.StopContainerResponse()

    def RemoveContainer(self, request: api_pb2.RemoveContainerRequest, context: grpc.ServicerContext) -> Any:
        self._record("RemoveContainer", request, context)
        time.sleep(self.remove_delay)
        del self.containers[self._find(request.container_id, context).id]
        return api_pb2.RemoveContainerResponse()

    def ListContainers(self, request: api_pb2.ListContainersRequest, context: grpc.ServicerContext) -> Any:
        self._record("ListContainers", request, context)
        f = request.filter
        items = [
            c
            for c in self.containers.values()
            if c.id.startswith(f.id)
            and c.pod_sandbox_id.startswith(f.pod_sandbox_id)
            and (not f.HasField("state") or c.state == f.state.state)
            and all(c.labels.get(k) == v for k, v in f.label_selector.items())
        ]
        return api_pb2.ListContainersResponse(containers=items)

    def ContainerStatus(self, request: api_pb2.ContainerStatusRequest, context: grpc.ServicerContext) -> Any:
        self._record("ContainerStatus", request, context)
        c = self._find(request.container_id, context)
        with self.lock:
            self.status_calls += 1
            if self.exit_after_status_calls is not None and self.status_calls >= self.exit_after_status_calls:
                c.state = api_pb2.CONTAINER_EXITED
        status = api_pb2.ContainerStatus(
            id=c.id,
            metadata=c.metadata,
            state=c.state,
            created_at=c.created_at,
            started_at=c.created_at + SECOND if c.state != api_pb2.CONTAINER_CREATED else 0,
            finished_at=c.created_at + 2 * SECOND if c.state == api_pb2.CONTAINER_EXITED else 0,
            image=c.image,
            image_ref=c.image_ref,
            labels=c.labels,
            log_path=self.logs[c.id],
        )
        info = {"info": json.dumps({"pid": 42})} if request.verbose else {}
        return api_pb2.ContainerStatusResponse(status=status, info=info)

    def UpdateContainerResources(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._record("UpdateContainerResources", request, context)
        self._find(request.container_id, context)
        return api_pb2.UpdateContainerResourcesResponse()

    def ReopenContainerLog(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._record("ReopenContainerLog", request, context)
        return api_pb2.ReopenContainerLogResponse()

    def ExecSync(self, request: api_pb2.ExecSyncRequest, context: grpc.ServicerContext) -> Any:
        self._record("ExecSync", request, context)
        self._find(request.container_id, context)
        time.sleep(self.exec_delay)
        if request.timeout and self.exec_delay > request.timeout:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "ExecSync: timed out")
        return self.exec_result

    def Exec(self, request: api_pb2.ExecRequest, context: grpc.ServicerContext) -> Any:
        self._record("Exec", request, context)
        # Nothing listens there: the tests stop before streaming (or see the refusal).
        return api_pb2.ExecResponse(url="http://127.0.0.1:9/exec/abcdefgh")

    def ListContainerStats(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._record("ListContainerStats", request, context)
        return api_pb2.ListContainerStatsResponse(stats=self.stats_samples.pop(0))

    def GetContainerEvents(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        self._record("GetContainerEvents", request, context)
        yield from self.events


class FakeImages(api_pb2_grpc.ImageServiceServicer):
    def __init__(self) -> None:
        self.pulls: list[tuple[api_pb2.PullImageRequest, float | None]] = []
        self.pull_error: tuple[grpc.StatusCode, str] | None = None

    def ImageFsInfo(self, request: Any, context: grpc.ServicerContext) -> Any:
        return api_pb2.ImageFsInfoResponse()

    def ImageStatus(self, request: api_pb2.ImageStatusRequest, context: grpc.ServicerContext) -> Any:
        if request.image.image in ("crib.e2e/busybox:1", IMAGE_ID, IMAGE_ID.removeprefix("sha256:")[:13]):
            image = api_pb2.Image(id=IMAGE_ID, size=10, repo_tags=["crib.e2e/busybox:1"])
            return api_pb2.ImageStatusResponse(image=image)
        if request.image.image == "other:1":
            return api_pb2.ImageStatusResponse(image=api_pb2.Image(id="sha256:" + "0" * 64, size=1))
        return api_pb2.ImageStatusResponse()

    def PullImage(self, request: api_pb2.PullImageRequest, context: grpc.ServicerContext) -> Any:
        self.pulls.append((request, context.time_remaining()))
        if self.pull_error:
            context.abort(*self.pull_error)
        return api_pb2.PullImageResponse(image_ref=IMAGE_ID)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[FakeRuntime, FakeImages, str]]:
    runtime, images = FakeRuntime(tmp_path), FakeImages()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    api_pb2_grpc.add_RuntimeServiceServicer_to_server(runtime, server)
    api_pb2_grpc.add_ImageServiceServicer_to_server(images, server)
    socket = f"unix://{tmp_path}/fake.sock"
    server.add_insecure_port(socket)
    server.start()
    yield runtime, images, socket
    server.stop(None)


Fake = tuple[FakeRuntime, FakeImages, str]


def _run(capsys: pytest.CaptureFixture[str], socket: str, *argv: str) -> tuple[int, str, str]:
    try:
        code = main.main(["-r", socket, *argv])
    except SystemExit as exc:  # exec -s exits with the command's code
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


CONTAINER_CONFIG = (
    "metadata: {name: web}\nimage: {image: crib.e2e/busybox:1}\n"
    "mounts: [{container_path: /m, image: {image: other:1}}]\n"
)
POD_CONFIG = "metadata: {name: p, namespace: n, uid: u}\nlinux: {}\n"
CGROUP_WARNING = "cribctl: cgroup_parent is not set. Use `runtime-config` to get the runtime cgroup driver\n"


def test_create_sends_both_configs_and_uses_the_cancel_timeout(
    fake: Fake, capsys: Any, tmp_path: Path
) -> None:
    runtime, images, socket = fake
    ctr, pod = _write(tmp_path, "c.yaml", CONTAINER_CONFIG), _write(tmp_path, "p.yaml", POD_CONFIG)
    code, out, err = _run(capsys, socket, "--timeout", "3s", "create", POD, ctr, pod)
    assert (code, err) == (0, CGROUP_WARNING)
    assert out == f"{next(iter(runtime.containers))}\n"
    (_, request, remaining) = runtime.calls_of("CreateContainer")[0]
    assert request.pod_sandbox_id == POD and request.sandbox_config.metadata.name == "p"
    assert request.config.image.user_specified_image == "crib.e2e/busybox:1"
    assert 2.0 < remaining <= 3.1 and images.pulls == []
    _run(capsys, socket, "create", "-T", "20s", POD, ctr, "")
    (_, request, remaining) = runtime.calls_of("CreateContainer")[1]
    assert 19.0 < remaining <= 20.1 and not request.HasField("sandbox_config")


def test_create_pulls_the_image_and_mounted_images_when_asked(
    fake: Fake, capsys: Any, tmp_path: Path
) -> None:
    _, images, socket = fake
    ctr, pod = _write(tmp_path, "c.yaml", CONTAINER_CONFIG), _write(tmp_path, "p.yaml", POD_CONFIG)
    code, _, err = _run(
        capsys, socket, "create", "--with-pull", "--creds", "u:p", "--pt", "1m", POD, ctr, pod
    )
    assert code == 0 and "cribctl: Pulling container image: crib.e2e/busybox:1\n" in err
    assert "cribctl: Pulling image other:1 to be mounted to container path: /m\n" in err
    assert [p[0].image.image for p in images.pulls] == ["crib.e2e/busybox:1", "other:1"]
    assert images.pulls[0][0].auth == api_pb2.AuthConfig(username="u", password="p")
    assert images.pulls[0][0].sandbox_config.metadata.uid == "u" and 59 < images.pulls[0][1] <= 60.1
    # pull-image-on-create in crictl.yaml pulls by default; --no-pull overrides it.
    config = _write(tmp_path, "crictl.yaml", "pull-image-on-create: true\n")
    images.pulls.clear()
    _run(capsys, socket, "--config", config, "create", POD, ctr, pod)
    assert len(images.pulls) == 2 and images.pulls[0][1] > 1e9  # no deadline without --pull-timeout
    _run(capsys, socket, "--config", config, "create", "--no-pull", POD, ctr, pod)
    assert len(images.pulls) == 2
    images.pull_error = (grpc.StatusCode.UNKNOWN, "pulling from registry: 401")
    code, _, err = _run(capsys, socket, "create", "--with-pull", POD, ctr, pod)
    assert code == 1 and err.endswith("cribctl: creating container: pulling from registry: 401\n")
    code, _, err = _run(capsys, socket, "create", "--with-pull", "--creds", "u", "--auth", "x", POD, ctr, pod)
    assert err.endswith("cribctl: creating container: both `--creds` and `--auth` are specified\n")


def test_create_errors(fake: Fake, capsys: Any, tmp_path: Path) -> None:
    _, _, socket = fake
    pod = _write(tmp_path, "p.yaml", POD_CONFIG)
    assert _run(capsys, socket, "create", "--no-pull", "--with-pull", "a", "b", "c")[2] == (
        "cribctl: conflict: no-pull and with-pull are both set\n"
    )
    assert _run(capsys, socket, "create", POD, str(tmp_path / "none.yaml"), pod)[2] == (
        f"cribctl: creating container: config at {tmp_path}/none.yaml not found\n"
    )
    no_id = _write(tmp_path, "n.yaml", "metadata: {name: no-id}\nimage: {image: a}\n")
    assert _run(capsys, socket, "create", POD, no_id, "")[2] == (
        'cribctl: creating container: ContainerId is not set for container "name:\\"no-id\\""\n'
    )
    code, out, _ = _run(capsys, socket, "create", POD)
    assert code == 0 and out.startswith("NAME:\n   cribctl create - ")
    assert "does not print the config JSON schemas" in _run(capsys, socket, "create", "js")[2]


def test_run_runs_the_pod_then_creates_and_starts(fake: Fake, capsys: Any, tmp_path: Path) -> None:
    runtime, images, socket = fake
    ctr, pod = _write(tmp_path, "c.yaml", CONTAINER_CONFIG), _write(tmp_path, "p.yaml", POD_CONFIG)
    code, out, err = _run(capsys, socket, "--timeout", "2s", "run", "-r", "crun", "--no-pull", ctr, pod)
    assert code == 0 and err == CGROUP_WARNING * 2  # the pod config is read twice, as crictl does
    (cid,) = runtime.containers
    assert out == f"{cid}\n" and runtime.containers[cid].state == api_pb2.CONTAINER_RUNNING
    (_, request, remaining) = runtime.calls_of("RunPodSandbox")[0]
    assert request.runtime_handler == "crun" and 3.0 < remaining <= 4.1  # twice the timeout
    # Without --no-pull, run pulls, unless disable-pull-on-run.
    _run(capsys, socket, "run", ctr, pod)
    assert len(images.pulls) == 2
    config = _write(tmp_path, "crictl.yaml", "disable-pull-on-run: true\n")
    _run(capsys, socket, "--config", config, "run", ctr, pod)
    assert len(images.pulls) == 2
    _run(capsys, socket, "--config", config, "run", "--with-pull", ctr, pod)
    assert len(images.pulls) == 4
    assert _run(capsys, socket, "run", "--no-pull", str(tmp_path / "x.yaml"), pod)[2].endswith(
        f"cribctl: running container: creating container failed: config at {tmp_path}/x.yaml not found\n"
    )


def test_start_stop_update(fake: Fake, capsys: Any) -> None:
    runtime, _, socket = fake
    a, b = runtime.add("a", api_pb2.CONTAINER_CREATED), runtime.add("b", api_pb2.CONTAINER_CREATED)
    assert _run(capsys, socket, "start", a, b) == (0, f"{a}\n{b}\n", "")
    assert _run(capsys, socket, "start") == (1, "", "cribctl: ID cannot be empty\n")
    assert _run(capsys, socket, "start", "zz")[2] == (
        "cribctl: starting the container \"zz\": rpc error: code = NotFound desc = container 'zz' not found\n"
    )
    assert _run(capsys, socket, "--timeout", "2s", "stop", "-t", "7", a) == (0, f"{a}\n", "")
    (_, request, remaining) = runtime.calls_of("StopContainer")[0]
    assert request.timeout == 7 and 8.0 < remaining <= 9.1  # the grace period on top of the timeout
    assert _run(capsys, socket, "stop", "-a") == (0, f"{b}\n", "")
    assert _run(capsys, socket, "stop", "--all") == (0, "No running containers found.\n", "")
    assert (
        _run(capsys, socket, "stop", "-a", a)[2]
        == "cribctl: cannot specify CONTAINER-ID(s) when using --all\n"
    )
    assert (
        _run(capsys, socket, "stop")[2]
        == "cribctl: you must specify at least one CONTAINER-ID or use --all\n"
    )
    argv = ["update", "--memory", "0x4000000", "--cpu-quota", "50000", "--cpu-period", "100000"]
    argv += ["--cpu-share", "512", "--cpuset-cpus", "0", "--cpuset-mems", "0", "--oom-score-adj", "-500", a]
    assert _run(capsys, socket, *argv) == (0, f"{a}\n", "")
    (_, request, _) = runtime.calls_of("UpdateContainerResources")[0]
    assert request.linux == api_pb2.LinuxContainerResources(
        cpu_period=100000,
        cpu_quota=50000,
        cpu_shares=512,
        cpuset_cpus="0",
        cpuset_mems="0",
        memory_limit_in_bytes=64 << 20,
        oom_score_adj=-500,
    )
    assert (
        _run(capsys, socket, "update", "--memory", "x", a)[2]
        == 'cribctl: invalid value "x" for flag -memory: parse error\n'
    )
    assert _run(capsys, socket, "update")[2] == "cribctl: ID cannot be empty\n"


def test_rm_removes_containers_concurrently_with_their_logs(fake: Fake, capsys: Any, tmp_path: Path) -> None:
    runtime, _, socket = fake
    a = runtime.add("a")
    b = runtime.add("b", api_pb2.CONTAINER_EXITED)
    for suffix in ("", ".1", ".20260101-000000"):
        (tmp_path / f"a.log{suffix}").write_text("x")
        (tmp_path / f"b.log{suffix}").write_text("x")
    code, out, err = _run(capsys, socket, "rm", a, b)
    assert (code, out) == (1, f"{b}\n")
    assert err == f'cribctl: container "{a}" is running, please stop it first\n'
    assert sorted(p.name for p in tmp_path.glob("*.log*")) == ["a.log", "a.log.1", "a.log.20260101-000000"]
    assert _run(capsys, socket, "rm", "-f", "-k", a) == (0, f"{a}\n{a}\n", "")  # stopped, then removed
    assert (tmp_path / "a.log").exists()
    runtime.remove_delay = 0.3
    ids = [runtime.add(f"c{i}", api_pb2.CONTAINER_EXITED) for i in range(4)]
    started = time.monotonic()
    code, out, err = _run(capsys, socket, "rm", "-a")
    assert code == 0 and sorted(out.split()) == sorted(ids) and time.monotonic() - started < 1.0
    assert err.count("removing log file") == 4  # the fake's containers have no log files
    assert f'removing log file {tmp_path}/c0.log for container "{ids[0]}" failed: remove ' in err
    assert _run(capsys, socket, "rm", "-a") == (0, "", "cribctl: No containers to remove\n")
    code, out, _ = _run(capsys, socket, "rm")
    assert code == 0 and out.startswith("NAME:\n   cribctl rm - ")


def test_ps_filters_and_formats(fake: Fake, capsys: Any) -> None:
    runtime, _, socket = fake
    a = runtime.add("a", tier="web")
    b = runtime.add("b", api_pb2.CONTAINER_EXITED, tier="db")
    c = runtime.add("c", api_pb2.CONTAINER_CREATED, tier="web")
    runtime.containers[b].image.image = IMAGE_ID

    def ids(*argv: str) -> list[str]:
        code, out, err = _run(capsys, socket, "ps", "-q", *argv)
        assert (code, err) == (0, ""), err
        return out.split()

    assert ids() == [a]
    assert ids("-a") == [c, b, a]
    assert ids("-s", "Exited") == [b]
    assert ids("-l") == [c] and ids("-n", "2") == [c, b]
    assert ids("-a", "--label", "tier=web") == [c, a]
    assert ids("-a", "--id", b[:4]) == [b]
    assert ids("-a", "--pod", POD[:6]) == [c, b, a]
    assert ids("-a", "--name", "^[bc]$") == [c, b]
    assert ids("-a", "--namespace", "unknown") == [c, b, a]
    assert ids("-a", "--image", "crib.e2e/busybox:1") == [c, b, a]  # b's image ID is the same image
    assert ids("-a", "--image", "other:1") == []
    (_, request, _) = runtime.calls_of("ListContainers")[2]
    assert request.filter.state.state == api_pb2.CONTAINER_EXITED
    table = _run(capsys, socket, "ps", "-a")[1].splitlines()
    assert table[0].split()[:3] == ["CONTAINER", "IMAGE", "CREATED"] and len(table) == 4
    assert table[2].split()[:2] == [b[:13], "85ff7cf95cd2e"]
    assert _run(capsys, socket, "ps", "-a", "-r")[1].splitlines()[2].split()[1] == "crib.e2e/busybox:1"
    doc = json.loads(_run(capsys, socket, "ps", "-a", "-o", "json")[1])
    assert [x["id"] for x in doc["containers"]] == [c, b, a] and doc["containers"][0][
        "state"
    ] == "CONTAINER_CREATED"
    assert _run(capsys, socket, "ps", "-o", "yaml")[1].startswith("containers:\n- annotations: {}\n")
    assert _run(capsys, socket, "ps", "-v")[1].startswith(
        f"ID: {a}\nPodID: {POD}\nNamespace: unknown\nName: a\n"
    )
    assert _run(capsys, socket, "ps", "-s", "paused")[2] == (
        "cribctl: --state should be one of created, running, exited or unknown\n"
    )
    assert (
        _run(capsys, socket, "ps", "-o", "xml")[2]
        == 'cribctl: listing containers: unsupported output format "xml"\n'
    )
    code, out, _ = _run(capsys, socket, "ps", "extra")
    assert code == 0 and out.startswith("NAME:\n   cribctl ps - ")


def test_inspect(fake: Fake, capsys: Any, local_zone: Callable[[str], None]) -> None:
    runtime, _, socket = fake
    a = runtime.add("a", tier="web")
    b = runtime.add("b", api_pb2.CONTAINER_EXITED)
    code, out, err = _run(capsys, socket, "inspect", a[:5])
    doc = json.loads(out)
    assert (code, err) == (0, "") and doc["info"] == {"pid": 42}
    assert doc["status"]["id"] == a and doc["status"]["finishedAt"] == "0001-01-01T00:00:00Z"
    both = json.loads(_run(capsys, socket, "inspect", "-q", a, b)[1])
    assert [d["status"]["state"] for d in both] == [
        "CONTAINER_RUNNING",
        "CONTAINER_EXITED",
    ] and "info" not in both[0]
    assert _run(capsys, socket, "inspect", "-o", "yaml", a)[1].startswith("info:\n  pid: 42\nstatus:\n")
    table = _run(capsys, socket, "inspect", "-o", "table", b)[1]
    assert (
        table.startswith(f"ID: {b}\nName: b\nAttempt: 1\nState: CONTAINER_EXITED\n")
        and "Exit Code: 0\n" in table
    )
    # Without IDs, the list filters pick (running ones unless --all or --state).
    assert json.loads(_run(capsys, socket, "inspect")[1])["status"]["id"] == a
    assert len(json.loads(_run(capsys, socket, "inspect", "-a")[1])) == 2
    assert json.loads(_run(capsys, socket, "inspect", "-a", "--name", "^b$")[1])["status"]["id"] == b
    code, out, err = _run(capsys, socket, "inspect", "-s", "created")
    assert (code, err) == (0, "cribctl: No IDs provided or nothing found per filter\n") and out.startswith(
        "NAME:"
    )
    assert _run(capsys, socket, "inspect", "zz")[2] == (
        "cribctl: get the status of containers: get container status: "
        "rpc error: code = NotFound desc = container 'zz' not found\n"
    )
    assert (
        _run(capsys, socket, "inspect", "-o", "go-template", "--template", "{{.status.id}}", a)[1] == f"{a}\n"
    )
    assert _run(capsys, socket, "inspect", "-o", "xml", a)[2] == (
        'cribctl: get the status of containers: unsupported format: "xml"\n'
    )


def test_exec_sync_prints_as_crictl_and_exits_with_the_commands_code(fake: Fake, capsys: Any) -> None:
    runtime, _, socket = fake
    a = runtime.add("a")
    assert _run(capsys, socket, "exec", "-s", a, "sh", "-c", "x") == (0, "out\nerr\n", "")
    (_, request, remaining) = runtime.calls_of("ExecSync")[0]
    assert list(request.cmd) == ["sh", "-c", "x"] and request.timeout == 0 and remaining > 1e9
    runtime.exec_result = api_pb2.ExecSyncResponse(stdout=b"o\n", stderr=b"e\n", exit_code=3)
    code, out, err = _run(capsys, socket, "--timeout", "2s", "exec", "-s", "--timeout", "5", a, "false")
    assert (code, out) == (3, "o\n\ne\n\n")
    assert (
        err
        == f"cribctl: execing command in container {a} synchronously: command 'false' exited with 3: e\n\n"
    )
    assert 6.0 < runtime.calls_of("ExecSync")[1][2] <= 7.1  # the command's timeout on top of --timeout
    code, _, err = _run(capsys, socket, "exec", "-s", "-e", a, "false")
    assert code == 0 and "--ignore-errors" in err
    runtime.exec_result = api_pb2.ExecSyncResponse(exit_code=300)
    assert _run(capsys, socket, "exec", "-s", a, "x")[0] == 1  # no such process exit code: 1
    runtime.exec_delay = 1.5
    code, _, err = _run(capsys, socket, "exec", "-s", "--timeout", "1", a, "sleep", "5")
    assert (code, err) == (
        1,
        f"cribctl: execing command in container {a} synchronously: "
        'command timed out: "sleep 5" timed out after 1s\n',
    )


def test_exec_over_filtered_containers(fake: Fake, capsys: Any) -> None:
    runtime, _, socket = fake
    a, b = runtime.add("a", app="x"), runtime.add("b", app="x")
    runtime.add("c", api_pb2.CONTAINER_EXITED, app="x")
    code, out, _ = _run(capsys, socket, "exec", "-s", "--label", "app=x", "echo", "hi")
    assert (code, out) == (0, f"{b}:\nout\nerr\n{a}:\nout\nerr\n")
    assert [list(c[1].cmd) for c in runtime.calls_of("ExecSync")] == [["echo", "hi"]] * 2
    assert _run(capsys, socket, "exec", "-s", "-q", "--name", "^a$", "true")[1] == "out\nerr\n"
    code, out, _ = _run(capsys, socket, "exec", "-s", "-x", "-l", "true")
    assert (code, out) == (0, "out\nerr\n")
    runtime.exec_result = api_pb2.ExecSyncResponse(exit_code=2)
    assert _run(capsys, socket, "exec", "-s", "--label", "app=x", "false")[0] == 1  # several: 1, as crictl
    code, out, err = _run(capsys, socket, "exec", "-s", "--name", "nothing", "true")
    assert code == 0 and out.startswith("NAME:") and err == "cribctl: No containers found per filter flags\n"


def test_exec_without_sync_asks_for_a_streaming_url(fake: Fake, capsys: Any) -> None:
    runtime, _, socket = fake
    a = runtime.add("a")
    # -t needs a terminal on stdin: refused after the Exec call, before any streaming.
    code, out, err = _run(capsys, socket, "exec", "-it", a, "sh")
    assert (code, out) == (
        1,
        "",
    ) and err == f"cribctl: execing command in container {a}: input is not a terminal\n"
    (_, request, _) = runtime.calls_of("Exec")[0]
    assert (request.tty, request.stdin, request.stdout, request.stderr) == (True, True, True, False)
    code, out, _ = _run(capsys, socket, "exec", a)
    assert code == 0 and out.startswith("NAME:\n   cribctl exec - ")


def test_stats_samples_twice(fake: Fake, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime, _, socket = fake
    slept: list[float] = []
    monkeypatch.setattr(stats_cmds.time, "sleep", slept.append)
    old = [sample_stats(ID_A, "a", 66_000_000, CREATED, 794_624), sample_stats(ID_C, "c", 0, 0, 0)]
    new = [sample_stats(ID_C, "c", 0, 0, 0), sample_stats(ID_A, "a", 67_400_000, CREATED + SECOND, 794_624)]
    runtime.stats_samples = [old, new]
    code, out, err = _run(capsys, socket, "stats", "-s", "3", "--pod", "p", "--label", "a=b", ID_A[:4])
    assert (code, err, slept) == (0, "", [3])
    assert out == util.CLEAR_SCREEN + stats_table(old, new, False)
    (_, request, _) = runtime.calls_of("ListContainerStats")[0]
    assert request.filter == api_pb2.ContainerStatsFilter(
        id=ID_A[:4], pod_sandbox_id="p", label_selector={"a": "b"}
    )
    runtime.stats_samples = [old]
    doc = json.loads(_run(capsys, socket, "stats", "-o", "json")[1])
    assert [s["attributes"]["id"] for s in doc["stats"]] == [ID_C, ID_A]  # sorted by ID


def test_events_prints_each_event_as_crictl(fake: Fake, capsys: Any) -> None:
    runtime, _, socket = fake
    runtime.events = [
        api_pb2.ContainerEventResponse(
            container_id=ID_A,
            container_event_type=api_pb2.CONTAINER_STARTED_EVENT,
            created_at=CREATED,
            pod_sandbox_status=api_pb2.PodSandboxStatus(id=POD),
        ),
        api_pb2.ContainerEventResponse(
            container_id=ID_B, container_event_type=api_pb2.CONTAINER_DELETED_EVENT
        ),
    ]
    code, out, err = _run(capsys, socket, "events")
    assert (code, err) == (0, "")  # the runtime ended the stream
    assert out == "".join(render_event(e, "json") for e in runtime.events)
    assert out.startswith(
        "{\n" f'  "containerId": "{ID_A}",\n' '  "containerEventType": "CONTAINER_STARTED_EVENT",\n'
        f'  "createdAt": "{CREATED}",\n' '  "podSandboxStatus": {\n'
    )  # fmt: skip
    yaml_out = _run(capsys, socket, "event", "-o", "yaml")[1]
    assert yaml_out.startswith(f"containerEventType: CONTAINER_STARTED_EVENT\ncontainerId: {ID_A}\n")
    assert yaml_out.count("\n\ncontainerEventType") == 1  # a blank line after each event
    assert _run(capsys, socket, "events", "-o", "xml")[2] == 'cribctl: don\'t support "xml" format\n'
    assert (
        _run(capsys, socket, "events", "--template", "x")[2]
        == 'cribctl: template can\'t be used with "json" format\n'
    )


def test_logs_reads_the_file_named_by_the_status(fake: Fake, capsys: Any, tmp_path: Path) -> None:
    runtime, _, socket = fake
    a = runtime.add("a")
    (tmp_path / "a.log").write_bytes(LOG)
    assert _run(capsys, socket, "logs", a) == (0, "line0\npartline1\nline2\n", "err0\nerr2\n")
    assert _run(capsys, socket, "logs", "--tail", "1", "-t", a)[1] == "2026-11-28T06:43:50.000000003Z line2\n"
    assert _run(capsys, socket, "logs", "-s", "stderr", a)[1:] == ("", "err0\nerr2\n")
    code, out, err = _run(capsys, socket, "logs", "-r", "--since", "2026-11-28T06:43:49.6Z", a)
    assert (code, out) == (0, "line2\n") and err == "cribctl: Container logs reopened\nerr2\n"
    assert len(runtime.calls_of("ReopenContainerLog")) == 1
    # -f: follows until the container is no longer running (the fake stops it on the 3rd status).
    runtime.exit_after_status_calls = runtime.status_calls + 3
    code, out, _ = _run(capsys, socket, "logs", "-f", "--tail", "1", a)
    assert (code, out) == (0, "line2\n")
    runtime.containers[a].metadata.attempt = 2
    (tmp_path / "1.log").write_bytes(LOG.split(b"\n")[0] + b"\n")
    assert _run(capsys, socket, "logs", "-p", a)[1] == "line0\n"
    for argv, error in (
        (["logs"], "ID cannot be empty"),
        (["logs", "-s", "both", a], 'invalid stream "both", must be "stdout" or "stderr"'),
        (["logs", "--tail", "1", "-s", "stdout", a], "--tail and --stream are mutually exclusive"),
        (["logs", "--since", "abc", a], 'failed to parse value as time or duration: "abc"'),
        (["logs", "zz"], "rpc error: code = NotFound desc = container 'zz' not found"),
    ):
        assert _run(capsys, socket, *argv) == (1, "", f"cribctl: {error}\n"), argv
    runtime.containers[a].metadata.attempt = 0
    assert _run(capsys, socket, "logs", "-p", a)[2] == "cribctl: previous terminated container a not found\n"


def test_every_command_checks_the_endpoint_first(tmp_path: Path, capsys: Any) -> None:
    dead = f"unix://{tmp_path}/nothing.sock"
    for argv in (["ps"], ["inspect", "x"], ["start", "x"], ["stop", "x"], ["rm", "x"], ["logs", "x"],
                 ["exec", "-s", "x", "true"], ["stats"], ["update", "x"], ["events"]):  # fmt: skip
        code, _, err = _run(capsys, dead, *argv)
        assert code == 1 and err.startswith(
            f'cribctl: validate service connection: validate CRI v1 runtime API for endpoint "{dead}": '
            "rpc error: code = Unavailable desc = "
        ), argv


def test_since_takes_a_negative_duration() -> None:
    join_dash_values = main.join_dash_values
    assert join_dash_values(["logs", "--since", "-1h", "c1"]) == ["logs", "--since=-1h", "c1"]
    assert join_dash_values(["logs", "--since", "5m", "c1"]) == ["logs", "--since", "5m", "c1"]
    assert join_dash_values(["exec", "c1", "--", "--since", "-x"]) == ["exec", "c1", "--", "--since", "-x"]
