"""RuntimeEnv's reading of a container's end: the OOM verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

from crib.runtime import rootfs, runtime_env
from crib.runtime.cgroup_stats import CgroupDirs, CgroupStats
from crib.runtime.runtime_env import RuntimeEnv

CID = "c" * 64


@pytest.fixture
def env(tmp_path: Path) -> RuntimeEnv:
    e = RuntimeEnv(tmp_path / "root", tmp_path / "state", "conmon", "cgroupfs", {}, "runc")
    e.write_spec(CID, {"linux": {"cgroupsPath": "/crib-test/" + CID}})
    return e


def _cgroup_counted(monkeypatch: pytest.MonkeyPatch, kills: int | None, base: Path = Path("/")) -> list[str]:
    """cgroup_dirs faked: a v2 cgroup at the spec's path under `base`; the paths asked for."""
    asked: list[str] = []

    def fake_dirs(path: str, systemd: bool) -> CgroupDirs:
        asked.append(path)
        return CgroupDirs("v2", {}, base / path.lstrip("/"))

    monkeypatch.setattr(runtime_env, "cgroup_dirs", fake_dirs)
    monkeypatch.setattr(runtime_env, "read_stats", lambda dirs: CgroupStats(timestamp_ns=1, oom_kills=kills))
    return asked


