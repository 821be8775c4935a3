"""KeptFiles: cgroup files kept open between stats calls, read again with pread."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from crib.runtime.kept_files import _READ_SIZE, KeptFiles, read_file

MEMORY = Path("/sys/fs/cgroup/memory")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def test_a_kept_file_is_read_as_it_is_now(tmp_path: Path) -> None:
    path = tmp_path / "memory.usage_in_bytes"
    path.write_text("4096\n")
    files = KeptFiles(limit=10)
    assert files.read(str(path)) == "4096\n"
    # Written in place, as the kernel regenerates a cgroup file: the kept descriptor reads it anew.
    with open(path, "r+") as f:
        f.write("8192\n")
    assert files.read(str(path)) == "8192\n"
    assert len(files) == 1
    files.close()
    assert len(files) == 0


def test_a_file_longer_than_one_read_is_read_whole(tmp_path: Path) -> None:
    procs = "".join(f"{pid}\n" for pid in range(100000, 100000 + 2 * _READ_SIZE // 7))
    (tmp_path / "cgroup.procs").write_text(procs)
    files = KeptFiles(limit=10)
    assert files.read(str(tmp_path / "cgroup.procs")) == procs
    assert files.read(str(tmp_path / "cgroup.procs")) == procs
    assert read_file(str(tmp_path / "cgroup.procs")) == procs
    files.close()


def test_a_file_that_cannot_be_read_is_none_and_not_kept(tmp_path: Path) -> None:
    files = KeptFiles(limit=10)
    assert files.read(str(tmp_path / "missing")) is None
    assert read_file(str(tmp_path / "missing")) is None
    # A directory opens but cannot be read (EISDIR): nothing is kept open.
    before = open_fds()
    assert files.read(str(tmp_path)) is None
    assert len(files) == 0
    assert open_fds() == before


def test_past_the_limit_files_are_read_but_not_kept(tmp_path: Path) -> None:
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"f{i}")
        paths[-1].write_text(f"{i}\n")
    files = KeptFiles(limit=2)
    before = open_fds()
    assert [files.read(str(p)) for p in paths] == ["0\n", "1\n", "2\n"]
    assert len(files) == 2
    assert len(open_fds() - before) == 2
    files.close()
    assert open_fds() == before


def test_files_not_read_between_two_sweeps_are_closed(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("a")
    b.write_text("b")
    clock = Clock()
    files = KeptFiles(limit=10, idle_s=10, clock=clock)
    before = open_fds()
    files.read(str(a))
    files.read(str(b))
    clock.now = 10  # the first sweep: both were read since the start
    assert files.read(str(a)) == "a"
    assert len(files) == 2
    clock.now = 20  # the second: b was not read since the first
    assert files.read(str(a)) == "a"
    assert len(files) == 1
    assert len(open_fds() - before) == 1
    # A swept file is opened again when it is read again.
    assert files.read(str(b)) == "b"
    assert len(files) == 2
    files.close()


def test_reads_from_many_threads_get_their_own_files(tmp_path: Path) -> None:
    # Every read sweeps (the clock jumps) and half the files vanish and come back: a
    # descriptor closed under a reader and reused by another open would return another file.
    paths = []
    for i in range(40):
        paths.append(tmp_path / f"f{i}")
        paths[-1].write_text(f"content {i}\n")
    clock = Clock()

    def tick() -> float:
        clock.now += 1
        return clock.now

    files = KeptFiles(limit=30, idle_s=0.5, clock=tick)
    wrong: list[tuple[int, str | None]] = []

    def reader(offset: int) -> None:
        for n in range(400):
            i = (offset + n) % len(paths)
            text = files.read(str(paths[i]))
            if text is not None and text != f"content {i}\n":
                wrong.append((i, text))

    threads = [threading.Thread(target=reader, args=(k * 7,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert wrong == []
    files.close()


@pytest.fixture
def memory_cgroup() -> Iterator[Path]:
    if os.geteuid() != 0 or not (MEMORY / "memory.usage_in_bytes").exists():
        pytest.skip("needs root and the cgroup v1 memory controller at /sys/fs/cgroup/memory")
    path = MEMORY / f"crib-test-kept-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    try:
        yield path
    finally:
        if path.exists():
            path.rmdir()


def test_a_cgroup_removed_and_made_again_is_read_afresh(memory_cgroup: Path) -> None:
    limit = memory_cgroup / "memory.limit_in_bytes"
    files = KeptFiles(limit=10)
    before = open_fds()
    first = files.read(str(limit))
    assert first is not None and int(first) > 1 << 40  # unlimited
    # A kept descriptor does not keep the cgroup from being removed...
    memory_cgroup.rmdir()
    assert files.read(str(limit)) is None
    assert len(files) == 0 and open_fds() == before
    # ...nor is it read for a cgroup made again at the same path (a pod's, the same UID).
    assert files.read(str(limit)) is None
    memory_cgroup.mkdir()
    files.read(str(limit))  # kept, then the cgroup goes and comes back under it
    memory_cgroup.rmdir()
    memory_cgroup.mkdir()
    limit.write_text(str(64 << 20))
    assert files.read(str(limit)) == f"{64 << 20}\n"
    files.close()
    assert open_fds() == before


def test_forget_closes_the_files_of_those_directories_only(tmp_path: Path) -> None:
    for d in ("memory", "pids", "other"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "f").write_text(d)
    files = KeptFiles(limit=10)
    before = open_fds()
    for d in ("memory", "pids", "other"):
        files.read(f"{tmp_path}/{d}/f")
    files.forget([f"{tmp_path}/memory", f"{tmp_path}/pids", f"{tmp_path}/never-read"])
    assert len(files) == 1
    assert len(open_fds() - before) == 1
    assert files.read(f"{tmp_path}/other/f") == "other"
    assert files.read(f"{tmp_path}/memory/f") == "memory"  # read again: kept again
    assert len(files) == 2
    files.close()
    assert open_fds() == before
