"""What every benchmark here shares: turn order, medians and p95s, the table, the raw figures.

- `in_turn(names, run)`: runtimes alternate which goes first from one run to the next,
  so neither always meets a cold (or a warm) machine first.
- `table(...)`: median and p95 of each figure per runtime, with the crib/containerd
  ratio of the medians.
- `save_raw(...)`: every sample, as JSON in bench/results/<bench>-<date>.json, so a
  figure in RESULTS.md can be checked against what was measured.
- `cpu_seconds(pids)`: the CPU time (user + system) processes have used, for CPU figures.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
MIN_SAMPLES = 5

Samples = dict[str, dict[str, list[float]]]  # runtime -> figure -> values
_TICK = os.sysconf("SC_CLK_TCK")


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


def in_turn(names: list[str], run: int) -> list[str]:
    return names if run % 2 == 0 else list(reversed(names))


def pct(values: list[float], q: float) -> float:
    """The q-quantile by nearest rank (p95 of 5 samples is the largest)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def add(samples: Samples, name: str, figure: str, value: float) -> None:
    samples.setdefault(name, {}).setdefault(figure, []).append(value)


def table(samples: Samples, title: str = "figure", higher_is_better: tuple[str, ...] = ()) -> str:
    names = list(samples)
    figures = list(dict.fromkeys(f for n in names for f in samples[n]))
    lines = [f"{title:46}" + "".join(f"{n + ' med':>16}{'p95':>10}" for n in names)]
    if len(names) == 2:
        lines[0] += f"{names[0] + '/' + names[1]:>22}"
    for figure in figures:
        line = f"{figure:46}"
        medians = []
        for n in names:
            values = samples[n].get(figure, [])
            if values:
                medians.append(statistics.median(values))
                line += f"{medians[-1]:16.2f}{pct(values, 0.95):10.2f}"
            else:
                line += f"{'-':>16}{'-':>10}"
        if len(medians) == 2 and medians[1]:
            line += f"{medians[0] / medians[1]:22.2f}"
        few = min((len(samples[n].get(figure, [])) for n in names), default=0)
        if few < MIN_SAMPLES:
            line += f"   (only {few} samples)"
        if figure in higher_is_better:
            line += "   (higher is better)"
        lines.append(line)
    return "\n".join(lines)


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
        "machine": {"cpus": _cpus(), "kernel": platform.release()},
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


def _cpus() -> int:
    return os.cpu_count() or 0
