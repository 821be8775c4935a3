"""spawn.readable: waiting on a child's pipe works for any descriptor number."""

from __future__ import annotations

import os
import time

from crib import spawn


def test_a_pipe_numbered_past_1024_is_waited_on() -> None:
    r, w = os.pipe()
    high_r = os.dup2(r, 1500)  # select() refuses descriptors from 1024 on
    try:
        t0 = time.monotonic()
        assert spawn.readable(high_r, 0.05) is False
        assert time.monotonic() - t0 >= 0.04  # it waited for the timeout
        os.write(w, b"x")
        assert spawn.readable(high_r, 5) is True
        os.close(w)
        w = -1
        assert os.read(high_r, 10) == b"x"
        assert spawn.readable(high_r, 5) is True  # the end counts too: a read returns b""
    finally:
        for fd in (r, high_r, w):
            if fd >= 0:
                os.close(fd)
