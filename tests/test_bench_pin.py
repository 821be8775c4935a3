"""bench/report.pin: every thread of a server on one CPU, its later threads too."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench import report

CHILD = """
import threading, time, sys
threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
print("ready", flush=True)
sys.stdin.readline()  # the test pinned us: make a thread now
threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
print("more", flush=True)
time.sleep(30)
"""


def _affinities(pid: int) -> list[set[int]]:
    return [os.sched_getaffinity(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to tell pinned from not")
def test_every_thread_is_pinned_and_later_threads_inherit_it() -> None:
    cpu = max(os.sched_getaffinity(0))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "ready"
        assert len(_affinities(child.pid)) == 2 and all(len(a) > 1 for a in _affinities(child.pid))
        report.pin(child.pid, cpu)
        assert _affinities(child.pid) == [{cpu}, {cpu}]
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "more"
        deadline = time.monotonic() + 5
        while len(_affinities(child.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _affinities(child.pid) == [{cpu}] * 3
    finally:
        child.kill()
        child.wait(timeout=10)
