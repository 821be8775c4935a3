"""A one-node cluster made by `kubeadm init`: the control plane runs as static pods on crib.

    python -m e2e.kube.kubeadm up   [--dir DIR]   # what scripts/kube-up.sh --kubeadm runs
    python -m e2e.kube.kubeadm down [--dir DIR]   # what scripts/kube-down.sh --kubeadm runs

`up`: a cribd of its own (root, state and CNI config dir under DIR) gets kubeadm's
control-plane images and the test images with `cribctl load`; then `kubeadm init
--config` (deploy/kind/kubeadm.yaml with crib's socket, this host's node IP and the
node address filled in) writes certificates, kubeconfigs and the static pod manifests
to /etc/kubernetes. There is no systemd here to restart a kubelet unit in kubeadm's
kubelet-start phase, so this module does what the unit and kubeadm's drop-in do:
it starts the kubelet with kubeadm's files (`--bootstrap-kubeconfig`, `--kubeconfig`,
`--config=/var/lib/kubelet/config.yaml` and kubeadm-flags.env) as soon as kubeadm
has written them. kubeadm then waits for the static pods, uploads its config, and
installs kube-proxy and CoreDNS (addon phases). A CNI config (deploy/cni's bridge
conflist on a subnet of its own) makes the node Ready.

`down`: stops the kubelet (what `systemctl stop kubelet` does before a reset), runs
`kubeadm reset --force --cri-socket <crib>` and `kube-proxy --cleanup` (the step
kubeadm's reset leaves to the user for kube-proxy's rules), then stops cribd and
removes what the harness itself made. `reset_leftovers()` reports what is left.

kubeadm's paths are fixed (/etc/kubernetes, /var/lib/kubelet, /var/lib/etcd), so this
cluster and the one of e2e/kube/cluster.py never run at the same time: the tests
share one xdist group and the kubeadm test runs first (e2e/kube/conftest.py).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
import yaml

from crib.proto.cri import api_pb2, api_pb2_grpc
from e2e.harness.cleanup import clean_tree
from e2e.harness.clients import client_env, cribctl_argv
from e2e.harness.network import PodNetwork, new_network
from e2e.images import archives
from e2e.images.builder import ImageRecipe, LayerSpec, build_image
from e2e.images.shims import busybox_with_shims
from e2e.kube import host
from e2e.kube.cluster import CONTAINER_LOG_LINKS, NODE_NAME, REPO_ROOT, Cluster, ClusterError, State, cli
from e2e.kube.control_plane_images import build_binaries, write_archives
from e2e.kube.images import AGNHOST, BUSYBOX, agnhost_recipe

DEFAULT_DIR = Path("/var/lib/crib-kubeadm")
KUBEADM_CONFIG = REPO_ROOT / "deploy" / "kind" / "kubeadm.yaml"
CNI_CONFLIST = REPO_ROOT / "deploy" / "cni" / "10-crib-bridge.conflist"
ETC_KUBERNETES = Path("/etc/kubernetes")
KUBELET_DIR = Path("/var/lib/kubelet")
KUBELET_CONFIG = KUBELET_DIR / "config.yaml"
KUBEADM_FLAGS = KUBELET_DIR / "kubeadm-flags.env"
ADMIN_CONF = ETC_KUBERNETES / "admin.conf"
# Host paths kubeadm, the kubelet and the static pods' hostPath volumes (DirectoryOrCreate,
# FileOrCreate) make; `down` removes those that did not exist before `up`.
HOST_PATHS = (
    "/etc/kubernetes",
    "/var/lib/kubelet",
    "/var/lib/etcd",
    str(CONTAINER_LOG_LINKS),
    "/usr/libexec/kubernetes",
    "/etc/pki",
    "/etc/ca-certificates",
    "/usr/local/share/ca-certificates",
    "/run/xtables.lock",
)
# Preflight checks this host cannot pass, each skipped by name (never "all").
IGNORE_PREFLIGHT = (
    # The system validator fails on cgroup v1 (this host's hybrid layout); kubeadm's message
    # says to set failCgroupV1: false (deploy/kind/kubeadm.yaml does) and skip this check.
    "SystemVerification",
)
# What kube-proxy writes on the host (pkg/proxy/conntrack/sysctls.go, iptables' route_localnet),
# put back by `down` as the kubelet's are; an absolute path is a file outside /proc/sys.
KUBE_PROXY_SYSCTLS = (
    "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
    "net/netfilter/nf_conntrack_tcp_be_liberal",
    "net/netfilter/nf_conntrack_udp_timeout",
    "net/netfilter/nf_conntrack_udp_timeout_stream",
    "net/ipv4/conf/all/route_localnet",
    "/sys/module/nf_conntrack/parameters/hashsize",
)
INIT_TIMEOUT_S = 600.0
RESET_TIMEOUT_S = 300.0
CMD_TIMEOUT_S = 120


@dataclass
class KubeadmState(State):
    made_paths: list[str] = field(default_factory=list)
    iptables_dump_before: dict[str, list[str]] = field(default_factory=dict)
    reset_done: bool = False


def iptables_rules() -> dict[str, list[str]]:
    """'<binary> <table>' -> the rules and chain names of that table, without counters."""
    dump: dict[str, list[str]] = {}
    for binary in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle", "raw"):
            out = subprocess.run(
                [f"{binary}-save", "-t", table], capture_output=True, text=True, timeout=CMD_TIMEOUT_S
            ).stdout
            lines = []
            for line in out.splitlines():
                if line.startswith(":"):
                    lines.append(line.split()[0])  # ":CHAIN POLICY [p:b]" -> ":CHAIN"
                elif line.startswith("-A"):
                    lines.append(line)
            dump[f"{binary} {table}"] = sorted(lines)
    return dump


def new_iptables_rules(before: dict[str, list[str]], network: PodNetwork | None) -> list[str]:
    """Rules and chains since `before` that this cluster could have made: KUBE-* ones (the
    kubelet's, kube-proxy's) and its pod network's (CNI's); other tests' come and go meanwhile."""

    def ours(line: str) -> bool:
        return "KUBE-" in line or (network is not None and network._mentions(line))

    now = iptables_rules()
    return [
        f"{k}: {line}"
        for k, lines in now.items()
        for line in lines
        if line not in before.get(k, []) and ours(line)
    ]


