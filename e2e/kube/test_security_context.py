"""securityContext as the kubelet passes it to crib: identities, capabilities, seccomp, sysctls, namespaces"""

from __future__ import annotations

import os
from pathlib import Path

from e2e.kube.images import BUSYBOX
from e2e.kube.kube import Kube, container, pod_manifest

SLEEP = ["sleep", "3600"]


def _run(kube: Kube, pod: str, script: str, c: str = "main", check: bool = True):
    return kube.kubectl("exec", pod, "-c", c, "--", "sh", "-c", script, check=check)


def _status_field(kube: Kube, pod: str, key: str, c: str = "main") -> str:
    for line in _run(kube, pod, "cat /proc/self/status", c).stdout.splitlines():
        if line.startswith(f"{key}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {key} in /proc/self/status")


def _own_caps(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("CapEff:")).split()[1], 16)


def test_identities_and_file_system(kube: Kube) -> None:
    kube.apply(
        pod_manifest(
            "ids",
            [
                container(
                    "main",
                    BUSYBOX,
                    command=SLEEP,
                    volumeMounts=[{"name": "data", "mountPath": "/data"}],
                    securityContext={"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
                )
            ],
            securityContext={
                "runAsUser": 1000,
                "runAsGroup": 3000,
                "fsGroup": 2000,
                "supplementalGroups": [4000],
            },
            volumes=[{"name": "data", "emptyDir": {}}],
        )
    )
    kube.wait_ready("ids")
    assert _run(kube, "ids", "id -u; id -g").stdout.split() == ["1000", "3000"]
    assert set(_run(kube, "ids", "id -G").stdout.split()) == {"3000", "2000", "4000"}
    # fsGroup owns the volume and new files in it.
    assert _run(kube, "ids", "touch /data/f; stat -c %g /data /data/f").stdout.split() == ["2000", "2000"]
    ro = _run(kube, "ids", "touch /rootfs-write", check=False)
    assert ro.returncode != 0 and "Read-only file system" in ro.stderr
    assert _status_field(kube, "ids", "NoNewPrivs") == "1"


def test_capabilities_privileged_and_seccomp(kube: Kube) -> None:
    kube.apply(
        pod_manifest(
            "caps",
            [
                container(
                    "main",
                    BUSYBOX,
                    command=SLEEP,
                    securityContext={
                        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "CHOWN"]},
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                ),
                container("priv", BUSYBOX, command=SLEEP, securityContext={"privileged": True}),
                container(
                    "open", BUSYBOX, command=SLEEP, securityContext={"seccompProfile": {"type": "Unconfined"}}
                ),
            ],
        )
    )
    kube.wait_ready("caps")
    # CAP_CHOWN is bit 0, CAP_NET_BIND_SERVICE bit 10.
    assert int(_status_field(kube, "caps", "CapEff"), 16) == (1 << 0) | (1 << 10)
    assert _status_field(kube, "caps", "Seccomp") == "2"
    assert _status_field(kube, "caps", "Seccomp", "open") == "0"
    # Privileged: every capability cribd has (root here lacks CAP_SYS_RESOURCE), unconfined,
    # and allowed to mount.
    assert int(_status_field(kube, "caps", "CapEff", "priv"), 16) == _own_caps(
        kube.cluster.state.pids["cribd"]
    )
    assert _status_field(kube, "caps", "Seccomp", "priv") == "0"
    assert (
        _run(kube, "caps", "mkdir -p /m && mount -t tmpfs t /m && echo mounted", "priv").stdout == "mounted\n"
    )
    denied = _run(kube, "caps", "mkdir -p /m && mount -t tmpfs t /m", "main", check=False)
    assert denied.returncode != 0


def test_pod_sysctls(kube: Kube) -> None:
    kube.apply(
        pod_manifest(
            "sysctl",
            [container("main", BUSYBOX, command=SLEEP)],
            securityContext={
                "sysctls": [
                    {"name": "kernel.shm_rmid_forced", "value": "1"},
                    {"name": "net.ipv4.ip_unprivileged_port_start", "value": "81"},
                ]
            },
        )
    )
    kube.wait_ready("sysctl")
    out = _run(
        kube, "sysctl", "cat /proc/sys/kernel/shm_rmid_forced /proc/sys/net/ipv4/ip_unprivileged_port_start"
    )
    assert out.stdout.split() == ["1", "81"]
    # The host keeps its own values.
    assert Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text().strip() != "81"


def test_host_namespaces(kube: Kube) -> None:
    kube.apply(
        pod_manifest(
            "hostns",
            [container("main", BUSYBOX, command=SLEEP)],
            hostNetwork=True,
            hostPID=True,
            hostIPC=True,
        )
    )
    pod = kube.wait_ready("hostns")
    assert pod["status"]["podIP"] == kube.cluster.state.node_ip
    for ns in ("net", "ipc", "pid"):
        inside = _run(kube, "hostns", f"readlink /proc/self/ns/{ns}").stdout.strip()
        assert inside == os.readlink(f"/proc/self/ns/{ns}"), ns
    # The host's processes are visible: the kubelet among them.
    kubelet_pid = kube.cluster.state.pids["kubelet"]
    assert "kubelet" in _run(kube, "hostns", f"cat /proc/{kubelet_pid}/cmdline").stdout


def test_share_process_namespace(kube: Kube) -> None:
    kube.apply(
        pod_manifest(
            "shared",
            [
                container("main", BUSYBOX, command=SLEEP),
                container("other", BUSYBOX, command=["sleep", "4242"]),
            ],
            shareProcessNamespace=True,
        )
    )
    kube.wait_ready("shared")
    ps = _run(kube, "shared", "ps -o args").stdout
    assert "sleep 4242" in ps and "sleep 3600" in ps
    assert _run(kube, "shared", "readlink /proc/self/ns/pid").stdout.strip() != os.readlink(
        "/proc/self/ns/pid"
    )
