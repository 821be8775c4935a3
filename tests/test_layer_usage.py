"""LayerUsage: usage_of_tree's counts, with directory listings kept while their stamps hold."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from crib.runtime import layer_usage as lu
from crib.runtime.layer_usage import LayerUsage, usage_of_tree

HOUR_NS = 3600 * 1_000_000_000


def _later() -> int:
    """A clock an hour ahead: every directory made by a test looks settled, so it is kept."""
    return time.time_ns() + HOUR_NS


def _tree(top: Path, outside: Path) -> None:
    outside.write_bytes(os.urandom(1 << 20))
    (top / "a" / "b").mkdir(parents=True)
    big = top / "a" / "big"
    big.write_bytes(os.urandom(256 * 1024))
    os.link(big, top / "a" / "b" / "big-link")
    os.link(big, top / "big-link2")
    (top / "a" / "b" / "small").write_text("hello")
    (top / "empty").touch()
    (top / "to-outside").symlink_to(outside)
    (top / "dir-link").symlink_to(top.parent)


@pytest.fixture
def listings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The directories LayerUsage lists, in order."""
    seen: list[str] = []
    real = os.listdir

    def listdir(path: str) -> list[str]:
        seen.append(path)
        return real(path)

    monkeypatch.setattr(lu.os, "listdir", listdir)
    return seen


def _blocks(*paths: Path) -> int:
    return sum(os.lstat(p).st_blocks * 512 for p in paths)


def _fresh(path: Path) -> tuple[int, int]:
    return usage_of_tree(path)


def _kept(path: Path) -> tuple[int, int]:
    """A LayerUsage's second count, from the listings its first one kept."""
    usage = LayerUsage(clock=_later)
    first = usage.usage(str(path))
    again = usage.usage(str(path))
    assert again == first
    return again


Counter = Callable[[Path], tuple[int, int]]
COUNTERS = [pytest.param(_fresh, id="usage_of_tree"), pytest.param(_kept, id="kept")]


@pytest.mark.parametrize("count", COUNTERS)
def test_hard_links_count_once_and_symlinks_are_not_followed(tmp_path: Path, count: Counter) -> None:
    top = tmp_path / "upper"
    _tree(top, tmp_path / "outside")
    used, inodes = count(top)
    # upper, a, b, big (once), small, empty, two symlinks
    assert inodes == 8
    a, b = top / "a", top / "a" / "b"
    counted = [top, a, b, a / "big", b / "small", top / "empty", top / "to-outside", top / "dir-link"]
    assert used == _blocks(*counted)
    assert 256 * 1024 <= used < 1 << 20  # the symlinked file is not counted


@pytest.mark.parametrize("count", COUNTERS)
def test_a_file_an_empty_directory_or_nothing(tmp_path: Path, count: Counter) -> None:
    assert count(tmp_path / "absent") == (0, 0)
    f = tmp_path / "file"
    f.write_bytes(b"x" * 10000)
    assert count(f) == (_blocks(f), 1)
    (tmp_path / "empty").mkdir()
    assert count(tmp_path / "empty") == (_blocks(tmp_path / "empty"), 1)


@pytest.mark.parametrize("count", COUNTERS)
def test_other_file_systems_inside_are_left_out(tmp_path: Path, count: Counter) -> None:
    top = tmp_path / "upper"
    mnt = top / "mnt"
    mnt.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (mnt / "data").write_bytes(os.urandom(512 * 1024))
        (mnt / "sub").mkdir()
        # Only upper: the mount point belongs to the other file system.
        assert count(top) == (_blocks(top), 1)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_a_kept_tree_is_counted_again_alike(tmp_path: Path) -> None:
    top = tmp_path / "upper"
    _tree(top, tmp_path / "outside")
    usage = LayerUsage(clock=_later)
    first = usage.usage(str(top))
    assert first == usage_of_tree(top)
    assert usage.usage(str(top)) == first
    assert len(usage) == 3


def test_every_change_shows_in_the_next_count(tmp_path: Path, listings: list[str]) -> None:
    top = tmp_path / "upper"
    _tree(top, tmp_path / "outside")
    usage = LayerUsage(clock=_later)
    path = str(top)
    usage.usage(path)
    listings.clear()

    steps: list[Callable[[], None]] = [
        lambda: (top / "a" / "big").write_bytes(os.urandom(512 * 1024)),  # a file grows in place
        lambda: (top / "a" / "b" / "new").write_bytes(os.urandom(64 * 1024)),  # a file appears deep down
        lambda: os.link(top / "empty", top / "a" / "empty-link"),  # a new hard link
        (top / "a" / "b" / "small").unlink,
        lambda: (top / "a" / "c" / "d").mkdir(parents=True),  # new directories
        lambda: os.rename(top / "a" / "b", top / "b-moved"),  # a directory moves up
        lambda: subprocess.run(["rm", "-rf", str(top / "a")], check=True),  # a subtree goes
    ]
    relisted = 0
    for step in steps:
        step()
        expected = usage_of_tree(top)
        listings.clear()
        assert usage.usage(path) == expected, step
        relisted += len(listings)
    # Only the directories that changed (and new ones) were listed again, never all of them.
    assert 0 < relisted < 2 * len(steps)


