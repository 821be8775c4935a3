"""Benchmark: an idle daemon's memory, and the cost of the calls a kubelet polls.

Starts crib (from this checkout), Debian's containerd 1.6 where installed, and containerd
2.x where it builds (bench/containerd2; --no-containerd2 leaves it out), each on a temp
socket with temp root and state dirs, then measures:

- RSS and PSS of the idle daemon (after start-up, and after the calls below);
- median and p95 latency of Version and Status (the calls every kubelet makes
  every few seconds), from one in-process gRPC client, interleaved in blocks (idle
  gaps slow every call on these machines; the daemons take turns going first).

Beside them, two floors for the memory (bench/floor_server.py's bare grpc.aio server, which
answers Version): "floor", Python with grpcio, protobuf and the CRI descriptors; and
"design floor", the same with what crib's design adds to any Python CRI server (structlog
configured and an SQLite database in WAL mode, as cribd sets them up), so crib / design floor
is what crib's own code and the rest of its imports hold. --no-floors leaves them out.

    sudo .venv/bin/python bench/daemon_idle.py [--calls 2000]

Prints a table with crib / containerd and crib / containerd2 ratios. DESIGN.md §7: daemon RSS idle,
containerd ~42 MB, crib target <= 42 MB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import containerd2, floor_server, report  # noqa: E402
from crib.proto.cri import api_pb2, api_pb2_grpc  # noqa: E402
from e2e.harness import containerd2 as ctrd2_config  # noqa: E402

READY_TIMEOUT_S = 30.0


@dataclass
class Daemon:
    name: str
    dir: Path
    socket: Path
    proc: subprocess.Popen[bytes]
    lat: dict[str, list[float]] = field(default_factory=dict)

    def memory_kb(self) -> tuple[int, int, int]:
        """(RSS, PSS, USS) in kB.

        PSS shares each library page among the processes that map it, so it falls when
        other Python (or grpcio) processes run beside the daemon, this client among them;
        USS (Private_Clean + Private_Dirty) is what the daemon alone holds, whatever else runs.
        """
        rss = pss = uss = 0
        with open(f"/proc/{self.proc.pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith(("Private_Clean:", "Private_Dirty:")):
                    uss += int(line.split()[1])
        return rss, pss, uss

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def _wait_ready(d: Daemon) -> None:
    """Bounded: the first Version that answers, or the daemon's exit."""
    with grpc.insecure_channel(f"unix://{d.socket}") as ch:
        stub = api_pb2_grpc.RuntimeServiceStub(ch)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if d.proc.poll() is not None:
                raise RuntimeError(f"{d.name} exited with {d.proc.returncode}")
            try:
                stub.Version(api_pb2.VersionRequest(), timeout=1, wait_for_ready=True)
                return
            except grpc.RpcError:
                continue
    raise RuntimeError(f"{d.name} did not answer within {READY_TIMEOUT_S}s")


def ready(daemon: Daemon) -> Daemon:
    """`daemon` once it answers; stopped (and its dir removed) when it does not."""
    try:
        _wait_ready(daemon)
    except BaseException:
        daemon.stop()
        raise
    return daemon


