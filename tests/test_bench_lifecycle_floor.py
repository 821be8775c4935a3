"""bench/lifecycle_floor.py's copies of crib's work: a floor is only a floor of crib's call if it
runs what crib runs (the same conmon arguments, the same CNI environment) on its own copy
(its own ID, cgroup, dirs and netns), never on crib's container. Both sides are taken from
crib's own code here, with its process boundary faked, so a change in crib shows up."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest

from bench.lifecycle_floor_steps import (
    floor_conmon_args,
    floor_spec,
    leftover_cgroups,
    overlay_lowers,
)
from crib.runtime import conmon
from crib.runtime.oci_runtime import OCIRuntime

CRIB_ID = "c" * 64
FLOOR_ID = "f" * 64


def spec(root: str, cgroups: str) -> dict[str, Any]:
    return {
        "root": {"path": root, "readonly": False},
        "linux": {
            "cgroupsPath": cgroups,
            "namespaces": [
                {"type": "mount"},
                {"type": "network", "path": "/state/sandboxes/pod/netns"},
                {"type": "pid", "path": "/proc/42/ns/pid"},
            ],
        },
    }


def test_floor_spec_gets_its_own_cgroup_beside_cribs_and_an_absolute_rootfs() -> None:
    original = spec("rootfs", f"/crib/{CRIB_ID}")
    out = floor_spec(original, Path("/state/containers/c/bundle"), FLOOR_ID)
    assert out["root"]["path"] == "/state/containers/c/bundle/rootfs"
    assert out["linux"]["cgroupsPath"] == f"/crib/{FLOOR_ID}"
    # Without a netns of its own the copy joins the pod's namespaces, as the original.
    assert out["linux"]["namespaces"] == original["linux"]["namespaces"]
    # The original is left as it was.
    assert original["root"]["path"] == "rootfs" and original["linux"]["cgroupsPath"] == f"/crib/{CRIB_ID}"


def test_floor_spec_keeps_an_absolute_rootfs_and_the_systemd_form() -> None:
    out = floor_spec(spec("/abs/rootfs", f"kubepods.slice:crib:{CRIB_ID}"), Path("/b"), FLOOR_ID)
    assert out["root"]["path"] == "/abs/rootfs"
    assert out["linux"]["cgroupsPath"] == f"kubepods.slice:crib:{FLOOR_ID}"


def test_floor_spec_points_only_the_network_namespace_at_the_floors() -> None:
    out = floor_spec(spec("rootfs", f"/crib/{CRIB_ID}"), Path("/b"), FLOOR_ID, "/floor/netns/x")
    paths = {ns["type"]: ns.get("path") for ns in out["linux"]["namespaces"]}
    assert paths == {"mount": None, "network": "/floor/netns/x", "pid": "/proc/42/ns/pid"}
    no_network = spec("rootfs", "/crib/x")
    no_network["linux"]["namespaces"] = [{"type": "mount"}]
    with pytest.raises(ValueError):
        floor_spec(no_network, Path("/b"), FLOOR_ID, "/floor/netns/x")


def test_floor_spec_takes_the_floors_rootfs_and_mount_sources() -> None:
    original = spec("rootfs", f"/crib/{CRIB_ID}")
    original["mounts"] = [
        {"destination": "/dev/shm", "type": "bind", "source": "/state/sandboxes/pod/shm"},
        {"destination": "/proc", "type": "proc", "source": "proc"},
    ]
    out = floor_spec(
        original, Path("/b"), FLOOR_ID, "", Path("/floor/rootfs"), {"/state/sandboxes/pod/shm": "/floor/shm"}
    )
    assert out["root"]["path"] == "/floor/rootfs"
    assert [m["source"] for m in out["mounts"]] == ["/floor/shm", "proc"]
    assert original["mounts"][0]["source"] == "/state/sandboxes/pod/shm"


MOUNTINFO = (
    "46 27 0:4 net:[4026532174] /s/sandboxes/p/netns rw - nsfs nsfs rw\n"
    "49 27 0:41 / /s/containers/p/bundle/rootfs rw,relatime - overlay overlay "
    "rw,lowerdir=/r/layers/top:/r/layers/base,upperdir=/r/containers/p/upper,workdir=/r/containers/p/work,uuid=on\n"
)


def test_overlay_lowers_reads_the_layers_of_the_mount_at_the_target() -> None:
    assert overlay_lowers(MOUNTINFO, "/s/containers/p/bundle/rootfs") == [
        Path("/r/layers/top"),
        Path("/r/layers/base"),
    ]
    with pytest.raises(ValueError):
        overlay_lowers(MOUNTINFO, "/s/sandboxes/p/netns")  # mounted, but no overlay
    with pytest.raises(ValueError):
        overlay_lowers(MOUNTINFO, "/elsewhere")


def crib_conmon_args(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The arguments crib's conmon.create gives conmon, its spawn faked."""
    seen: list[list[str]] = []
    state = tmp_path / "state"
    paths = conmon.ConmonPaths(state / "containers" / CRIB_ID, state / "exits")

    def spawn(args: list[str], timeout: float, cwd: str) -> tuple[bytes, str]:
        seen.append(args)
        paths.conmon_pidfile.write_text("4242")
        return b'{"data": 4343}\n', ""

    monkeypatch.setattr(conmon, "_spawn", spawn)
    runtime = OCIRuntime("runc", "/usr/sbin/runc", state / "runtime" / "runc")
    bundle = state / "containers" / CRIB_ID / "bundle"
    created = asyncio.run(
        conmon.create(runtime, CRIB_ID, "k8s_x", bundle, paths, str(tmp_path / "logs/x.log"), "conmon")
    )
    assert created == conmon.Created(4343, 4242)
    return seen[0]


