"""How long a test's cribd kept its event loop from serving, read from its log.

cribd started with `LOOP_ENV` loads `loop_probe/sitecustomize.py`, which times every event
loop callback and task step, less the time the kernel kept cribd's threads waiting for a CPU
(/proc schedstat's run delay: on a busy 2-core machine, other processes' turns are not a
block, nor is a GIL held by a thread that waits for its turn), and reports each step over
100 ms with its task and where it was: the loop blocked, measured where it
happens rather than guessed from a client's latency. It also reports every process forked
on the loop's thread, however quick: vfork holds that thread until the child has exec'd.
asyncio itself reports tasks that died unseen (`Task exception was never retrieved`, `Exception in callback`).
"""

from __future__ import annotations

import re
from pathlib import Path

from e2e.harness.cribd import REPO_ROOT, Cribd

BLOCK_BUDGET_S = 0.1
LOOP_ENV = {
    "PYTHONPATH": f"{Path(__file__).parent / 'loop_probe'}:{REPO_ROOT}",
    "CRIB_LOOP_BUDGET_S": str(BLOCK_BUDGET_S),
}
BLOCKED = re.compile(
    r"crib\.loop_blocked (\d+\.\d+) s \(wall (\d+\.\d+) s, [^)]*spawning (\d+\.\d+) s\) by (.*)"
)
FORKED = "crib.loop_forked"
DIED = ("Task exception was never retrieved", "Exception in callback", "Task was destroyed but it is pending")


class LoopWatch:
    """Reads a cribd's log from where it last stopped."""

    def __init__(self, daemon: Cribd) -> None:
        self.daemon = daemon
        self.offset = 0

    def new_log(self) -> str:
        with self.daemon.log_path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        return data.decode(errors="replace")

    def problems(self, also: tuple[str, ...] = ()) -> list[str]:
        """Blocks over the budget, dead tasks, and lines holding any of `also`, since the last call."""
        found = []
        for line in self.new_log().splitlines():
            if m := BLOCKED.search(line):
                blocked, wall, spawning, what = m.groups()
                times = f"wall {wall} s, {spawning} s of it spawning"
                found.append(f"event loop blocked {blocked} s ({times}) by {what[:1200]}")
            elif FORKED in line:
                # Children are started on crib.spawn's threads; one forked on the loop would
                # hold it for as long as its exec takes.
                found.append(line[:500])
            elif any(marker in line for marker in (*DIED, *also)):
                found.append(line[:1500])
        return found