def _mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f]


def _netns() -> list[str]:
    return sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []


def kubeconfig_client(conf: Path, out_dir: Path) -> tuple[str, Path, Path]:
    """(server, cert, key) of a kubeconfig with embedded data; cert and key written to out_dir."""
    cfg = yaml.safe_load(conf.read_text())
    user = cfg["users"][0]["user"]
    cert, key = out_dir / "admin.crt", out_dir / "admin.key"
    cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
    key.write_bytes(base64.b64decode(user["client-key-data"]))
    key.chmod(0o600)
    return cfg["clusters"][0]["cluster"]["server"], cert, key


class KubeadmCluster(Cluster):
    def __init__(self, d: Path, bin_dir: Path) -> None:
        super().__init__(d, bin_dir)
        self.state = KubeadmState(dir=str(d), bin_dir=str(bin_dir))
        self.admin_kubeconfig = ADMIN_CONF
        self.ca = ETC_KUBERNETES / "pki" / "ca.crt"
        self.kubeadm_config = d / "kubeadm.yaml"
        self.images_dir = d / "images"
        self.server = ""
        self.kubelet_chains_removed: list[str] = []

    @property
    def api_url(self) -> str:
        if not self.server:
            self.server, _, _ = kubeconfig_client(ADMIN_CONF, self.pki_dir)
        return self.server

    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(ADMIN_CONF), "CONTAINER_RUNTIME_ENDPOINT": self.endpoint}

    def running(self, name: str) -> bool:
        # The control plane runs as static pods: alive while the kubelet that runs them is.
        if name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
            name = "kubelet"
        return super().running(name)

    def tool_env(self) -> dict[str, str]:
        # kubeadm's preflight runs `kubelet --version` from PATH.
        return dict(os.environ, PATH=f"{self.bin}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}")

    # --- up ---

    def up(self) -> KubeadmCluster:
        st = self.state
        for p in (ETC_KUBERNETES / "manifests", KUBELET_CONFIG, Path("/var/lib/etcd/member")):
            if p.exists():
                raise ClusterError(f"{p} exists: another kubeadm cluster (or a kind node) owns this host")
        for d in (self.crib_dir, self.logs, self.pki_dir):
            d.mkdir(parents=True, exist_ok=True)
        st.made_paths = [p for p in HOST_PATHS if not os.path.lexists(p)]
        st.sysctls = host.read_sysctls()
        for key in KUBE_PROXY_SYSCTLS:
            with contextlib.suppress(OSError):
                st.sysctls[key] = Path("/proc/sys", key).read_text().strip()
        st.iptables_before = host.iptables_chains()
        st.iptables_dump_before = iptables_rules()
        st.node_ip, st.made_dummy = host.node_ip()
        st.save()
        self.network = new_network(self.dir / "net")
        st.network = {k: str(v) for k, v in asdict(self.network).items()}
        (self.crib_dir / "net.d").mkdir(parents=True, exist_ok=True)
        self.cribd_config.write_text(self.cribd_config_text())
        self.start_cribd()
        self.load_images()
        self.kubeadm_init()
        self.install_cni()
        self.wait_node_ready()
        self.wait_addons()
        self.wait_service_account("default")
        return self

    def cribd_config_text(self) -> str:
        # Images come from `cribctl load`; no registry, no mirrors.
        return (
            f'root = "{self.crib_dir / "root"}"\n'
            f'state = "{self.crib_dir / "state"}"\n'
            'log_level = "info"\n\n'
            f'[cni]\nconf_dir = "{self.crib_dir / "net.d"}"\n'
        )

    def cribctl(self, *args: str, timeout: float = CMD_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        # cribctl_argv needs only the daemon's socket, which a cluster has too.
        argv = cribctl_argv(self, *args)  # type: ignore[arg-type]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=client_env())
        if proc.returncode != 0:
            raise ClusterError(f"cribctl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def load_images(self) -> None:
        """kubeadm's images (deploy/kind/control-plane-images.sh's archives) and the test images."""
        archives_by_ref = write_archives(self.images_dir, self.bin)
        busybox = LayerSpec(busybox_with_shims())
        tests = self.images_dir / "test-images.tar"
        archives.oci_layout_tar(
            [
                (build_image(ImageRecipe([busybox], cmd=["sh"])), BUSYBOX),
                (build_image(agnhost_recipe(self.bin, busybox)), AGNHOST),
            ],
            tests,
        )
        for path in [*archives_by_ref.values(), tests]:
            self.cribctl("load", "-i", str(path), timeout=300)

    def kubeadm_config_text(self) -> str:
        """deploy/kind/kubeadm.yaml with this host's socket, node name and address."""
        docs = list(yaml.safe_load_all(KUBEADM_CONFIG.read_text()))
        for doc in docs:
            if doc["kind"] == "InitConfiguration":
                doc["nodeRegistration"]["criSocket"] = self.endpoint
                doc["nodeRegistration"]["name"] = NODE_NAME
                doc["nodeRegistration"]["kubeletExtraArgs"] = [
                    {"name": "node-ip", "value": self.state.node_ip}
                ]
                doc["localAPIEndpoint"] = {"advertiseAddress": self.state.node_ip, "bindPort": 6443}
            elif doc["kind"] == "KubeletConfiguration":
                doc["containerRuntimeEndpoint"] = self.endpoint
                # Pod logs under DIR (the kubelet still links them from /var/log/containers).
                doc["podLogsDir"] = str(self.pod_logs)
                # The test machines' disks may be fuller than the defaults allow.
                doc["evictionHard"] = {
                    "memory.available": "100Mi",
                    "nodefs.available": "1%",
                    "imagefs.available": "1%",
                }
        text = yaml.safe_dump_all(docs, sort_keys=False)
        self.kubeadm_config.write_text(text)
        return text

    def kubeadm(
        self, *args: str, timeout: float = CMD_TIMEOUT_S, log: str = ""
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.bin / "kubeadm"), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.tool_env(),
        )
        if log:
            self.logs.mkdir(parents=True, exist_ok=True)
            self.log_path(log).write_text(proc.stdout + proc.stderr)
        return proc

    def kubeadm_init(self) -> None:
        """`kubeadm init`; the kubelet starts as its unit would, once kubeadm has written its files."""
        self.kubeadm_config_text()
        ignore = ",".join(IGNORE_PREFLIGHT)
        argv = [str(self.bin / "kubeadm"), "init", f"--config={self.kubeadm_config}"]
        argv += [f"--ignore-preflight-errors={ignore}", "--v=1"]
        self.logs.mkdir(parents=True, exist_ok=True)
        with self.log_path("kubeadm-init").open("ab") as log:
            init = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.tool_env()
            )
        try:
            deadline = time.monotonic() + INIT_TIMEOUT_S
            while init.poll() is None and not (KUBEADM_FLAGS.exists() and KUBELET_CONFIG.exists()):
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"kubeadm init wrote no kubelet config:\n{self.log_tail('kubeadm-init')}"
                    )
                time.sleep(0.2)
            if init.poll() is None:
                self.start_kubelet()
            rc = init.wait(max(1.0, deadline - time.monotonic()))
        except BaseException:
            init.kill()
            init.wait(10)
            raise
        if rc != 0:
            raise ClusterError(f"kubeadm init failed ({rc}):\n{self.log_tail('kubeadm-init', 80)}")
        self.server, _, _ = kubeconfig_client(ADMIN_CONF, self.pki_dir)

    def start_kubelet(self) -> None:
        """What systemd runs for kubeadm: the kubelet unit's ExecStart with kubeadm's drop-in."""
        flags = ""
        for line in KUBEADM_FLAGS.read_text().splitlines():
            if line.startswith("KUBELET_KUBEADM_ARGS="):
                flags = line.split("=", 1)[1]
        argv = [
            str(self.bin / "kubelet"),
            f"--bootstrap-kubeconfig={ETC_KUBERNETES / 'bootstrap-kubelet.conf'}",
            f"--kubeconfig={ETC_KUBERNETES / 'kubelet.conf'}",
            f"--config={KUBELET_CONFIG}",
            *shlex.split(flags.strip('"')),
            "--v=2",
        ]
        self._spawn("kubelet", argv)

    def install_cni(self) -> None:
        """deploy/cni's bridge conflist, on this cluster's own bridge and subnet (the CNI add-on)."""
        assert self.network is not None
        conf = json.loads(CNI_CONFLIST.read_text())
        conf["name"] = self.network.name
        bridge = conf["plugins"][0]
        bridge["bridge"] = self.network.bridge
        bridge["ipam"]["ranges"] = [[{"subnet": self.network.subnet, "gateway": self.network.gateway}]]
        bridge["ipam"]["dataDir"] = str(self.network.ipam_dir)
        (self.crib_dir / "net.d" / CNI_CONFLIST.name).write_text(json.dumps(conf, indent=1))

    def wait_addons(self) -> None:
        """kube-proxy's DaemonSet and CoreDNS's Deployment, as kubeadm installed them, all ready."""

        def ready(kind: str, name: str) -> bool:
            with self.api() as c:
                obj = c.get(f"/apis/apps/v1/namespaces/kube-system/{kind}/{name}").json()
            s = obj["status"]
            if kind == "daemonsets":
                return (
                    s.get("desiredNumberScheduled", 0) > 0
                    and s.get("numberReady") == s["desiredNumberScheduled"]
                )
            return s.get("readyReplicas", 0) == obj["spec"]["replicas"]

        self._wait("kubelet", lambda: ready("daemonsets", "kube-proxy"), "kube-proxy ready")
        self._wait("kubelet", lambda: ready("deployments", "coredns"), "CoreDNS ready")

    # --- down ---

    def reset(self) -> subprocess.CompletedProcess[str]:
        """`kubeadm reset` as on a node: the kubelet stopped first (systemd would), then the
        iptables steps reset leaves to the user, kept to what this cluster made."""
        self.stop("kubelet")
        proc = self.kubeadm(
            "reset",
            "--force",
            f"--cri-socket={self.endpoint}",
            "--v=1",
            timeout=RESET_TIMEOUT_S,
            log="kubeadm-reset",
        )
        # kube-proxy removes its own rules (KUBE-SERVICES, KUBE-SVC-*, KUBE-SEP-*, ...).
        cleanup = subprocess.run(
            [str(self.bin / "kube-proxy"), "--cleanup"], capture_output=True, text=True, timeout=CMD_TIMEOUT_S
        )
        self.log_path("kube-proxy-cleanup").write_text(cleanup.stdout + cleanup.stderr)
        # The kubelet's KUBE-FIREWALL, KUBE-KUBELET-CANARY and KUBE-IPTABLES-HINT: no tool removes them.
        self.kubelet_chains_removed = host.remove_new_kube_chains(self.state.iptables_before)
        self.state.reset_done = proc.returncode == 0
        self.state.save()
        return proc

    def reset_leftovers(self) -> dict[str, list[str]]:
        """What is left after reset: pods and containers in crib, mounts, netns, iptables rules."""
        left: dict[str, list[str]] = {}
        if self.running("cribd"):
            with grpc.insecure_channel(self.endpoint) as ch:
                rt = api_pb2_grpc.RuntimeServiceStub(ch)
                pods = rt.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=30).items
                ctrs = rt.ListContainers(api_pb2.ListContainersRequest(), timeout=30).containers
            left["pods"] = [f"{p.metadata.namespace}/{p.metadata.name}" for p in pods]
            left["containers"] = [c.metadata.name for c in ctrs]
        # Below the kubelet's root dir; the root dir itself is the kubelet's bind mount of itself
        # (made rshared at start), which reset leaves on purpose (it may be a volume of its own).
        watched = (f"{KUBELET_DIR}/", f"{self.crib_dir}/", "/var/lib/etcd")
        left["mounts"] = [m for m in _mounts() if m.startswith(watched)]
        left["netns"] = [n for n in _netns() if n.startswith("cni-")]
        with contextlib.suppress(FileNotFoundError):
            left["crib_netns"] = os.listdir(self.crib_dir / "state" / "netns")
        left["iptables"] = new_iptables_rules(self.state.iptables_dump_before, self._network())  # type: ignore[attr-defined]
        left["static_pod_manifests"] = [str(p) for p in (ETC_KUBERNETES / "manifests").glob("*")]
        return {k: v for k, v in left.items() if v}

    def down(self) -> dict[str, list[str]]:
        st: KubeadmState = self.state  # type: ignore[assignment]
        report: dict[str, list[str]] = {}
        if not st.reset_done:
            proc = self.reset()
            if proc.returncode != 0:
                report["reset_failed"] = [proc.stderr[-2000:]]
        self.stop("kubelet")
        report["pods_removed"] = self._remove_pods()
        self.stop("cribd")
        crib_left = clean_tree(self.crib_dir)
        report["crib_forced"] = [str(x) for v in crib_left.values() for x in v]
        # The kubelet's QoS cgroups (cgroupfs driver, cgroup root "/").
        report["cgroups_with_processes"] = host.remove_cgroup_root("kubepods")
        if net := self._network():
            net.destroy()
        report["iptables_chains"] = host.remove_new_kube_chains(st.iptables_before)
        host.restore_sysctls(st.sysctls)
        report["sysctls_not_restored"] = [
            key for key, value in st.sysctls.items() if Path("/proc/sys", key).read_text().strip() != value
        ]
        if st.made_dummy:
            host.remove_dummy()
        if str(KUBELET_DIR) in st.made_paths and str(KUBELET_DIR) in _mounts():
            # The kubelet's bind mount of its root dir onto itself (see reset_leftovers).
            subprocess.run(
                ["umount", "--recursive", str(KUBELET_DIR)], capture_output=True, timeout=CMD_TIMEOUT_S
            )
        self.remove_container_log_links()
        for p in st.made_paths:
            path = Path(p)
            if path.is_dir() and not path.is_symlink():
                left = clean_tree(path)
                report.setdefault("forced", []).extend(str(x) for v in left.values() for x in v)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        left = clean_tree(self.dir)
        report.setdefault("forced", []).extend(str(x) for v in left.values() for x in v)
        return report

    def _network(self) -> PodNetwork | None:
        st = self.state.network
        return PodNetwork(**{**st, "ipam_dir": Path(st["ipam_dir"])}) if st else None  # type: ignore[arg-type]

    @classmethod
    def attach(cls, d: Path) -> KubeadmCluster:
        st = KubeadmState.load(d)
        c = cls(d, Path(st.bin_dir))
        c.state = st
        return c


def main(argv: list[str] | None = None) -> int:
    return cli(
        argv, "python -m e2e.kube.kubeadm", KubeadmCluster, build_binaries, DEFAULT_DIR, "a kubeadm cluster"
    )


if __name__ == "__main__":
    sys.exit(main())
