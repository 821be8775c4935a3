"""cribd's Prometheus endpoint, as a test reads it: where it serves, and what it says."""

from __future__ import annotations

import json
import urllib.request

from e2e.harness.cribd import Cribd


def metrics_url(daemon: Cribd) -> str:
    """The /metrics URL cribd logged (its `[metrics] address` may ask for port 0)."""
    for line in daemon.log_path.read_text().splitlines():
        if '"metrics.serving"' in line:
            return json.loads(line)["url"]
    raise AssertionError("cribd logged no metrics.serving")


def total(url: str, name: str) -> float:
    """The sum of every sample of `name`, whatever its labels."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((f"{name}{{", f"{name} "))
    )
