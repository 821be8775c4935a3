"""ExecSync against a real runc container made from busybox-static (needs root)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crib.container.exec_sync import MAX_OUTPUT, exec_sync
from crib.errors import FailedPrecondition, NotFound
from crib.runtime.oci_runtime import OCIRuntime

RUNC = "/usr/sbin/runc"
BUSYBOX = "/bin/busybox"
APPLETS = ["sh", "sleep", "echo", "cat", "yes", "head", "true", "false", "dd", "id"]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not Path(RUNC).exists() or not Path(BUSYBOX).exists(),
    reason="needs root, runc and busybox-static",
)


@dataclass
class Box:
    runtime: OCIRuntime
    id: str
    init_pid: int
    process: dict[str, Any]  # the container's own process, for exec to start from
    work_dir: Path

    def proc(self, *args: str, **extra: Any) -> dict[str, Any]:
        return {**self.process, "args": list(args), **extra}

    def runc(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [RUNC, *self.runtime.global_args(), *args], capture_output=True, text=True, timeout=30
        )

    def live_pids(self) -> list[int]:
        """The container's processes that are not zombies (runc ps lists the cgroup's)."""
        out = self.runc("ps", "--format", "json", self.id)
        assert out.returncode == 0, out.stderr
        return [pid for pid in json.loads(out.stdout) if _state(pid) not in (None, "Z")]


def _state(pid: int) -> str | None:
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return data[data.rindex(")") + 2]


def _our_zombies() -> list[int]:
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            data = Path(f"/proc/{entry}/stat").read_text()
            fields = data[data.rindex(")") + 2 :].split()
            if fields[0] == "Z" and int(fields[1]) == me:
                found.append(int(entry))
    return found


def _runc_execs(container_id: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            if argv[0].endswith(b"runc") and b"exec" in argv and container_id.encode() in argv:
                found.append(int(entry))
    return found


def _reap_if_ours(pid: int) -> None:
    # exec_sync makes this process a child subreaper, so the detached init re-parents to it.
    end = time.monotonic() + 5
    while time.monotonic() < end:
        try:
            data = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return
        if int(data[data.rindex(")") + 2 :].split()[1]) != os.getpid():
            return
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        time.sleep(0.01)


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    bundle = tmp_path / "bundle"
    rootfs = bundle / "rootfs"
    for d in ("bin", "proc", "dev", "sys", "tmp"):
        (rootfs / d).mkdir(parents=True)
    (rootfs / "tmp").chmod(0o1777)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in APPLETS:
        (rootfs / "bin" / applet).symlink_to("busybox")
    subprocess.run([RUNC, "spec", "--bundle", str(bundle)], check=True, timeout=30)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["args"] = ["/bin/sleep", "1000"]
    config["process"]["terminal"] = False
    (bundle / "config.json").write_text(json.dumps(config))

    runtime = OCIRuntime("runc", RUNC, tmp_path / "runc")
    cid = f"exec-test-{uuid.uuid4().hex[:12]}"
    pid_file = tmp_path / "init.pid"
    with open(tmp_path / "run.err", "wb") as err:
        # runc run -d hands its stdio to the container: nothing that waits for EOF.
        run = subprocess.run(
            [
                RUNC,
                *runtime.global_args(),
                "run",
                "-d",
                "--bundle",
                str(bundle),
                "--pid-file",
                str(pid_file),
                cid,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            timeout=30,
        )
    assert run.returncode == 0, (tmp_path / "run.err").read_text()
    init_pid = int(pid_file.read_text())
    try:
        yield Box(runtime, cid, init_pid, config["process"], tmp_path / "exec")
    finally:
        subprocess.run(
            [RUNC, *runtime.global_args(), "delete", "-f", cid],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
        )
        _reap_if_ours(init_pid)


async def test_stdout_and_stderr_come_back_apart(box: Box) -> None:
    r = await exec_sync(
        box.runtime, box.id, box.proc("/bin/sh", "-c", "echo out; echo err >&2"), 10, box.work_dir
    )
    assert (r.exit_code, r.stdout, r.stderr, r.timed_out, r.truncated) == (
        0,
        b"out\n",
        b"err\n",
        False,
        False,
    )
    assert list(box.work_dir.iterdir()) == []


async def test_the_exit_code_is_the_commands(box: Box) -> None:
    r = await exec_sync(box.runtime, box.id, box.proc("/bin/sh", "-c", "exit 3"), None, box.work_dir)
    assert (r.exit_code, r.timed_out) == (3, False)
    r = await exec_sync(box.runtime, box.id, box.proc("/bin/false"), 0, box.work_dir)
    assert r.exit_code == 1


async def test_timeout_kills_the_process_and_its_children(box: Box) -> None:
    start = time.monotonic()
    r = await exec_sync(box.runtime, box.id, box.proc("/bin/sleep", "10"), 1, box.work_dir)
    took = time.monotonic() - start
    # Not before its 1 s timeout; and well short of the 10 s the command would run (an 8 s bound:
    # 8x the expected second, so a loaded machine does not fail it, while a missed kill does).
    assert r.timed_out and 0.9 < took < 8.0
    assert r.exit_code == 137  # SIGKILL, as runc reports it
    assert box.live_pids() == [box.init_pid]

    start = time.monotonic()
    script = "sleep 10 & (sleep 11 & sleep 12) & echo started; sleep 13"
    r = await exec_sync(box.runtime, box.id, box.proc("/bin/sh", "-c", script), 0.5, box.work_dir)
    # The children would hold it 10-13 s; 5 s is 10x the 0.5 s timeout.
    assert r.timed_out and time.monotonic() - start < 5.0
    assert r.stdout == b"started\n"
    assert box.live_pids() == [box.init_pid]
    assert _our_zombies() == []


async def test_a_background_process_holding_the_pipes_does_not_hold_the_call(box: Box) -> None:
    start = time.monotonic()
    r = await exec_sync(
        box.runtime, box.id, box.proc("/bin/sh", "-c", "echo hi; sleep 100 &"), 30, box.work_dir
    )
    # The background sleep would hold the pipes 100 s; 10 s is 10x the 1 s drain the call waits.
    assert time.monotonic() - start < 10.0
    assert (r.exit_code, r.stdout, r.timed_out) == (0, b"hi\n", False)

    # What the background process writes within the drain time still comes back.
    script = "(sleep 0.2; echo late) & exit 4"
    r = await exec_sync(
        box.runtime, box.id, box.proc("/bin/sh", "-c", script), 30, box.work_dir, drain_timeout=1.5
    )
    assert (r.exit_code, r.stdout) == (4, b"late\n")


async def test_output_is_capped_and_the_rest_drained(box: Box) -> None:
    script = "yes | head -c 20971520; echo done >&2"
    r = await exec_sync(box.runtime, box.id, box.proc("/bin/sh", "-c", script), 20, box.work_dir)
    assert (r.exit_code, r.timed_out, r.truncated) == (0, False, True)
    assert len(r.stdout) == MAX_OUTPUT and r.stdout[:4] == b"y\ny\n"
    assert r.stderr == b"done\n"

    script = "dd if=/dev/zero bs=1024 count=1024 2>/dev/null"
    r = await exec_sync(box.runtime, box.id, box.proc("/bin/sh", "-c", script), 20, box.work_dir)
    assert (len(r.stdout), r.truncated) == (1024 * 1024, False)


async def test_user_env_and_cwd_come_from_the_process(box: Box) -> None:
    proc = box.proc(
        "/bin/sh",
        "-c",
        'id -u; id -g; pwd; echo "$GREETING"',
        user={"uid": 1000, "gid": 1000},
        cwd="/tmp",
        env=[*box.process["env"], "GREETING=hello there"],
    )
    r = await exec_sync(box.runtime, box.id, proc, 10, box.work_dir)
    assert (r.exit_code, r.stdout) == (0, b"1000\n1000\n/tmp\nhello there\n")


async def test_a_missing_command_is_the_commands_failure(box: Box) -> None:
    r = await exec_sync(box.runtime, box.id, box.proc("/bin/nosuch"), 10, box.work_dir)
    assert r.exit_code != 0 and not r.timed_out
    assert b"/bin/nosuch" in r.stderr and b"no such file or directory" in r.stderr
    r = await exec_sync(box.runtime, box.id, box.proc("nosuch"), 10, box.work_dir)
    assert r.exit_code != 0 and b"executable file not found" in r.stderr


async def test_an_unknown_container_is_not_found(box: Box) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        await exec_sync(box.runtime, "no-such-container", box.proc("/bin/true"), 10, box.work_dir)
    assert list(box.work_dir.iterdir()) == []


async def test_a_paused_or_stopped_container_is_a_failed_precondition(box: Box) -> None:
    assert box.runc("pause", box.id).returncode == 0
    with pytest.raises(FailedPrecondition, match="paused"):
        await exec_sync(box.runtime, box.id, box.proc("/bin/true"), 10, box.work_dir)
    assert box.runc("resume", box.id).returncode == 0

    assert box.runc("kill", box.id, "KILL").returncode == 0
    end = time.monotonic() + 5
    while json.loads(box.runc("state", box.id).stdout)["status"] != "stopped":
        assert time.monotonic() < end
        await asyncio.sleep(0.02)
    with pytest.raises(FailedPrecondition, match="stopped"):
        await exec_sync(box.runtime, box.id, box.proc("/bin/true"), 10, box.work_dir)
    assert list(box.work_dir.iterdir()) == []


async def test_cancellation_kills_and_reaps_everything(box: Box) -> None:
    fds_before = len(os.listdir("/proc/self/fd"))
    task = asyncio.create_task(
        exec_sync(box.runtime, box.id, box.proc("/bin/sh", "-c", "sleep 100 & sleep 101"), None, box.work_dir)
    )
    end = time.monotonic() + 5
    while not (pid_files := list(box.work_dir.glob("exec-*/pid"))):
        assert time.monotonic() < end, "runc exec did not start the process"
        await asyncio.sleep(0.01)
    exec_pid = int(pid_files[0].read_text())
    while len(box.live_pids()) < 3:  # init, sh (now sleep 101) and sleep 100
        assert time.monotonic() < end
        await asyncio.sleep(0.01)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _state(exec_pid) is None  # killed and reaped: not even a zombie
    assert box.live_pids() == [box.init_pid]
    assert _runc_execs(box.id) == []
    assert _our_zombies() == []
    assert list(box.work_dir.iterdir()) == []
    assert len(os.listdir("/proc/self/fd")) == fds_before


async def test_many_execs_leak_nothing(box: Box) -> None:
    await exec_sync(box.runtime, box.id, box.proc("/bin/true"), 10, box.work_dir)
    fds_before = len(os.listdir("/proc/self/fd"))
    results = await asyncio.gather(
        *(exec_sync(box.runtime, box.id, box.proc("/bin/echo", str(i)), 10, box.work_dir) for i in range(8))
    )
    assert [r.stdout for r in results] == [f"{i}\n".encode() for i in range(8)]
    assert len(os.listdir("/proc/self/fd")) == fds_before
    assert _our_zombies() == []
    assert list(box.work_dir.iterdir()) == []


def _hanging_runtime(tmp_path: Path) -> tuple[OCIRuntime, Path]:
    """A runtime whose exec never returns and never starts anything: runc stuck before the pid file."""
    pid_file = tmp_path / "hung.pid"
    script = tmp_path / "hung-runc"
    script.write_text(f"#!{BUSYBOX} sh\necho $$ > {pid_file}\nexec {BUSYBOX} sleep 30\n")
    script.chmod(0o755)
    return OCIRuntime("hung", str(script), tmp_path / "hung-root"), pid_file


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


async def _wait_for_file(path: Path) -> int:
    end = time.monotonic() + 5
    while (value := _read_int(path)) is None:
        assert time.monotonic() < end
        await asyncio.sleep(0.01)
    return value


async def test_a_runtime_stuck_before_starting_the_process_is_bounded_by_the_timeout(tmp_path: Path) -> None:
    runtime, pid_file = _hanging_runtime(tmp_path)
    start = time.monotonic()
    r = await exec_sync(runtime, "c1", {"args": ["/bin/true"], "cwd": "/"}, 0.5, tmp_path / "exec")
    assert r.timed_out and r.exit_code == -1
    # The runtime hangs forever; 5 s is 10x the 0.5 s timeout.
    assert time.monotonic() - start < 5.0
    assert _state(int(pid_file.read_text())) is None
    assert list((tmp_path / "exec").iterdir()) == []


async def test_cancellation_while_the_runtime_starts_kills_and_reaps_it(tmp_path: Path) -> None:
    runtime, pid_file = _hanging_runtime(tmp_path)
    task = asyncio.create_task(exec_sync(runtime, "c1", {"args": ["/bin/true"]}, None, tmp_path / "exec"))
    runtime_pid = await _wait_for_file(pid_file)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _state(runtime_pid) is None
    assert list((tmp_path / "exec").iterdir()) == []
