"""bench/report.settle: a stats call is timed once the machine is no longer busy."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench import report


def test_a_busy_machine_is_waited_on_until_the_timeout() -> None:
    spin = "print('spinning', flush=True)\nwhile True: pass"
    spinners = [
        subprocess.Popen([sys.executable, "-c", spin], stdout=subprocess.PIPE, text=True)
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        for p in spinners:
            assert p.stdout is not None and p.stdout.readline() == "spinning\n"
        waited = report.settle(window_s=0.05, busy_below=0.5, timeout_s=0.4)
    finally:
        for p in spinners:
            p.kill()
            p.wait(timeout=10)
    assert waited >= 0.4


def test_the_busy_share_is_read_from_proc_stat() -> None:
    busy0, total0 = report._busy_and_total()
    deadline = time.monotonic() + 0.1
    while time.monotonic() < deadline:  # this test's own CPU shows up as busy ticks
        pass
    busy1, total1 = report._busy_and_total()
    assert total1 > total0 and busy1 > busy0
