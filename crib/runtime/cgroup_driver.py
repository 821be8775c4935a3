"""Which cgroup driver crib uses, reported to the kubelet by RuntimeConfig.

The kubelet takes the driver from the runtime (KubeletCgroupDriverFromCRI), so
the answer must be the driver crib really uses: `systemd` only when configured
and systemd runs the node, `cgroupfs` otherwise.
"""

from __future__ import annotations

from pathlib import Path

# sd_booted(3): systemd is PID 1 exactly when this directory exists.
SYSTEMD_RUN_DIR = Path("/run/systemd/system")


def effective_driver(configured: str, systemd_dir: Path = SYSTEMD_RUN_DIR) -> tuple[str, str | None]:
    """(driver in use, a warning when the configured one cannot be used)."""
    if configured == "systemd" and not systemd_dir.is_dir():
        return "cgroupfs", "cgroup_driver systemd is configured but systemd is not PID 1; using cgroupfs"
    return configured, None
