"""Benchmark: the floor for a Python gRPC server, beside crib and containerd.

A small CRI call costs a Python server more than its own code: grpcio's Python layer is
most of it, and what that layer costs grows with the reply's size whatever the handler does.
This measures what the fastest Python servers can do on a unix socket, so crib's calls can
be judged against what is possible rather than against Go:

- floor (sync): grpc.server with a thread pool, one generic handler answering a
  VersionResponse serialized once at start;
- floor (aio): grpc.aio.server with the same handler as a coroutine;
- replay (aio) and replay (sync): the same bare servers answering Version and Status with
  the very bytes crib answered them with (captured from crib at the start of the run). This
  is the fair floor of a call: the same reply through the same grpcio, with none of crib's
  code, so crib / replay is what crib's own code adds (Status's reply is longer than the
  floor's 24-byte VersionResponse, and the size alone costs grpcio and the client time);
- crib: cribd, Version and Status;
- containerd: Debian's containerd 1.6, Version and Status;
- containerd2: containerd 2.x built from its Go module (bench/containerd2; left out with
  --no-containerd2 or when it does not build), Version and Status.

Every floor is a child process (bench/floor_server.py, which imports nothing of the
benchmarks, so its memory is a bare server's) holding no deserializer and no serializer: the
request stays bytes and the reply is bytes already (daemon_idle's `start_replay_floor`). It
is served with crib's own server options (message size limits), by a generic handler as
crib's are.

Each is called by two clients in turn: the same in-process Python gRPC client, and
criclient, a Go CRI client built from the module proxy (bench/goclient) as the kubelet is
one. Figures: median and p95 latency per call, the server's CPU time per call (from
/proc/<pid>/stat over the timed calls), and each server's PSS before its first call.

    sudo .venv/bin/python bench/grpc_floor.py [--calls 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import grpc
from google.protobuf.message import Message

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import containerd2, report  # noqa: E402
from bench.daemon_idle import (  # noqa: E402
    Daemon,
    start_containerd,
    start_containerd2,
    start_crib,
    start_replay_floor,
)
from bench.floor_server import MAX_MESSAGE_BYTES, METHOD, VERSION_REPLY  # noqa: E402
from bench.report import Samples  # noqa: E402
from crib.proto.cri import api_pb2, api_pb2_grpc  # noqa: E402

SERVICES = ("RuntimeService", "ImageService")


# --- replies: the method paths and the bytes a floor answers them with ------------------------


def method_path(method: str) -> str:
    """The full path of a CRI method ("ListImages" -> "/runtime.v1.ImageService/ListImages")."""
    for name in SERVICES:
        service = api_pb2.DESCRIPTOR.services_by_name[name]
        if method in service.methods_by_name:
            return f"/{service.full_name}/{method}"
    raise KeyError(f"no CRI service has a method {method!r}")


def capture_replies(socket: Path | str, requests: Mapping[str, Message]) -> dict[str, bytes]:
    """What the server on `socket` answers each full method path's request with, as the bytes
    it sent: no response deserializer, so nothing is parsed and serialized again."""
    options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
    with grpc.insecure_channel(f"unix://{socket}", options=options) as ch:
        replies = {}
        for path, request in requests.items():
            call = ch.unary_unary(
                path, request_serializer=type(request).SerializeToString, response_deserializer=None
            )
            replies[path] = call(request, timeout=30)
        return replies


def start_floor(kind: str) -> Daemon:
    """The floor of the smallest call: Version's 24 bytes, the only method served."""
    return start_replay_floor({METHOD: VERSION_REPLY}, kind, name=f"floor ({kind})")


# --- measuring -----------------------------------------------------------------------------------


def python_client(d: Daemon, method: str, calls: int) -> list[float]:
    with grpc.insecure_channel(f"unix://{d.socket}") as ch:
        stub = api_pb2_grpc.RuntimeServiceStub(ch)
        fn, request = {
            "Version": (stub.Version, api_pb2.VersionRequest()),
            "Status": (stub.Status, api_pb2.StatusRequest()),
        }[method]
        for _ in range(100):
            fn(request, timeout=10)
        out = []
        for _ in range(calls):
            t0 = time.perf_counter()
            fn(request, timeout=10)
            out.append((time.perf_counter() - t0) * 1000)
        return out


