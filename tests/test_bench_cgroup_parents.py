"""The benchmarks remove the runtimes' default cgroup parents they leave empty, and only those."""

from __future__ import annotations

from pathlib import Path

from bench.pod_lifecycle import remove_default_cgroup_parents


def test_empty_default_parents_go_and_one_holding_a_pod_stays(tmp_path: Path) -> None:
    for made in ("memory/crib", "unified/k8s.io", "pids/crib/pod1", "cpu/kubepods", "cpu/crib"):
        (tmp_path / made).mkdir(parents=True)
    remove_default_cgroup_parents(tmp_path)
    assert not (tmp_path / "memory/crib").exists()
    assert not (tmp_path / "unified/k8s.io").exists()
    assert not (tmp_path / "cpu/crib").exists()
    # Another runtime's pod under it: rmdir refuses, the parent and the pod stay.
    assert (tmp_path / "pids/crib/pod1").is_dir()
    # Not a default parent: not the benchmark's to remove.
    assert (tmp_path / "cpu/kubepods").is_dir()


def test_no_cgroup_root_is_nothing_to_remove(tmp_path: Path) -> None:
    remove_default_cgroup_parents(tmp_path / "absent")  # no FileNotFoundError from the walk
    assert not (tmp_path / "absent").exists()
