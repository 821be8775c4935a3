"""Benchmark: the floor for a Python gRPC server, beside crib and containerd.

A small CRI call (Version) costs a Python server more than its own code: grpcio's Python
layer is most of it. This measures what the fastest Python servers can do on a unix socket,
so crib's small calls can be judged against what is possible rather than against Go:

- floor (sync): grpc.server with a thread pool, one generic handler answering a
  VersionResponse serialized once at start;
- floor (aio): grpc.aio.server with the same handler as a coroutine;
- crib: cribd, Version and Status;
- containerd: Debian's containerd 1.6, Version and Status.

Each is called by two clients in turn: the same in-process Python gRPC client, and
criclient, a Go CRI client built from the module proxy (bench/goclient) as the kubelet is
one. Figures: median and p95 latency per call, the server's CPU time per call (from
/proc/<pid>/stat over the timed calls), and each server's PSS before its first call.

    sudo .venv/bin/python bench/grpc_floor.py [--calls 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import report  # noqa: E402
from bench.daemon_idle import Daemon, _wait_ready, start_containerd, start_crib  # noqa: E402
from bench.report import Samples  # noqa: E402
from crib.proto.cri import api_pb2, api_pb2_grpc  # noqa: E402

VERSION_REPLY = api_pb2.VersionResponse(
    version="0.1.0", runtime_name="floor", runtime_version="0", runtime_api_version="v1"
).SerializeToString()
METHOD = "/runtime.v1.RuntimeService/Version"


# --- the floor servers (run as `grpc_floor.py --serve sync|aio SOCKET`) -----------------------------


def _handler(behaviour: object) -> grpc.GenericRpcHandler:
    # No (de)serializers: the request stays bytes and the reply is bytes already.
    handler = grpc.unary_unary_rpc_method_handler(behaviour)  # type: ignore[arg-type]
    return grpc.method_handlers_generic_handler("runtime.v1.RuntimeService", {"Version": handler})


def serve_sync(socket: str) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((_handler(lambda request, context: VERSION_REPLY),))
    server.add_insecure_port(f"unix://{socket}")
    server.start()
    server.wait_for_termination()


def serve_aio(socket: str) -> None:
    async def version(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return VERSION_REPLY

    async def run() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((_handler(version),))
        server.add_insecure_port(f"unix://{socket}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(run())


def start_floor(kind: str) -> Daemon:
    d = Path(tempfile.mkdtemp(prefix=f"crib-floor-{kind}-"))
    sock = d / "floor.sock"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, str(sock)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    daemon = Daemon(f"floor ({kind})", d, sock, proc)
    _wait_ready(daemon)
    return daemon


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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=report.MIN_SAMPLES)
    p.add_argument("--serve", nargs=2, metavar=("KIND", "SOCKET"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        (serve_sync if args.serve[0] == "sync" else serve_aio)(args.serve[1])
        return 0

    go = build_go_client()
    clients = ["python"] + (["go"] if go else [])
    daemons: list[Daemon] = []
    try:
        daemons.append(start_floor("sync"))
        daemons.append(start_floor("aio"))
        daemons.append(start_crib())
        ctrd = start_containerd()
        if ctrd is not None:
            daemons.append(ctrd)
        samples: Samples = {d.name: {} for d in daemons}
        # Memory before any call: the floors are Python, grpcio and the CRI's descriptors
        # (what every Python CRI server holds); crib's own code and libraries come on top.
        time.sleep(2)  # let start-up garbage settle; the same for every server
        for _ in range(report.MIN_SAMPLES):
            for d in daemons:
                report.add(samples, d.name, "idle PSS MB", d.memory_kb()[1] / 1024)
        for rnd in range(args.rounds):
            # Each round visits the servers in another order (rotated), so none always goes first.
            order = daemons[rnd % len(daemons) :] + daemons[: rnd % len(daemons)]
            for d in order:
                for client in clients:
                    for method in ("Version", "Status"):
                        if method == "Status" and d.name.startswith("floor"):
                            continue
                        measure(d, method, client, go, args.calls, samples)
        print(_table(samples), flush=True)
        raw = report.save_raw("grpc_floor", samples, calls=args.calls, rounds=args.rounds)
        print(f"raw samples: {raw}")
    finally:
        for d in daemons:
            d.stop()
    return 0


def _table(samples: Samples) -> str:
    """One row per figure, one column per server: the median over the rounds."""
    names = list(samples)
    figures = list(dict.fromkeys(f for n in names for f in samples[n]))
    lines = [f"{'figure':42}" + "".join(f"{n:>16}" for n in names)]
    for figure in figures:
        row = f"{figure:42}"
        for n in names:
            values = samples[n].get(figure)
            row += f"{sorted(values)[len(values) // 2]:16.3f}" if values else f"{'-':>16}"
        lines.append(row)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
