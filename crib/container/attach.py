"""Attaching to a running container's stdio through its conmon's attach socket.

conmon serves a SOCK_SEQPACKET socket at `<socket dir>/<id>/attach`: each
message it sends is one byte naming the stream (2 stdout, 3 stderr) followed
by the data; what a client writes goes to the container's stdin, and a
half-close (SHUT_WR) ends it. The terminal size goes through conmon's control
fifo as "1 <height> <width>\\n".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from pathlib import Path

from crib.errors import FailedPrecondition
from crib.runtime.runtime_env import RuntimeEnv

STDOUT = 2
STDERR = 3
# conmon's STDIO_BUF_SIZE plus the stream byte.
MESSAGE_SIZE = 8192 + 1


def attach_socket_path(env: RuntimeEnv, container_id: str) -> Path:
    return env.conmon_paths(container_id).socket_dir / container_id / "attach"


async def connect(env: RuntimeEnv, container_id: str) -> socket.socket:
    path = attach_socket_path(env, container_id)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.setblocking(False)
    # The path may be longer than a sockaddr_un holds: connect through an O_PATH fd.
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        sock.close()
        raise FailedPrecondition(f"container {container_id}: no attach socket ({exc.strerror})") from None
    try:
        await asyncio.get_running_loop().sock_connect(sock, f"/proc/self/fd/{fd}")
    except OSError as exc:
        sock.close()
        raise FailedPrecondition(f"container {container_id}: cannot attach ({exc.strerror})") from None
    finally:
        os.close(fd)
    return sock


def resize(env: RuntimeEnv, container_id: str, width: int, height: int) -> None:
    ctl = env.bundle(container_id) / "ctl"
    with contextlib.suppress(OSError):
        fd = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            os.write(fd, f"1 {height} {width}\n".encode())
        finally:
            os.close(fd)