def test_conmons_marker_says_oom(env: RuntimeEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    _cgroup_counted(monkeypatch, 0)
    marker = env.conmon_paths(CID).persist_dir / "oom"
    marker.parent.mkdir(parents=True)
    marker.touch()
    assert env.oom_killed(CID, 137) and env.oom_killed(CID, 1)


def test_a_sigkilled_container_whose_cgroup_counted_an_oom_kill_was_oom_killed(
    env: RuntimeEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = _cgroup_counted(monkeypatch, 1)
    assert env.oom_killed(CID, 137)
    assert asked == ["/crib-test/" + CID]
    # Another exit is not an OOM kill, whatever the cgroup counted (a child may have been killed).
    assert not env.oom_killed(CID, 1)
    _cgroup_counted(monkeypatch, 0)
    assert not env.oom_killed(CID, 137)
    _cgroup_counted(monkeypatch, None)
    assert not env.oom_killed(CID, 137)


def test_discard_sets_a_containers_files_aside_and_empty_trash_deletes_them(env: RuntimeEnv) -> None:
    layer = env.layer_dir(CID) / "upper"
    layer.mkdir(parents=True)
    (layer / "written").write_text("by the container")
    (env.exit_dir / CID).write_text("0")
    env.discard(CID)
    # Gone from where anyone looks, at once.
    assert not (env.state / "containers" / CID).exists() and not env.layer_dir(CID).exists()
    assert not (env.exit_dir / CID).exists()
    kept = [p for d in env.trash_dirs for p in d.iterdir()]
    assert len(kept) == 2 and all(p.name.startswith(CID) for p in kept)
    env.discard(CID)  # again: nothing to do
    env.empty_trash()
    assert [p for d in env.trash_dirs for p in d.iterdir()] == []


def test_a_restart_finishes_what_a_removal_left_in_the_trash(env: RuntimeEnv, tmp_path: Path) -> None:
    env.layer_dir(CID).mkdir(parents=True)
    env.discard(CID)
    again = RuntimeEnv(tmp_path / "root", tmp_path / "state", "conmon", "cgroupfs", {}, "runc")
    assert [p for d in again.trash_dirs for p in d.iterdir()] == []


def test_a_containers_cgroup_dirs_come_from_its_spec_once_and_go_with_it(
    env: RuntimeEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    asked = _cgroup_counted(monkeypatch, 0, tmp_path / "cgroup")
    dirs = env.cgroup_dirs(CID)
    assert dirs is not None and dirs.unified == tmp_path / "cgroup/crib-test" / CID
    # The spec is not read again (stats calls ask for every container on every poll).
    env.bundle(CID).joinpath("config.json").unlink()
    assert env.cgroup_dirs(CID) is dirs
    assert asked == ["/crib-test/" + CID]
    # A file of the cgroup the stats calls kept open is closed with the container.
    dirs.unified.mkdir(parents=True)
    (dirs.unified / "memory.current").write_text("4096\n")
    assert env.stats_files.read(f"{dirs.unified}/memory.current") == "4096\n"
    assert len(env.stats_files) == 1
    env.discard(CID)
    assert len(env.stats_files) == 0
    assert env.cgroup_dirs(CID) is None  # no spec any more: nothing cached for the ID
    assert env.cgroup_dirs("d" * 64) is None


def _counted_reads(monkeypatch: pytest.MonkeyPatch, stuck: set[str] = frozenset()) -> list[tuple[str, ...]]:
    """mount_points_under faked (the paths of each read); a path in `stuck` shows one mount
    point whose unmount fails."""
    reads: list[tuple[str, ...]] = []

    def points(*paths: Path | str) -> list[str]:
        reads.append(tuple(str(p) for p in paths))
        return [f"{p}/bundle/rootfs" for p in map(str, paths) if Path(p).name.split("-")[0] in stuck]

    def unmount(target: str, detach: bool = True) -> None:
        raise OSError(16, f"umount {target}: busy")

    monkeypatch.setattr(runtime_env.rootfs, "mount_points_under", points)
    monkeypatch.setattr(runtime_env.rootfs, "unmount", unmount)
    return reads


def test_a_torn_down_container_is_removed_without_another_look_at_the_mounts(
    env: RuntimeEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mountinfo costs 3-5 ms a read at 100 pods; a container's life reads it once (its
    teardown), not at RemoveContainer and again per trash entry."""
    reads = _counted_reads(monkeypatch)
    env.layer_dir(CID).mkdir(parents=True)
    env.unmount(CID)  # StopContainer's teardown: its state and layer dirs, in one read
    assert reads == [(str(env.state / "containers" / CID), str(env.layer_dir(CID)))]
    env.discard(CID)
    env.empty_trash()
    assert len(reads) == 1
    assert [p for d in env.trash_dirs for p in d.iterdir()] == []
    # Not torn down (a pause container): discard looks once, the trash not again.
    env.write_spec("d" * 64, {})
    env.discard("d" * 64)
    env.empty_trash()
    assert len(reads) == 2


def test_what_a_failed_unmount_or_another_run_left_is_looked_at_before_it_is_deleted(
    env: RuntimeEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    reads = _counted_reads(monkeypatch, stuck={CID})
    env.unmount(CID)  # the rootfs stays mounted: not marked
    env.discard(CID)  # looks again, still mounted: its trash entry is not marked either
    assert len(reads) == 2
    env.empty_trash()
    assert len(reads) == 3 and all(Path(p).parent in env.trash_dirs for p in reads[2])
    # A previous run's entry (the marks live in memory only) is looked at too.
    again = _counted_reads(monkeypatch)
    (env.trash_dirs[0] / f"{'e' * 64}-0123abcd").mkdir(parents=True)
    env.empty_trash()
    assert len(again) == 1


def test_empty_trash_unmounts_a_mount_left_in_an_entry_before_deleting_it(
    env: RuntimeEnv, tmp_path: Path
) -> None:
    """The case the look is for: a bind mount left inside an entry (a run cut short after the
    rename) would have rmtree delete the files the mount shows, which live elsewhere."""
    outside = tmp_path / "outside dir"  # a space: mountinfo escapes it
    outside.mkdir()
    (outside / "keep").write_text("not the container's")
    target = env.trash_dirs[0] / f"{CID}-0123abcd" / "bundle" / "rootfs"
    target.mkdir(parents=True)
    rootfs.mount(str(outside), str(target), "", rootfs.MS_BIND)
    try:
        assert rootfs.mount_points_under(env.trash_dirs[0]) == [str(target)]
        env.empty_trash()
        assert (outside / "keep").read_text() == "not the container's"
        assert list(env.trash_dirs[0].iterdir()) == []
    finally:
        rootfs.unmount(str(target))
    assert rootfs.mount_points_under(tmp_path) == []
