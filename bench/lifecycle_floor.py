"""Benchmark: crib's lifecycle calls beside runc, conmon and the CNI plugins doing the same work
(DESIGN.md §7, "raw runc + CNI for lifecycle calls").

Some §7 targets are ratios to containerd that crib misses (StartContainer, StopPodSandbox,
ExecSync). Whether crib adds time of its own, or the target lies below what runc, conmon and
the CNI plugins take on this machine, only a floor measured in the same sitting says. So one
cribd (set up as bench/pod_lifecycle.py does: local registry, busybox and pause, its bench
conflist) runs a template pod with a running busybox container, and every floor works from
copies of what crib made, with the binaries crib runs:

- StartContainer, whose work is conmon running `runc create`, then `runc start`:
  (a) `runc create` + `runc start` on a copy of the created container's bundle (its own ID,
      cgroup and state root; the rootfs and the pod's namespaces are the template's);
  (b) conmon with crib's exact arguments (read from the template's conmon's command line,
      its container's paths rewritten), its sync pipe read by crib's own reader, then
      `runc start`: what crib's StartContainer does, without the daemon.
  Beside crib's StartContainer of a freshly created container (CreateContainer untimed).
- ExecSync `true`, into the template container (warm): `runc exec <id> true`, and
  `runc exec -d --process <file> --pid-file <file> <id>` with piped stdout/stderr, the
  process waited for through a pidfd and the pipes read to EOF (what crib does, see
  crib/container/exec_sync.py). And the first exec into a fresh container: crib's first
  ExecSync into the container its StartContainer just started, beside a first `runc exec`
  into floor (a)'s container and a first `runc exec -d` into floor (b)'s.
- RunPodSandbox, which mounts the pod's shm, makes the netns, then runs CNI ADD beside the
  pause's start (its overlay rootfs, then `runc run --detach`): the same steps here, the
  tmpfs and netns made as crib makes them (its syscalls, in-process), the ADD of crib's
  network (the same conflist, plugins, order, env and stdin as crib's; no loopback plugin,
  crib brings `lo` up itself), the pause image's layers mounted by crib's mount_overlay and
  the pause's `runc run --detach` on a copy of the template pod's pause bundle joined to the
  floor's netns and shm. Timed as crib does it (the ADD and the pause in parallel threads),
  one step after another (each part alone, each CNI plugin apart), and computed from those
  parts as if the ADD and the pause overlapped perfectly (shm + netns + the longer of the
  two): measured in parallel, the two branches sometimes collide on these 2 cores and the
  run then loses ~30 ms more than the shorter branch.
- StopPodSandbox, for a pod with no container: `runc kill --all <pause> KILL` and the
  pause's exit (pidfd), the CNI DEL (reverse order, ADD's result as prevResult; each plugin
  timed apart too), the netns unmounted and removed, the shm unmounted.

- 10 pods in parallel (pod_lifecycle.py's figure, a DESIGN §7 target against containerd): in
  each of 10 threads a pod as crib runs it (the RunPodSandbox floor above, ADD beside the
  pause), then a container started as floor (b) starts it (conmon, `runc start`; it joins the
  template pod's namespaces, where crib's joins its own pod's), beside crib's RunPodSandbox,
  CreateContainer and StartContainer in 10 threads. The machine's two cores are saturated
  through such a burst, so this says how much of it crib's own work is.

What the floors leave out, by design: crib's state writes (SQLite, the record files), its CNI
result cache (written with fsync before ADD returns), the pod's files (hosts, resolv.conf,
hostname), CreateContainer's own work (untimed here) and the gRPC round trip (~0.5 ms).
Each round measures every figure once, the floors and crib taking turns going first within
each group (StartContainer, ExecSync, the pod); the template pod stays for the whole run.
The floors (bench/lifecycle_floor_steps.py) keep their pods and containers in a temp dir of
their own; whatever a failed run leaves there (CNI attachments first, then runc state,
conmons, mounts, cgroups) is removed.

    sudo .venv/bin/python bench/lifecycle_floor.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import report  # noqa: E402
from bench.daemon_idle import Daemon  # noqa: E402
from bench.lifecycle_floor_steps import (  # noqa: E402
    BURST,
    Burst,
    Floors,
    Template,
    exec_detached,
    exec_plain,
    floor_spec,
    in_parallel,
    ms_since,
    overlay_lowers,
    run_burst,
    run_pod_parallel,
    run_pod_sequential,
    start_conmon,
    start_runc,
    stop_pod,
    teardown_burst,
    wait_exit,
)
from bench.pod_lifecycle import BUSYBOX, PAUSE, Client, helpers, start_crib, stop_daemons  # noqa: E402
from bench.report import Samples  # noqa: E402
from crib import config as crib_config  # noqa: E402
from crib.cni.config import load_network  # noqa: E402
from crib.proto.cri import api_pb2  # noqa: E402
from crib.runtime import conmon  # noqa: E402
from e2e.harness.registry import Registry  # noqa: E402
from e2e.images import builder  # noqa: E402
from e2e.images.builder import Entry, ImageRecipe, LayerSpec  # noqa: E402
from e2e.images.registry_client import RegistryClient  # noqa: E402

# (row of the table, crib's figure, the floor's figure): crib's call beside what it must do.
# A burst of pods started at once on these 2 cores takes about a second; a stuck call, minutes.
BURST_TIMEOUT_S = 180.0

PAIRS = [
    ("StartContainer / runc create + start", "StartContainer", "runc create + start"),
    ("StartContainer / conmon (runc create) + runc start", "StartContainer", "conmon + runc start"),
    ("ExecSync true, warm / runc exec", "ExecSync true (warm)", "runc exec true (warm)"),
    ("ExecSync true, warm / runc exec -d --process", "ExecSync true (warm)", "runc exec -d (warm)"),
    ("first ExecSync / first runc exec", "ExecSync true (first)", "runc exec true (first, runc-started)"),
    ("first ExecSync / first runc exec -d", "ExecSync true (first)", "runc exec -d (first, conmon-started)"),
    (
        "RunPodSandbox / shm, netns, then CNI ADD ∥ (rootfs, pause run)",
        "RunPodSandbox",
        "RunPodSandbox's work, as crib does it",
    ),
    (
        "RunPodSandbox / the same, ADD and pause overlapped perfectly (computed)",
        "RunPodSandbox",
        "RunPodSandbox's work, overlapped perfectly",
    ),
    (
        "RunPodSandbox / the same one after another",
        "RunPodSandbox",
        "RunPodSandbox's work, one after another",
    ),
    ("StopPodSandbox / kill, CNI DEL, netns and shm unmounted", "StopPodSandbox", "StopPodSandbox's work"),
    (
        f"{BURST} pods in parallel, until all run / each a pod as crib runs it, then conmon + runc start",
        f"{BURST} pods in parallel",
        f"{BURST} pods in parallel",
    ),
]
# The floors' parts, shown alone (no crib figure beside them).
PARTS = [
    "conmon until sync",
    "runc start (after conmon)",
    "shm mount",
    "netns create",
    "CNI ADD",
    "pause rootfs overlay mount",
    "pause runc run --detach",
    "runc kill --all + pause exit",
    "CNI DEL",
    "netns remove",
    "shm unmount",
]


# --- crib's side ---------------------------------------------------------------------------------------


class CribCalls:
    def __init__(self, client: Client, template: Template, image: str) -> None:
        self.c = client
        self.t = template
        self.image = image
        self.attempt = 0

    def create(self) -> str:
        self.attempt += 1
        ctr = api_pb2.ContainerConfig(
            metadata=api_pb2.ContainerMetadata(name="sleeper", attempt=self.attempt),
            image=api_pb2.ImageSpec(image=self.image),
            command=["/bin/sleep", "100000"],
            log_path=f"sleeper-{self.attempt}.log",
        )
        req = api_pb2.CreateContainerRequest(
            pod_sandbox_id=self.t.pod, config=ctr, sandbox_config=self.t.pod_config
        )
        return self.c.rt.CreateContainer(req, timeout=120).container_id

    def exec_true(self, cid: str) -> float:
        t0 = time.perf_counter()
        reply = self.c.rt.ExecSync(
            api_pb2.ExecSyncRequest(container_id=cid, cmd=["true"], timeout=10), timeout=30
        )
        ms = ms_since(t0)
        if reply.exit_code != 0:
            raise RuntimeError(f"crib's ExecSync true exited {reply.exit_code}: {reply.stderr!r}")
        return ms

    def start_and_first_exec(self) -> dict[str, float]:
        cid = self.create()
        try:
            t0 = time.perf_counter()
            self.c.start(cid)
            start = ms_since(t0)
            first = self.exec_true(cid)
        finally:
            self.c.rt.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=0), timeout=60)
            self.c.rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid), timeout=60)
        return {"StartContainer": start, "ExecSync true (first)": first}

    def burst(self) -> float:
        """pod_lifecycle's parallel start: RunPodSandbox, CreateContainer and StartContainer in
        each of BURST threads; the ms until all run. The pods are removed after, untimed."""
        pods: list[str] = []

        def one() -> None:
            cfg = self.c.pod_config()
            pod = self.c.runp(cfg)
            pods.append(pod)
            self.c.start(self.c.create(pod, cfg, self.image))

        try:
            return in_parallel(one, BURST_TIMEOUT_S)
        finally:
            for pod in pods:
                self.c.stopp(pod)
                self.c.rmp(pod)

    def pod(self) -> dict[str, float]:
        cfg = self.c.pod_config()
        t0 = time.perf_counter()
        pod = self.c.runp(cfg)
        t1 = time.perf_counter()
        try:
            self.c.stopp(pod)
            t2 = time.perf_counter()
        finally:
            self.c.rmp(pod)
        return {"RunPodSandbox": (t1 - t0) * 1000, "StopPodSandbox": (t2 - t1) * 1000}


# --- the rounds -------------------------------------------------------------------------------------------


def daemon_path(pid: int) -> str:
    """The PATH a process runs with (cribd's: what crib's children search)."""
    for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        if entry.startswith(b"PATH="):
            return entry[5:].decode()
    return os.defpath


def push_images(registry: Registry) -> None:
    """busybox and the pause (catatonit) as pod_lifecycle pushes them; crib alone runs here
    (its start_daemons would start containerd too)."""
    with RegistryClient(registry.url) as reg:
        reg.push_image("bench/busybox", "1", builder.busybox_image())
        catatonit = Entry("catatonit", data=Path("/usr/bin/catatonit").read_bytes(), mode=0o755)
        pause = ImageRecipe([LayerSpec([catatonit], "gzip")], entrypoint=["/catatonit", "-P"], cmd=None)
        reg.push_image("bench/pause", "1", builder.build_image(pause))


def make_template(d: Daemon, client: Client, image: str) -> Template:
    cfg = client.pod_config()
    pod = client.runp(cfg)
    cid = client.create(pod, cfg, image)
    client.start(cid)
    state = d.dir / "state"
    bundle, pause_bundle = state / "containers" / cid / "bundle", state / "containers" / pod / "bundle"
    pause_spec = json.loads((pause_bundle / "config.json").read_text())
    pause_root = floor_spec(pause_spec, pause_bundle, pod)["root"]["path"]
    conmons = [p for p in helpers(d) if cid.encode() in Path(f"/proc/{p}/cmdline").read_bytes()]
    if len(conmons) != 1:
        raise RuntimeError(f"expected one conmon for {cid}, found {conmons}")
    args = Path(f"/proc/{conmons[0]}/cmdline").read_bytes().decode().split("\0")[:-1]
    # Started by name: conmon is found on PATH as crib finds it.
    args[0] = shutil.which(args[0]) or args[0]
    return Template(
        pod=pod,
        pod_config=cfg,
        container=cid,
        pause_spec=pause_spec,
        pause_bundle=pause_bundle,
        pause_lowers=overlay_lowers(Path("/proc/self/mountinfo").read_text(), pause_root),
        pause_shm=state / "sandboxes" / pod / "shm",
        spec=json.loads((bundle / "config.json").read_text()),
        bundle=bundle,
        conmon_args=args,
        state=state,
    )


def one_round(f: Floors, t: Template, crib: CribCalls, process_file: Path, run: int) -> Samples:
    """Every figure once; within each group the floors and crib take turns going first."""
    samples: Samples = {"floor": {}, "crib": {}}

    def floor(figures: dict[str, float]) -> None:
        for k, v in figures.items():
            report.add(samples, "floor", k, v)

    def by_crib(figures: dict[str, float]) -> None:
        for k, v in figures.items():
            report.add(samples, "crib", k, v)

    def floor_a() -> None:
        cid, init, ms = start_runc(f, t)
        try:
            first = exec_plain(f, f.runc_root, cid)
        finally:
            f.delete(cid, init)
        floor({"runc create + start": ms, "runc exec true (first, runc-started)": first})

    def floor_b() -> None:
        cid, conmon_pid, figures = start_conmon(f, t)
        try:
            figures["runc exec -d (first, conmon-started)"] = exec_detached(f, f.runc_root, cid, process_file)
        finally:
            f.delete(cid)
            if not wait_exit(conmon_pid):
                raise RuntimeError(f"floor conmon {conmon_pid} did not exit")
            # Written by conmon as it ends.
            (f.dir / "exits" / cid).unlink(missing_ok=True)
        floor(figures)

    def floor_pods() -> None:
        pod, figures = run_pod_sequential(f, t)
        floor(figures)
        floor(stop_pod(f, pod))
        pod, ms = run_pod_parallel(f, t)
        floor({"RunPodSandbox's work, as crib does it": ms})
        stop_pod(f, pod)

    def floor_burst() -> None:
        burst = Burst()
        try:
            ms = run_burst(f, t, burst)
        finally:
            teardown_burst(f, burst)
        floor({f"{BURST} pods in parallel": ms})

    groups: list[list[Callable[[], None]]] = [
        [floor_a, floor_b, lambda: by_crib(crib.start_and_first_exec())],
        [
            lambda: floor({"runc exec true (warm)": exec_plain(f, f.crib_runc_root, t.container)}),
            lambda: floor(
                {"runc exec -d (warm)": exec_detached(f, f.crib_runc_root, t.container, process_file)}
            ),
            lambda: by_crib({"ExecSync true (warm)": crib.exec_true(t.container)}),
        ],
        [floor_pods, lambda: by_crib(crib.pod())],
        [floor_burst, lambda: by_crib({f"{BURST} pods in parallel": crib.burst()})],
    ]
    for group in groups:
        for step in report.in_turn(group, run):
            step()
    return samples


def table_samples(raw: Samples) -> Samples:
    """The table's rows: each crib call beside each of its floors, then the floors' parts (each
    CNI plugin's ADD and DEL after the chain's, in the network's order)."""
    out: Samples = {"floor": {}, "crib": {}}
    for row, crib_figure, floor_figure in PAIRS:
        out["floor"][row] = raw["floor"].get(floor_figure, [])
        out["crib"][row] = raw["crib"].get(crib_figure, [])
    plugins = [f for f in raw["floor"] if f.startswith("CNI ")]
    for part in PARTS:
        out["floor"][f"(part) {part}"] = raw["floor"].get(part, [])
        for plugin in (p for p in plugins if p.startswith(f"{part}: ")):
            out["floor"][f"(part)   {plugin}"] = raw["floor"][plugin]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=15)
    args = p.parse_args()
    runc = shutil.which("runc")
    if runc is None:
        print("runc is not installed", file=sys.stderr)
        return 1
    # Detached containers, conmons and exec'd processes re-parent here, as they do to cribd,
    # and are reaped through pidfds.
    conmon.become_subreaper()

    registry = Registry().start()
    daemons: list[Daemon] = []
    floors: Floors | None = None
    try:
        image = f"{registry.host}/{BUSYBOX}"
        push_images(registry)
        daemons.append(start_crib(registry))
        d = daemons[0]
        # The floors' runc, conmon and plugins look their helpers (iptables…) up on cribd's PATH.
        os.environ["PATH"] = daemon_path(d.proc.pid)
        client = Client(d)
        client.pull(image)
        client.pull(f"{registry.host}/{PAUSE}")
        template = make_template(d, client, image)
        cfg = crib_config.load(d.dir / "crib.toml")
        floors = Floors(
            Path(tempfile.mkdtemp(prefix="crib-lfloor-")),
            runc,
            template.state / "runtime" / "runc",
            load_network(cfg.cni.conf_dir, cfg.cni.bin_dirs, cfg.cni.network_name),
            cfg.cni.bin_dirs,
        )
        floors.runc_root.mkdir(parents=True)
        # The exec's process as crib builds it: the container's own, running `true`.
        process_file = floors.dir / "process.json"
        process_file.write_text(json.dumps({**template.spec["process"], "args": ["true"], "terminal": False}))
        crib = CribCalls(client, template, image)

        one_round(floors, template, crib, process_file, 0)  # warm-up, not counted
        raw: Samples = {"floor": {}, "crib": {}}
        for run in range(args.runs):
            for name, figures in one_round(floors, template, crib, process_file, run).items():
                for figure, values in figures.items():
                    for v in values:
                        report.add(raw, name, figure, v)
        rows = table_samples(raw)
        print(
            report.table(rows, "figure (ms): crib's call / its floor", ratio_of=[("crib", "floor")]),
            flush=True,
        )
        ratios = {k: round(v, 3) for k, v in report.ratios(rows, "crib", "floor").items()}
        path = report.save_raw(
            "lifecycle_floor", raw, runs=args.runs, pairs=PAIRS, ratios={"crib/floor": ratios}
        )
        print(f"raw samples: {path}")
    finally:
        if floors is not None:
            floors.cleanup()
        stop_daemons(daemons)
        registry.stop()
        reap_orphans()
    return 0


def reap_orphans(wait_s: float = 2.0) -> list[int]:
    """Reap what re-parented here and a failed run left (a killed floor pause, a conmon
    orphaned by cribd's end): as a subreaper, this process is their parent, and left to PID 1
    they would linger as zombies. Called once the daemons and registry are reaped, so every
    child left is such an orphan. Bounded."""
    reaped = []
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            res = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            break  # no children at all
        if res is None:
            time.sleep(0.05)  # a killed child not yet exited
            continue
        reaped.append(res.si_pid)
    return reaped


if __name__ == "__main__":
    sys.exit(main())
