"""Benchmark: what each import costs cribd's idle memory (RSS and PSS).

Two views, each in fresh child processes so nothing else is resident:

- chain: one process imports the steps below in order (Python, grpcio and the CRI
  descriptors first, then each library, then crib's packages bottom-up) and reads
  /proc/self/smaps_rollup after each; a row is what that step added on top of all the rows
  before it. The last row is cribd's whole import.
- alone: for each library, a process imports the floor (grpcio and the CRI descriptors) and
  then only that library: what cribd saves if nothing it imports at start-up needs it.

It also lists which libraries `import crib.cri_server.daemon` loads, so a lazy import that
regressed shows up here before it shows up in daemon_idle.py.

    .venv/bin/python bench/import_cost.py [--rounds 3] [--alone]

Memory does not depend on CPU load, but the heap does vary a little from run to run: each
figure is the median over --rounds processes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FLOOR = ("grpc", "grpc.aio", "crib.proto.cri.api_pb2", "crib.proto.cri.api_pb2_grpc")
LIBRARIES = (
    "asyncio",
    "sqlite3",
    "ssl",
    "json",
    "tomllib",
    "structlog",
    "yaml",
    "zstandard",
    "h11",
    "wsproto",
    "httpx",
    "prometheus_client",
    "opentelemetry.trace",
    "http.server",
)
CRIB = (
    "crib.config",
    "crib.log_setup",
    "crib.tracing",
    "crib.node_metrics",
    "crib.store.state_store",
    "crib.runtime.oci_runtime",
    "crib.runtime.oci_spec",
    "crib.runtime.runtime_env",
    "crib.cni.network",
    "crib.image_service.images",
    "crib.sandbox.sandboxes",
    "crib.container.containers",
    "crib.streaming.server",
    "crib.cri_server.sandbox",
    "crib.cri_server.container",
    "crib.cri_server.image",
    "crib.cri_server.streaming",
    "crib.cri_server.daemon",
)

# Runs in the child: import each step, read smaps_rollup after a collection.
# Python's own allocations (tracemalloc, in kB) are exact where RSS moves in obmalloc's
# 1 MiB arenas, so they say better which step the memory is for; tracing slows the imports
# and costs memory itself, so it runs in processes of its own.
_CHILD = r"""
import gc, json, sys, tracemalloc
traced = sys.argv[2] == "traced"
if traced:
    tracemalloc.start()
def mem():
    gc.collect()
    if traced:
        return 0, tracemalloc.get_traced_memory()[0] // 1024
    out = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("Rss", "Pss"):
                out[key] = int(line.split()[1])
    return out["Rss"], out["Pss"]
rows = [("python", *mem(), len(sys.modules))]
for label, names in json.loads(sys.argv[1]):
    for name in names:
        __import__(name)
    rows.append((label, *mem(), len(sys.modules)))
print(json.dumps({"rows": rows, "modules": sorted(sys.modules)}))
"""


Step = tuple[str, tuple[str, ...]]
Row = tuple[str, int, int, int, int, int, int]  # step, +RSS, +PSS, +traced, modules, RSS, PSS (kB)


def run_child(steps: list[Step], traced: bool = False) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(steps), "traced" if traced else "-"],
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(out.stdout)


def measure(steps: list[Step], rounds: int) -> list[Row]:
    """Median over `rounds` processes of each step's deltas; a traced process per round besides."""
    plain = [run_child(steps)["rows"] for _ in range(rounds)]
    traced = [run_child(steps, traced=True)["rows"] for _ in range(rounds)]

    def med(runs: list[list], i: int, col: int) -> int:
        return int(statistics.median(r[i][col] - (r[i - 1][col] if i else r[i][col]) for r in runs))

    rows: list[Row] = []
    for i, first in enumerate(plain[0]):
        rows.append(
            (
                first[0],
                med(plain, i, 1),
                med(plain, i, 2),
                med(traced, i, 2),
                med(plain, i, 3) if i else first[3],
                int(statistics.median(r[i][1] for r in plain)),
                int(statistics.median(r[i][2] for r in plain)),
            )
        )
    return rows


def print_table(title: str, rows: list[Row]) -> None:
    print(f"\n{title}")
    print(f"{'step':34}{'RSS +MB':>9}{'PSS +MB':>9}{'py +MB':>9}{'modules':>9}{'RSS MB':>9}{'PSS MB':>9}")
    for step, drss, dpss, dpy, mods, rss, pss in rows:
        figures = (drss / 1024, dpss / 1024, dpy / 1024)
        totals = f"{mods:9d}{rss / 1024:9.1f}{pss / 1024:9.1f}"
        print(f"{step:34}" + "".join(f"{f:9.2f}" for f in figures) + totals)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="processes per view; figures are medians")
    p.add_argument("--alone", action="store_true", help="also each library alone on top of the floor")
    args = p.parse_args()

    floor: Step = ("floor: grpc + CRI descriptors", FLOOR)
    chain = [floor, *((m, (m,)) for m in (*LIBRARIES, *CRIB))]
    print_table("chain: each step on top of the ones above", measure(chain, args.rounds))
    daemon = run_child([("daemon", ("crib.cri_server.daemon",))])
    loaded = set(daemon["modules"])
    print(
        f"\nlibraries `import crib.cri_server.daemon` loads: {', '.join(m for m in LIBRARIES if m in loaded)}"
    )
    print(f"not loaded: {', '.join(m for m in LIBRARIES if m not in loaded)}")
    _, rss, pss, modules = daemon["rows"][-1]
    print(f"daemon import alone: RSS {rss / 1024:.1f} MB, PSS {pss / 1024:.1f} MB, {modules} modules")
    if args.alone:
        rows = [measure([floor, (lib, (lib,))], args.rounds)[-1] for lib in LIBRARIES]
        print_table("alone: each library on top of the floor", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
