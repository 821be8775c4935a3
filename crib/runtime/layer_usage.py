"""What a writable layer uses on disk, counted as usage_of_tree counts it, without listing
every directory again at every stats call.

Every ContainerStats and every pod's stats carry their writable layers' size, and the kubelet
asks for all of them every 10 s; walking a layer was 17% of ListPodSandboxStats at 100 pods
(issue 17), most of it listing directories that had not changed. A directory's entries
change only with its mtime and ctime (a create, unlink or rename in it sets both), so its
listing is kept with the (inode, mtime, ctime) it was read at and used again while the
directory still shows them. Every entry is still stat'ed at every count, so a file that grew,
a new hard link or a directory that changed inside is seen as before: the counts are exactly
usage_of_tree's. (containerd serves the writable layer from a cache its syncer refreshes every
10 s; these counts are of now.)

A listing is not kept when its directory changed within `racy_ns` of the count: the kernel
stamps times from a coarse clock, so a second change in the same tick would show the stamps
already kept (git's "racily clean" entries). Bounded at `max_names` names kept in all: a tree
with more is not kept, and one that would go past the bound drops the others' listings
(listed afresh at their next count); the owner forgets a layer when its container goes.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable

# (inode, mtime_ns, ctime_ns) of a directory when its names were read.
_Stamp = tuple[int, int, int]
_NONE: dict[str, tuple[_Stamp, list[str]]] = {}


def usage_of_tree(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(bytes, inodes) of a directory tree such as a writable layer, as `du -x` counts them.

    Bytes are allocated blocks (st_blocks * 512); every hard-linked file counts once; symlinks
    count as themselves; other filesystems mounted inside are left out; entries that vanish
    while walking are skipped.
    """
    return _count(os.fspath(path), _NONE, None)[:2]


def _count(
    path: str, kept: dict[str, tuple[_Stamp, list[str]]], settled: int | None
) -> tuple[int, int, dict[str, tuple[_Stamp, list[str]]], bool]:
    """(bytes, inodes, the listings reached, whether any directory was listed): the walk, with
    each directory's listing taken from `kept` while its stamp holds. A listing read now is
    among those reached if its directory last changed before `settled` (None: none is)."""
    try:
        top = os.lstat(path)
    except OSError:
        return 0, 0, {}, False
    used, inodes = top.st_blocks * 512, 1
    if not stat.S_ISDIR(top.st_mode):
        return used, inodes, {}, False
    device = top.st_dev
    # The listings this count reached: kept for the next one (a directory removed since
    # drops out), unless every one came from `kept` as it was.
    reached: dict[str, tuple[_Stamp, list[str]]] = {}
    relisted = False
    seen: set[int] = set()
    stack = [(path, top)]
    lstat = os.lstat
    while stack:
        directory, st = stack.pop()
        stamp = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
        listing = kept.get(directory)
        if listing is not None and listing[0] == stamp:
            reached[directory] = listing
            names = listing[1]
        else:
            relisted = True
            try:
                names = os.listdir(directory)
            except OSError:
                continue  # gone or unreadable: as a walk, nothing under it counts
            if settled is not None and st.st_mtime_ns < settled and st.st_ctime_ns < settled:
                reached[directory] = (stamp, names)
        for name in names:
            entry = f"{directory}/{name}"
            try:
                est = lstat(entry)
            except OSError:
                continue  # gone since the listing: not counted, as a walk would not
            if est.st_dev != device:
                continue
            is_dir = stat.S_ISDIR(est.st_mode)
            if not is_dir and est.st_nlink > 1:
                if est.st_ino in seen:
                    continue
                seen.add(est.st_ino)
            used += est.st_blocks * 512
            inodes += 1
            if is_dir:
                stack.append((entry, est))
    return used, inodes, reached, relisted


class LayerUsage:
    """(bytes, inodes) of directory trees, with their directories' listings kept. Thread-safe:
    stats calls count in worker threads, sometimes two at once."""

    def __init__(
        self,
        max_names: int = 32768,
        racy_ns: int = 1_000_000_000,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.max_names = max_names
        self.racy_ns = racy_ns
        self._clock = clock
        # tree → {directory: (its stamp, its names)}: a tree's listings go in one forget().
        self._trees: dict[str, dict[str, tuple[_Stamp, list[str]]]] = {}
        self._names = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Directories whose listing is kept."""
        return sum(len(listings) for listings in self._trees.values())

    def usage(self, path: str) -> tuple[int, int]:
        """usage_of_tree(path), listing only the directories that changed since the last count."""
        settled = self._clock() - self.racy_ns
        with self._lock:
            before = self._trees.get(path)
        kept = before if before is not None else _NONE
        used, inodes, reached, relisted = _count(path, kept, settled)
        if relisted or len(reached) != len(kept):
            self._keep(path, before, reached)
        return used, inodes

    def _keep(
        self,
        path: str,
        before: dict[str, tuple[_Stamp, list[str]]] | None,
        listings: dict[str, tuple[_Stamp, list[str]]],
    ) -> None:
        added = sum(len(names) for _, names in listings.values())
        removed = sum(len(names) for _, names in before.values()) if before else 0
        with self._lock:
            if self._trees.get(path) is not before:
                return  # another count of the same tree kept its own meanwhile
            if added > self.max_names:
                # Too big to keep alone: walked afresh each time, the others' listings stay.
                self._trees.pop(path, None)
                self._names -= removed
                return
            if self._names - removed + added > self.max_names:
                self._trees.clear()  # the others are listed afresh at their next count
                self._names, removed = 0, 0
            self._names += added - removed
            if listings:
                self._trees[path] = listings
            else:
                self._trees.pop(path, None)

    def forget(self, path: str) -> None:
        """Drop the listings of the tree at `path` (its container is going)."""
        with self._lock:
            listings = self._trees.pop(path, None)
            if listings:
                self._names -= sum(len(names) for _, names in listings.values())
