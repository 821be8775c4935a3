"""Running a client on a pseudo-terminal, as a user's shell runs it.

`setsid -w -c` makes the pty the process's controlling terminal, so it gets
SIGWINCH on a resize and SIGINT from a ^C written to the terminal.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from contextlib import contextmanager


def set_size(fd: int, columns: int, lines: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))


@contextmanager
def on_a_terminal(
    argv: list[str], env: dict[str, str], columns: int = 120, lines: int = 40
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """The process and the terminal's master side; killed and closed on the way out."""
    master, slave = os.openpty()
    set_size(master, columns, lines)
    proc = subprocess.Popen(["setsid", "-w", "-c", *argv], stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    try:
        yield proc, master
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)


def read_all(fd: int, proc: subprocess.Popen[bytes], timeout: float, until: bytes | None = None) -> bytes:
    """What is written to the terminal until `until` appears, or else until the process
    ends (EIO once its side is closed)."""
    seen = bytearray()
    deadline = time.monotonic() + timeout
    while until is None or until not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"the process did not finish: {bytes(seen)!r}"
        ready, _, _ = select.select([fd], [], [], min(left, 1.0))
        if not ready:
            if proc.poll() is not None:
                return bytes(seen)
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return bytes(seen)
        if not chunk:
            return bytes(seen)
        seen += chunk
    return bytes(seen)
