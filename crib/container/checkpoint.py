"""CheckpointContainer: a running container's state as one tar archive, through runc and CRIU.

The archive follows CRI-O's layout (what `checkpointctl` and a CRI-O restore
read): `checkpoint/` holds CRIU's images, `config.dump` says which container it
was, `spec.dump` is its OCI spec and `rootfs-diff.tar` its writable layer. The
container keeps running (`--leave-running`, as the kubelet's checkpoint API
expects for forensic checkpoints).

CRIU is probed once with `criu check`: a node where it cannot work (missing,
or a kernel it does not support, such as a VM whose vDSO it cannot parse)
answers UNIMPLEMENTED with CRIU's own reason, so a kubelet sees "not supported"
rather than a failed checkpoint. The archive appears at `location` only when
complete (written beside it, then renamed); a failure leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crib import spawn
from crib.errors import DeadlineExceeded, Internal, InvalidArgument
from crib.runtime.oci_runtime import CALL_TIMEOUT_S, OCIRuntime, RuntimeCallFailed

CRIU_CHECK_TIMEOUT_S = 30.0
ARCHIVE_FILES = ("checkpoint", "config.dump", "spec.dump", "rootfs-diff.tar")


@dataclass(frozen=True)
class CriuProbe:
    usable: bool
    reason: str


# By binary. Two first calls at once may both probe; both get the same answer.
_probes: dict[str, CriuProbe] = {}


async def criu_probe(binary: str = "criu") -> CriuProbe:
    """Whether CRIU can checkpoint on this node; asked once, as the kernel does not change."""
    if binary not in _probes:
        _probes[binary] = await _run_criu_check(binary)
    return _probes[binary]


async def _run_criu_check(binary: str) -> CriuProbe:
    path = shutil.which(binary)
    if path is None:
        return CriuProbe(False, "CheckpointContainer needs CRIU, which is not installed on this node")
    try:
        code, out, _ = await spawn.run([path, "check"], timeout=CRIU_CHECK_TIMEOUT_S, stderr=spawn.STDOUT)
    except TimeoutError:
        return CriuProbe(
            False, f"CRIU cannot be used on this node: `criu check` hung for {CRIU_CHECK_TIMEOUT_S:g}s"
        )
    if code != 0:
        lines = [line for line in out.decode(errors="replace").splitlines() if line.strip()]
        # CRIU's first error says what it tripped on; later ones are consequences.
        first = next((line for line in lines if line.startswith("Error")), lines[-1] if lines else "")
        return CriuProbe(False, f"CRIU cannot checkpoint on this node (criu check: {first.strip()})")
    return CriuProbe(True, "")


def validate_location(location: str) -> Path:
    if not location:
        raise InvalidArgument("CheckpointContainer: location is empty")
    path = Path(location)
    if not path.is_absolute() or ".." in path.parts:
        raise InvalidArgument(f"CheckpointContainer: location {location!r} must be an absolute path")
    try:
        parent_is_dir, is_dir = path.parent.is_dir(), path.is_dir()
    except OSError as exc:  # a name or path too long, ...
        raise InvalidArgument(f"CheckpointContainer: location {location!r}: {exc.strerror}") from None
    if not parent_is_dir:
        raise InvalidArgument(f"CheckpointContainer: the directory of {location!r} does not exist")
    if is_dir:
        raise InvalidArgument(f"CheckpointContainer: location {location!r} is a directory")
    return path


async def checkpoint(
    runtime: OCIRuntime,
    container_id: str,
    metadata: dict[str, Any],
    spec: dict[str, Any],
    upper: Path,
    location: Path,
    work_root: Path,
    timeout: float = CALL_TIMEOUT_S,
) -> None:
    """Checkpoint the running container into the archive `location`."""
    work = work_root / f"checkpoint-{container_id[:12]}-{secrets.token_hex(4)}"
    staging = location.with_name(f".{location.name}.{secrets.token_hex(4)}.partial")
    deadline = time.monotonic() + timeout
    try:
        await asyncio.to_thread(_make_dirs, work)
        try:
            await runtime.run(
                "checkpoint",
                f"--image-path={work / 'content' / 'checkpoint'}",
                f"--work-path={work / 'criu-work'}",
                "--leave-running",
                container_id,
                timeout=timeout,
            )
        except RuntimeCallFailed as exc:
            raise Internal(f"checkpoint of container {container_id} failed: {exc.message}") from None
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(
                f"checkpoint of container {container_id} did not finish within {timeout:g}s"
            )
        metadata = {**metadata, "checkpointedAt": _rfc3339_now()}
        try:
            await asyncio.wait_for(
                asyncio.to_thread(_write_archive, work / "content", metadata, spec, upper, staging), left
            )
        except TimeoutError:
            # The writing thread ends on its own; its partial file goes below.
            raise DeadlineExceeded(
                f"archive of container {container_id} was not written within {timeout:g}s"
            ) from None
        await asyncio.to_thread(os.replace, staging, location)
    finally:
        await asyncio.to_thread(_remove, work, staging)


def _make_dirs(work: Path) -> None:
    (work / "content" / "checkpoint").mkdir(parents=True)
    (work / "criu-work").mkdir()


def _write_archive(
    content: Path, metadata: dict[str, Any], spec: dict[str, Any], upper: Path, out: Path
) -> None:
    (content / "config.dump").write_text(json.dumps(metadata, indent=2))
    (content / "spec.dump").write_text(json.dumps(spec, indent=2))
    with tarfile.open(content / "rootfs-diff.tar", "w") as diff:
        if upper.is_dir():
            for entry in sorted(upper.iterdir()):
                diff.add(entry, arcname=entry.name)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as raw:
        with tarfile.open(fileobj=raw, mode="w") as archive:
            for name in ARCHIVE_FILES:
                archive.add(content / name, arcname=name)
        raw.flush()
        os.fsync(raw.fileno())


def _remove(work: Path, staging: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
    staging.unlink(missing_ok=True)


def _rfc3339_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


__all__ = ["CriuProbe", "checkpoint", "criu_probe", "validate_location"]
