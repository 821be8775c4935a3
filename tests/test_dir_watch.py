"""DirWatch: a change in a watched directory is seen by the next look, and nothing else is."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from crib.runtime import dir_watch
from crib.runtime.dir_watch import DirWatch


@pytest.fixture
def watch() -> Iterator[DirWatch]:
    w = DirWatch()
    yield w
    w.close()


def test_a_change_is_seen_once_and_quiet_is_quiet(tmp_path: Path, watch: DirWatch) -> None:
    d = tmp_path / "d"
    d.mkdir()
    watch.watch([str(d)])
    assert watch.changed() is False
    assert watch.changed() is False
    (d / "a.conf").write_text("x")
    assert watch.changed() is True
    # Told once; until watched again every look is a change (the caller reads again first).
    assert watch.changed() is True
    watch.watch([str(d)])
    assert watch.changed() is False


@pytest.mark.parametrize(
    "change",
    [
        lambda d: (d / "f").write_text("edited"),  # an edit in place
        lambda d: (d / "f").chmod(0o755),  # a plugin made executable
        lambda d: (d / "f").unlink(),
        lambda d: (d / "f").rename(d / "g"),
        lambda d: (d / "new").symlink_to("/bin/true"),
        shutil.rmtree,
        lambda d: d.rename(d.with_name("moved")),
    ],
    ids=["edit", "chmod", "delete", "rename", "symlink", "rmdir", "move-dir"],
)
def test_every_kind_of_change_is_seen(tmp_path: Path, watch: DirWatch, change) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "f").write_text("first")
    watch.watch([str(tmp_path / "other-unchanged"), str(d)])
    assert watch.changed() is False
    change(d)
    assert watch.changed() is True


def test_a_directory_not_made_yet_is_watched_through_its_ancestor(tmp_path: Path, watch: DirWatch) -> None:
    conf = tmp_path / "etc" / "cni" / "net.d"
    watch.watch([str(conf)])
    assert watch.changed() is False
    (tmp_path / "unrelated").write_text("x")  # an ancestor's other files do not matter
    (tmp_path / "etc").mkdir()
    assert watch.changed() is True
    watch.watch([str(conf)])
    (tmp_path / "etc" / "cni").mkdir()
    assert watch.changed() is True
    conf.mkdir()
    watch.watch([str(conf)])
    assert watch.changed() is False
    (conf / "10-net.conflist").write_text("{}")
    assert watch.changed() is True


def test_a_dir_that_is_also_the_ancestor_of_a_missing_one_still_reports_edits(
    tmp_path: Path, watch: DirWatch
) -> None:
    d = tmp_path / "bin"
    d.mkdir()
    (d / "bridge").write_text("v1")
    watch.watch([str(d), str(d / "not-yet")])
    assert watch.changed() is False
    (d / "bridge").write_text("v2")  # an edit in place: no entry comes or goes
    assert watch.changed() is True


def test_without_watches_every_look_is_a_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class NoWatches:
        """A libc whose inotify_add_watch fails, as at the user's watch limit."""

        def __init__(self, real: object) -> None:
            self.inotify_init1 = real.inotify_init1  # type: ignore[attr-defined]
            self.inotify_rm_watch = real.inotify_rm_watch  # type: ignore[attr-defined]

        def inotify_add_watch(self, fd: int, path: bytes, mask: int) -> int:
            return -1

    monkeypatch.setattr(dir_watch, "_libc", NoWatches(dir_watch._libc))
    w = DirWatch()
    try:
        w.watch([str(tmp_path)])
        assert w.changed() is True
        assert w.changed() is True
    finally:
        w.close()