def go_client(binary: str, d: Daemon, method: str, calls: int) -> list[float]:
    done = subprocess.run(
        [binary, "-socket", str(d.socket), "-method", method, "-calls", str(calls)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(done.stdout)


def build_go_client() -> str | None:
    try:
        done = subprocess.run(
            [str(REPO / "bench" / "goclient" / "build.sh")], capture_output=True, text=True, timeout=900
        )
    except subprocess.TimeoutExpired:
        print("criclient: the build took over 15 minutes; Python client only")
        return None
    if done.returncode != 0:
        print(f"criclient could not be built (Python client only):\n{done.stderr[-2000:]}")
        return None
    return done.stdout.strip().splitlines()[-1]


def measure(d: Daemon, method: str, client: str, go: str | None, calls: int, samples: Samples) -> None:
    pid = d.proc.pid
    cpu0 = report.cpu_seconds([pid])
    lat = python_client(d, method, calls) if client == "python" else go_client(go or "", d, method, calls)
    cpu = report.cpu_seconds([pid]) - cpu0
    # The warm-up calls count in the CPU too: per call over all of them.
    per_call_ms = cpu * 1000 / (calls + 100)
    figure = f"{method}, {client} client"
    report.add(samples, d.name, f"{figure}: median ms", sorted(lat)[len(lat) // 2])
    report.add(samples, d.name, f"{figure}: p95 ms", report.pct(lat, 0.95))
    report.add(samples, d.name, f"{figure}: server CPU ms/call", per_call_ms)


CALLS = ("Version", "Status")
CRIB_OVER = "replay (aio)"  # the first ratio column: crib / this server
RATIOS = (("crib", CRIB_OVER), *containerd2.RATIOS)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=report.MIN_SAMPLES)
    containerd2.add_argument(p)
    report.add_pin_argument(p)
    args = p.parse_args()
    go = build_go_client()
    ctrd2_bin = containerd2.from_args(args)
    clients = ["python"] + (["go"] if go else [])
    daemons: list[Daemon] = []
    try:
        daemons.append(start_floor("sync"))
        daemons.append(start_floor("aio"))
        crib = start_crib()
        daemons.append(crib)
        requests = {
            method_path("Version"): api_pb2.VersionRequest(),
            method_path("Status"): api_pb2.StatusRequest(),
        }
        crib_replies = capture_replies(crib.socket, requests)
        print("crib's replies: " + ", ".join(f"{p} {len(b)} B" for p, b in crib_replies.items()), flush=True)
        daemons.append(start_replay_floor(crib_replies, "aio"))
        daemons.append(start_replay_floor(crib_replies, "sync"))
        ctrd = start_containerd()
        if ctrd is not None:
            daemons.append(ctrd)
        if ctrd2_bin is not None:
            daemons.append(start_containerd2(ctrd2_bin))
        samples: Samples = {d.name: {} for d in daemons}
        # Memory before any call: the floors are Python, grpcio and the CRI's descriptors
        # (what every Python CRI server holds); crib's own code and libraries come on top.
        time.sleep(2)  # let start-up garbage settle; the same for every server
        for _ in range(report.MIN_SAMPLES):
            for d in daemons:
                report.add(samples, d.name, "idle PSS MB", d.memory_kb()[1] / 1024)
        if args.pin:
            report.pin_sitting(d.proc.pid for d in daemons)
        for rnd in range(args.rounds):
            # Each round visits the servers in another order (rotated), so none always goes first.
            for d in report.in_turn(daemons, rnd):
                for client in clients:
                    for method in CALLS:
                        # The Version floors answer Version alone; the replay floors both.
                        if method == "Status" and d.name.startswith("floor"):
                            continue
                        measure(d, method, client, go, args.calls, samples)
        print(_table(samples), flush=True)
        raw = report.save_raw(
            "grpc_floor",
            samples,
            calls=args.calls,
            rounds=args.rounds,
            pinned=args.pin,
            crib_reply_bytes={p: len(b) for p, b in crib_replies.items()},
            ratios={
                f"{a}/{b}": {f: round(r, 3) for f, r in report.ratios(samples, a, b).items()}
                for a, b in RATIOS
                if b in samples
            },
        )
        print(f"raw samples: {raw}")
    finally:
        for d in daemons:
            d.stop()
    return 0


def _table(samples: Samples) -> str:
    """One row per figure, one column per server: the median over the rounds; then crib over
    the replay floor (what crib's own code adds to the same reply), and over each containerd."""
    names = list(samples)
    figures = list(dict.fromkeys(f for n in names for f in samples[n]))
    columns = [(f"{a}/{b}", report.ratios(samples, a, b)) for a, b in RATIOS if b in samples]
    lines = [f"{'figure':42}" + "".join(f"{n:>16}" for n in names) + "".join(f"{t:>20}" for t, _ in columns)]
    for figure in figures:
        row = f"{figure:42}"
        for n in names:
            values = samples[n].get(figure)
            row += f"{sorted(values)[len(values) // 2]:16.3f}" if values else f"{'-':>16}"
        for _, ratios in columns:
            row += f"{ratios[figure]:20.2f}" if figure in ratios else f"{'-':>20}"
        lines.append(row)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
