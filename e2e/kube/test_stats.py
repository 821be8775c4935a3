"""The kubelet's CRI stats provider: /stats/summary and /metrics/cadvisor from crib's figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from e2e.kube.kube import Kube, pod_manifest, shell

# Pressure files in the cgroup2 hierarchy (also on a hybrid host, at /sys/fs/cgroup/unified):
# where the kernel keeps PSI per cgroup, crib reports it.
PSI_HOST = any(Path(d, "cpu.pressure").exists() for d in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"))

BUSY = (
    "mkdir -p /www && echo hello > /www/index.html && httpd -p 8080 -h /www; "
    "dd if=/dev/urandom of=/filler bs=1M count=8 2>/dev/null; "
    "while true; do echo working; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; done"
)


def _pod_summary(kube: Kube, name: str) -> dict:
    summary = json.loads(kube.kubelet("/stats/summary"))
    for pod in summary["pods"]:
        if pod["podRef"]["namespace"] == kube.ns and pod["podRef"]["name"] == name:
            return pod
    raise KeyError(name)


def test_summary_and_cadvisor_metrics_for_a_busy_pod(kube: Kube) -> None:
    kube.apply(pod_manifest("busy", [shell("main", BUSY)]))
    pod = kube.wait_ready("busy")
    for _ in range(5):
        assert httpx.get(f"http://{pod['status']['podIP']}:8080/", timeout=10).text == "hello\n"

    def busy_enough(p: dict) -> bool:
        (c,) = p["containers"]
        return (
            c["cpu"]["usageCoreNanoSeconds"] > 100_000_000
            and c["rootfs"]["usedBytes"] >= 8 << 20
            and c["logs"]["usedBytes"] > 0
            and p["network"]["rxBytes"] > 0
            and p["network"]["txBytes"] > 0
            # A rate needs two of crib's samples of the pod cgroup.
            and p["cpu"].get("usageNanoCores", 0) > 0
        )

    stats = kube.wait("busy pod stats in /stats/summary", lambda: _pod_summary(kube, "busy"), busy_enough, 60)
    (c,) = stats["containers"]
    assert c["name"] == "main"
    assert c["memory"]["workingSetBytes"] > 0 and c["memory"]["usageBytes"] > 0
    assert stats["cpu"]["usageCoreNanoSeconds"] >= c["cpu"]["usageCoreNanoSeconds"]
    assert stats["memory"]["workingSetBytes"] > 0
    # Pod-level figures the kubelet copies from PodSandboxStats as they are.
    assert stats["memory"]["pageFaults"] > 0 and stats["memory"]["majorPageFaults"] >= 0
    if PSI_HOST:
        for figures in (c["cpu"], c["memory"], stats["cpu"], stats["memory"]):
            assert figures["psi"]["some"]["total"] >= 0 and "avg10" in figures["psi"]["full"], figures
    assert stats["ephemeral-storage"]["usedBytes"] >= 8 << 20
    assert stats["network"]["name"] == "eth0"
    # The node's image filesystem, from crib's ImageFsInfo.
    node = json.loads(kube.kubelet("/stats/summary"))["node"]
    assert node["runtime"]["imageFs"]["usedBytes"] > 0 and node["runtime"]["imageFs"]["capacityBytes"] > 0

    def value(metrics: str, name: str) -> float:
        pattern = rf'^{name}{{[^}}]*container="main"[^}}]*namespace="{kube.ns}",pod="busy"[^}}]*}} (\S+)'
        m = re.search(pattern, metrics, re.M)
        if not m:
            raise KeyError(f"no {name} for the busy pod in /metrics/cadvisor")
        return float(m.group(1))

    # The CRI carries whole seconds (uint64, as CRI-O sends them): wait for the first one.
    metrics = kube.wait(
        "a whole CPU second in /metrics/cadvisor",
        lambda: kube.kubelet("/metrics/cadvisor"),
        lambda m: value(m, "container_cpu_usage_seconds_total") >= 1,
        60,
    )
    assert value(metrics, "container_memory_working_set_bytes") > 0
    assert value(metrics, "container_fs_usage_bytes") >= 8 << 20
    pod_net = re.search(
        rf'^container_network_receive_bytes_total{{[^}}]*namespace="{kube.ns}",pod="busy"[^}}]*}} (\S+)',
        metrics,
        re.M,
    )
    assert pod_net and float(pod_net.group(1)) > 0
