"""The cgroups runc makes for a request's cgroup_parent, found and removed after the request.

runc makes every missing component of a pod's cgroup path and removes only the last one (the
pod's own) when the pod goes: the kubelet owns the parents. A test that sends arbitrary
cgroup_parent values (the fuzzer: "%s%n", "☃☃☃", 1000 zeros) must remove the parents it caused.

Where runc puts them (libcontainer/cgroups/fs, runc 1.1): an absolute cgroup_parent under each
hierarchy's root; a relative one under the cgroup runc itself runs in, which is cribd's
(conmon and runc are its children), after cleaning it as an absolute path (so `..` cannot climb
out). `before()` lists the directories on the way to each target; `remove_new()` removes the
first component that was not listed, deepest dirs first, and says what it could not remove.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterable
from pathlib import Path

from google.protobuf.message import Message

from e2e.harness.fuzz_strategies import string_fields

CGROUP_ROOT = Path("/sys/fs/cgroup")
NAME_MAX = 255


def cgroup_parents(msg: Message) -> list[str]:
    """Every cgroup_parent value set anywhere in the request."""
    return [v for name, v in string_fields(msg) if name == "cgroup_parent" and v]


def own_cgroups(pid: int, root: Path = CGROUP_ROOT) -> dict[Path, str]:
    """Each mounted hierarchy's root → the cgroup `pid` is in there ("/a/b")."""
    return parse_proc_cgroup(Path(f"/proc/{pid}/cgroup").read_text(), root)


def parse_proc_cgroup(text: str, root: Path = CGROUP_ROOT) -> dict[Path, str]:
    """/proc/PID/cgroup's lines ("4:memory:/a", "1:name=systemd:/", "0::/") by hierarchy dir."""
    hybrid = (root / "unified").is_dir()
    out: dict[Path, str] = {}
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        if not controllers:
            names = ["unified"] if hybrid else [""]
        else:
            names = [c.removeprefix("name=") for c in controllers.split(",")]
        for name in names:
            hierarchy = root / name if name else root
            if hierarchy.is_dir() and not hierarchy.is_symlink():
                out[hierarchy] = path
    return out


def targets(parent: str, own: dict[Path, str]) -> list[Path]:
    """Where runc makes the cgroup_parent's dirs, in each hierarchy."""
    out = []
    for hierarchy, own_path in own.items():
        if parent.startswith("/"):
            inner = os.path.normpath(parent)
        else:
            inner = os.path.join(own_path, os.path.normpath("/" + parent).lstrip("/"))
        relative = os.path.normpath(inner).strip("/")
        # A name past NAME_MAX or with a NUL cannot be made (nor looked up: the lookup raises).
        if relative in ("", ".") or "\x00" in relative:
            continue
        if all(len(os.fsencode(c)) <= NAME_MAX for c in relative.split("/")):
            out.append(hierarchy / relative)
    return out


def before(paths: Iterable[Path]) -> dict[Path, set[str]]:
    """What each existing directory on the way to each path holds now."""
    listed: dict[Path, set[str]] = {}
    for path in paths:
        for directory in [*reversed(path.parents), path]:
            if directory in listed:
                continue
            try:
                listed[directory] = set(os.listdir(directory))
            except OSError:
                break  # not there: neither is anything below it
    return listed


def remove_new(paths: Iterable[Path], listed: dict[Path, set[str]]) -> list[Path]:
    """Remove the first directory on the way to each path that was not there before; what stays
    (a cgroup with a task in it cannot be removed) is returned."""
    left = []
    for path in paths:
        chain = [*reversed(path.parents), path]
        for parent, child in itertools.pairwise(chain):
            if parent not in listed or child.name in listed[parent]:
                continue
            try:
                if child.is_dir() and not child.is_symlink() and not remove_tree(child):
                    left.append(child)
            except (OSError, ValueError):
                # A teardown must go on to the network and the dirs: say it, do not raise.
                left.append(child)
            break
    return left


def remove_tree(top: Path) -> bool:
    """Remove a cgroup and the cgroups under it, deepest first (a cgroup's files go with it;
    one with a task in it stays, and so do its parents). Whether `top` is gone."""
    if top.is_dir():
        for sub in sorted(top.rglob("*"), key=lambda q: len(q.parts), reverse=True):
            if sub.is_dir():
                with contextlib.suppress(OSError):
                    sub.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()
    return not top.exists()
