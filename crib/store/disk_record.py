"""A copy of a pod's or container's record beside its files, for when the state store is lost.

Written when the pod or container is made, with the fields that never change (its CRI
config, image, handler, network), and again when UpdateContainerResources changes a
container's resources. The state that does change (created, running or not, PIDs, exit
codes, addresses) is not kept here: a start-up that must rebuild the state store reads
it from where the runtime keeps it (runc's state, conmon's pid and exit files, the CNI
result cache). Kept in the state dir, beside the runtime files
it completes, so it lives exactly as long as they do; not fsynced for that reason.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

NAME = "record.json"


def write(directory: Path, record: dict[str, Any]) -> None:
    """Blocking; atomic (a reader sees the whole file or none)."""
    write_file(directory / NAME, json.dumps(record, separators=(",", ":"), sort_keys=True))


def write_file(path: Path, text: str) -> None:
    """Write `path` whole or not at all (a temp file renamed over it). A failed write names the
    file: an OSError from write() carries none, and "no space left" should say where."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
    except OSError as exc:
        exc.filename = exc.filename or str(tmp)
        tmp.unlink(missing_ok=True)
        raise
    os.rename(tmp, path)


def read(directory: Path) -> dict[str, Any] | None:
    """The record, or None when it is absent or unreadable (the caller cleans up instead)."""
    try:
        record = json.loads((directory / NAME).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def read_pid(path: Path) -> int:
    """A pidfile's PID, 0 when it is absent or garbled."""
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0
