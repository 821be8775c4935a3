"""The config of a private containerd 2.x (built by bench/containerd2/build.sh) with its CRI plugin.

Version 3: everything under its own dir (root, state, sockets, the NRI socket, the pods'
netns mounts, runc's state), the runc runtime pointed at the built 2.x shim (Debian's 1.6
shim is the one on PATH), and the CNI, sandbox image and registry settings the benchmarks
give Debian's 1.6 (e2e/harness/containerd.py, bench/pod_lifecycle.py), in 2.x's sections:
registries through hosts.toml files under `certs.d` instead of 1.6's mirrors.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

CNI_BIN_DIR = "/usr/lib/cni"


def socket(d: Path) -> Path:
    return d / "containerd.sock"


def config(d: Path, bin_dir: Path, pause_image: str = "") -> str:
    """The config (version 3) of a containerd 2.x living in `d`, its binaries in `bin_dir`.
    `pause_image`: the pinned sandbox image (1.6's sandbox_image). CNI config: `d/net.d`;
    registries: the hosts.toml files under `d/certs.d` (`write_dir`)."""
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


def hosts_toml(host: str, endpoint: str) -> str:
    """containerd's hosts.toml for images named `host/...`: pulled from `endpoint` (a URL,
    plain HTTP here), the registry itself when it is `host`, else a mirror of it."""
    server = endpoint if urlsplit(endpoint).netloc == host else f"https://{host}"
    return f'server = "{server}"\n[host."{endpoint}"]\ncapabilities = ["pull", "resolve"]\n'


def write_dir(d: Path, bin_dir: Path, pause_image: str = "", registries: Mapping[str, str] = {}) -> Path:
    """config.toml, and a hosts.toml per entry of `registries` (image host -> endpoint URL),
    written into `d`; the config's path."""
    (d / "certs.d").mkdir()
    for host, endpoint in registries.items():
        (d / "certs.d" / host).mkdir()
        (d / "certs.d" / host / "hosts.toml").write_text(hosts_toml(host, endpoint))
    path = d / "config.toml"
    path.write_text(config(d, bin_dir, pause_image))
    return path
