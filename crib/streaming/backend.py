"""What the streaming server needs from the runtime: how an exec starts, an attach or a
port-forward connects (provided by the CRI server's wiring, cri_server/streaming.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crib.container.exec_stream import ExecProcess


@dataclass(frozen=True)
class Backend:
    """What the server needs from the runtime (provided by the CRI server's wiring)."""

    start_exec: Callable[[Any, int, int], Awaitable[ExecProcess]]  # (ExecRequest, width, height)
    attach: Callable[[Any], Awaitable[Any]]  # AttachRequest -> socket
    attach_resize: Callable[[Any, int, int], None]  # (AttachRequest, width, height)
    connect: Callable[[Any, int], Awaitable[Any]]  # (PortForwardRequest, port) -> socket
