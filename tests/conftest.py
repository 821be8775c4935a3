"""Fixtures shared by the unit tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from crib.cribctl import endpoint


@pytest.fixture
def local_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Set the process's time zone (crictl reads and prints local times)."""

    def set_zone(name: str) -> None:
        if name != "UTC" and not Path("/usr/share/zoneinfo", name).exists():
            pytest.skip(f"no tzdata for {name}")
        monkeypatch.setenv("TZ", name)
        time.tzset()

    set_zone("UTC")
    yield set_zone
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def no_crictl_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """cribctl as on a machine with no crictl.yaml and none of crictl's variables set."""
    monkeypatch.setattr(endpoint, "DEFAULT_CONFIG_PATH", tmp_path / "absent-crictl.yaml")
    for var in (
        "CONTAINER_RUNTIME_ENDPOINT",
        "IMAGE_SERVICE_ENDPOINT",
        "CRI_CONFIG_FILE",
        "CRICTL_PULL_TIMEOUT",
        "CRICTL_CREDS",
        "CRICTL_AUTH",
    ):
        monkeypatch.delenv(var, raising=False)
