"""Runtime handlers: finding the binary and reading its features."""

from __future__ import annotations

import json
from pathlib import Path

from crib.runtime import cgroup_driver
from crib.runtime.runtime_handler import features_from_json, probe, probe_all

RUNC_LIKE = {
    "mountOptions": ["bind", "ro", "rro", "rbind"],
    "linux": {"namespaces": ["mount", "user"], "mountExtensions": {"idmap": {"enabled": True}}},
}


def _fake_runtime(tmp_path: Path, name: str, body: str) -> Path:
    p = tmp_path / name
    p.write_text(f"#!/bin/sh\n{body}\n")
    p.chmod(0o755)
    return p


def test_features_from_runc_output() -> None:
    assert features_from_json(RUNC_LIKE) == (True, True)
    no_idmap = RUNC_LIKE | {"linux": {"namespaces": ["user"]}}
    assert features_from_json(no_idmap) == (True, False)
    assert features_from_json({"mountOptions": ["ro"]}) == (False, False)
    assert features_from_json({}) == (False, False)


async def test_probe_reads_features_from_the_binary(tmp_path: Path) -> None:
    rt = _fake_runtime(tmp_path, "fakerun", f"[ \"$1\" = features ] && echo '{json.dumps(RUNC_LIKE)}'")
    info = await probe("fake", str(rt))
    assert info.path == str(rt)
    assert (info.recursive_read_only_mounts, info.user_namespaces) == (True, True)


async def test_a_runtime_without_features_is_usable_without_them(tmp_path: Path) -> None:
    rt = _fake_runtime(tmp_path, "oldrun", "echo 'unknown command features' >&2; exit 1")
    garbage = _fake_runtime(tmp_path, "odd", "echo '[1, 2]'")
    infos = await probe_all({"old": str(rt), "odd": str(garbage), "gone": str(tmp_path / "missing")})
    assert infos["old"].path == str(rt)
    assert not infos["old"].recursive_read_only_mounts
    assert infos["odd"].path == str(garbage) and not infos["odd"].user_namespaces
    assert infos["gone"].path is None


def test_cgroup_driver_falls_back_without_systemd(tmp_path: Path) -> None:
    assert cgroup_driver.effective_driver("cgroupfs", tmp_path / "nope") == ("cgroupfs", None)
    driver, warning = cgroup_driver.effective_driver("systemd", tmp_path / "nope")
    assert driver == "cgroupfs" and "not PID 1" in warning
    (tmp_path / "systemd").mkdir()
    assert cgroup_driver.effective_driver("systemd", tmp_path / "systemd") == ("systemd", None)
