"""Runtime handlers: the OCI runtime binary behind each RuntimeClass, and what it can do.

`<runtime> features` (runc >= 1.1) reports mount options and idmapped-mount
support; the kubelet reads the result from Status to admit pods that need
recursive read-only mounts or user namespaces. A runtime without `features`
(crun 1.8) is reported without either.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from dataclasses import dataclass

from crib import spawn
from crib.log_setup import get_logger

log = get_logger("crib.runtime_handler")

PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class HandlerInfo:
    name: str
    binary: str
    # Absolute path of the binary, None when it is not installed.
    path: str | None
    recursive_read_only_mounts: bool = False
    user_namespaces: bool = False


def resolve_binary(binary: str) -> str | None:
    if "/" in binary:
        return binary if os.path.isfile(binary) and os.access(binary, os.X_OK) else None
    return shutil.which(binary)


def _kernel_at_least(major: int, minor: int) -> bool:
    release = os.uname().release.split("-")[0].split(".")
    try:
        return (int(release[0]), int(release[1])) >= (major, minor)
    except (IndexError, ValueError):
        return False


def features_from_json(data: dict) -> tuple[bool, bool]:
    """(recursive read-only mounts, user namespaces) from `runc features` output."""
    mount_options = data.get("mountOptions") or []
    # rro needs mount_setattr(2), Linux 5.12.
    rro = "rro" in mount_options and _kernel_at_least(5, 12)
    linux = data.get("linux") or {}
    idmap = ((linux.get("mountExtensions") or {}).get("idmap") or {}).get("enabled") is True
    # crib idmaps the layers under an overlay rootfs itself: overlayfs takes idmapped layers
    # from Linux 5.19.
    userns = idmap and "user" in (linux.get("namespaces") or []) and _kernel_at_least(5, 19)
    return rro, userns


async def probe(name: str, binary: str) -> HandlerInfo:
    path = resolve_binary(binary)
    if path is None:
        log.warning("runtime_handler.missing", handler=name, binary=binary)
        return HandlerInfo(name, binary, None)
    try:
        code, out, _ = await spawn.run([path, "features"], timeout=PROBE_TIMEOUT_S, stderr=spawn.DEVNULL)
    except OSError as exc:
        log.warning("runtime_handler.unusable", handler=name, path=path, error=str(exc))
        return HandlerInfo(name, binary, None)
    except TimeoutError:
        log.warning("runtime_handler.features_timeout", handler=name, path=path)
        return HandlerInfo(name, binary, path)
    if code != 0:
        return HandlerInfo(name, binary, path)
    try:
        data = json.loads(out)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return HandlerInfo(name, binary, path)
    rro, userns = features_from_json(data)
    return HandlerInfo(name, binary, path, rro, userns)


async def probe_all(handlers: dict[str, str]) -> dict[str, HandlerInfo]:
    """Probe every configured handler (name → binary) concurrently."""
    infos = await asyncio.gather(*(probe(n, b) for n, b in handlers.items()))
    return {i.name: i for i in infos}