def test_an_unchanged_tree_is_counted_without_listing_a_directory(
    tmp_path: Path, listings: list[str]
) -> None:
    top = tmp_path / "upper"
    _tree(top, tmp_path / "outside")
    usage = LayerUsage(clock=_later)
    usage.usage(str(top))
    assert len(listings) == 3
    listings.clear()
    (top / "a" / "big").write_bytes(b"x")  # contents only: no directory changes
    expected = usage_of_tree(top)
    listings.clear()
    assert usage.usage(str(top)) == expected
    assert listings == []
    (top / "a" / "b" / "other").touch()
    expected = usage_of_tree(top)
    listings.clear()
    assert usage.usage(str(top)) == expected
    assert listings == [str(top / "a" / "b")]


def test_a_directory_changed_just_now_is_listed_again(tmp_path: Path, listings: list[str]) -> None:
    """The kernel's coarse clock can stamp two changes alike: a listing taken within racy_ns of
    its directory's last change is not trusted."""
    top = tmp_path / "upper"
    (top / "old").mkdir(parents=True)
    (top / "old" / "f").touch()
    settled = time.time_ns() - 10 * 1_000_000_000
    os.utime(top / "old", ns=(settled, settled))  # ctime stays now: still racy
    usage = LayerUsage()  # the real clock, a second's margin
    usage.usage(str(top))
    usage.usage(str(top))
    assert listings == [str(top), str(top / "old")] * 2
    assert len(usage) == 0


def test_a_tree_that_is_not_a_directory_or_is_gone(tmp_path: Path) -> None:
    usage = LayerUsage(clock=_later)
    assert usage.usage(str(tmp_path / "absent")) == (0, 0)
    f = tmp_path / "file"
    f.write_bytes(b"x" * 10000)
    assert usage.usage(str(f)) == usage_of_tree(f)
    top = tmp_path / "upper"
    (top / "sub").mkdir(parents=True)
    usage.usage(str(top))
    subprocess.run(["rm", "-rf", str(top)], check=True)
    assert usage.usage(str(top)) == (0, 0)


def test_a_directory_gone_between_its_listing_and_its_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    top = tmp_path / "upper"
    (top / "sub").mkdir(parents=True)
    (top / "sub" / "f").write_text("x")
    (top / "g").write_text("y")
    real = os.listdir

    def listdir(path: str) -> list[str]:
        if path.endswith("sub"):
            raise FileNotFoundError(path)
        return real(path)

    monkeypatch.setattr(lu.os, "listdir", listdir)
    assert usage_of_tree(top) == (_blocks(top, top / "sub", top / "g"), 3)  # upper, sub, g
    assert LayerUsage(clock=_later).usage(str(top)) == (_blocks(top, top / "sub", top / "g"), 3)


def test_kept_names_are_bounded_and_forgotten(tmp_path: Path, listings: list[str]) -> None:
    trees = []
    for i, size in enumerate((4, 4, 4, 12)):
        top = tmp_path / f"upper{i}"
        top.mkdir()
        for n in range(size):
            (top / f"f{n}").touch()
        trees.append(str(top))
    usage = LayerUsage(max_names=10, clock=_later)
    usage.usage(trees[0])
    usage.usage(trees[1])
    assert len(usage) == 2
    usage.forget(trees[0])
    assert len(usage) == 1
    usage.usage(trees[0])
    usage.usage(trees[2])  # 12 names in all: the others dropped, this one kept
    assert len(usage) == 1
    expected = usage_of_tree(trees[2])
    listings.clear()
    assert usage.usage(trees[2]) == expected
    assert listings == []  # counted from its kept listing
    # A tree past the bound alone is walked afresh each time and leaves the others kept.
    assert usage.usage(trees[3]) == usage_of_tree(trees[3])
    assert len(usage) == 1
    listings.clear()
    usage.usage(trees[3])
    assert listings == [trees[3]]
    usage.forget(trees[2])
    usage.forget(trees[2])
    assert len(usage) == 0
