"""What one cribd's pods, containers and images leave on the host, as one comparable value.

Tests run in parallel, so it looks only at what this cribd and its test network own: mounts
and processes under its directory, its pod network's addresses, rules and bridge ports, and
its own state (sandbox and container dirs, the CNI result cache, content and layer stores).
"""

from __future__ import annotations

import os
from pathlib import Path

from e2e.harness.cleanup import processes_referencing
from e2e.harness.cribd import Cribd
from e2e.harness.network import PodNetwork


def _names(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def _files(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()) if d.is_dir() else []


def machine_state(daemon: Cribd, net: PodNetwork | None = None) -> dict[str, list[str]]:
    me = daemon.proc.pid if daemon.proc else 0
    state: dict[str, list[str]] = {
        "mounts": sorted(
            line.split()[4]
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if str(daemon.dir) in line
        ),
        "processes": sorted(str(p) for p in processes_referencing(daemon.dir) if p != me),
        "sandbox_dirs": _names(daemon.state / "sandboxes"),
        "container_dirs": _names(daemon.state / "containers"),
        "layer_dirs": _names(daemon.root / "containers"),
        "cni_cache": _files(daemon.root / "cni" / "results"),
        "blobs": _names(daemon.root / "content" / "blobs" / "sha256"),
        "ingest": _names(daemon.root / "content" / "ingest"),
        "layers": _names(daemon.root / "layers"),
    }
    if net is not None:
        ports = Path(f"/sys/class/net/{net.bridge}/brif")
        state["ipam"] = net.allocated_ips()
        state["iptables"] = net.iptables_mentions()
        state["bridge_ports"] = sorted(os.listdir(ports)) if ports.exists() else []
    return state
