"""Background: work that goes on after the call that started it has answered."""

from __future__ import annotations

import asyncio
import gc
import io
import json

from crib import log_setup
from crib.background import Background


def test_started_work_runs_to_its_end_and_is_let_go() -> None:
    async def main() -> list[str]:
        background = Background()
        release = asyncio.Event()
        done: list[str] = []

        async def work(name: str) -> None:
            await release.wait()
            done.append(name)

        background.start(work("a"))
        background.start(work("b"))
        await asyncio.sleep(0)
        gc.collect()  # held here, not only by the loop's weak references
        assert len(background) == 2 and done == []
        release.set()
        for _ in range(3):
            await asyncio.sleep(0)
        assert len(background) == 0
        return done

    assert sorted(asyncio.run(main())) == ["a", "b"]


def test_work_that_fails_is_let_go_and_logged() -> None:
    sink = io.StringIO()
    log_setup.configure("info", "json", sink, cache=False)

    async def main() -> int:
        background = Background()

        async def fail() -> None:
            raise RuntimeError("teardown failed")

        background.start(fail())
        for _ in range(3):
            await asyncio.sleep(0)
        return len(background)

    try:
        assert asyncio.run(main()) == 0
    finally:
        log_setup.configure("info", "json", None, cache=False)
    (event,) = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert event["event"] == "background.failed" and event["level"] == "error"
    assert "fail" in event["task"] and "teardown failed" in event["error"]
