"""Benchmark: a node's worth of pods under the kubelet's polling, crib against containerd.

The runtimes (crib, Debian's containerd 1.6, and containerd 2.x where it builds: see
bench/containerd2, --no-containerd2) get the same pods: a pause and one sleeping busybox
container each, under a pod cgroup as the kubelet's cgroupfs driver makes them
(`/<bench>/pod<uid>`). Then:

- list latency at that many pods: ListPodSandbox, ListContainers, ListContainerStats and
  ListPodSandboxStats, calls alternating between the runtimes, each stats call once the
  machine has settled from the call before it (report.settle);
- the kubelet's poll, one runtime at a time while the other idles: ListPodSandbox and
  ListContainers every second (PLEG's relist), ListContainerStats and ListPodSandboxStats
  every 10 s (the summary API and the eviction manager with PodAndContainerStatsFromCRI),
  measuring the daemon's CPU time, alone and with its per-pod helpers (conmon or shims);
- churn (`--churn`, rounds): with those pods running, one more pod through its whole life,
  the runtimes taking turns, each call timed (RunPodSandbox, CreateContainer, StartContainer,
  then the kubelet's teardown order): what a rollout on a full node pays, where a runtime
  whose calls look at every mount or every pod of the node is slower than on an empty one;
- then RemovePodSandbox as the kubelet's garbage collection sends it: for as many pods per
  runtime, each run and stopped first (every runtime's in turn), then removed, timed;
- with `--scales 110,500`, the four lists again after growing to each count.

Beside them at each count, the replay floor of the relists: crib's ListPodSandbox and
ListContainers replies at that count, captured as the bytes crib sent, answered by a bare
grpc.aio server (bench/daemon_idle.py's `start_replay_floor`; crib is a grpc.aio server)
whatever the request, timed by the same client with the same relist timing. A list's reply
grows with the pods, and its size costs grpcio and the client time whatever the server's
code does; the replay floor pays exactly that, so crib / replay is what crib's own list code
adds. The stats lists have no floor (their cost is reading the cgroups, not the reply).

A call that a runtime answers with an error is counted and reported, not timed (both
containerd 1.6 and 2.x refuse ListPodSandboxStats for a pod without a cgroup parent; these
pods have one, as the kubelet's do, and both answer it).

    sudo .venv/bin/python bench/node_poll.py [--pods 100] [--poll-seconds 60] [--churn 10] [--scales 110,500]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Collection
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import containerd2, report  # noqa: E402
from bench.daemon_idle import Daemon, start_replay_floor  # noqa: E402
from bench.grpc_floor import capture_replies, method_path  # noqa: E402
from bench.pod_lifecycle import BUSYBOX, PAUSE, Client, helpers, start_daemons, stop_daemons  # noqa: E402
from bench.report import Samples  # noqa: E402
from crib.proto.cri import api_pb2  # noqa: E402
from e2e.harness.cgroup_parents import remove_tree  # noqa: E402
from e2e.harness.registry import Registry  # noqa: E402

CGROUP_ROOT = "crib-bench-poll"
CG_V1 = Path("/sys/fs/cgroup")

LISTS: dict[str, Callable[[Client], object]] = {
    "ListPodSandbox": lambda c: c.rt.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=30),
    "ListContainers": lambda c: c.rt.ListContainers(api_pb2.ListContainersRequest(), timeout=30),
    "ListContainerStats": lambda c: c.rt.ListContainerStats(api_pb2.ListContainerStatsRequest(), timeout=60),
    "ListPodSandboxStats": lambda c: c.rt.ListPodSandboxStats(
        api_pb2.ListPodSandboxStatsRequest(), timeout=60
    ),
}
RELIST = ("ListPodSandbox", "ListContainers")
RELIST_PERIOD_S = 1.0
RELIST_SAMPLES_PER_RUN = 5  # the relists are cheap: more samples, the same time
STATS = ("ListContainerStats", "ListPodSandboxStats")
REPLAY = "replay (aio)"


def node_pod_config(c: Client) -> api_pb2.PodSandboxConfig:
    cfg = c.pod_config()
    # The kubelet's cgroupfs parent: every pod has a cgroup of its own that both the pod's
    # stats and the containers' cgroups hang under.
    cfg.linux.cgroup_parent = f"/{CGROUP_ROOT}/{c.daemon.name}/pod{cfg.metadata.uid}"
    return cfg


def add_pods(c: Client, count: int, image: str) -> None:
    for _ in range(count):
        cfg = node_pod_config(c)
        c.start(c.create(c.runp(cfg), cfg, image))


def time_call(c: Client, call: str) -> float | None:
    t0 = time.perf_counter()
    try:
        LISTS[call](c)
    except grpc.RpcError as e:
        print(f"  {c.daemon.name} {call}: {e.code().name}: {e.details()[:120]}", flush=True)
        return None
    return (time.perf_counter() - t0) * 1000


def measure_lists_with_floor(clients: dict[str, Client], samples: Samples, pods: int, runs: int) -> None:
    """measure_lists, with a replay floor of crib's relist replies at this count beside the
    runtimes (started for these samples only, so it answers what crib answers now)."""
    crib = clients.get("crib")
    if crib is None:
        measure_lists(clients, samples, pods, runs)
        return
    requests = {method_path(call): getattr(api_pb2, f"{call}Request")() for call in RELIST}
    replies = capture_replies(crib.daemon.socket, requests)
    sizes = ", ".join(f"{call} {len(replies[method_path(call)])} B" for call in RELIST)
    print(f"crib's relist replies at {pods} pods: {sizes}", flush=True)
    floor = Client(start_replay_floor(replies, "aio", name=REPLAY))
    try:
        measure_lists({**clients, REPLAY: floor}, samples, pods, runs, relist_only={REPLAY})
    finally:
        floor.channel.close()
        floor.daemon.stop()


def measure_lists(
    clients: dict[str, Client],
    samples: Samples,
    pods: int,
    runs: int,
    relist_only: Collection[str] = (),
) -> None:
    """The relist calls apart from the stats calls, as the kubelet makes them: a relist timed
    right after a stats call (its own runtime's, or the other's, whose shims are still busy)
    measures that call's wake as much as the list (1.43 against 0.66 ms for crib's
    ListPodSandbox at 110 pods; 0.96 against 0.54 ms for containerd's). The servers named in
    `relist_only` (replay floors) are asked the relists alone."""
    names = list(clients)
    for name, c in clients.items():  # warm: the first stats call seeds the CPU rates
        for call in RELIST if name in relist_only else LISTS:
            time_call(c, call)
    # The kubelet's relist comes a second after the last one; the stats calls every ten.
    time.sleep(RELIST_PERIOD_S)
    for run in range(runs * RELIST_SAMPLES_PER_RUN):
        for name in report.in_turn(names, run):
            for call in RELIST:
                _sample(clients[name], call, samples, pods)
    # A stats call is timed on a settled machine: containerd 1.6's ListPodSandboxStats keeps
    # both CPUs busy for seconds, and a call right after it measured that as much as itself.
    for run in range(runs):
        for name in report.in_turn([n for n in names if n not in relist_only], run):
            for call in STATS:
                report.settle()
                _sample(clients[name], call, samples, pods)


def _sample(c: Client, call: str, samples: Samples, pods: int) -> None:
    ms = time_call(c, call)
    if ms is not None:
        report.add(samples, c.daemon.name, f"{call}, {pods} pods", ms)


def poll(c: Client, seconds: float, samples: Samples, pods: int) -> None:
    """The kubelet's cadence for `seconds`; CPU per minute of the daemon and of its helpers."""
    daemon_pid = c.daemon.proc.pid
    helper_pids = helpers(c.daemon)
    start = time.monotonic()
    cpu0, helpers0 = report.cpu_seconds([daemon_pid]), report.cpu_seconds(helper_pids)
    tick = 0
    errors = 0
    while time.monotonic() - start < seconds:
        calls = RELIST + (STATS if tick % 10 == 0 else ())
        for call in calls:
            if time_call(c, call) is None:
                errors += 1
        tick += 1
        time.sleep(max(0.0, start + tick - time.monotonic()))
    elapsed = time.monotonic() - start
    per_min = 60 / elapsed
    daemon = (report.cpu_seconds([daemon_pid]) - cpu0) * per_min
    helper = (report.cpu_seconds(helper_pids) - helpers0) * per_min
    report.add(samples, c.daemon.name, f"poll CPU s/min, daemon, {pods} pods", daemon)
    report.add(samples, c.daemon.name, f"poll CPU s/min, daemon + helpers, {pods} pods", daemon + helper)
    if errors:
        print(f"  {c.daemon.name}: {errors} calls failed during the poll", flush=True)