def start_crib() -> Daemon:
    d = Path(tempfile.mkdtemp(prefix="crib-bench-"))
    (d / "crib.toml").write_text(f'root = "{d}/root"\nstate = "{d}/state"\nlog_level = "info"\n')
    log = (d / "cribd.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "crib.cri_server.daemon", "--config", str(d / "crib.toml")],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    daemon = Daemon("crib", d, d / "state" / "crib.sock", proc)
    _wait_ready(daemon)
    return daemon


def start_containerd(extra_config: str = "") -> Daemon | None:
    binary = shutil.which("containerd")
    if binary is None:
        return None
    d = Path(tempfile.mkdtemp(prefix="crib-bench-ctrd-"))
    sock = d / "containerd.sock"
    (d / "config.toml").write_text(
        f'version = 2\nroot = "{d}/root"\nstate = "{d}/state"\n'
        f'[grpc]\naddress = "{sock}"\n[ttrpc]\naddress = "{sock}.ttrpc"\n'
        f'[debug]\naddress = "{d}/debug.sock"\n'
        '[plugins."io.containerd.grpc.v1.cri".cni]\n'
        f'conf_dir = "{d}/net.d"\nbin_dir = "/usr/lib/cni"\n' + extra_config
    )
    log = (d / "containerd.log").open("wb")
    cmd = [binary, "--config", str(d / "config.toml")]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    daemon = Daemon("containerd", d, sock, proc)
    _wait_ready(daemon)
    return daemon


def start_containerd2(
    bin_dir: Path, pause_image: str = "", registry: str = "", net: Callable[[Path], str] | None = None
) -> Daemon:
    """containerd 2.x from `bin_dir` (bench/containerd2), in a temp dir of its own.
    `registry`: a host:port it pulls from over plain HTTP. `net`: the CNI conflist for its
    net.d, given that dir (none: no pod network, as 1.6's here)."""
    d = Path(tempfile.mkdtemp(prefix="crib-bench-ctrd2-"))
    (d / "net.d").mkdir()
    if net is not None:
        (d / "net.d" / "10-bench.conflist").write_text(net(d))
    config = ctrd2_config.write_dir(
        d, bin_dir, pause_image, {registry: f"http://{registry}"} if registry else {}
    )
    log = (d / "containerd.log").open("wb")
    proc = subprocess.Popen(
        [str(bin_dir / "containerd"), "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    return ready(Daemon(containerd2.NAME, d, ctrd2_config.socket(d), proc))


FLOOR = "floor"
DESIGN_FLOOR = "design floor"
RATIOS = (*containerd2.RATIOS, ("crib", FLOOR), ("crib", DESIGN_FLOOR))


def start_replay_floor(
    replies: Mapping[str, bytes], kind: str = "aio", name: str = "", libraries: bool = False
) -> Daemon:
    """floor_server.py's bare server of `kind` ("aio" or "sync") in a child process, answering
    each full method path in `replies` with its bytes whatever the request. Version answers
    VERSION_REPLY where `replies` has none, so the floor is found ready as every server is (by
    a Version). With `libraries`, crib's design libraries are loaded first (the design floor)."""
    name = name or f"replay ({kind})"
    if kind not in ("aio", "sync"):
        raise ValueError(f"unknown server kind {kind!r}")
    d = Path(tempfile.mkdtemp(prefix=f"crib-floor-{kind}-"))
    sock = d / "floor.sock"
    floor_server.write_replies(
        d / "replies.json", {floor_server.METHOD: floor_server.VERSION_REPLY, **replies}
    )
    cmd = [sys.executable, str(REPO / "bench" / "floor_server.py"), kind, str(sock), str(d / "replies.json")]
    if libraries:
        cmd.append("--libraries")
    log = (d / "floor.log").open("wb")
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=str(REPO))
    )
    return ready(Daemon(name, d, sock, proc))


def start_floor(libraries: bool) -> Daemon:
    """The memory floors: the bare grpc.aio server answering Version; with `libraries`, the
    design floor."""
    return start_replay_floor({}, "aio", name=DESIGN_FLOOR if libraries else FLOOR, libraries=libraries)


def measure(daemons: list[Daemon], calls: int, block: int = 50) -> None:
    channels = {d.name: grpc.insecure_channel(f"unix://{d.socket}") for d in daemons}
    stubs = {n: api_pb2_grpc.RuntimeServiceStub(ch) for n, ch in channels.items()}
    methods = {
        "Version": lambda s: s.Version(api_pb2.VersionRequest(), timeout=5),
        "Status": lambda s: s.Status(api_pb2.StatusRequest(), timeout=5),
    }
    # The floors answer Version alone.
    served = {d.name: ["Version"] if d.name in (FLOOR, DESIGN_FLOOR) else list(methods) for d in daemons}
    for _ in range(20):  # warm connections and code paths
        for d in daemons:
            for m in served[d.name]:
                methods[m](stubs[d.name])
    for d in daemons:
        d.lat = {m: [] for m in served[d.name]}
    for i in range(calls // block):
        for d in report.in_turn(daemons, i):
            for name in served[d.name]:
                call = methods[name]
                for _ in range(block):
                    t0 = time.perf_counter()
                    call(stubs[d.name])
                    d.lat[name].append((time.perf_counter() - t0) * 1e3)
    for ch in channels.values():
        ch.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=2000, help="calls per method per daemon")
    p.add_argument("--no-floors", action="store_true", help="leave out the two Python floors")
    containerd2.add_argument(p)
    args = p.parse_args()

    ctrd2_bin = containerd2.from_args(args)
    daemons: list[Daemon] = []
    try:
        daemons.append(start_crib())
        if not args.no_floors:
            daemons.extend(start_floor(libraries) for libraries in (False, True))
        ctrd = start_containerd()
        if ctrd is None:
            print("containerd is not installed (apt-get install containerd)\n")
        else:
            daemons.append(ctrd)
        if ctrd2_bin is not None:
            daemons.append(start_containerd2(ctrd2_bin))
        samples: report.Samples = {d.name: {} for d in daemons}
        for _ in range(report.MIN_SAMPLES):
            for d in daemons:
                rss, pss, uss = d.memory_kb()
                report.add(samples, d.name, "RSS idle (MB)", rss / 1024)
                report.add(samples, d.name, "PSS idle (MB)", pss / 1024)
                report.add(samples, d.name, "USS idle (MB)", uss / 1024)
        measure(daemons, args.calls)
        for _ in range(report.MIN_SAMPLES):
            for d in daemons:
                report.add(samples, d.name, f"RSS after {2 * args.calls} calls (MB)", d.memory_kb()[0] / 1024)
        for d in daemons:
            for method, values in d.lat.items():
                samples[d.name][f"{method} (ms)"] = values
        report.show_and_save("daemon_idle", samples, "figure", RATIOS, calls=args.calls)
    finally:
        for d in daemons:
            d.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
