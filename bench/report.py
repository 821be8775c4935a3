"""What every benchmark here shares: turn order, medians and p95s, the table, the raw figures.

- `in_turn(names, run)`: runtimes take turns going first from one run to the next (two
  alternate, more rotate), so none always meets a cold (or a warm) machine first.
- `table(...)`: median and p95 of each figure per runtime, with the crib/containerd
  ratio of the medians (or the ratios asked for, e.g. crib over a replay floor).
- `ratios(samples, a, b)`: a's median over b's, per figure both have.
- `save_raw(...)`: every sample, as JSON in bench/results/<bench>-<date>.json, so a
  figure in RESULTS.md can be checked against what was measured.
- `show_and_save(...)`: the table printed, and the raw samples saved with its ratios.
- `cpu_seconds(pids)`: the CPU time (user + system) processes have used, for CPU figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

RESULTS = Path(__file__).resolve().parent / "results"
MIN_SAMPLES = 5

Samples = dict[str, dict[str, list[float]]]  # runtime -> figure -> values
_TICK = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")


def cpu_seconds(pids: Iterable[int]) -> float:
    """User plus system CPU time of the processes so far; one that has gone counts 0."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / _TICK


def _busy_and_total() -> tuple[int, int]:
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return sum(ticks) - idle, sum(ticks)


def settle(window_s: float = 0.1, busy_below: float = 0.15, timeout_s: float = 5.0) -> float:
    """Wait until the machine's CPUs were busy less than `busy_below` of a `window_s` window
    (another runtime's work after its call: a Go collection, shims), at most `timeout_s`;
    the seconds waited. A call timed on a node has that node's runtime alone on it."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        busy0, total0 = _busy_and_total()
        time.sleep(window_s)  # a measuring window, not a wait for an event
        busy1, total1 = _busy_and_total()
        if total1 > total0 and (busy1 - busy0) / (total1 - total0) < busy_below:
            break
    return time.monotonic() - start


def in_turn(names: Sequence[T], run: int) -> list[T]:
    """`names` rotated by `run`: two alternate (a b, b a), three or more each go first in turn
    (a b c, b c a, c a b); reversing would leave the middle one always in the middle."""
    k = run % len(names) if names else 0
    return [*names[k:], *names[:k]]


def pct(values: list[float], q: float) -> float:
    """The q-quantile by nearest rank (p95 of 5 samples is the largest)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def add(samples: Samples, name: str, figure: str, value: float) -> None:
    samples.setdefault(name, {}).setdefault(figure, []).append(value)


def ratios(samples: Samples, a: str, b: str) -> dict[str, float]:
    """Per figure that both runtimes have: a's median over b's."""
    out = {}
    for figure, values in samples.get(a, {}).items():
        other = samples.get(b, {}).get(figure)
        if values and other and statistics.median(other):
            out[figure] = statistics.median(values) / statistics.median(other)
    return out


def paired_ratios(samples: Samples, a: str, b: str) -> dict[str, float]:
    """Per figure that both runtimes have as many samples of: the median of a[i] / b[i]. For
    samples taken in the same rounds (a's i-th beside b's i-th), so that what drifts between
    rounds (another tenant on the host, the CPU's clock) divides out of each ratio."""
    out = {}
    for figure, values in samples.get(a, {}).items():
        other = samples.get(b, {}).get(figure)
        if values and other and len(values) == len(other) and all(other):
            out[figure] = statistics.median(x / y for x, y in zip(values, other, strict=True))
    return out


def table(
    samples: Samples,
    title: str = "figure",
    higher_is_better: tuple[str, ...] = (),
    ratio_of: Sequence[tuple[str, str]] | None = None,
) -> str:
    """`ratio_of`: the (a, b) pairs to show a/b of the medians for; by default the first
    runtime over the second where there are two."""
    names = list(samples)
    figures = list(dict.fromkeys(f for n in names for f in samples[n]))
    pairs = list(ratio_of) if ratio_of is not None else ([(names[0], names[1])] if len(names) == 2 else [])
    columns = [(f"{a}/{b}", ratios(samples, a, b)) for a, b in pairs]
    # Columns as wide as their heads, so long names (a replay floor's) stay apart.
    first = max([46, *(len(f) + 2 for f in figures)])
    widths = {n: max(16, len(n) + 6) for n in names}
    lines = [f"{title:{first}}" + "".join(f"{n + ' med':>{widths[n]}}{'p95':>10}" for n in names)]
    lines[0] += "".join(f"{head:>{max(22, len(head) + 2)}}" for head, _ in columns)
    for figure in figures:
        line = f"{figure:{first}}"
        for n in names:
            values = samples[n].get(figure, [])
            if values:
                line += f"{statistics.median(values):{widths[n]}.2f}{pct(values, 0.95):10.2f}"
            else:
                line += f"{'-':>{widths[n]}}{'-':>10}"
        for head, column in columns:
            width = max(22, len(head) + 2)
            line += f"{column[figure]:{width}.2f}" if figure in column else f"{'-':>{width}}"
        # A runtime without the figure at all shows "-" (a replay floor has no stats calls);
        # one with fewer samples than the rest is flagged.
        few = min((len(samples[n][figure]) for n in names if samples[n].get(figure)), default=0)
        if few < MIN_SAMPLES:
            line += f"   (only {few} samples)"
        if figure in higher_is_better:
            line += "   (higher is better)"
        lines.append(line)
    return "\n".join(lines)


