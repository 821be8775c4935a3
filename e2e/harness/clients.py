"""Run cribctl (and crictl, to compare against) as subprocesses against a test's cribd."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from e2e.harness.cribd import REPO_ROOT, Cribd

CALL_TIMEOUT_S = 120


def client_env() -> dict[str, str]:
    # No endpoint or crictl setting of this shell may steer the client elsewhere.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRICTL_", "CONTAINER_RUNTIME", "CRI_"))}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def cribctl_argv(daemon: Cribd, *args: str, config: str | None = "/dev/null") -> list[str]:
    # --config: no /etc/crictl.yaml of this machine may change what is pulled.
    head = [sys.executable, "-m", "crib.cribctl.main"]
    if config is not None:
        head += ["--config", config]
    return [*head, "-r", f"unix://{daemon.socket}", *args]


def crictl_bin() -> str:
    """crictl ($CRICTL or PATH); its absence fails the test: scripts/install.sh builds it."""
    path = os.environ.get("CRICTL") or shutil.which("crictl")
    if path is None:
        pytest.fail("no crictl ($CRICTL or PATH): scripts/install.sh builds crictl 1.36 from its Go module")
    return path


def crictl(daemon: Cribd, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [crictl_bin(), "--config", "/dev/null", "-r", f"unix://{daemon.socket}", *args],
        capture_output=True,
        text=True,
        timeout=CALL_TIMEOUT_S,
    )
