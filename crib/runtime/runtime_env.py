"""What every container operation needs: dirs, the runtime handlers, conmon, exit watching.

Layout of one container `<id>` (pause containers included):
- `<state>/containers/<id>/`: conmon's files (pidfiles, attach socket, persist
  dir), the OCI bundle (`bundle/config.json`, `bundle/rootfs` mount point) and
  the image volumes' mounts (`image-volumes/<n>`);
- `<root>/containers/<id>/`: the overlay's writable `upper` and `work` dirs;
- `<state>/exits/<id>`: the exit code conmon writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crib.errors import FailedPrecondition, InvalidArgument
from crib.runtime import conmon, rootfs
from crib.runtime.cgroup_stats import CgroupDirs, cgroup_dirs, read_stats
from crib.runtime.kept_files import KeptFiles
from crib.runtime.layer_usage import LayerUsage
from crib.runtime.oci_runtime import OCIRuntime
from crib.runtime.runtime_handler import HandlerInfo
from crib.store import disk_record


@dataclass
class RuntimeEnv:
    root: Path
    state: Path
    conmon_binary: str
    cgroup_driver: str
    handlers: dict[str, HandlerInfo]
    default_handler: str
    watcher: conmon.ExitWatcher = field(default_factory=conmon.ExitWatcher)
    _emptying: asyncio.Task[None] | None = field(default=None, repr=False)
    _again: bool = field(default=False, repr=False)
    # container ID -> its cgroup's dirs: fixed at create, and every stats call needs them.
    _cgroups: dict[str, CgroupDirs] = field(default_factory=dict, repr=False)
    # The cgroup files and pods' /proc/PID/net/dev the stats calls read, kept open from one
    # poll to the next.
    stats_files: KeptFiles = field(default_factory=KeptFiles, repr=False)
    # The writable layers' directory listings, kept from one stats call to the next.
    layer_usage: LayerUsage = field(default_factory=LayerUsage, repr=False)
    # Containers whose dirs unmount() left with nothing mounted (torn down after their exit;
    # nothing mounts there after that), and trash entries discard() set aside so: removing
    # them needs no look at mountinfo, whose read costs 3-5 ms at 100 pods (issue 17).
    _unmounted: set[str] = field(default_factory=set, repr=False)
    _clean_trash: set[str] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        self.exit_dir.mkdir(parents=True, exist_ok=True)
        # What removals of a previous run left to delete: it goes now (start-up, blocking).
        self.empty_trash()

    @property
    def exit_dir(self) -> Path:
        return self.state / "exits"

    @property
    def systemd(self) -> bool:
        return self.cgroup_driver == "systemd"

    def runtime(self, handler: str) -> OCIRuntime:
        """The OCI runtime for a CRI runtime handler ("" is the default)."""
        name = handler or self.default_handler
        info = self.handlers.get(name)
        if info is None:
            raise InvalidArgument(
                f"unknown runtime handler {name!r} (configured: {', '.join(sorted(self.handlers))})"
            )
        if info.path is None:
            raise FailedPrecondition(
                f"runtime handler {name!r} needs {info.binary!r}, which is not installed"
            )
        return OCIRuntime(name, info.path, self.state / "runtime" / name)

    def conmon_paths(self, container_id: str) -> conmon.ConmonPaths:
        return conmon.ConmonPaths(self.state / "containers" / container_id, self.exit_dir)

    def bundle(self, container_id: str) -> Path:
        return self.state / "containers" / container_id / "bundle"

    def rootfs(self, container_id: str) -> Path:
        return self.bundle(container_id) / "rootfs"

    def image_volume_dir(self, container_id: str) -> Path:
        """Where the container's image volumes are mounted; cleanup unmounts them."""
        return self.state / "containers" / container_id / "image-volumes"

    def layer_dir(self, container_id: str) -> Path:
        return self.root / "containers" / container_id

    def upper_dir(self, container_id: str) -> str:
        """The writable layer's `upper` dir, as a string: the stats calls name it for every
        container each poll, and Path joins cost more than the walk of an empty layer."""
        return f"{self.root}/containers/{container_id}/upper"

    # --- blocking helpers (call through asyncio.to_thread) ---------------------------------------

    def prepare_rootfs(
        self,
        container_id: str,
        lowers: list[Path],
        pod_userns: tuple[Path, int, int] | None = None,
        mount_label: str = "",
    ) -> Path:
        """The overlay rootfs; with `pod_userns` (the pinned user namespace and the host uid and
        gid of its root) its layers are idmapped into the pod's user namespace; `mount_label`:
        its SELinux context."""
        target = self.rootfs(container_id)
        layer = self.layer_dir(container_id)
        self._unmounted.discard(container_id)
        idmap = None
        if pod_userns is not None:
            scratch = self.state / "containers" / container_id / "idmapped-layers"
            idmap = rootfs.Idmap(pod_userns[0], scratch, pod_userns[1], pod_userns[2])
        rootfs.mount_overlay(lowers, layer / "upper", layer / "work", target, idmap, mount_label)
        return target

    def handler_info(self, handler: str) -> HandlerInfo:
        """What the runtime handler ("" is the default) can do; unknown handlers as runtime() says."""
        self.runtime(handler)
        return self.handlers[handler or self.default_handler]

    def write_spec(self, container_id: str, spec: dict[str, Any]) -> Path:
        bundle = self.bundle(container_id)
        bundle.mkdir(parents=True, exist_ok=True)
        path = bundle / "config.json"
        disk_record.write_file(path, json.dumps(spec))
        return path

    def read_spec(self, container_id: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.bundle(container_id) / "config.json").read_text())
        except (OSError, ValueError):
            return None

    def cgroup_dirs(self, container_id: str) -> CgroupDirs | None:
        """The container's cgroup dirs from its spec's cgroupsPath; None without a spec. Blocking
        the first time (the spec is read once: a stats call per container per poll would
        otherwise parse every config.json)."""
        dirs = self._cgroups.get(container_id)
        if dirs is None:
            spec = self.read_spec(container_id)
            path = ((spec or {}).get("linux") or {}).get("cgroupsPath")
            if not path:
                return None
            dirs = self._cgroups[container_id] = cgroup_dirs(path, self.systemd)
        return dirs

    def _forget_stats_sources(self, container_id: str) -> None:
        """What the stats calls keep of a container that goes: its layer's listings, its
        cgroup's dirs and open files."""
        self.layer_usage.forget(self.upper_dir(container_id))
        dirs = self._cgroups.pop(container_id, None)
        if dirs is not None:  # runc removes the cgroup: no file of it stays open
            self.stats_files.forget(dirs.directories())

    @property
    def trash_dirs(self) -> tuple[Path, Path]:
        """Where removed containers' dirs wait to be deleted (on their own file systems, for rename)."""
        return self.state / "containers.trash", self.root / "containers.trash"

    def _dirs(self, container_id: str) -> tuple[Path, Path]:
        return self.state / "containers" / container_id, self.layer_dir(container_id)

    def unmount(self, container_id: str) -> None:
        """The container's rootfs and image volume mounts; its files stay. Blocking."""
        if rootfs.unmount_all_under(*self._dirs(container_id)):
            self._unmounted.add(container_id)

    async def tear_down(self, container_id: str, handler: str) -> None:
        """An ended container's (or pause's) runtime state and cgroup (runc delete), then its
        mounts; its files stay. Raises what runc or the unmount raise."""
        await self.runtime(handler).delete(container_id, force=True)
        await asyncio.to_thread(self.unmount, container_id)

    def discard(self, container_id: str) -> None:
        """Remove the container from disk as far as anyone can see, at once: mounts undone,
        dirs renamed into the trash (empty_trash deletes them; a restart finishes the job)."""
        clean = container_id in self._unmounted or rootfs.unmount_all_under(*self._dirs(container_id))
        self._unmounted.discard(container_id)
        self._forget_stats_sources(container_id)
        name = f"{container_id}-{uuid.uuid4().hex[:8]}"
        if clean:
            # Marked before it shows in the trash, so empty_trash never sees it unmarked.
            self._clean_trash.add(name)
        for source, trash in zip(self._dirs(container_id), self.trash_dirs, strict=True):
            trash.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.rename(source, trash / name)
        with contextlib.suppress(FileNotFoundError):
            (self.exit_dir / container_id).unlink()

    def empty_trash(self) -> None:
        """Delete what discard() set aside. Blocking; a concurrent second call is harmless.

        An entry discard() did not see unmounted (a failed unmount, or one of a previous run)
        is unmounted first: rmtree would go down into a mount and delete what it shows."""
        entries = [e for trash in self.trash_dirs if trash.is_dir() for e in trash.iterdir()]
        unknown = [e for e in entries if e.name not in self._clean_trash]
        if unknown:
            rootfs.unmount_all_under(*unknown)
        for entry in entries:
            shutil.rmtree(entry, ignore_errors=True)
        for entry in entries:
            self._clean_trash.discard(entry.name)

    def empty_trash_soon(self) -> None:
        """empty_trash in a thread, after the call that filled it has answered; one at a time."""
        if self._emptying is not None and not self._emptying.done():
            self._again = True
            return

        async def run() -> None:
            self._again = True
            while self._again:
                self._again = False
                await asyncio.to_thread(self.empty_trash)

        self._emptying = asyncio.get_running_loop().create_task(run())

    def cleanup(self, container_id: str) -> None:
        """Unmount and remove everything of the container on disk. Idempotent."""
        self._forget_stats_sources(container_id)
        self._unmounted.discard(container_id)
        state_dir, layer_dir = self._dirs(container_id)
        rootfs.unmount_all_under(state_dir, layer_dir)
        shutil.rmtree(state_dir, ignore_errors=True)
        shutil.rmtree(layer_dir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (self.exit_dir / container_id).unlink()

    def remove_orphans(self, known: set[str]) -> list[str]:
        """Container dirs no record knows (a crash during CreateContainer, before its record);
        unmounted and removed. Blocking."""
        found = set()
        for parent in (self.state / "containers", self.root / "containers", self.exit_dir):
            if parent.is_dir():
                found |= {p.name for p in parent.iterdir()}
        orphans = sorted(found - known)
        for container_id in orphans:
            self.cleanup(container_id)
        return orphans

    def runtime_orphans(self, known: set[str]) -> list[tuple[str, str]]:
        """(handler, ID) of containers an OCI runtime keeps state for that no record knows: their
        processes would outlive every cleanup of files. Blocking."""
        found: list[tuple[str, str]] = []
        for name, info in sorted(self.handlers.items()):
            root = self.state / "runtime" / name
            if info.path is not None and root.is_dir():
                ids = sorted(p.name for p in root.iterdir() if p.is_dir())
                found += [(name, i) for i in ids if i not in known]
        return found

    def exit_code(self, container_id: str) -> int | None:
        try:
            return int((self.exit_dir / container_id).read_text().strip())
        except (OSError, ValueError):
            return None

    def oom_killed(self, container_id: str, exit_code: int) -> bool:
        """conmon's marker, or for a SIGKILLed container the OOM kills its cgroup counted.

        conmon can miss the OOM event when the kill and the exit arrive together (seen under
        load); the cgroup, still there until the runtime deletes the container, does not."""
        if (self.conmon_paths(container_id).persist_dir / "oom").exists():
            return True
        if exit_code != 128 + 9:
            return False
        dirs = self.cgroup_dirs(container_id)
        stats = read_stats(dirs) if dirs is not None else None
        return bool(stats and stats.oom_kills)


def conmon_alive(pid: int, container_id: str) -> bool:
    """True if `pid` is still the conmon of this container (pids get reused)."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and cmdline[0].endswith(b"conmon") and container_id.encode() in cmdline


async def wait_for_exit(event: asyncio.Event, timeout: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    return True


OnExit = Callable[[], None]
