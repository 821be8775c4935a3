"""Benchmark: pulling images from a local registry, crib against containerd.

- cold pull of a 5-layer image of about 100 MB (each run a fresh image, so
  nothing is cached), median of --runs;
- 10 different images (~10 MB each) pulled in parallel, until all are done.

The runtimes (crib, Debian's containerd 1.6, and containerd 2.x where it builds: see
bench/containerd2, --no-containerd2) pull over their CRI socket from the same Debian
docker-registry on 127.0.0.1 (1.6 through a mirror entry and 2.x through a hosts.toml,
since the registry is plain HTTP), driven by the same client, taking turns going first.

    sudo .venv/bin/python bench/image_pull.py [--runs 3]
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import containerd2, report  # noqa: E402
from bench.daemon_idle import Daemon, start_containerd, start_containerd2, start_crib  # noqa: E402
from crib.proto.cri import api_pb2, api_pb2_grpc  # noqa: E402
from e2e.harness.registry import Registry  # noqa: E402
from e2e.images import builder  # noqa: E402
from e2e.images.builder import Entry, ImageRecipe, LayerSpec  # noqa: E402
from e2e.images.registry_client import RegistryClient  # noqa: E402

MB = 1 << 20


def _image(seed: int, layers: int, layer_mb: int) -> builder.BuiltImage:
    rng = random.Random(seed)
    specs = [
        LayerSpec([Entry(f"data{i}.bin", data=rng.randbytes(layer_mb * MB))], "gzip") for i in range(layers)
    ]
    return builder.build_image(ImageRecipe(specs))


def pull(daemon: Daemon, name: str) -> float:
    with grpc.insecure_channel(f"unix://{daemon.socket}") as ch:
        stub = api_pb2_grpc.ImageServiceStub(ch)
        t0 = time.perf_counter()
        stub.PullImage(api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=name)), timeout=600)
        return time.perf_counter() - t0


def parallel(daemon: Daemon, names: list[str]) -> float:
    errors: list[BaseException] = []

    def one(name: str) -> None:
        try:
            pull(daemon, name)
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in names]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    containerd2.add_argument(p)
    args = p.parse_args()

    ctrd2_bin = containerd2.from_args(args)
    registry = Registry().start()
    daemons: list[Daemon] = []
    try:
        runtimes = ["crib", "containerd"] + ([containerd2.NAME] if ctrd2_bin else [])
        names: dict[str, list[list[str]]] = {who: [] for who in runtimes}
        big: dict[str, list[str]] = {who: [] for who in runtimes}
        print("building and pushing images...", flush=True)
        with RegistryClient(registry.url) as client:
            for who in runtimes:
                for run in range(args.runs):
                    seed = hash((who, run)) & 0xFFFF
                    client.push_image(f"bench/big-{who}-{run}", "1", _image(seed, 5, 20))
                    big[who].append(f"{registry.host}/bench/big-{who}-{run}:1")
                for run in range(args.runs):
                    # Fresh names every run: each parallel pull is a cold one.
                    batch = []
                    for i in range(10):
                        seed = hash((who, "small", run, i)) & 0xFFFF
                        client.push_image(f"bench/small-{who}-{run}-{i}", "1", _image(seed, 2, 5))
                        batch.append(f"{registry.host}/bench/small-{who}-{run}-{i}:1")
                    names[who].append(batch)

        daemons.append(start_crib())
        mirror = f'[plugins."io.containerd.grpc.v1.cri".registry.mirrors."{registry.host}"]\n'
        mirror += f'endpoint = ["{registry.url}"]\n'
        ctrd = start_containerd(extra_config=mirror)
        if ctrd is None:
            print("containerd is not installed (apt-get install containerd)\n")
        else:
            daemons.append(ctrd)
        if ctrd2_bin is not None:
            daemons.append(start_containerd2(ctrd2_bin, registry=registry.host))

        samples: report.Samples = {d.name: {} for d in daemons}
        by_name = {d.name: d for d in daemons}
        for run in range(args.runs):
            for name in report.in_turn(list(by_name), run):
                d = by_name[name]
                report.add(samples, name, "cold pull, 5 layers ~100 MB (s)", pull(d, big[name][run]))
            for name in report.in_turn(list(by_name), run + 1):
                d = by_name[name]
                report.add(
                    samples, name, "10 images (~10 MB each) in parallel (s)", parallel(d, names[name][run])
                )
        report.show_and_save("image_pull", samples, "figure", containerd2.RATIOS, runs=args.runs)
    finally:
        for d in daemons:
            d.stop()
        registry.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
