"""Knowing cheaply whether anything in a few directories changed since the last look.

Status's conditions come from the CNI config dir, the CNI bin dirs and conmon's; the kubelet
(and node-problem tools) ask for them all the time, and looking at those files on every call
costs a few syscalls each time. An inotify watch on each directory tells instead, as
containerd's fsnotify watch on its CNI config dir does: `changed()` is one read of a
non-blocking descriptor when nothing happened. inotify queues an event inside the syscall
that changes the directory, so a change made before a call is always seen by that call.

A directory that does not exist yet is watched through its nearest existing ancestor (its
creation is a change). Where a watch cannot be made at all (no inotify, the watch limit
reached), `changed()` answers True every time and the caller looks every time, as before.
"""

from __future__ import annotations

import ctypes
import errno
import os

from crib.log_setup import get_logger

log = get_logger("crib.dir_watch")

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

# Everything that can change what a directory holds or what its files say.
_CONTENT = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
)
# For an ancestor standing in for a directory not made yet: only entries coming and going.
_ENTRIES = IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
_READ_SIZE = 64 * 1024

_libc = ctypes.CDLL(None, use_errno=True)


class DirWatch:
    """inotify watches on a set of directories; `watch()` replaces the set."""

    def __init__(self) -> None:
        self._fd = -1
        self._wds: list[int] = []
        # True until a complete set of watches stands: until then every look is a change.
        self._blind = True
        try:
            fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        except AttributeError as exc:  # a libc without inotify
            log.warning("dir_watch.unavailable", error=str(exc))
            return
        if fd < 0:
            log.warning("dir_watch.unavailable", error=os.strerror(ctypes.get_errno()))
            return
        self._fd = fd

    def watch(self, directories: list[str]) -> None:
        """Watch exactly these directories (absolute paths) from now on. Call it right before
        reading them, so that a change made after the read is always reported."""
        if self._fd < 0:
            return
        self._drain()
        for wd in self._wds:
            _libc.inotify_rm_watch(self._fd, wd)
        self._wds.clear()
        self._drain()  # the IN_IGNORED of the watches just removed
        # One watch a path, with every mask asked of it: a second inotify_add_watch of the same
        # path would replace the first one's mask (a dir watched for its files, and as the
        # nearest ancestor of a dir not made yet, must keep reporting its files' edits).
        masks: dict[str, int] = {}
        for directory in directories:
            path, mask = directory, _CONTENT
            while not os.path.isdir(path) and path != "/":
                path, mask = os.path.dirname(path) or "/", _ENTRIES
            masks[path] = masks.get(path, 0) | mask
        blind = False
        for path, mask in masks.items():
            wd = _libc.inotify_add_watch(self._fd, os.fsencode(path), mask | IN_ONLYDIR)
            if wd < 0:
                err = ctypes.get_errno()
                # The directory went away between the check and the watch: look again next time.
                if err not in (errno.ENOENT, errno.ENOTDIR):
                    log.warning("dir_watch.failed", path=path, error=os.strerror(err))
                blind = True
                continue
            self._wds.append(wd)
        self._blind = blind

    def changed(self) -> bool:
        """Whether anything in the watched directories may have changed since `watch()` or
        the last call that answered True. True also when the watches are incomplete."""
        if self._blind:
            return True
        if self._drain():
            # A watch removed (its directory deleted or moved) is no longer looking: the
            # caller is told of the change and calls watch() again before its next read.
            self._blind = True
            return True
        return False

    def _drain(self) -> bool:
        """Read every queued event; whether there was one. Which event does not matter: any
        is a reason to look again (an overflow of the queue is an event too)."""
        seen = False
        while True:
            try:
                data = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                return seen
            except OSError as exc:
                log.warning("dir_watch.read_failed", error=str(exc))
                return True
            if not data:
                return seen
            seen = True

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._wds.clear()
        self._blind = True
