"""Paths inside a container's root filesystem, resolved as the container would see them.

A container's rootfs is an overlay of hostile image content (DESIGN.md §6): any symlink
in it may point anywhere, absolutely or through `..`. Everything crib does to a rootfs
from the host (creating mount points, reading /etc/passwd) must therefore resolve paths
as if the rootfs were `/`: an absolute link target starts again at the rootfs, `..`
never climbs above it, and no link is ever followed out to the host.

`secure_join` is the classic lexical + readlink algorithm of
github.com/cyphar/filepath-securejoin's SecureJoin: walk the path one component at a
time, lstat each prefix under the root, and splice a symlink's target into the part
still to walk. It checks the file system and then acts on a path, so it is subject to
races: a process that changes the rootfs concurrently could swap a checked directory
for a symlink between the check and the use. crib only calls it on a freshly mounted
rootfs before any container process runs in it, and the two functions that act on the
result (`mkdir_all`, `open_in_root`) walk it again from an fd of the root, opening every
component with O_NOFOLLOW, so a swapped component makes them fail instead of escape.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from crib.errors import InvalidArgument

# The Linux kernel's limit on symlinks followed in one lookup is 40; SecureJoin allows 255.
MAX_SYMLINKS = 255

_DIR_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted where a regular file is expected must not block the open.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
# Errors that mean "this path does not lead to what we want" while walking without
# following links: missing, a non-directory in the middle, a symlink (O_NOFOLLOW).
_ABSENT = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)


def _resolve(root: str, unsafe: str) -> list[str]:
    """The components under `root` that `unsafe` resolves to; none of them is `.`/`..`."""
    if "\x00" in unsafe:
        raise InvalidArgument(f"path {unsafe!r} contains a NUL byte")
    current: list[str] = []
    remaining = unsafe
    links = 0
    while remaining:
        part, _, remaining = remaining.partition("/")
        if part in ("", "."):
            continue
        if part == "..":
            # `current` holds no symlinks, so `..` is lexical; above the root is the root.
            if current:
                current.pop()
            continue
        candidate = [*current, part]
        host = os.path.join(root, *candidate)
        try:
            st = os.lstat(host)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                # A missing component (or one under a non-directory) is taken literally,
                # and so is everything after it.
                current = candidate
                continue
            if e.errno == errno.ENAMETOOLONG:
                raise InvalidArgument(f"path {unsafe!r} is too long inside the container") from None
            raise
        if not stat.S_ISLNK(st.st_mode):
            current = candidate
            continue
        links += 1
        if links > MAX_SYMLINKS:
            raise InvalidArgument(f"resolving {unsafe!r} in the container: too many levels of symbolic links")
        target = os.readlink(host)
        remaining = f"{target}/{remaining}"
        if target.startswith("/"):
            # An absolute target is absolute in the container: start again at its root.
            current = []
    return current


def secure_join(root: Path, unsafe: str) -> Path:
    """The host path of container path `unsafe` (absolute or relative) in rootfs `root`.

    Symlinks inside `root` are followed as the container would see them; a missing
    component ends the resolution and the rest of `unsafe` is appended literally. The
    result is always `root` or below it. More than MAX_SYMLINKS link traversals raise
    InvalidArgument. Subject to races if the rootfs changes concurrently (see the module
    docstring).
    """
    root_s = os.fspath(root)
    return Path(root_s, *_resolve(root_s, unsafe))


def _container_path(parts: list[str]) -> str:
    return "/" + "/".join(parts)


def mkdir_all(root: Path, unsafe: str, mode: int = 0o755, owner: tuple[int, int] | None = None) -> Path:
    """Create directory `unsafe` and its missing parents inside rootfs `root`; its host path.

    The path is resolved as by `secure_join`, then walked again from an fd of `root`, each
    component opened with O_PATH|O_NOFOLLOW|O_DIRECTORY and each missing one created with
    mkdirat relative to its parent's fd (mode `mode`, subject to the umask like mkdir(2)).
    A component that exists and is not a directory, or that turned into a symlink after
    resolution, raises InvalidArgument. An existing directory is fine. `owner`: the host
    uid and gid each directory made here is given (a pod's root in its user namespace).
    """
    root_s = os.fspath(root)
    parts = _resolve(root_s, unsafe)
    fd = os.open(root_s, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, name in enumerate(parts):
            shown = _container_path(parts[: i + 1])
            try:
                child = _open_dir(fd, name, shown)
            except FileNotFoundError:
                # Created concurrently: the open below checks what it is.
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, mode, dir_fd=fd)
                    if owner is not None:
                        os.chown(name, *owner, dir_fd=fd, follow_symlinks=False)
                child = _open_dir(fd, name, shown)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)
    return Path(root_s, *parts)


def _open_dir(dir_fd: int, name: str, shown: str) -> int:
    """An O_PATH fd of directory `name` in `dir_fd`, never following a symlink."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as e:
        if e.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
    # O_NOFOLLOW|O_DIRECTORY on a symlink fails with ENOTDIR (with O_PATH) or ELOOP.
    try:
        is_link = stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        is_link = False
    if is_link:
        raise InvalidArgument(f"{shown} in the container's root filesystem became a symlink while in use")
    raise InvalidArgument(f"{shown} exists in the container's root filesystem and is not a directory")


def open_in_root(root: Path, unsafe: str) -> int | None:
    """A read-only fd of regular file `unsafe` in rootfs `root`, or None.

    None when the file does not exist, is not a regular file (a directory, a FIFO, a
    device, a symlink that appeared after resolution), or a parent is not a directory.
    The path is resolved as by `secure_join`, then walked from an fd of `root` with
    O_PATH|O_NOFOLLOW for the parents and O_RDONLY|O_NOFOLLOW|O_CLOEXEC for the file
    itself, so no link is ever followed out of the root. The caller closes the fd.
    """
    root_s = os.fspath(root)
    parts = _resolve(root_s, unsafe)
    if not parts:
        return None  # the root itself is a directory
    fd = os.open(root_s, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in parts[:-1]:
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                if e.errno in _ABSENT:
                    return None
                raise
            os.close(fd)
            fd = child
        return _open_regular(fd, parts[-1])
    finally:
        os.close(fd)


def _open_regular(dir_fd: int, name: str) -> int | None:
    # Check the type before opening: opening a device node can have side effects.
    try:
        before = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as e:
        if e.errno in _ABSENT:
            return None
        raise
    if not stat.S_ISREG(before.st_mode):
        return None
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in _ABSENT:
            return None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        return None
    os.set_blocking(fd, True)
    return fd
