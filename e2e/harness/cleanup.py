"""Teardown that leaves the machine as it was, even after a failed test.

Everything a test's cribd creates lives under the test's temp dir: processes
(conmon, runc, containers) carry that path on their command line or as their
working directory, mounts sit below it, and network namespaces are bind
mounts there. So cleaning a temp dir means: kill what refers to it, unmount
what is mounted under it, then remove it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)
MNT_DETACH = 2


def processes_referencing(path: Path) -> list[int]:
    needle = str(path).encode()
    me = os.getpid()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read()
            cwd = os.readlink(f"/proc/{entry.name}/cwd").encode()
            # A container's processes: their root is a rootfs mounted under the dir.
            root = os.readlink(f"/proc/{entry.name}/root").encode()
        except OSError:
            continue
        if needle in cmdline or cwd.startswith(needle) or root.startswith(needle):
            found.append(int(entry.name))
    return found


def kill_processes_referencing(path: Path) -> list[int]:
    pids = processes_referencing(path)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        # Reap our own children; others are reaped by their parent or init.
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, 0)
    return pids


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mounts_under(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = _unescape(line.split()[4])
            if point == str(path) or point.startswith(prefix):
                points.append(point)
    return points


def unmount_under(path: Path) -> list[str]:
    points = mounts_under(path)
    # Deepest first, so no mount is busy with another below it.
    for point in sorted(points, key=len, reverse=True):
        if _libc.umount2(point.encode(), MNT_DETACH) != 0:
            err = ctypes.get_errno()
            if err not in (22, 2):  # EINVAL: no longer a mount point; ENOENT: gone
                raise OSError(err, f"umount {point}: {os.strerror(err)}")
    return points


def _list_runtime_root(root: Path) -> tuple[str, list[str]]:
    """The runtime binary that reads this state dir and the containers it lists. The dir is
    named after the handler, which is the binary's name unless the handler maps to another
    binary (the conformance run's "test-handler" is runc): then whichever binary reads it."""
    names = [root.name] if shutil.which(root.name) else ["runc", "crun"]
    for name in names:
        binary = shutil.which(name)
        if binary is None:
            continue
        listing = subprocess.run(
            [binary, f"--root={root}", "list", "-q"], capture_output=True, text=True, timeout=30
        )
        if listing.returncode == 0:
            return binary, listing.stdout.split()
    return root.name, []


def kill_runtime_containers(path: Path) -> list[str]:
    """Containers an OCI runtime still knows under `<path>/state/runtime/<handler>`: killed and deleted.

    Their processes may no longer show the test's path anywhere (their root
    was unmounted lazily), but the runtime's state dir still lists them.
    """
    killed = []
    for root in (path / "state" / "runtime").glob("*"):
        binary, listing = _list_runtime_root(root)
        for container_id in listing:
            subprocess.run(
                [binary, f"--root={root}", "kill", "--all", container_id, "KILL"],
                capture_output=True,
                timeout=30,
            )
            subprocess.run(
                [binary, f"--root={root}", "delete", "-f", container_id], capture_output=True, timeout=30
            )
            killed.append(container_id)
    return killed


def clean_tree(path: Path) -> dict[str, list]:
    """Kill, unmount, remove; returns what it had to clean (a test may assert it was nothing)."""
    containers = kill_runtime_containers(path)
    killed = kill_processes_referencing(path)
    unmounted = unmount_under(path)
    shutil.rmtree(path, ignore_errors=True)
    return {"containers": containers, "killed": killed, "unmounted": unmounted}
