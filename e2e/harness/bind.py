"""A directory bind-mounted onto itself with a propagation of the test's choosing.

Host-path volumes with propagation need their source's mount to be shared (or slave);
a test makes that mount, or a private one, and it is undone whatever happens.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

MOUNT_TIMEOUT_S = 30


@contextlib.contextmanager
def self_bind(d: Path, propagation: str) -> Iterator[Path]:
    """`d` bound onto itself and made `propagation` ("shared", "private", "slave")."""
    subprocess.run(["mount", "--bind", str(d), str(d)], check=True, timeout=MOUNT_TIMEOUT_S)
    try:
        subprocess.run(["mount", f"--make-{propagation}", str(d)], check=True, timeout=MOUNT_TIMEOUT_S)
        yield d
    finally:
        subprocess.run(["umount", "-R", "-l", str(d)], timeout=MOUNT_TIMEOUT_S)
