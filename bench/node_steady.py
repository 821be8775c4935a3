"""Benchmark: a node with 100 pods under a real kubelet 1.36, crib against containerd (DESIGN.md §7).

The runtimes: crib, Debian's containerd 1.6, and containerd 2.x where it builds
(bench/containerd2; --no-containerd2 leaves it out).

For each runtime, a fresh one-node cluster (e2e/kube/cluster.py; the same
kubelet config, network, registry mirrors and images) gets 100 pods in one
`kubectl apply`, each a pause sandbox plus one sleeping busybox container.
Measured:
- the time from the apply until all 100 pods are Ready;
- then a steady state (default 5 minutes): the runtime's CPU seconds per
  minute (the daemon process, and the daemon plus its per-pod helpers: conmon
  for crib, containerd-shim for containerd) and the daemon's RSS;
- the kubelet's PLEG relist duration over that window, p50 and p99, from its
  own `kubelet_pleg_relist_duration_seconds` histogram (bucket deltas).

Runtimes run one after the other, taking turns going first per round.
Raw figures go to bench/results/node_steady-<date>.json.

    sudo .venv/bin/python bench/node_steady.py [--pods 100] [--steady 300] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import containerd2, report  # noqa: E402
from e2e.harness.containerd import containerd_bin  # noqa: E402
from e2e.kube.cluster import NODE_NAME, Cluster, ensure_built  # noqa: E402
from e2e.kube.images import BUSYBOX  # noqa: E402
from e2e.kube.kube import Kube, container, is_ready, pod_manifest  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def helpers(runtime: str) -> list[int]:
    """The runtime's per-pod helper processes."""
    name = "conmon" if runtime == "crib" else "containerd-shim"
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/comm") as f:
                    if f.read().strip().startswith(name):
                        found.append(int(entry.name))
            except OSError:
                pass
    return found


def histogram(metrics: str, name: str) -> list[tuple[float, int]]:
    """Cumulative (le, count) buckets of a histogram in Prometheus text."""
    out = []
    for m in re.finditer(rf'^{name}_bucket{{le="([^"]+)"}} (\d+)', metrics, re.M):
        out.append((float("inf") if m.group(1) == "+Inf" else float(m.group(1)), int(m.group(2))))
    return sorted(out)


def quantile(before: list[tuple[float, int]], after: list[tuple[float, int]], q: float) -> float:
    """The upper bound of the bucket holding quantile q of the observations between two scrapes."""
    counts = dict(before)
    delta = [(le, n - counts.get(le, 0)) for le, n in after]
    total = delta[-1][1]
    if total == 0:
        return float("nan")
    for le, n in delta:
        if n >= q * total:
            return le
    return float("inf")


def run_one(runtime: str, pods: int, steady: float, bin_dir: Path, ctrd2_bin: Path | None = None) -> dict:
    d = Path(tempfile.mkdtemp(prefix=f"crib-bench-{runtime}-"))
    cluster = Cluster(d, bin_dir, runtime=runtime, containerd2_bin=ctrd2_bin)
    try:
        cluster.up()
        daemon = cluster.state.pids["cribd" if runtime == "crib" else "containerd"]
        kube = Kube(cluster, "default")
        manifests = [
            pod_manifest(f"steady-{i}", [container("main", BUSYBOX, command=["sleep", "1000000"])])
            for i in range(pods)
        ]
        t0 = time.monotonic()
        kube.apply(*manifests)

        def ready_count() -> int:
            items = kube.http.get("/api/v1/namespaces/default/pods").json()["items"]
            return sum(1 for p in items if is_ready(p))

        kube.wait(f"{pods} pods Ready", ready_count, lambda n: n >= pods, 600)
        all_ready_s = time.monotonic() - t0

        metrics_before = kube.kubelet("/metrics")
        cpu0 = report.cpu_seconds([daemon])
        help0 = {pid: report.cpu_seconds([pid]) for pid in helpers(runtime)}
        rss = []
        start = time.monotonic()
        while time.monotonic() - start < steady:
            rss.append(rss_bytes(daemon))
            time.sleep(min(10.0, max(0.0, steady - (time.monotonic() - start))))
        elapsed_min = (time.monotonic() - start) / 60
        cpu1 = report.cpu_seconds([daemon])
        help1 = {pid: report.cpu_seconds([pid]) for pid in helpers(runtime)}
        metrics_after = kube.kubelet("/metrics")
        helper_cpu = sum(help1[p] - help0.get(p, 0.0) for p in help1)
        name = "kubelet_pleg_relist_duration_seconds"
        b0, b1 = histogram(metrics_before, name), histogram(metrics_after, name)
        node = cluster.node()
        kube.close()
        return {
            "runtime": runtime,
            "runtime_version": node["status"]["nodeInfo"]["containerRuntimeVersion"],
            "node": NODE_NAME,
            "pods": pods,
            "all_ready_s": round(all_ready_s, 2),
            "steady_s": round(elapsed_min * 60, 1),
            "daemon_cpu_s_per_min": round((cpu1 - cpu0) / elapsed_min, 3),
            "daemon_and_helpers_cpu_s_per_min": round((cpu1 - cpu0 + helper_cpu) / elapsed_min, 3),
            "helpers": len(help1),
            "daemon_rss_mb_median": round(statistics.median(rss) / 2**20, 1),
            "daemon_rss_mb_max": round(max(rss) / 2**20, 1),
            "pleg_relist_p50_s": quantile(b0, b1, 0.50),
            "pleg_relist_p99_s": quantile(b0, b1, 0.99),
            "pleg_relists": b1[-1][1] - dict(b0).get(float("inf"), 0) if b1 else 0,
        }
    finally:
        cluster.down()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--steady", type=float, default=300.0, help="seconds of steady state")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--runtimes", default=f"crib,containerd,{containerd2.NAME}")
    containerd2.add_argument(parser)
    args = parser.parse_args()
    runtimes = [r for r in args.runtimes.split(",") if r != "containerd" or containerd_bin()]
    ctrd2_bin = None
    if containerd2.NAME in runtimes:
        ctrd2_bin = containerd2.from_args(args)
        if ctrd2_bin is None:
            runtimes.remove(containerd2.NAME)
    bin_dir = ensure_built()
    results = []
    for rnd in range(args.rounds):
        for runtime in report.in_turn(runtimes, rnd):
            try:
                results.append(run_one(runtime, args.pods, args.steady, bin_dir, ctrd2_bin))
            except Exception as e:  # a runtime the kubelet refuses is a result too
                results.append({"runtime": runtime, "error": f"{type(e).__name__}: {e}"[:4000]})
            print(json.dumps(results[-1]), flush=True)
    out = REPO / "bench" / "results" / f"node_steady-{time.strftime('%Y-%m-%d')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"raw results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
