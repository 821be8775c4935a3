"""Benchmark: the kubelet's small per-object calls, crib against containerd.

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

Both runtimes get the same images from a local registry and the same pod (as
bench/pod_lifecycle.py). Each call is made by two clients: the in-process Python gRPC client
and criclient, the Go CRI client of bench/goclient (as the kubelet is one). Rounds alternate
which runtime goes first. Figures per round: the median and p95 latency of `--calls` calls
(after 100 untimed), and the server's CPU time per call.

    sudo .venv/bin/python bench/small_calls.py [--calls 2000] [--rounds 5]
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import report  # noqa: E402
from bench.daemon_idle import Daemon  # noqa: E402
from bench.grpc_floor import build_go_client  # noqa: E402
from bench.pod_lifecycle import BUSYBOX, PAUSE, Client, start_daemons, stop_daemons  # noqa: E402
from bench.report import Samples  # noqa: E402
from crib.proto.cri import api_pb2  # noqa: E402
from e2e.harness.registry import Registry  # noqa: E402
from e2e.images import builder  # noqa: E402
from e2e.images.builder import Entry, ImageRecipe, LayerSpec  # noqa: E402
from e2e.images.registry_client import RegistryClient  # noqa: E402

EXTRA_IMAGES = 3
WARM_CALLS = 100


class Target:
    """One runtime with its pod, container and images: what each call asks about."""

    def __init__(self, client: Client, image: str, pause: str, extras: list[str]) -> None:
        self.client = client
        for name in (image, pause, *extras):
            client.pull(name)
        cfg = client.pod_config()
        self.pod = client.runp(cfg)
        self.container = client.create(self.pod, cfg, image)
        client.start(self.container)
        self.image = image
        # Timing an empty answer would flatter: both must know the image by that name.
        found = client.img.ImageStatus(
            api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=image)), timeout=10
        )
        if not found.image.id:
            raise RuntimeError(f"{client.daemon.name}: ImageStatus does not find {image}")
        self.images = len(client.img.ListImages(api_pb2.ListImagesRequest(), timeout=10).images)

    @property
    def daemon(self) -> Daemon:
        return self.client.daemon

    def python_call(self, method: str) -> Callable[[], object]:
        rt, img = self.client.rt, self.client.img
        requests: dict[str, tuple[Callable[..., object], object]] = {
            "Version": (rt.Version, api_pb2.VersionRequest()),
            "ContainerStatus": (
                rt.ContainerStatus,
                api_pb2.ContainerStatusRequest(container_id=self.container),
            ),
            "PodSandboxStatus": (
                rt.PodSandboxStatus,
                api_pb2.PodSandboxStatusRequest(pod_sandbox_id=self.pod),
            ),
            "ImageStatus": (
                img.ImageStatus,
                api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=self.image)),
            ),
            "ListImages": (img.ListImages, api_pb2.ListImagesRequest()),
        }
        fn, request = requests[method]
        return lambda: fn(request, timeout=10)

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
    p.add_argument("--calls", type=int, default=2000, help="timed calls per figure per round")
    p.add_argument("--rounds", type=int, default=report.MIN_SAMPLES)
    p.add_argument("--methods", default=",".join(METHODS), help="a subset, comma-separated")
    p.add_argument("--python-only", action="store_true", help="leave the Go client out")
    args = p.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        p.error(f"unknown methods: {sorted(unknown)}")

    go = None if args.python_only else build_go_client()
    clients = ["python"] + (["go"] if go else [])
    registry = Registry().start()
    daemons: list[Daemon] = []
    try:
        extras = push_extras(registry)
        start_daemons(registry, daemons)
        targets = {
            d.name: Target(Client(d), f"{registry.host}/{BUSYBOX}", f"{registry.host}/{PAUSE}", extras)
            for d in daemons
        }
        for t in targets.values():
            print(f"{t.daemon.name}: {t.images} images", flush=True)
        samples: Samples = {n: {} for n in targets}
        for rnd in range(args.rounds):
            for name in report.in_turn(list(targets), rnd):
                for client in clients:
                    for method in methods:
                        measure(targets[name], method, client, go, args.calls, samples)
            print(f"round {rnd + 1} of {args.rounds} done", flush=True)
        print(report.table(samples, "figure"), flush=True)
        raw = report.save_raw("small_calls", samples, calls=args.calls, rounds=args.rounds)
        print(f"raw samples: {raw}")
    finally:
        stop_daemons(daemons)
        registry.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