def show_and_save(
    bench: str, samples: Samples, title: str, ratio_of: Sequence[tuple[str, str]], **extra: Any
) -> Path:
    """Print the table with the ratios of `ratio_of` (pairs of runtimes present in `samples`),
    and save the raw samples with those ratios per figure ("ratios": {"a/b": {figure: r}})."""
    pairs = [(a, b) for a, b in ratio_of if a in samples and b in samples]
    print(table(samples, title, ratio_of=pairs), flush=True)
    kept = {f"{a}/{b}": {f: round(r, 3) for f, r in ratios(samples, a, b).items()} for a, b in pairs}
    raw = save_raw(bench, samples, ratios=kept, **extra)
    print(f"raw samples: {raw}", flush=True)
    return raw


def save_raw(bench: str, samples: Samples, **extra: Any) -> Path:
    RESULTS.mkdir(exist_ok=True)
    # A second run on the same day gets its own file: "met" needs every run's figures.
    day = time.strftime("%Y-%m-%d")
    path = RESULTS / f"{bench}-{day}.json"
    run = 1
    while path.exists():
        run += 1
        path = RESULTS / f"{bench}-{day}-{run}.json"
    doc = {
        "bench": bench,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": _cpus(),
            "kernel": platform.release(),
            # Before the benchmark made any (this module is imported at its start), and now.
            "memory_cgroups_at_start": _MEMORY_CGROUPS_AT_START,
            "memory_cgroups": memory_cgroups(),
            "syscall_ns": syscall_ns(),
        },
        # Three decimals of a ms or MB are below what these machines can tell apart.
        "samples": {
            name: {figure: [round(v, 3) for v in values] for figure, values in figures.items()}
            for name, figures in samples.items()
        },
        **extra,
    }
    # One line per figure keeps thousands of call latencies a small file.
    path.write_text(_compact(doc) + "\n")
    return path


def _compact(doc: dict[str, Any]) -> str:
    lines = [json.dumps({k: v for k, v in doc.items() if k != "samples"})[:-1] + ', "samples": {']
    runtimes = []
    for name, figures in doc["samples"].items():
        rows = [f"  {json.dumps(f)}: {json.dumps(vs)}" for f, vs in figures.items()]
        runtimes.append(f" {json.dumps(name)}: {{\n" + ",\n".join(rows) + "\n }")
    return lines[0] + "\n" + ",\n".join(runtimes) + "\n}}"


def memory_cgroups() -> int | None:
    """The memory cgroups the kernel holds, removed ones still charged with pages included
    (/proc/cgroups counts them; a day of test runs left ~1900 here, and dropping the page cache
    freed most). Stats calls read memory.stat, whose statistics the kernel flushes across the
    hierarchy, and were slower in sittings with more of them: a run records how many there were."""
    try:
        for line in Path("/proc/cgroups").read_text().splitlines():
            fields = line.split()
            if fields and fields[0] == "memory":
                return int(fields[2])
    except (OSError, ValueError, IndexError):
        pass
    return None


_MEMORY_CGROUPS_AT_START = memory_cgroups()


def syscall_ns(calls: int = 20000) -> int:
    """A trivial syscall's cost from Python (getppid, the best of 5 rounds), in ns. Machines of
    one name differ in it with their kernel and its mitigations (0.9 µs on 2026-12-07's last
    one, which clears CPU buffers at every return to user space), and every runtime's stats
    calls, mostly syscalls, with it: figures of two sittings compare only beside it."""
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for _ in range(calls):
            os.getppid()
        best = min(best, (time.perf_counter_ns() - t0) / calls)
    return round(best)


def _cpus() -> int:
    return os.cpu_count() or 0


def add_pin_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pin",
        action="store_true",
        help="every server's threads on one CPU and the clients on another (a controlled comparison: "
        "on these VMs a call's wake-ups crossing CPUs are most of a small call's spread)",
    )


def pin(pid: int, cpu: int) -> None:
    """Every thread of `pid` onto `cpu`; the threads it makes later inherit that."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(tid), {cpu})


def pin_sitting(server_pids: Iterable[int]) -> None:
    """The servers on the last CPU this process may use, this process (its client threads and
    the Go clients it starts) on the first."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("--pin needs two CPUs")
    client, server = cpus[0], cpus[-1]
    for pid in server_pids:
        pin(pid, server)
    pin(os.getpid(), client)
    print(f"pinned: the clients on CPU {client}, every thread of every server on CPU {server}", flush=True)
