"""Connections into a pod's network namespace, for port-forward.

The socket is made by a thread of its own that first joins the pod's netns
(setns applies to the calling thread only); once made, a socket belongs to its
namespace and works from any thread. Never a pooled thread: it would stay in
the pod's namespace.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading

from crib.errors import FailedPrecondition

CLONE_NEWNET = 0x40000000
CONNECT_TIMEOUT_S = 10.0
_libc = ctypes.CDLL(None, use_errno=True)


def _connect(netns: str, port: int, result: list[socket.socket | BaseException]) -> None:
    try:
        if netns:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {netns}: {os.strerror(err)}")
            finally:
                os.close(fd)
        result.append(socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT_S))
    except BaseException as exc:
        result.append(exc)


def connect(netns: str, port: int) -> socket.socket:
    """A TCP connection to `port` on the pod's loopback ("" netns: the host's). Blocking."""
    result: list[socket.socket | BaseException] = []
    thread = threading.Thread(target=_connect, args=(netns, port, result), name="portforward")
    thread.start()
    thread.join(CONNECT_TIMEOUT_S + 5)
    if not result:
        raise FailedPrecondition(f"connecting to port {port} in the pod timed out")
    if isinstance(result[0], BaseException):
        exc = result[0]
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise FailedPrecondition(f"failed to connect to localhost:{port} inside the pod: {reason}")
    sock = result[0]
    sock.settimeout(None)
    sock.setblocking(False)
    return sock
