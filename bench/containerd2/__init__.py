"""containerd 2.x beside Debian's containerd 1.6 in the benchmarks (DESIGN.md §7).

2.x is what users compare crib with, and 1.6 lacks calls the kubelet makes (its
ListPodSandboxStats fails), so every benchmark that runs 1.6 also runs 2.x where it can be
built: `build()` runs build.sh once per benchmark run (`go install` of
github.com/containerd/containerd/v2's `containerd` and `containerd-shim-runc-v2` from the
module proxy into a cache outside the checkout) and gives the bin dir, or None with the
reason printed, and the benchmark goes on without it.

`config()` is the daemon's config (version 3): everything under its own temp dir (root,
state, sockets, NRI socket, netns mounts, runc's state), the runc runtime pointed at the
built shim (Debian's 1.6 shim is the one on PATH), and the CNI and registry settings of
1.6's config in 2.x's sections. The start functions are bench/daemon_idle.py's and
bench/pod_lifecycle.py's `start_containerd2`.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

NAME = "containerd2"  # "containerd" stays Debian's 1.6, so older result files compare
BUILD = Path(__file__).resolve().with_name("build.sh")
# A cold build takes minutes (downloads and compiles containerd's dependencies); a warm one,
# a moment. Bounded: past this the benchmark goes on without 2.x.
BUILD_TIMEOUT_S = 1800
CNI_BIN_DIR = "/usr/lib/cni"
# The ratio columns of every benchmark's table: crib over each containerd present.
RATIOS = (("crib", "containerd"), ("crib", NAME))


def add_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-containerd2", action="store_true", help="leave containerd 2.x out (no build, no runs)"
    )


def build(enabled: bool = True) -> Path | None:
    """The bin dir holding the built `containerd` and `containerd-shim-runc-v2`; None (and
    why, printed) when left out or when the build fails."""
    if not enabled:
        print("containerd 2.x left out (--no-containerd2)", flush=True)
        return None
    try:
        done = subprocess.run([str(BUILD)], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        print(f"containerd 2.x: the build took over {BUILD_TIMEOUT_S} s; going on without it", flush=True)
        return None
    if done.returncode != 0:
        print(f"containerd 2.x could not be built; going on without it:\n{done.stderr[-2000:]}", flush=True)
        return None
    bin_dir = Path(done.stdout.strip().splitlines()[-1])
    print(f"containerd 2.x: {bin_dir}", flush=True)
    return bin_dir


def from_args(args: argparse.Namespace) -> Path | None:
    return build(not args.no_containerd2)


def socket(d: Path) -> Path:
    return d / "containerd.sock"


def config(d: Path, bin_dir: Path, pause_image: str = "", registry: str = "") -> str:
    """The config (version 3) of a containerd 2.x living in `d`. `pause_image`: the pinned
    sandbox image (1.6's sandbox_image); `registry`: a host:port served over plain HTTP,
    whose hosts.toml `write_hosts` puts under `d/certs.d`. CNI config: `d/net.d`."""
    sock = socket(d)
    runtime = "plugins.'io.containerd.cri.v1.runtime'"
    images = "plugins.'io.containerd.cri.v1.images'"
    runc = f"{runtime}.containerd.runtimes.runc"
    lines = [
        "version = 3",
        f'root = "{d}/root"',
        f'state = "{d}/state"',
        "imports = []",  # not /etc/containerd/conf.d: only what is written here
        f'[grpc]\naddress = "{sock}"',
        f'[ttrpc]\naddress = "{sock}.ttrpc"',
        f'[debug]\naddress = "{d}/debug.sock"',
        f"[plugins.'io.containerd.internal.v1.opt']\npath = \"{d}/opt\"",
        # NRI is on by default in 2.x; its socket here, not in /var/run/nri where another
        # containerd would find it.
        f"[plugins.'io.containerd.nri.v1.nri']\nsocket_path = \"{d}/nri.sock\"",
        f"[{runtime}]",
        # This host's root cannot lower oom_score_adj (no CAP_SYS_RESOURCE).
        "restrict_oom_score_adj = true",
        # The pods' netns under the state dir, so a run cut short leaves none in /var/run/netns
        # (cleaning the dir unmounts them).
        "netns_mounts_under_state_dir = true",
        f"[{runtime}.cni]",
        f'conf_dir = "{d}/net.d"',
        f'bin_dirs = ["{CNI_BIN_DIR}"]',
        f"[{runc}]",
        'runtime_type = "io.containerd.runc.v2"',
        # The built 2.x shim, not Debian's 1.6 one that PATH would give.
        f'runtime_path = "{bin_dir / "containerd-shim-runc-v2"}"',
        f"[{runc}.options]",
        # runc's state (namespace dirs below it) under the dir as crib's is, where
        # e2e/harness/cleanup.clean_tree finds and kills what a failed run left.
        f'Root = "{d}/state/runtime"',
        f"[{images}.registry]",
        f'config_path = "{d}/certs.d"',
        "[plugins.'io.containerd.grpc.v1.cri']",
        "disable_tcp_service = true",
        'stream_server_address = "127.0.0.1"',
        'stream_server_port = "0"',
    ]
    if pause_image:
        lines += [f"[{images}.pinned_images]", f'sandbox = "{pause_image}"']
    return "\n".join(lines) + "\n"


def hosts_toml(registry: str) -> str:
    """containerd's hosts.toml for `registry` (host:port) served over plain HTTP."""
    return f'server = "http://{registry}"\n[host."http://{registry}"]\ncapabilities = ["pull", "resolve"]\n'


def write_dir(d: Path, bin_dir: Path, pause_image: str = "", registry: str = "") -> Path:
    """config.toml (and the registry's hosts.toml) written into `d`; the config's path."""
    if registry:
        hosts = d / "certs.d" / registry
        hosts.mkdir(parents=True)
        (hosts / "hosts.toml").write_text(hosts_toml(registry))
    else:
        (d / "certs.d").mkdir()
    path = d / "config.toml"
    path.write_text(config(d, bin_dir, pause_image, registry))
    return path
