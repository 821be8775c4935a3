"""A one-node Kubernetes 1.36 cluster whose kubelet runs its pods on a cribd of its own.

    python -m e2e.kube.cluster up   [--dir DIR]   # what scripts/kube-up.sh runs
    python -m e2e.kube.cluster down [--dir DIR]   # what scripts/kube-down.sh runs

`up` starts, all on 127.0.0.1 with free ports and everything under DIR:
a docker-registry holding the test images, etcd, kube-apiserver (certificates
and a service-account key made at start, Node and RBAC authorization),
kube-controller-manager, kube-scheduler, a cribd whose registry mirrors point
`registry.k8s.io` and `docker.io` at that registry, and a kubelet whose
`containerRuntimeEndpoint` is that cribd. It returns once the node is Ready.
Processes outlive the command; `state.json` in DIR records what `down` needs to
undo (pids, the pod network, cgroups, iptables chains, sysctls).

`down` stops the kubelet, has cribd remove every pod (so CNI releases its IPs
and rules), stops everything else, unmounts, and removes the cgroups, iptables
chains, bridge and files the cluster made, restoring the sysctls the kubelet
changed. The test fixtures use the same two steps.
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
import httpx

from crib.proto.cri import api_pb2, api_pb2_grpc
from e2e.harness import containerd2
from e2e.harness.cleanup import clean_tree
from e2e.harness.containerd import Containerd
from e2e.harness.containerd import config_text as containerd_config
from e2e.harness.network import PodNetwork, new_network
from e2e.harness.registry import Registry, free_port
from e2e.harness.wait import alive
from e2e.kube import host
from e2e.kube.images import PAUSE, push_images
from e2e.kube.pki import PKI, write_kubeconfig

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "e2e" / "kube" / "build" / "build.sh"
DEFAULT_DIR = Path("/var/lib/crib-kube")
KUBELET_HOME = Path("/var/lib/kubelet")
CONTAINER_LOG_LINKS = Path("/var/log/containers")
NODE_NAME = "crib-node"
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
# The runtimes other than crib a cluster can run (State.runtime).
CONTAINERDS = ("containerd", "containerd2")
POLL_S = 0.1


class ClusterError(Exception):
    pass


def kube_bin_dir() -> Path:
    """Where build.sh put the binaries (it builds them if the cache is cold)."""
    out = subprocess.run(
        [str(BUILD_SCRIPT), "--print-dir"], capture_output=True, text=True, timeout=30, check=True
    )
    return Path(out.stdout.strip())


def ensure_built() -> Path:
    proc = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise ClusterError(f"building Kubernetes failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return kube_bin_dir()


@dataclass
class State:
    """What `down` needs, also from another process (written to DIR/state.json)."""

    dir: str
    bin_dir: str
    # "crib", "containerd" (Debian's 1.6) or "containerd2" (2.x built by
    # bench/containerd2/build.sh into containerd2_bin), for the benchmarks' comparison.
    runtime: str = "crib"
    containerd_dir: str = ""
    containerd2_bin: str = ""
    node_ip: str = ""
    made_dummy: bool = False
    cgroup_root: str = ""
    sysctls: dict[str, str] = field(default_factory=dict)
    iptables_before: dict[str, list[str]] = field(default_factory=dict)
    network: dict[str, str] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    registry_url: str = ""
    # The kubelet writes /var/lib/kubelet/device-plugins whatever its --root-dir says.
    made_kubelet_home: bool = False

    def save(self) -> None:
        path = Path(self.dir) / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(path)

    @classmethod
    def load(cls, d: Path) -> State:
        return cls(**json.loads((d / "state.json").read_text()))


def stop_pid(pid: int, timeout: float = STOP_TIMEOUT_S, sig: int = signal.SIGTERM) -> None:
    """Signal `pid` and wait (bounded) until it is gone; SIGKILL if it overstays."""
    if not alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while alive(pid):
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        time.sleep(POLL_S)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


class Cluster:
    def __init__(
        self, d: Path, bin_dir: Path, runtime: str = "crib", containerd2_bin: Path | None = None
    ) -> None:
        self.dir = d
        self.bin = bin_dir
        self.state = State(dir=str(d), bin_dir=str(bin_dir), runtime=runtime)
        if containerd2_bin is not None:
            self.state.containerd2_bin = str(containerd2_bin)
        self.pki_dir = d / "pki"
        self.logs = d / "logs"
        self.crib_dir = d / "crib"
        self.kubelet_dir = d / "kubelet"
        self.manifests = d / "manifests"
        self.pod_logs = d / "pod-logs"
        self.admin_kubeconfig = d / "admin.kubeconfig"
        self.cribd_config = self.crib_dir / "crib.toml"
        self.kubelet_config = d / "kubelet.yaml"
        self.network: PodNetwork | None = None
        # More cribd config appended to the generated file (the conformance run's handlers).
        self.cribd_config_extra = ""
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    # --- paths and endpoints ---

    @property
    def socket(self) -> Path:
        return self.crib_dir / "state" / "crib.sock"

    @property
    def endpoint(self) -> str:
        if self.state.runtime in CONTAINERDS:
            return f"unix://{self.state.containerd_dir}/containerd.sock"
        return f"unix://{self.socket}"

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.state.ports['apiserver']}"

    @property
    def kubectl_path(self) -> Path:
        return self.bin / "kubectl"

    def env(self) -> dict[str, str]:
        return {
            "KUBECONFIG": str(self.admin_kubeconfig),
            "CONTAINER_RUNTIME_ENDPOINT": self.endpoint,
        }

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    # --- processes ---

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        with self.log_path(name).open("ab") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.dir,
                env=dict(os.environ, **(env or {})),
                start_new_session=True,
            )
        self._procs[name] = proc
        self.state.pids[name] = proc.pid
        self.state.save()

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        pid = self.state.pids.pop(name, 0)
        if pid:
            stop_pid(pid, sig=sig)
            proc = self._procs.pop(name, None)
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(1)
        self.state.save()

    def running(self, name: str) -> bool:
        pid = self.state.pids.get(name, 0)
        return bool(pid) and alive(pid)

    def _wait(self, name: str, ready: object, what: str, timeout: float = START_TIMEOUT_S) -> None:
        """Poll `ready()` (bounded) while the component is alive; fail with its log tail."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if ready():  # type: ignore[operator]
                    return
            except (OSError, httpx.HTTPError, grpc.RpcError, ValueError, KeyError):
                pass
            if not self.running(name):
                raise ClusterError(f"{name} exited while waiting for {what}:\n{self.log_tail(name)}")
            if time.monotonic() > deadline:
                raise ClusterError(f"{name}: no {what} after {timeout:.0f}s:\n{self.log_tail(name)}")
            time.sleep(POLL_S)

    def log_tail(self, name: str, lines: int = 60) -> str:
        try:
            text = self.log_path(name).read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # --- up ---

    def up(self) -> Cluster:
        self.dir.mkdir(parents=True, exist_ok=True)
        for d in (self.crib_dir, self.kubelet_dir, self.manifests, self.pod_logs, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        st = self.state
        st.ports = {k: free_port() for k in ("etcd", "etcd_peer", "apiserver", "kubelet", "kubelet_healthz")}
        st.ports.update({k: free_port() for k in ("kcm", "scheduler")})
        st.sysctls = host.read_sysctls()
        st.iptables_before = host.iptables_chains()
        st.cgroup_root = f"crib-kube-{os.getpid()}-{int(time.time()) % 100000}"
        st.node_ip, st.made_dummy = host.node_ip()
        st.made_kubelet_home = not KUBELET_HOME.exists()
        st.save()
        self._start_registry()
        self._make_pki()
        self._start_etcd()
        self._start_apiserver()
        self._start_controllers()
        self._start_runtime()
        self._start_kubelet()
        self.wait_node_ready()
        self.wait_service_account("default")
        return self

    def up_or_down(self) -> Cluster:
        """up(); a start that fails is torn down before its error goes on."""
        try:
            return self.up()
        except BaseException:
            self.down()
            raise

    def up_runtime(self) -> Cluster:
        """Only the registry and the runtime, for a suite that starts its own control plane and
        kubelet (node conformance); `down` still restores what that kubelet changes."""
        for d in (self.crib_dir, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        self.state.sysctls = host.read_sysctls()
        self.state.iptables_before = host.iptables_chains()
        self.state.save()
        self._start_registry()
        self._start_runtime()
        return self

    def _start_registry(self) -> None:
        reg = Registry(workdir=self.dir / "registry").start()
        self.state.pids["registry"] = reg.proc.pid  # type: ignore[union-attr]
        self.state.registry_url = reg.url
        self.state.save()
        push_images(reg.url, self.bin)

    def _make_pki(self) -> None:
        pki = PKI(self.pki_dir)
        ip = self.state.node_ip
        sans = ("IP:127.0.0.1", f"IP:{ip}", f"IP:{SERVICE_IP}", "DNS:localhost", "DNS:kubernetes")
        sans += ("DNS:kubernetes.default", "DNS:kubernetes.default.svc")
        sans += ("DNS:kubernetes.default.svc.cluster.local",)
        self.apiserver_pair = pki.issue("apiserver", "kube-apiserver", server_sans=sans)
        self.kubelet_client = pki.issue(
            "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)
        )
        self.sa = pki.service_account_keys()
        self.ca = pki.ca.cert
        self.ca_key = pki.ca.key
        server = f"https://127.0.0.1:{self.state.ports['apiserver']}"
        for name, cn, orgs in (
            ("admin", "kubernetes-admin", ("system:masters",)),
            ("controller-manager", "system:kube-controller-manager", ()),
            ("scheduler", "system:kube-scheduler", ()),
            ("kubelet", f"system:node:{NODE_NAME}", ("system:nodes",)),
        ):
            pair = pki.issue(name, cn, orgs)
            write_kubeconfig(self.dir / f"{name}.kubeconfig", server, self.ca, pair, name)

    def _start_etcd(self) -> None:
        p = self.state.ports
        client, peer = f"http://127.0.0.1:{p['etcd']}", f"http://127.0.0.1:{p['etcd_peer']}"
        self._spawn(
            "etcd",
            [
                str(self.bin / "etcd"), "--name=crib", f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=crib={peer}", "--log-level=warn",
                # A throwaway test store: durability buys nothing, fsync costs seconds.
                "--unsafe-no-fsync",
            ],
        )  # fmt: skip
        self._wait(
            "etcd", lambda: httpx.get(f"{client}/health", timeout=2).json()["health"] == "true", "health"
        )

    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.load_cert_chain(str(self.pki_dir / "admin.crt"), str(self.pki_dir / "admin.key"))
        return ctx

    def api(self) -> httpx.Client:
        """An admin client of the API server."""
        return httpx.Client(base_url=self.api_url, verify=self._ssl(), timeout=30)

    def _start_apiserver(self) -> None:
        p, pki = self.state.ports, self.pki_dir
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{p['etcd']}",
                "--bind-address=127.0.0.1", f"--secure-port={p['apiserver']}",
                f"--advertise-address={self.state.node_ip}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--client-ca-file={self.ca}",
                f"--tls-cert-file={self.apiserver_pair.cert}",
                f"--tls-private-key-file={self.apiserver_pair.key}",
                f"--kubelet-client-certificate={self.kubelet_client.cert}",
                f"--kubelet-client-key={self.kubelet_client.key}",
                "--kubelet-preferred-address-types=InternalIP",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={self.sa.cert}",
                f"--service-account-signing-key-file={self.sa.key}",
                "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true", f"--cert-dir={pki / 'apiserver-generated'}", "--profiling=false",
                "--v=1",
            ],
        )  # fmt: skip

        def ready() -> bool:
            with self.api() as c:
                return c.get("/readyz").status_code == 200

        self._wait("kube-apiserver", ready, "/readyz")

    def _start_controllers(self) -> None:
        p = self.state.ports
        kcm = str(self.dir / "controller-manager.kubeconfig")
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bin / "kube-controller-manager"),
                f"--kubeconfig={kcm}",
                f"--authentication-kubeconfig={kcm}", f"--authorization-kubeconfig={kcm}",
                "--bind-address=127.0.0.1", f"--secure-port={p['kcm']}", "--leader-elect=false",
                f"--service-account-private-key-file={self.sa.key}", f"--root-ca-file={self.ca}",
                "--use-service-account-credentials=true",
                f"--cluster-signing-cert-file={self.ca}", f"--cluster-signing-key-file={self.ca_key}",
                f"--cert-dir={self.pki_dir / 'kcm-generated'}", "--v=1",
            ],
        )  # fmt: skip
        sched = str(self.dir / "scheduler.kubeconfig")
        self._spawn(
            "kube-scheduler",
            [
                str(self.bin / "kube-scheduler"),
                f"--kubeconfig={sched}", f"--authentication-kubeconfig={sched}",
                f"--authorization-kubeconfig={sched}",
                "--bind-address=127.0.0.1", f"--secure-port={p['scheduler']}", "--leader-elect=false",
                f"--cert-dir={self.pki_dir / 'scheduler-generated'}", "--v=1",
            ],
        )  # fmt: skip

    def cribd_config_text(self) -> str:
        reg = self.state.registry_url
        host_port = reg.split("://", 1)[1]
        mirrors = "".join(
            f'[image.mirrors."{h}"]\nendpoints = ["{reg}"]\nmirrors_only = true\n\n'
            for h in ("registry.k8s.io", "docker.io")
        )
        return (
            f'root = "{self.crib_dir / "root"}"\n'
            f'state = "{self.crib_dir / "state"}"\n'
            'log_level = "info"\n\n'
            f'[image]\ninsecure_registries = ["{host_port}"]\n\n'
            f"{mirrors}"
            f'[cni]\nconf_dir = "{self.crib_dir / "net.d"}"\n'
            f"{self.cribd_config_extra}"
        )

    def _start_runtime(self) -> None:
        net = new_network(self.dir / "net")
        self.network = net
        self.state.network = {k: str(v) for k, v in asdict(net).items()}
        if self.state.runtime in CONTAINERDS:
            self._start_containerd(net)
            return
        net.install(self.crib_dir / "net.d")
        self.cribd_config.write_text(self.cribd_config_text())
        self.start_cribd()

    def _start_containerd(self, net: PodNetwork) -> None:
        """Debian's containerd with its CRI plugin, set up as crib is: same network, mirrors, images."""
        reg = self.state.registry_url
        mirrored = ("registry.k8s.io", "docker.io")
        if self.state.runtime == "containerd2":
            bin_dir = Path(self.state.containerd2_bin)
            ctrd = Containerd(binary=str(bin_dir / "containerd"))
            containerd2.write_dir(ctrd.dir, bin_dir, PAUSE, dict.fromkeys(mirrored, reg))
        else:
            ctrd = Containerd()
            cri = '[plugins."io.containerd.grpc.v1.cri"'
            text = containerd_config(ctrd.dir, ctrd.socket)
            text = text.replace(
                "restrict_oom_score_adj = true\n",
                f'restrict_oom_score_adj = true\nsandbox_image = "{PAUSE}"\n',
                1,
            )
            for h in mirrored:
                text += f'{cri}.registry.mirrors."{h}"]\nendpoint = ["{reg}"]\n'
            ctrd.config_path.write_text(text)
        net.install(ctrd.dir / "net.d")
        self.state.containerd_dir = str(ctrd.dir)
        self.state.save()
        ctrd.start()
        assert ctrd.proc is not None
        self._procs["containerd"] = ctrd.proc
        self.state.pids["containerd"] = ctrd.proc.pid
        self.state.save()

    def start_cribd(self) -> None:
        """Start (or restart) the cluster's cribd and wait until it answers Version."""
        self._spawn(
            "cribd",
            [sys.executable, "-m", "crib.cri_server.daemon", "--config", str(self.cribd_config)],
            env={"PYTHONPATH": str(REPO_ROOT)},
        )

        def ready() -> bool:
            with grpc.insecure_channel(self.endpoint) as ch:
                stub = api_pb2_grpc.RuntimeServiceStub(ch)
                return stub.Version(api_pb2.VersionRequest(), timeout=2).runtime_api_version == "v1"

        self._wait("cribd", ready, "Version reply", timeout=60)

    def kubelet_config_text(self, **overrides: object) -> str:
        p = self.state.ports
        resolv = self.dir / "resolv.conf"
        if not resolv.exists():
            shutil.copyfile("/etc/resolv.conf", resolv)
        cfg: dict[str, object] = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.state.node_ip,
            "port": p["kubelet"],
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": p["kubelet_healthz"],
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.ca)},
            },
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": self.endpoint,
            "imageServiceEndpoint": self.endpoint,
            # The kubelet takes the driver from crib's RuntimeConfig; this is only its fallback.
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{self.state.cgroup_root}",
            # These machines have the hybrid cgroup v1 layout.
            "failCgroupV1": False,
            "failSwapOn": False,
            "staticPodPath": str(self.manifests),
            "fileCheckFrequency": "2s",
            "podLogsDir": str(self.pod_logs),
            # Small enough that the log tests see rotations.
            "containerLogMaxSize": "64Ki",
            "containerLogMaxFiles": 3,
            "containerLogMonitorInterval": "3s",
            "serializeImagePulls": False,
            "resolvConf": str(resolv),
            "clusterDomain": "cluster.local",
            "volumePluginDir": str(self.kubelet_dir / "volume-plugins"),
            # The test machines' disks may be fuller than the defaults allow.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "featureGates": {"PodAndContainerStatsFromCRI": True},
            "runtimeRequestTimeout": "2m",
            "shutdownGracePeriod": "0s",
        }
        cfg.update(overrides)
        self.kubelet_config.write_text(json.dumps(cfg, indent=1))
        return self.kubelet_config.read_text()

    def _start_kubelet(self) -> None:
        host.make_cgroup_root(self.state.cgroup_root)
        self.state.save()
        self.kubelet_config_text()
        self.start_kubelet()

    def start_kubelet(self) -> None:
        self._spawn(
            "kubelet",
            [
                str(self.bin / "kubelet"), f"--config={self.kubelet_config}",
                f"--kubeconfig={self.dir / 'kubelet.kubeconfig'}",
                f"--root-dir={self.kubelet_dir}", f"--cert-dir={self.kubelet_dir / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={self.state.node_ip}", "--v=2",
            ],
        )  # fmt: skip

    def restart_kubelet(self, **config_overrides: object) -> None:
        self.stop("kubelet")
        self.kubelet_config_text(**config_overrides)
        self.start_kubelet()
        self.wait_node_ready(since=time.time())

    def node(self) -> dict:
        with self.api() as c:
            r = c.get(f"/api/v1/nodes/{NODE_NAME}")
            r.raise_for_status()
            return r.json()

    def wait_node_ready(self, since: float = 0.0) -> None:
        def ready() -> bool:
            for cond in self.node()["status"].get("conditions", []):
                if cond["type"] == "Ready" and cond["status"] == "True":
                    # After a restart the old Ready must be refreshed by the new kubelet.
                    hb = cond.get("lastHeartbeatTime", "")
                    return not since or _parse_time(hb) >= since - 1
            return False

        self._wait("kubelet", ready, f"Ready node {NODE_NAME}")

    def wait_service_account(self, namespace: str) -> None:
        def ready() -> bool:
            with self.api() as c:
                return c.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/default").status_code == 200

        self._wait("kube-controller-manager", ready, f"service account {namespace}/default")

    # --- down ---

    def down(self) -> dict[str, list[str]]:
        """Stop and remove everything `up` made; returns what had to be forced (leaks)."""
        st = self.state
        report: dict[str, list[str]] = {}
        self.stop("kubelet")
        report["pods_removed"] = self._remove_pods()
        for name in ("cribd", "containerd", "kube-scheduler", "kube-controller-manager"):
            self.stop(name)
        for name in ("kube-apiserver", "etcd", "registry"):
            self.stop(name)
        # Containers outlive cribd by design; whatever is still there is killed here.
        crib_left = clean_tree(self.crib_dir)
        report["crib_forced"] = [str(x) for v in crib_left.values() for x in v]
        if st.containerd_dir:
            clean_tree(Path(st.containerd_dir))
        if st.cgroup_root:
            report["cgroups_with_processes"] = host.remove_cgroup_root(st.cgroup_root)
        if st.network:
            PodNetwork(**{**st.network, "ipam_dir": Path(st.network["ipam_dir"])}).destroy()  # type: ignore[arg-type]
        report["iptables_chains"] = host.remove_new_kube_chains(st.iptables_before)
        host.restore_sysctls(st.sysctls)
        if st.made_dummy:
            host.remove_dummy()
        if st.made_kubelet_home and KUBELET_HOME.exists():
            clean_tree(KUBELET_HOME)
        self.remove_container_log_links()
        left = clean_tree(self.dir)
        report["forced"] = [str(x) for v in left.values() for x in v]
        return report

    def remove_container_log_links(self) -> None:
        """The kubelet's /var/log/containers links into this cluster's pod log dir (its
        `podLogsDir`); the kubelet writes them there whatever that dir is."""
        with contextlib.suppress(FileNotFoundError):
            for link in CONTAINER_LOG_LINKS.iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(link).startswith(f"{self.pod_logs}/"):
                        link.unlink()

    def _remove_pods(self) -> list[str]:
        """Every pod through the runtime's CRI (so CNI releases IPs and rules), eight at a time."""
        if not (self.running("cribd") or self.running("containerd")):
            return []
        with grpc.insecure_channel(self.endpoint) as ch:
            rt = api_pb2_grpc.RuntimeServiceStub(ch)

            def remove(pod: api_pb2.PodSandbox) -> str:
                try:
                    rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=120)
                    rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=120)
                except grpc.RpcError as e:
                    return f"{pod.metadata.name}: {e.code().name} {e.details()}"
                return pod.metadata.name

            try:
                pods = rt.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=30).items
            except grpc.RpcError as e:
                return [f"error: {e}"]
            with ThreadPoolExecutor(8) as pool:
                return list(pool.map(remove, pods))

    @classmethod
    def attach(cls, d: Path) -> Cluster:
        """The cluster whose state is in `d` (made by `up` in this or another process)."""
        st = State.load(d)
        c = cls(d, Path(st.bin_dir))
        c.state = st
        c.ca = c.pki_dir / "ca.crt"
        return c


