"""A real cribd from this checkout, on a temp socket with temp root and state dirs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import grpc

from crib.proto.cri import api_pb2, api_pb2_grpc
from e2e.harness.cleanup import clean_tree

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


class CribdFailed(Exception):
    pass


class Cribd:
    """One cribd process and its directories.

    Its stderr is copied to `log_path` by a reader thread, which also signals
    readiness when cribd logs `cribd.started`: no polling of the socket.
    """

    def __init__(self, config_text: str = "", workdir: Path | None = None) -> None:
        # Short paths: a unix socket path must fit in 108 bytes.
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="crib-e2e-"))
        self.root = self.dir / "root"
        self.state = self.dir / "state"
        self.socket = self.state / "crib.sock"
        self.cni_conf_dir = self.dir / "net.d"
        self.config_path = self.dir / "crib.toml"
        self.log_path = self.dir / "cribd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._ready = threading.Event()
        self._started = False
        self._reader: threading.Thread | None = None
        self._channel: grpc.Channel | None = None
        self.write_config(config_text)

    def write_config(self, extra: str = "") -> None:
        """crib.toml for this instance: its own dirs and CNI conf dir, then `extra`.

        Top-level keys in `extra` must come before its first table.
        """
        text = f'root = "{self.root}"\nstate = "{self.state}"\nlog_level = "debug"\n\n{extra}\n'
        if "[cni]" not in extra:
            text += f'\n[cni]\nconf_dir = "{self.cni_conf_dir}"\n'
        self.config_path.write_text(text)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "crib.cri_server.daemon", "--config", str(self.config_path), *args]

    def _pump(self, stream: object) -> None:
        with self.log_path.open("ab") as log:
            for line in iter(stream.readline, b""):  # type: ignore[attr-defined]
                log.write(line)
                log.flush()
                if b'"cribd.started"' in line:
                    self._started = True
                    self._ready.set()
        self._ready.set()  # EOF: the process ended; start() checks which.

    def start(
        self, *args: str, wait: bool = True, env: dict[str, str] | None = None, pass_fds: Sequence[int] = ()
    ) -> Cribd:
        self._ready.clear()
        self._started = False
        # `env` may set PYTHONPATH too (a probe loaded ahead of the checkout).
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})}
        self.proc = subprocess.Popen(
            self.command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.dir,
            pass_fds=pass_fds,
        )
        self._reader = threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True)
        self._reader.start()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        if not self._ready.wait(START_TIMEOUT_S):
            raise CribdFailed(f"cribd did not start within {START_TIMEOUT_S}s:\n{self.log_tail()}")
        assert self.proc is not None
        if not self._started:
            # Its output ended without cribd.started: it is exiting (the pipe closes a moment
            # before the process can be reaped, so poll() alone could still say running).
            self._reader.join(5)  # type: ignore[union-attr]
            try:
                self.proc.wait(START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            raise CribdFailed(f"cribd exited with {self.proc.returncode}:\n{self.log_tail()}")

    def run(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run cribd to completion (for start-up failures and --print-config)."""
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        return subprocess.run(
            self.command(*args), capture_output=True, text=True, timeout=timeout, env=env, cwd=self.dir
        )

    @property
    def channel(self) -> grpc.Channel:
        if self._channel is None:
            # The kubelet's limits: replies of up to 16 MiB.
            self._channel = grpc.insecure_channel(
                f"unix://{self.socket}",
                options=[
                    ("grpc.max_receive_message_length", 16 << 20),
                    ("grpc.max_send_message_length", 16 << 20),
                ],
            )
        return self._channel

    @property
    def runtime(self) -> api_pb2_grpc.RuntimeServiceStub:
        return api_pb2_grpc.RuntimeServiceStub(self.channel)

    @property
    def images(self) -> api_pb2_grpc.ImageServiceStub:
        return api_pb2_grpc.ImageServiceStub(self.channel)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """Signal cribd and wait for it; SIGKILL if it overstays. Returns its exit code."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(5)
        return self.proc.returncode

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 200) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def remove_all_pods(self) -> None:
        """Through the API while cribd runs: CNI DEL releases IPs and iptables rules properly."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            pods = self.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items
            for pod in pods:
                self.runtime.RemovePodSandbox(
                    api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=60
                )
        except grpc.RpcError:
            pass  # the forced cleanup below still kills and unmounts

    def destroy(self) -> dict[str, list]:
        self.remove_all_pods()
        self.stop()
        return clean_tree(self.dir)
