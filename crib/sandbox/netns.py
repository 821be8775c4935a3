"""Named network namespaces: a new netns kept alive by a bind mount on a file.

The namespace is made in a thread of its own, which unshares its network
namespace, bind-mounts `/proc/thread-self/ns/net` on the target file and
ends. Never in a pooled thread: a pooled thread would stay in the new
namespace and so would everything it spawned later.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import socket
import struct
import threading
from pathlib import Path

from crib.errors import Internal
from crib.runtime.rootfs import MS_BIND, mount, unmount

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def _loopback_up() -> None:
    """Bring up `lo` in the calling thread's network namespace (an ioctl, no `ip` process)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def _make(target: Path, result: list[BaseException | None]) -> None:
    try:
        if _libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
        # Every pod has a working loopback, whatever its CNI config holds.
        _loopback_up()
        mount("/proc/thread-self/ns/net", str(target), "none", MS_BIND)
        result.append(None)
    except BaseException as exc:
        result.append(exc)


def create(target: Path) -> None:
    """Create a network namespace pinned at `target`. Blocking."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)
    result: list[BaseException | None] = []
    thread = threading.Thread(target=_make, args=(target, result), name="netns")
    thread.start()
    thread.join()
    if not result or result[0] is not None:
        with contextlib.suppress(OSError):
            target.unlink()
        raise Internal(f"cannot create network namespace {target}: {result[0] if result else 'thread died'}")


def remove(target: Path) -> None:
    """Unpin and delete; the namespace goes when nothing else holds it. Missing is fine."""
    with contextlib.suppress(OSError):
        unmount(str(target))
    with contextlib.suppress(FileNotFoundError):
        target.unlink()


def exists(target: Path) -> bool:
    """True when `target` still pins a namespace (a file that is a mount point of nsfs)."""
    try:
        st = target.stat()
    except FileNotFoundError:
        return False
    parent = target.parent.stat()
    # A bind-mounted nsfs file has another device than the directory holding it.
    return st.st_dev != parent.st_dev
