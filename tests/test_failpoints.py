"""The failpoint switchboard: its syntax, and how each action acts."""

from __future__ import annotations

import asyncio

import pytest

from crib import failpoints
from crib.errors import Internal


def test_terms_parse_and_bad_ones_are_refused() -> None:
    points = failpoints.parse("a=error, b=hang@2,c=crash@1")
    assert {k: (p.action, p.remaining) for k, p in points.items()} == {
        "a": ("error", None),
        "b": ("hang", 2),
        "c": ("crash", 1),
    }
    assert failpoints.parse("") == {}
    for bad in ("a", "a=explode", "=error", "a=error@x"):
        with pytest.raises(ValueError, match="CRIB_FAILPOINTS"):
            failpoints.parse(bad)


def test_error_fires_the_given_number_of_times(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(failpoints, "_points", failpoints.parse("step=error@2,always=error"))
    for _ in range(2):
        with pytest.raises(Internal, match="failpoint step"):
            asyncio.run(failpoints.hit("step"))
    asyncio.run(failpoints.hit("step"))  # spent
    asyncio.run(failpoints.hit("elsewhere"))  # not armed
    for _ in range(3):
        with pytest.raises(Internal, match="failpoint always"):
            failpoints.hit_sync("always")


def test_hang_waits_until_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(failpoints, "_points", failpoints.parse("slow=hang@1"))

    async def run() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(failpoints.hit("slow"), 0.05)
        await asyncio.wait_for(failpoints.hit("slow"), 1)  # spent: passes at once

    asyncio.run(run())