CHURN_CALLS = (
    "RunPodSandbox",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "StopPodSandbox",
    "RemovePodSandbox",
)


def churn_once(c: Client, image: str) -> dict[str, float]:
    """One pod through its whole life beside the others, as add_pods makes them; ms per call."""
    cfg = node_pod_config(c)
    took: dict[str, float] = {}

    def timed(call: str, fn: Callable[[], object]) -> object:
        t0 = time.perf_counter()
        out = fn()
        took[call] = (time.perf_counter() - t0) * 1000
        return out

    pod = timed("RunPodSandbox", lambda: c.runp(cfg))
    cid = timed("CreateContainer", lambda: c.create(pod, cfg, image))
    timed("StartContainer", lambda: c.start(cid))
    stop = api_pb2.StopContainerRequest(container_id=cid, timeout=10)
    timed("StopContainer", lambda: c.rt.StopContainer(stop, timeout=60))
    remove = api_pb2.RemoveContainerRequest(container_id=cid)
    timed("RemoveContainer", lambda: c.rt.RemoveContainer(remove, timeout=60))
    timed("StopPodSandbox", lambda: c.stopp(pod))
    timed("RemovePodSandbox", lambda: c.rmp(pod))
    return took


def measure_churn(clients: dict[str, Client], samples: Samples, pods: int, rounds: int, image: str) -> None:
    for rnd in range(rounds):
        for name in report.in_turn(list(clients), rnd):
            report.settle()
            for call, ms in churn_once(clients[name], image).items():
                report.add(samples, name, f"churn {call}, {pods} pods", ms)


