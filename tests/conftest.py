"""Fixtures shared by the unit tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


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