def test_floor_conmon_args_are_cribs_with_the_floors_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = crib_conmon_args(tmp_path, monkeypatch)
    state, floor = tmp_path / "state", tmp_path / "floor"
    replace = [
        (str(state / "containers" / CRIB_ID), str(floor / FLOOR_ID)),
        (str(state / "exits"), str(floor / "exits")),
        (f"--root={state / 'runtime' / 'runc'}", f"--root={floor / 'runc'}"),
        (f"k8s-file:{tmp_path / 'logs/x.log'}", f"k8s-file:{floor / 'x.log'}"),
        (CRIB_ID, FLOOR_ID),
    ]
    out = floor_conmon_args(args, replace, [str(state), CRIB_ID])
    assert len(out) == len(args)
    pairs = dict(itertools.pairwise(out))
    assert pairs["-c"] == pairs["-u"] == FLOOR_ID
    assert pairs["-b"] == str(floor / FLOOR_ID / "bundle")
    assert pairs["--exit-dir"] == str(floor / "exits")
    assert pairs["-l"] == f"k8s-file:{floor / 'x.log'}"
    # What is not the container's is crib's to the letter: the runtime, flags, name.
    assert [a for a in out if str(floor) not in a and FLOOR_ID not in a] == [
        a for a in args if str(tmp_path) not in a and CRIB_ID not in a
    ]


def test_floor_conmon_args_refuse_an_argument_left_naming_cribs_container(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = crib_conmon_args(tmp_path, monkeypatch)
    state = tmp_path / "state"
    # The exit dir not mapped: the floor's conmon would write into crib's.
    replace = [(str(state / "containers" / CRIB_ID), str(tmp_path / "floor")), (CRIB_ID, FLOOR_ID)]
    with pytest.raises(ValueError, match="exits"):
        floor_conmon_args(args, replace, [str(state), CRIB_ID])


def test_leftover_cgroups_looks_in_every_v1_hierarchy_or_the_v2_tree(tmp_path: Path) -> None:
    v1 = tmp_path / "v1"
    for controller in ("cpu", "memory", "unified"):
        (v1 / controller).mkdir(parents=True)
        (v1 / controller / "cgroup.procs").touch()
    (v1 / "memory" / "crib" / FLOOR_ID).mkdir(parents=True)
    paths = {f"/crib/{FLOOR_ID}", f"/crib/{CRIB_ID}", f"a.slice:crib:{FLOOR_ID}"}
    assert leftover_cgroups(paths, v1) == [v1 / "memory" / "crib" / FLOOR_ID]
    v2 = tmp_path / "v2"
    (v2 / "crib" / FLOOR_ID).mkdir(parents=True)
    (v2 / "cgroup.procs").touch()
    assert leftover_cgroups(paths, v2) == [v2 / "crib" / FLOOR_ID]