def measure_later_removal(clients: dict[str, Client], samples: Samples, pods: int, count: int) -> None:
    """RemovePodSandbox as the kubelet's garbage collection sends it, for a pod stopped a while
    before (here: while every runtime stopped `count` pods in turn), not right after its
    StopPodSandbox as the churn does: what a runtime left to do at removal shows."""
    stopped: dict[str, list[str]] = {name: [] for name in clients}
    for name in report.in_turn(list(clients), 0):
        c = clients[name]
        for _ in range(count):
            pod = c.runp(node_pod_config(c))
            c.stopp(pod)
            stopped[name].append(pod)
    for rnd in range(count):
        for name in report.in_turn(list(clients), rnd):
            report.settle()
            t0 = time.perf_counter()
            clients[name].rmp(stopped[name][rnd])
            ms = (time.perf_counter() - t0) * 1000
            report.add(samples, name, f"RemovePodSandbox of a pod stopped before, {pods} pods", ms)


def remove_cgroups() -> None:
    for hierarchy in [CG_V1 / "unified", *CG_V1.iterdir()]:
        remove_tree(hierarchy / CGROUP_ROOT)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pods", type=int, default=100)
    p.add_argument("--poll-seconds", type=float, default=60)
    p.add_argument("--runs", type=int, default=10, help="samples of each list per runtime")
    p.add_argument("--scales", default="", help="more pod counts to time the lists at, e.g. 110,500")
    p.add_argument("--churn", type=int, default=10, help="pods through their whole life beside the others")
    p.add_argument("--crib-only", action="store_true", help="leave containerd out (profiling)")
    containerd2.add_argument(p)
    args = p.parse_args()
    scales = [int(s) for s in args.scales.split(",") if s]
    ctrd2_bin = None if args.crib_only else containerd2.from_args(args)

    registry = Registry().start()
    daemons: list[Daemon] = []
    try:
        image = f"{registry.host}/{BUSYBOX}"
        start_daemons(registry, daemons, ctrd2_bin)
        if args.crib_only:
            for d in daemons[1:]:
                d.stop()
            del daemons[1:]
        clients = {d.name: Client(d) for d in daemons}
        for c in clients.values():
            c.pull(image)
            c.pull(f"{registry.host}/{PAUSE}")
            t0 = time.monotonic()
            add_pods(c, args.pods, image)
            print(f"{c.daemon.name}: {args.pods} pods in {time.monotonic() - t0:.1f} s", flush=True)
        samples: Samples = {n: {} for n in clients}
        measure_lists_with_floor(clients, samples, args.pods, args.runs)
        for rnd, name in enumerate(report.in_turn(list(clients), 0)):
            print(f"poll {rnd + 1}: {name} for {args.poll_seconds:.0f} s", flush=True)
            poll(clients[name], args.poll_seconds, samples, args.pods)
        measure_churn(clients, samples, args.pods, args.churn, image)
        measure_later_removal(clients, samples, args.pods, args.churn)
        have = args.pods
        for scale in scales:
            for c in clients.values():
                t0 = time.monotonic()
                add_pods(c, scale - have, image)
                print(f"{c.daemon.name}: {scale} pods ({time.monotonic() - t0:.1f} s)", flush=True)
            have = scale
            measure_lists_with_floor(clients, samples, scale, args.runs)
        report.show_and_save(
            "node_poll",
            samples,
            "figure (ms unless noted)",
            [*containerd2.RATIOS, ("crib", REPLAY)],
            pods=args.pods,
            poll_seconds=args.poll_seconds,
            scales=scales,
            churn=args.churn,
        )
    finally:
        stop_daemons(daemons, wait_s=30)
        remove_cgroups()
        registry.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
