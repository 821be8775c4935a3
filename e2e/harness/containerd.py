"""A private containerd (Debian's package) with its CRI plugin, for comparing crib's clients against it.

Everything is under one temp dir: root, state, the gRPC and ttrpc sockets,
the debug socket, the opt dir and an empty CNI conf dir (so NetworkReady is
false and nothing touches the host's network). The CRI plugin runs with
cgroupfs (runc's SystemdCgroup off) and the overlayfs snapshotter. `stop()`
kills it and its shims, unmounts what is mounted below the dir and removes
it, also when containerd failed to start.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import grpc

from crib.proto.cri import api_pb2, api_pb2_grpc
from e2e.harness.cleanup import clean_tree

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
CRI = '[plugins."io.containerd.grpc.v1.cri"'


class ContainerdFailed(Exception):
    pass


def containerd_bin() -> str | None:
    return shutil.which("containerd")


def config_text(d: Path, socket: Path, extra: str = "") -> str:
    return (
        f'version = 2\nroot = "{d}/root"\nstate = "{d}/state"\n'
        f'[grpc]\naddress = "{socket}"\n'
        f'[ttrpc]\naddress = "{socket}.ttrpc"\n'
        f'[debug]\naddress = "{d}/debug.sock"\n'
        f'[plugins."io.containerd.internal.v1.opt"]\npath = "{d}/opt"\n'
        # restrict_oom_score_adj: root here may lack CAP_SYS_RESOURCE to lower oom_score_adj.
        f"{CRI}]\nrestrict_oom_score_adj = true\n"
        f'{CRI}.containerd]\nsnapshotter = "overlayfs"\n'
        f'{CRI}.containerd.runtimes.runc]\nruntime_type = "io.containerd.runc.v2"\n'
        f"{CRI}.containerd.runtimes.runc.options]\nSystemdCgroup = false\n"
        f'{CRI}.cni]\nconf_dir = "{d}/net.d"\nbin_dir = "/usr/lib/cni"\n' + extra
    )


class Containerd:
    def __init__(self, extra_config: str = "", binary: str | None = None) -> None:
        """`binary`: another containerd than Debian's (a built 2.x, whose config the caller
        writes over config.toml: e2e/harness/containerd2.py)."""
        binary = binary or containerd_bin()
        if binary is None:
            raise ContainerdFailed("containerd is not installed (apt-get install containerd)")
        self.binary = binary
        # Short paths: a unix socket path must fit in 108 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="crib-ctrd-"))
        self.socket = self.dir / "containerd.sock"
        self.config_path = self.dir / "config.toml"
        self.log_path = self.dir / "containerd.log"
        (self.dir / "net.d").mkdir()
        self.config_path.write_text(config_text(self.dir, self.socket, extra_config))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> Containerd:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [self.binary, "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.dir,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        """Bounded: the CRI plugin's first answer to Version, or containerd's exit."""
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        with grpc.insecure_channel(self.endpoint) as channel:
            stub = api_pb2_grpc.RuntimeServiceStub(channel)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise ContainerdFailed(
                        f"containerd exited with {self.proc.returncode}:\n{self.log_tail()}"
                    )
                try:
                    stub.Version(api_pb2.VersionRequest(), timeout=1, wait_for_ready=True)
                    return
                except grpc.RpcError:
                    time.sleep(0.05)
        raise ContainerdFailed(
            f"containerd's CRI did not answer within {START_TIMEOUT_S}s:\n{self.log_tail()}"
        )

    def ctr(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """containerd's own client on this instance, in the CRI plugin's namespace."""
        return subprocess.run(
            ["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self) -> dict[str, list]:
        """SIGTERM (SIGKILL if it overstays), then kill, unmount and remove what is left under the dir."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return clean_tree(self.dir)
