"""Benchmark: the kubelet's small per-object calls, crib against containerd (1.6 and 2.x).

The kubelet asks these all the time (a status per changed pod and container after each PLEG
relist, ImageStatus before each container start, ListImages for image GC), and in each of
them the runtime's own code is the whole cost:

- ContainerStatus of a running container;
- PodSandboxStatus of that container's pod (a ready pod with one container);
- ImageStatus of an image by the name the kubelet passes (registry/repo:tag);
- ListImages of a store holding the same images in both runtimes (busybox, the pause image
  and three small images pushed for this; crib lists one more, the pause image it builds for
  itself since its default sandbox_image is out of reach here, so its reply is the longer);
- Version, as the same sitting's reference to bench/grpc_floor.py's floor.

The runtimes (crib, Debian's containerd 1.6, and containerd 2.x where it builds: see
bench/containerd2, --no-containerd2) get the same images from a local registry and the
same pod (as bench/pod_lifecycle.py). Beside them is timed the replay floor: once crib
has its pod, crib's reply to each of these calls is captured as the bytes it sent, and a
bare grpc.aio server (bench/daemon_idle.py's `start_replay_floor`, as crib is a grpc.aio
server) answers each call with those bytes, whatever the request. It is the fair floor of
each call: the same reply through the same grpcio, so crib / replay is what crib's own code
adds; a floor answering Version's 24 bytes would charge crib for the size of its replies,
which costs grpcio and the client time whatever the server's code does. Two identical replay
floors run, and "replay (aio) #2 / replay (aio)" says how far two identical servers differ in
the same run: the noise a crib / replay figure is read against (up to 10% on these VMs).

Each call is made by two clients: the in-process Python gRPC client and criclient, the Go
CRI client of bench/goclient (as the kubelet is one). Each call and client is timed in
`--rounds` short rounds, one block of `--calls` calls per server a round, the servers taking
turns to go first: the servers of one figure are timed within seconds of each other, so what
drifts on these VMs over minutes (another tenant's load, the host's clock) reaches them alike.
(Until 2026-12-07 a round timed every call of one server, then the next: its five rounds of
one figure were minutes apart, and two identical replay floors differed by up to 30%.)
Figures per block: the median and p95 latency of its calls (after 100 untimed), and the
server's CPU time per call; the table and the raw file (`ratios`) carry crib / replay per
figure beside crib / containerd, and `paired` the median over rounds of each round's own
ratio. `--pin` puts every server's threads on one CPU and the clients on the other
(bench/report.py's pin_sitting).

    sudo .venv/bin/python bench/small_calls.py [--calls 400] [--rounds 25] [--pin]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from google.protobuf.message import Message

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import containerd2, report  # noqa: E402
from bench.daemon_idle import Daemon, start_replay_floor  # noqa: E402
from bench.grpc_floor import build_go_client, capture_replies, method_path  # noqa: E402
from bench.pod_lifecycle import BUSYBOX, PAUSE, Client, start_daemons, stop_daemons  # noqa: E402
from bench.report import Samples  # noqa: E402
from crib.proto.cri import api_pb2  # noqa: E402
from e2e.harness.registry import Registry  # noqa: E402
from e2e.images import builder  # noqa: E402
from e2e.images.builder import Entry, ImageRecipe, LayerSpec  # noqa: E402
from e2e.images.registry_client import RegistryClient  # noqa: E402

EXTRA_IMAGES = 3
WARM_CALLS = 100
REPLAY = "replay (aio)"
# A second, identical replay floor: how far two identical servers differ in one run is the
# noise any crib / replay figure must be read against (up to 10% here).
REPLAY_2 = "replay (aio) #2"


class Target:
    """One server with a pod, a container and an image to ask about."""

    def __init__(self, client: Client, pod: str, container: str, image: str) -> None:
        self.client = client
        self.pod = pod
        self.container = container
        self.image = image

    @classmethod
    def set_up(cls, client: Client, image: str, pause: str, extras: list[str]) -> Target:
        """A runtime given the images, a pod and a running container."""
        for name in (image, pause, *extras):
            client.pull(name)
        cfg = client.pod_config()
        pod = client.runp(cfg)
        container = client.create(pod, cfg, image)
        client.start(container)
        # Timing an empty answer would flatter: both must know the image by that name.
        found = client.img.ImageStatus(
            api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=image)), timeout=10
        )
        if not found.image.id:
            raise RuntimeError(f"{client.daemon.name}: ImageStatus does not find {image}")
        images = len(client.img.ListImages(api_pb2.ListImagesRequest(), timeout=10).images)
        print(f"{client.daemon.name}: {images} images", flush=True)
        return cls(client, pod, container, image)

    @property
    def daemon(self) -> Daemon:
        return self.client.daemon

    def request(self, method: str) -> Message:
        requests: dict[str, Message] = {
            "Version": api_pb2.VersionRequest(),
            "ContainerStatus": api_pb2.ContainerStatusRequest(container_id=self.container),
            "PodSandboxStatus": api_pb2.PodSandboxStatusRequest(pod_sandbox_id=self.pod),
            "ImageStatus": api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=self.image)),
            "ListImages": api_pb2.ListImagesRequest(),
        }
        return requests[method]

    def python_call(self, method: str) -> Callable[[], object]:
        image_service = method_path(method).startswith("/runtime.v1.ImageService/")
        stub = self.client.img if image_service else self.client.rt
        fn, request = getattr(stub, method), self.request(method)
        return lambda: fn(request, timeout=10)

    def replayed(self, methods: list[str], names: tuple[str, ...] = (REPLAY,)) -> list[Target]:
        """A replay floor per name, each answering each of `methods` with this runtime's reply
        (the bytes it sent), asked about the same pod, container and image (a floor ignores
        the request)."""
        replies = capture_replies(self.daemon.socket, {method_path(m): self.request(m) for m in methods})
        sizes = ", ".join(f"{m} {len(replies[method_path(m)])} B" for m in methods)
        print(f"{self.daemon.name}'s replies: {sizes}", flush=True)
        floors = []
        try:
            for name in names:
                floor = start_replay_floor(replies, "aio", name=name)
                floors.append(Target(Client(floor), self.pod, self.container, self.image))
        except BaseException:
            for t in floors:
                t.client.channel.close()
                t.daemon.stop()
            raise
        return floors

    def go_args(self, method: str) -> list[str]:
        if method in ("ContainerStatus", "PodSandboxStatus"):
            return ["-id", self.container if method == "ContainerStatus" else self.pod]
        if method == "ImageStatus":
            return ["-image", self.image]
        return []


METHODS = ("Version", "ContainerStatus", "PodSandboxStatus", "ImageStatus", "ListImages")


def python_latencies(target: Target, method: str, calls: int) -> list[float]:
    call = target.python_call(method)
    for _ in range(WARM_CALLS):
        call()
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def go_latencies(binary: str, target: Target, method: str, calls: int) -> list[float]:
    cmd = [binary, "-socket", str(target.daemon.socket), "-method", method, "-calls", str(calls)]
    done = subprocess.run(
        cmd + target.go_args(method), capture_output=True, text=True, timeout=600, check=True
    )
    return json.loads(done.stdout)


def measure(target: Target, method: str, client: str, go: str | None, calls: int, samples: Samples) -> None:
    pid = target.daemon.proc.pid
    cpu0 = report.cpu_seconds([pid])
    if client == "python":
        lat = python_latencies(target, method, calls)
    else:
        lat = go_latencies(go or "", target, method, calls)
    cpu = report.cpu_seconds([pid]) - cpu0
    figure = f"{method}, {client} client"
    name = target.daemon.name
    report.add(samples, name, f"{figure}: median ms", sorted(lat)[len(lat) // 2])
    report.add(samples, name, f"{figure}: p95 ms", report.pct(lat, 0.95))
    # The warm-up calls count in the CPU too: per call over all of them.
    report.add(samples, name, f"{figure}: server CPU ms/call", cpu * 1000 / (calls + WARM_CALLS))


def push_extras(registry: Registry) -> list[str]:
    """Small images of one layer each, so ListImages has a few items beside busybox and pause."""
    names = []
    rng = random.Random(17)
    with RegistryClient(registry.url) as reg:
        for i in range(EXTRA_IMAGES):
            layer = LayerSpec([Entry(f"data{i}.bin", data=rng.randbytes(4096))], "gzip")
            reg.push_image(f"bench/extra-{i}", "1", builder.build_image(ImageRecipe([layer])))
            names.append(f"{registry.host}/bench/extra-{i}:1")
    return names


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=400, help="timed calls per server per block")
    p.add_argument("--rounds", type=int, default=25, help="blocks per server per call and client")
    p.add_argument("--methods", default=",".join(METHODS), help="a subset, comma-separated")
    p.add_argument("--python-only", action="store_true", help="leave the Go client out")
    containerd2.add_argument(p)
    report.add_pin_argument(p)
    args = p.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        p.error(f"unknown methods: {sorted(unknown)}")

    go = None if args.python_only else build_go_client()
    clients = ["python"] + (["go"] if go else [])
    ctrd2_bin = containerd2.from_args(args)
    registry = Registry().start()
    daemons: list[Daemon] = []
    floors: list[Target] = []
    try:
        extras = push_extras(registry)
        start_daemons(registry, daemons, ctrd2_bin)
        targets = {
            d.name: Target.set_up(Client(d), f"{registry.host}/{BUSYBOX}", f"{registry.host}/{PAUSE}", extras)
            for d in daemons
        }
        floors = targets["crib"].replayed(methods, (REPLAY, REPLAY_2))
        targets.update((t.daemon.name, t) for t in floors)
        samples: Samples = {n: {} for n in targets}
        if args.pin:
            pids = [t.daemon.proc.pid for t in targets.values()]
            report.pin_sitting(pids)
        for client in clients:
            for method in methods:
                for rnd in range(args.rounds):
                    for name in report.in_turn(list(targets), rnd):
                        measure(targets[name], method, client, go, args.calls, samples)
                print(f"{method}, {client} client: {args.rounds} rounds done", flush=True)
        pairs = [*containerd2.RATIOS, ("crib", REPLAY), (REPLAY_2, REPLAY)]
        paired = {
            f"{a}/{b}": {f: round(r, 3) for f, r in report.paired_ratios(samples, a, b).items()}
            for a, b in pairs
            if a in samples and b in samples
        }
        for head, column in paired.items():
            print(f"paired {head}: " + ", ".join(f"{f} {r:.2f}" for f, r in column.items()), flush=True)
        report.show_and_save(
            "small_calls",
            samples,
            "figure",
            pairs,
            paired=paired,
            calls=args.calls,
            rounds=args.rounds,
            pinned=args.pin,
        )
    finally:
        for t in floors:
            t.client.channel.close()
            t.daemon.stop()
        stop_daemons(daemons)
        registry.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
