"""Benchmark: pods and containers, crib against containerd on this machine (DESIGN.md §7).

The runtimes (crib, Debian's containerd 1.6, and containerd 2.x where it builds: see
bench/containerd2, --no-containerd2) get the same busybox and pause images from a local
registry, the same kind of bridge network (each its own bridge and subnet), and the same
in-process Python gRPC client; calls are interleaved, the runtimes taking turns going first.

Figures (median and p95 of at least 5 samples; the runtimes take turns going first):
RunPodSandbox, CreateContainer, StartContainer, and the kubelet's teardown order
StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox; runp+create+start of
a busybox pod, 10 pods started in parallel until all run, ExecSync `true`, ListContainers and ListPodSandbox
with 50 pods, and memory: the daemon alone idle, and the daemon with its
per-pod helper processes (conmon / containerd-shim) at 50 pods, as PSS.

    sudo .venv/bin/python bench/pod_lifecycle.py [--runs 15] [--pods 50]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import containerd2, daemon_idle, report  # noqa: E402
from bench.daemon_idle import Daemon, _wait_ready  # noqa: E402
from bench.report import Samples  # noqa: E402
from crib.proto.cri import api_pb2, api_pb2_grpc  # noqa: E402
from e2e.harness.cleanup import clean_tree  # noqa: E402
from e2e.harness.registry import Registry  # noqa: E402
from e2e.images import builder  # noqa: E402
from e2e.images.builder import Entry, ImageRecipe, LayerSpec  # noqa: E402
from e2e.images.registry_client import RegistryClient  # noqa: E402

BUSYBOX = "bench/busybox:1"
PAUSE = "bench/pause:1"


def conflist(name: str, bridge: str, subnet: str, ipam_dir: Path) -> str:
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": True,
                    "ipMasq": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": subnet}]],
                        "dataDir": str(ipam_dir),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
    )


DAEMON_ENV = {"PYTHONPATH": str(REPO), "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


def start_crib(registry: Registry) -> Daemon:
    d = Path(tempfile.mkdtemp(prefix="crib-bench-"))
    (d / "net.d").mkdir()
    (d / "net.d" / "10-bench.conflist").write_text(
        conflist("crib-bench", "cribbench0", "10.231.0.0/16", d / "ipam")
    )
    (d / "crib.toml").write_text(
        f'root = "{d}/root"\nstate = "{d}/state"\nlog_level = "info"\n[cni]\nconf_dir = "{d}/net.d"\n'
    )
    log = (d / "cribd.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "crib.cri_server.daemon", "--config", str(d / "crib.toml")],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=DAEMON_ENV,
    )
    daemon = Daemon("crib", d, d / "state" / "crib.sock", proc)
    _wait_ready(daemon)
    return daemon


def start_containerd(registry: Registry) -> Daemon | None:
    binary = shutil.which("containerd")
    if binary is None:
        return None
    d = Path(tempfile.mkdtemp(prefix="crib-bench-ctrd-"))
    (d / "net.d").mkdir()
    (d / "net.d" / "10-bench.conflist").write_text(
        conflist("ctrd-bench", "ctrdbench0", "10.232.0.0/16", d / "ipam")
    )
    sock = d / "containerd.sock"
    cri = '[plugins."io.containerd.grpc.v1.cri"]'
    (d / "config.toml").write_text(
        f'version = 2\nroot = "{d}/root"\nstate = "{d}/state"\n'
        f'[grpc]\naddress = "{sock}"\n[ttrpc]\naddress = "{sock}.ttrpc"\n'
        # restrict_oom_score_adj: this host's root cannot lower oom_score_adj (no CAP_SYS_RESOURCE).
        f'{cri}\nsandbox_image = "{registry.host}/{PAUSE}"\nrestrict_oom_score_adj = true\n'
        f'{cri[:-1]}.cni]\nconf_dir = "{d}/net.d"\nbin_dir = "/usr/lib/cni"\n'
        f'{cri[:-1]}.registry.mirrors."{registry.host}"]\nendpoint = ["{registry.url}"]\n'
    )
    log = (d / "containerd.log").open("wb")
    proc = subprocess.Popen(
        [binary, "--config", str(d / "config.toml")], stdout=log, stderr=subprocess.STDOUT
    )
    daemon = Daemon("containerd", d, sock, proc)
    _wait_ready(daemon)
    return daemon


def start_containerd2(registry: Registry, bin_dir: Path) -> Daemon:
    """containerd 2.x (bench/containerd2) with what 1.6 gets: the registry's pause as its
    sandbox image, the registry over plain HTTP, a bridge and subnet of its own."""
    return daemon_idle.start_containerd2(
        bin_dir,
        f"{registry.host}/{PAUSE}",
        registry.host,
        net=lambda d: conflist("ctrd2-bench", BRIDGES[2], "10.233.0.0/16", d / "ipam"),
    )


# crib's, containerd 1.6's and 2.x's; stop_daemons removes them all.
BRIDGES = ("cribbench0", "ctrdbench0", "ctrd2bench0")


def push_images(registry: Registry) -> None:
    """busybox and the pause image (catatonit) into `registry`."""
    with RegistryClient(registry.url) as reg:
        reg.push_image("bench/busybox", "1", builder.busybox_image())
        pause_layer = LayerSpec(
            [Entry("catatonit", data=Path("/usr/bin/catatonit").read_bytes(), mode=0o755)], "gzip"
        )
        reg.push_image(
            "bench/pause",
            "1",
            builder.build_image(ImageRecipe([pause_layer], entrypoint=["/catatonit", "-P"], cmd=None)),
        )


def start_daemons(registry: Registry, daemons: list[Daemon], containerd2_bin: Path | None = None) -> None:
    """Push busybox and pause to `registry`; start crib, containerd where it is installed, and
    containerd 2.x from `containerd2_bin` (bench/containerd2's build) when given.

    Each daemon goes into `daemons` as it starts, so the caller's cleanup sees it.
    """
    push_images(registry)
    daemons.append(start_crib(registry))
    ctrd = start_containerd(registry)
    if ctrd is not None:
        daemons.append(ctrd)
    else:
        print("containerd is not installed (apt-get install containerd)\n")
    if containerd2_bin is not None:
        daemons.append(start_containerd2(registry, containerd2_bin))


def stop_daemons(daemons: list[Daemon], wait_s: float = 15) -> None:
    """Stop what start_daemons started: their pods (a run that failed midway left some, and
    containerd's netns live outside its dir; a daemon that died is started again to remove
    them), the daemons, their dirs (mounts first), the bridges."""
    for d in daemons:
        if d.proc.poll() is not None:
            restart(d)
        if d.proc.poll() is None:
            try:
                Client(d).remove_all()
            except grpc.RpcError as exc:  # report it and go on cleaning
                print(f"cleanup of {d.name}'s pods: {exc.code().name}: {exc.details()}", file=sys.stderr)
        d.proc.terminate()
        try:
            d.proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            d.proc.kill()
        clean_tree(d.dir)
    for bridge in BRIDGES:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, timeout=30)


def restart(d: Daemon) -> None:
    """`d` started again on its own dir and config, after it died midway: its pods' network
    (iptables rules, the CNI cache, IPAM leases, bridge ports) goes only with a CNI DEL,
    which only the runtime that added it can make. It finds its pods on start; when it does
    not come up, what its dir holds is still cleaned."""
    print(f"{d.name} exited with {d.proc.returncode}; started again to remove its pods", file=sys.stderr)
    log = (d.dir / "restart.log").open("ab")
    d.proc = subprocess.Popen(d.proc.args, stdout=log, stderr=subprocess.STDOUT, env=DAEMON_ENV)
    try:
        _wait_ready(d)
    except RuntimeError as exc:
        print(f"{d.name} did not come back ({exc}); cleaning its dir alone", file=sys.stderr)


class Client:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.channel = grpc.insecure_channel(
            f"unix://{daemon.socket}", options=[("grpc.max_receive_message_length", 16 << 20)]
        )
        self.rt = api_pb2_grpc.RuntimeServiceStub(self.channel)
        self.img = api_pb2_grpc.ImageServiceStub(self.channel)

    def pull(self, image: str) -> None:
        self.img.PullImage(api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=image)), timeout=300)

    def pod_config(self) -> api_pb2.PodSandboxConfig:
        name = f"bench-{uuid.uuid4().hex[:8]}"
        return api_pb2.PodSandboxConfig(
            metadata=api_pb2.PodSandboxMetadata(name=name, namespace="bench", uid=uuid.uuid4().hex),
            hostname=name,
            log_directory=str(self.daemon.dir / "logs" / name),
        )

    def runp(self, config: api_pb2.PodSandboxConfig) -> str:
        return self.rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config), timeout=120).pod_sandbox_id

    def create(self, pod: str, config: api_pb2.PodSandboxConfig, image: str) -> str:
        ctr = api_pb2.ContainerConfig(
            metadata=api_pb2.ContainerMetadata(name="sleeper"),
            image=api_pb2.ImageSpec(image=image),
            command=["/bin/sleep", "100000"],
            log_path="sleeper.log",
        )
        req = api_pb2.CreateContainerRequest(pod_sandbox_id=pod, config=ctr, sandbox_config=config)
        return self.rt.CreateContainer(req, timeout=120).container_id

    def start(self, cid: str) -> None:
        self.rt.StartContainer(api_pb2.StartContainerRequest(container_id=cid), timeout=120)

    def stopp(self, pod: str) -> None:
        self.rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=120)

    def rmp(self, pod: str) -> None:
        self.rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=120)

    def remove_all(self, workers: int = 8) -> None:
        """Every pod stopped and removed, a few at a time (containerd takes over a second a
        pod, so 500 one by one would take minutes)."""
        pods = [p.id for p in self.rt.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=30).items]

        def remove(pod: str) -> None:
            self.stopp(pod)
            self.rmp(pod)

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(remove, pods))


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def pss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def helpers(daemon: Daemon) -> list[int]:
    """The daemon's per-pod processes: conmons (crib) or shims (containerd) that point at its dirs."""
    out = []
    needle = str(daemon.dir).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == daemon.proc.pid:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        name = cmdline.split(b"\0")[0].rsplit(b"/", 1)[-1]
        # A shim's -address names its containerd's socket, under the daemon's dir: both
        # kinds of helper are told apart by that, not by name (each daemon has its own).
        if name in (b"conmon", b"containerd-shim-runc-v2") and needle in cmdline:
            out.append(int(entry.name))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--pods", type=int, default=50)
    containerd2.add_argument(p)
    args = p.parse_args()

    ctrd2_bin = containerd2.from_args(args)
    registry = Registry().start()
    daemons: list[Daemon] = []
    try:
        image = f"{registry.host}/{BUSYBOX}"
        start_daemons(registry, daemons, ctrd2_bin)
        clients = {d.name: Client(d) for d in daemons}
        idle = {d.name: [pss_kb([d.proc.pid]) for _ in range(report.MIN_SAMPLES)] for d in daemons}
        for c in clients.values():
            c.pull(image)
            c.pull(f"{registry.host}/{PAUSE}")
            # Warm-up: one pod through its whole life.
            cfg = c.pod_config()
            pod = c.runp(cfg)
            c.start(c.create(pod, cfg, image))
            c.stopp(pod)
            c.rmp(pod)

        samples: Samples = {n: {} for n in clients}
        names = list(clients)

        def add(name: str, figure: str, value: float) -> None:
            report.add(samples, name, figure, value)

        for run in range(args.runs):
            for name in report.in_turn(names, run):
                c = clients[name]
                cfg = c.pod_config()
                t0 = time.perf_counter()
                pod = c.runp(cfg)
                t1 = time.perf_counter()
                cid = c.create(pod, cfg, image)
                t2 = time.perf_counter()
                c.start(cid)
                t3 = time.perf_counter()
                c.rt.ExecSync(api_pb2.ExecSyncRequest(container_id=cid, cmd=["true"], timeout=10), timeout=30)
                t4 = time.perf_counter()
                # The kubelet's order of teardown: the container, then the pod.
                c.rt.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=10), timeout=60)
                t5 = time.perf_counter()
                c.rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid), timeout=60)
                t6 = time.perf_counter()
                c.stopp(pod)
                t7 = time.perf_counter()
                c.rmp(pod)
                t8 = time.perf_counter()
                for figure, ms in (
                    ("RunPodSandbox", t1 - t0),
                    ("CreateContainer", t2 - t1),
                    ("StartContainer", t3 - t2),
                    ("ExecSync true", t4 - t3),
                    ("StopContainer", t5 - t4),
                    ("RemoveContainer", t6 - t5),
                    ("StopPodSandbox", t7 - t6),
                    ("RemovePodSandbox", t8 - t7),
                ):
                    add(name, figure, ms * 1000)
            for name in report.in_turn(names, run + 1):
                c = clients[name]
                cfg = c.pod_config()

                def whole(c: Client = c, cfg: api_pb2.PodSandboxConfig = cfg) -> None:
                    pod = c.runp(cfg)
                    c.start(c.create(pod, cfg, image))

                add(name, "runp + create + start", timed(whole))
                c.remove_all()

        for name in (n for r in range(report.MIN_SAMPLES) for n in report.in_turn(names, r)):
            c = clients[name]

            def parallel(c: Client = c) -> None:
                threads = []
                for _ in range(10):
                    cfg = c.pod_config()
                    t = threading.Thread(target=lambda cfg=cfg: c.start(c.create(c.runp(cfg), cfg, image)))
                    threads.append(t)
                    t.start()
                for t in threads:
                    t.join()

            add(name, "10 pods in parallel", timed(parallel))
            c.remove_all()

        # 50 pods each, then list and memory.
        for c in clients.values():
            for _ in range(args.pods):
                cfg = c.pod_config()
                c.start(c.create(c.runp(cfg), cfg, image))
        for block in range(args.runs * 20):
            for name in report.in_turn(names, block):
                c = clients[name]
                add(
                    name,
                    f"ListContainers ({args.pods} pods)",
                    timed(lambda c=c: c.rt.ListContainers(api_pb2.ListContainersRequest(), timeout=10)),
                )
                add(
                    name,
                    f"ListPodSandbox ({args.pods} pods)",
                    timed(lambda c=c: c.rt.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10)),
                )
        for _ in range(report.MIN_SAMPLES):
            for d in daemons:
                add(
                    d.name,
                    f"daemon + helpers PSS, {args.pods} pods (MB)",
                    pss_kb([d.proc.pid, *helpers(d)]) / 1024,
                )
        for name in names:
            for value in idle[name]:
                add(name, "daemon PSS idle (MB)", value / 1024)
        title = "figure (ms unless noted)"
        report.show_and_save(
            "pod_lifecycle", samples, title, containerd2.RATIOS, runs=args.runs, pods=args.pods
        )
    finally:
        stop_daemons(daemons)
        registry.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