def _parse_time(stamp: str) -> float:
    return float(calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")))


def cli(
    argv: list[str] | None,
    prog: str,
    cls: type[Cluster],
    build: Callable[[], Path],
    default_dir: Path,
    what: str,
) -> int:
    """`up` or `down` of a cluster kind (this module's, or e2e/kube/kubeadm.py's) in --dir."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("action", choices=("up", "down"))
    parser.add_argument("--dir", type=Path, default=default_dir)
    args = parser.parse_args(argv)
    d: Path = args.dir.resolve()
    if args.action == "up":
        if (d / "state.json").exists():
            print(
                f"kube-up: {what} already lives in {d}; run scripts/kube-down.sh (--kubeadm) first",
                file=sys.stderr,
            )
            return 1
        cluster = cls(d, build())
        try:
            cluster.up()
        except Exception:
            print(f"kube-up: failed; tearing down. Logs were in {cluster.logs}", file=sys.stderr)
            keep = Path(tempfile.mkdtemp(prefix="crib-kube-logs-"))
            shutil.copytree(cluster.logs, keep, dirs_exist_ok=True)
            cluster.down()
            print(f"kube-up: logs kept in {keep}", file=sys.stderr)
            raise
        print(f"# {what} on crib is up (node {NODE_NAME}); for your shell:")
        print(f"export KUBECONFIG={cluster.admin_kubeconfig}")
        print(f"export PATH={cluster.bin}:$PATH")
        print(f"export CONTAINER_RUNTIME_ENDPOINT={cluster.endpoint}")
        return 0
    if not (d / "state.json").exists():
        print(f"kube-down: no cluster in {d}", file=sys.stderr)
        return 0
    report = cls.attach(d).down()
    for key, items in report.items():
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            print(f"kube-down: {key} ({len(items)}): {', '.join(items[:3])}{more}")
    print(f"kube-down: removed the cluster in {d}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli(argv, "python -m e2e.kube.cluster", Cluster, ensure_built, DEFAULT_DIR, "a one-node cluster")


if __name__ == "__main__":
    sys.exit(main())
