"""crib.spawn: children forked off the event loop, reaped on it, killed when given up on."""

from __future__ import annotations

import asyncio
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from crib import spawn

CRIB = Path(__file__).resolve().parents[1] / "crib"


def _gone(pid: int) -> bool:
    """Neither running nor a zombie: reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "X"


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


async def _pid_from(path: Path, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while not (text := _read(path)):
        assert time.monotonic() < deadline, f"{path} never written"
        await asyncio.sleep(0.01)
    return int(text)


async def test_run_feeds_stdin_and_returns_the_outputs_and_code() -> None:
    code, out, err = await spawn.run(
        ["sh", "-c", "cat; echo oops >&2; exit 3"], timeout=5, input=b"hello " * 50000
    )
    assert code == 3
    assert out == b"hello " * 50000  # more than a pipe holds: read while written
    assert err == b"oops\n"


async def test_run_without_input_gives_the_child_no_stdin() -> None:
    code, out, _ = await spawn.run(["sh", "-c", "cat; echo done"], timeout=5)
    assert (code, out) == (0, b"done\n")


async def test_a_signal_death_is_a_negative_code() -> None:
    code, _, _ = await spawn.run(["sh", "-c", "kill -9 $$"], timeout=5)
    assert code == -9


async def test_a_missing_binary_raises_oserror() -> None:
    with pytest.raises(FileNotFoundError):
        await spawn.run(["/nonexistent/crib-binary"], timeout=5)


async def test_a_timeout_kills_and_reaps_the_child(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    with pytest.raises(TimeoutError):
        await spawn.run(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"], timeout=0.5)
    assert _gone(await _pid_from(pidfile))


async def test_a_cancelled_run_kills_and_reaps_the_child(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    task = asyncio.create_task(spawn.run(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"], timeout=30))
    pid = await _pid_from(pidfile)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _gone(pid)


async def test_a_child_that_exits_by_itself_is_reaped_without_a_wait(tmp_path: Path) -> None:
    child = await spawn.start(["true"])
    async with asyncio.timeout(5):
        await child.exited.wait()  # set by its pidfd reader, nobody called wait()
    assert child.returncode == 0
    assert _gone(child.pid)


async def test_pipes_held_by_a_grandchild_are_read_after_the_child_exits() -> None:
    # As `runc exec --detach`: runc exits, the process it started keeps writing.
    child = await spawn.start(["sh", "-c", "(sleep 0.3; echo late) & echo early"], stdout=spawn.PIPE)
    chunks: list[bytes] = []
    closed = asyncio.Event()
    await child.read_pipes(lambda fd, data: chunks.append(data), lambda fd: closed.set())
    async with asyncio.timeout(5):
        await child.exited.wait()
        assert not closed.is_set()
        await closed.wait()
    child.close()
    assert b"".join(chunks) == b"early\nlate\n"


class _SlowPopen(subprocess.Popen):  # type: ignore[type-arg]
    """A fork that takes as long as runc's did on a loaded node (vfork waits for the exec)."""

    threads: list[int] = []
    pids: list[int] = []

    def __init__(self, *args: object, **kwargs: object) -> None:
        _SlowPopen.threads.append(threading.get_ident())
        time.sleep(0.3)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        _SlowPopen.pids.append(self.pid)


@pytest.fixture
def slow_popen(monkeypatch: pytest.MonkeyPatch) -> type[_SlowPopen]:
    _SlowPopen.threads, _SlowPopen.pids = [], []
    monkeypatch.setattr(spawn.subprocess, "Popen", _SlowPopen)
    return _SlowPopen


async def test_a_slow_spawn_does_not_hold_the_event_loop(slow_popen: type[_SlowPopen]) -> None:
    loop_thread = threading.get_ident()
    gaps: list[float] = []

    async def heartbeat() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    beat = asyncio.create_task(heartbeat())
    try:
        results = await asyncio.gather(*(spawn.run(["true"], timeout=10) for _ in range(3)))
    finally:
        beat.cancel()
    assert [code for code, _, _ in results] == [0, 0, 0]
    assert loop_thread not in slow_popen.threads
    assert len(gaps) > 20  # the loop kept turning while the three forks took 0.3 s each
    # Each fork takes 0.3 s: on the loop, that is a gap of 0.3 s or more; a busy CI machine
    # may delay a beat, never by that much.
    assert max(gaps) < 0.2, f"the loop stalled {max(gaps) * 1000:.0f} ms"


async def test_a_start_cancelled_during_the_fork_leaves_no_process(slow_popen: type[_SlowPopen]) -> None:
    task = asyncio.create_task(spawn.start(["sleep", "30"]))
    await asyncio.sleep(0.05)  # inside the fork
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 5
    while not (slow_popen.pids and _gone(slow_popen.pids[0])):
        assert time.monotonic() < deadline, "the abandoned child was not killed and reaped"
        await asyncio.sleep(0.02)


def test_nothing_in_crib_forks_on_the_event_loop() -> None:
    # asyncio's own subprocess API forks on the loop thread; crib.spawn is the way to start a child.
    pattern = re.compile(r"create_subprocess_(exec|shell)\(|\.subprocess_(exec|shell)\(")
    offenders = [
        f"{path.relative_to(CRIB.parent)}:{n}"
        for path in CRIB.rglob("*.py")
        if "proto" not in path.parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []
