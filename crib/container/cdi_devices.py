"""The CDI devices a container asks for, applied to its OCI spec.

cdi.py (spec files' parsing, the registry) is imported at the first container that asks
for a CDI device, off the event loop: most nodes have none, and an idle cribd's memory is
not spent on it (issue 17).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crib import first_use
from crib.proto.cri import api_pb2

# Besides ContainerConfig.CDI_devices, containerd and CRI-O take devices from these annotations.
ANNOTATION_PREFIX = "cdi.k8s.io/"


def asks_for_devices(config: api_pb2.ContainerConfig) -> bool:
    return bool(config.CDI_devices) or any(k.startswith(ANNOTATION_PREFIX) for k in config.annotations)


class CDIDevices:
    """The registry of the spec files in `spec_dirs`, made at the first device asked for."""

    def __init__(self, spec_dirs: Sequence[Path]) -> None:
        self.spec_dirs = tuple(spec_dirs)
        self.registry: Any = None  # a cdi.CDIRegistry (cdi.py imports this module)

    async def apply(self, config: api_pb2.ContainerConfig, spec: dict[str, Any]) -> None:
        """The edits of the devices `config` asks for (none: nothing), applied to `spec`."""
        if not asks_for_devices(config):
            return
        cdi = await first_use.module("crib.container.cdi")
        devices = cdi.requested_devices([d.name for d in config.CDI_devices], config.annotations)
        if devices:
            if self.registry is None:
                self.registry = cdi.CDIRegistry(self.spec_dirs)
            edits = await asyncio.to_thread(self.registry.resolve, devices)
            await asyncio.to_thread(cdi.apply_edits, spec, edits)
