"""Benchmark: exec and port-forward through the streaming server, crib against containerd.

The runtimes (crib, Debian's containerd 1.6, and containerd 2.x where it builds: see
bench/containerd2, --no-containerd2) run a busybox pod from the same local registry. The client is
crib's own (crib/streaming/client.py, SPDY/3.1, one Python process) against
both servers, so its cost is in both columns. Figures:

- exec `true`: Exec call, SPDY upgrade, process start and exit status (ms, median);
- exec stdout throughput: `yes | head -c N` read to the end (MB/s, median);
- port-forward download and upload: N bytes from / to a TCP server on the
  pod's loopback, over one SPDY stream (MB/s, median).

    sudo .venv/bin/python bench/streaming.py [--runs 5] [--mb 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import containerd2, report  # noqa: E402
from bench.daemon_idle import Daemon  # noqa: E402
from bench.pod_lifecycle import BRIDGES, BUSYBOX, PAUSE, Client, start_daemons  # noqa: E402
from crib.proto.cri import api_pb2  # noqa: E402
from crib.streaming import client  # noqa: E402
from crib.streaming.client import CommandStreams  # noqa: E402
from e2e.harness.cleanup import clean_tree  # noqa: E402
from e2e.harness.registry import Registry  # noqa: E402

MB = 1 << 20
PORT = 7171
# In the pod's netns: "d<N>;" sends N bytes and closes; "u<N>;" reads N bytes and answers "ok".
# (No half-close: containerd's port-forward does not pass one on.)
SERVER = """
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", {port})); s.listen(8)
print("listening", flush=True)
block = bytes(1 << 20)
def serve(c):
    with c:
        op = b""
        while not op.endswith(b";"):
            op += c.recv(1)
        left = int(op[1:-1])
        if op.startswith(b"d"):
            while left:
                left -= c.send(block[: min(left, len(block))])
        else:
            while left:
                left -= len(c.recv(min(left, 1 << 20)))
            c.sendall(b"ok")
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def netns_of(c: Client, pod: str) -> str:
    r = c.rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod, verbose=True), timeout=10)
    info = json.loads(r.info["info"])
    if "netns" in info:
        return info["netns"]  # crib
    for ns in info["runtimeSpec"]["linux"]["namespaces"]:  # containerd
        if ns["type"] == "network":
            return ns["path"]
    raise RuntimeError("no network namespace in the pod's status")


async def exec_true(c: Client, cid: str) -> float:
    t0 = time.perf_counter()
    url = c.rt.Exec(api_pb2.ExecRequest(container_id=cid, cmd=["true"], stdout=True), timeout=10).url
    result = await client.stream(url, CommandStreams(stdout=_discard))
    assert result.exit_code == 0, result
    return (time.perf_counter() - t0) * 1000


async def _discard(data: bytes) -> None:
    pass


async def exec_throughput(c: Client, cid: str, size: int) -> float:
    got = 0

    async def count(data: bytes) -> None:
        nonlocal got
        got += len(data)

    req = api_pb2.ExecRequest(container_id=cid, cmd=["sh", "-c", f"yes | head -c {size}"], stdout=True)
    url = c.rt.Exec(req, timeout=10).url
    t0 = time.perf_counter()
    result = await client.stream(url, CommandStreams(stdout=count))
    elapsed = time.perf_counter() - t0
    assert result.exit_code == 0 and got == size, (result, got)
    return size / MB / elapsed


async def forward(c: Client, pod: str, size: int, direction: str) -> float:
    url = c.rt.PortForward(api_pb2.PortForwardRequest(pod_sandbox_id=pod), timeout=10).url
    forwarder = await client.SpdyPortForwarder.connect(url)
    try:
        conn = await forwarder.open(PORT)
        t0 = time.perf_counter()
        if direction == "download":
            await conn.write(f"d{size};".encode())
            got = 0
            while data := await conn.read():
                got += len(data)
            assert got == size, got
        else:
            await conn.write(f"u{size};".encode())
            block = bytes(MB)
            for _ in range(size // MB):
                await conn.write(block)
            answer = b""
            while len(answer) < 2 and (data := await conn.read()):
                answer += data
            assert answer == b"ok", answer
        return size / MB / (time.perf_counter() - t0)
    finally:
        await forwarder.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--mb", type=int, default=200)
    containerd2.add_argument(p)
    args = p.parse_args()
    size = args.mb * MB
    ctrd2_bin = containerd2.from_args(args)

    registry = Registry().start()
    daemons: list[Daemon] = []
    servers: list[subprocess.Popen[str]] = []
    try:
        image = f"{registry.host}/{BUSYBOX}"
        start_daemons(registry, daemons, ctrd2_bin)
        clients = {d.name: Client(d) for d in daemons}
        targets: dict[str, tuple[str, str]] = {}
        for name, c in clients.items():
            c.pull(image)
            c.pull(f"{registry.host}/{PAUSE}")
            cfg = c.pod_config()
            pod = c.runp(cfg)
            cid = c.create(pod, cfg, image)
            c.start(cid)
            server = subprocess.Popen(
                ["nsenter", f"--net={netns_of(c, pod)}", sys.executable, "-c", SERVER.format(port=PORT)],
                stdout=subprocess.PIPE,
                text=True,
            )
            servers.append(server)
            assert server.stdout is not None and server.stdout.readline().strip() == "listening"
            targets[name] = (pod, cid)

        samples: dict[str, dict[str, list[float]]] = {n: {} for n in clients}

        async def measure() -> None:
            for name, c in clients.items():  # warm-up
                await exec_true(c, targets[name][1])
            for run in range(args.runs):
                for name in report.in_turn(list(clients), run):
                    c = clients[name]
                    pod, cid = targets[name]
                    s = samples[name]
                    for _ in range(5):
                        s.setdefault("exec `true` (ms)", []).append(await exec_true(c, cid))
                    s.setdefault("exec stdout (MB/s)", []).append(await exec_throughput(c, cid, size))
                    s.setdefault("port-forward download (MB/s)", []).append(
                        await forward(c, pod, size, "download")
                    )
                    s.setdefault("port-forward upload (MB/s)", []).append(
                        await forward(c, pod, size, "upload")
                    )

        asyncio.run(measure())
        faster = ("exec stdout (MB/s)", "port-forward download (MB/s)", "port-forward upload (MB/s)")
        print(report.table(samples, higher_is_better=faster, ratio_of=_present(samples)))
        print(f"\n{args.runs} runs, {args.mb} MB per transfer; client: crib's Python SPDY client")
        print(f"raw samples: {report.save_raw('streaming', samples, runs=args.runs, mb=args.mb)}")
    finally:
        for server in servers:
            server.kill()
            server.wait(10)
        for c in (Client(d) for d in daemons):
            try:
                c.remove_all()
            except Exception as exc:  # report it and go on cleaning
                print(f"cleanup: {exc}", file=sys.stderr)
        for d in daemons:
            d.proc.terminate()
            try:
                d.proc.wait(15)
            except subprocess.TimeoutExpired:
                d.proc.kill()
                d.proc.wait(10)
            clean_tree(d.dir)  # unmounts before stop() removes the tree
            d.stop()
        registry.stop()
        for bridge in BRIDGES:
            subprocess.run(["ip", "link", "del", bridge], capture_output=True, timeout=30)
    return 0


def _present(samples: dict[str, dict[str, list[float]]]) -> list[tuple[str, str]]:
    return [(a, b) for a, b in containerd2.RATIOS if a in samples and b in samples]


if __name__ == "__main__":
    sys.exit(main())
