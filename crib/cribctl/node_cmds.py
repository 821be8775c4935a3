"""cribctl subcommands (being written: see the issue notes)."""

from __future__ import annotations

from typing import Any

from crib.cribctl.client import Command


def register(sub: Any) -> dict[str, Command]:
    return {}
