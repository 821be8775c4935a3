"""The e2e fuzzer's cleanup of the cgroup parents runc makes for fuzzed cgroup_parent values."""

from __future__ import annotations

from pathlib import Path

from crib.proto.cri import api_pb2
from e2e.harness import cgroup_parents


def test_every_cgroup_parent_in_a_request_is_found() -> None:
    request = api_pb2.RunPodSandboxRequest(
        config=api_pb2.PodSandboxConfig(linux=api_pb2.LinuxPodSandboxConfig(cgroup_parent="%s%n"))
    )
    assert cgroup_parents.cgroup_parents(request) == ["%s%n"]
    assert cgroup_parents.cgroup_parents(api_pb2.RunPodSandboxRequest()) == []


def test_hierarchies_are_named_as_mounted(tmp_path: Path) -> None:
    for name in ("memory", "cpu", "systemd", "unified"):
        (tmp_path / name).mkdir()
    (tmp_path / "cpuacct").symlink_to(tmp_path / "cpu")
    text = "9:name=systemd:/\n4:memory:/process_api/x\n2:cpuacct:/\n1:cpu:/a\n0::/u\n"
    assert cgroup_parents.parse_proc_cgroup(text, tmp_path) == {
        tmp_path / "systemd": "/",
        tmp_path / "memory": "/process_api/x",
        tmp_path / "cpu": "/a",
        tmp_path / "unified": "/u",
    }


def test_a_pure_v2_host_has_one_hierarchy_at_the_root(tmp_path: Path) -> None:
    assert cgroup_parents.parse_proc_cgroup("0::/user.slice\n", tmp_path) == {tmp_path: "/user.slice"}


def test_absolute_parents_sit_under_the_root_and_relative_ones_under_the_own_cgroup() -> None:
    own = {Path("/h/memory"): "/process_api/x", Path("/h/pids"): "/"}
    assert cgroup_parents.targets("/kubepods/pod1", own) == [
        Path("/h/memory/kubepods/pod1"),
        Path("/h/pids/kubepods/pod1"),
    ]
    assert cgroup_parents.targets("%s%n", own) == [Path("/h/memory/process_api/x/%s%n"), Path("/h/pids/%s%n")]
    # runc cleans a relative path as an absolute one: `..` does not climb out of the own cgroup.
    assert cgroup_parents.targets("../../a", own) == [Path("/h/memory/process_api/x/a"), Path("/h/pids/a")]
    assert cgroup_parents.targets("../..", own) == [Path("/h/memory/process_api/x")]


def test_only_what_was_not_there_before_is_removed(tmp_path: Path) -> None:
    (tmp_path / "kept" / "inner").mkdir(parents=True)
    made = [tmp_path / "kept" / "new" / "a" / "b", tmp_path / "fresh" / "c"]
    listed = cgroup_parents.before(made)
    for path in made:
        path.mkdir(parents=True)
    (tmp_path / "kept" / "other").mkdir()  # made by someone else, after: not named by a request
    assert cgroup_parents.remove_new(made, listed) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["inner", "other"]


def test_a_dir_that_cannot_be_removed_is_reported(tmp_path: Path) -> None:
    made = [tmp_path / "busy" / "pod"]
    listed = cgroup_parents.before(made)
    made[0].mkdir(parents=True)
    (made[0] / "task").write_text("1")  # as a cgroup with a process in it: rmdir fails
    assert cgroup_parents.remove_new(made, listed) == [tmp_path / "busy"]


def test_a_parent_with_a_name_too_long_to_make_is_not_looked_for() -> None:
    own = {Path("/h/pids"): "/"}
    assert cgroup_parents.targets("/" + "|" * 256 + "/x", own) == []
    assert cgroup_parents.targets("☃" * 85, own) == [Path("/h/pids/" + "☃" * 85)]  # 255 bytes
    assert cgroup_parents.targets("☃" * 86, own) == []
    assert cgroup_parents.targets("a\x00b", own) == []


def test_a_path_that_cannot_be_looked_up_is_reported_not_raised(tmp_path: Path) -> None:
    listed = {tmp_path: set()}
    too_long = tmp_path / ("x" * 300) / "pod"  # ENAMETOOLONG on lookup
    assert cgroup_parents.remove_new([too_long], listed) == [tmp_path / ("x" * 300)]
