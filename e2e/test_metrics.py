"""ListMetricDescriptors / ListPodSandboxMetrics / StreamPodSandboxMetrics against a real cribd.

A pod on the test's bridge runs a CPU-bound container with CPU and memory limits and an
idle one; traffic goes between the pod's netns and a socket on the bridge's gateway. The
checks are what the kubelet's CRI metrics collector needs: every metric has a descriptor
with as many label keys as it has values, and the numbers move the way the workload does.
cribctl's `metricdescs` and `metricsp` are run as users run them and, where a crictl
binary is available, compared with crictl's output field by field (values and
timestamps aside). Each test removes the pods it made.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from crib.proto.cri import api_pb2
from e2e.harness.clients import CALL_TIMEOUT_S, client_env, cribctl_argv, crictl
from e2e.harness.cribd import Cribd
from e2e.harness.network import PodNetwork
from e2e.harness.wait import wait_until
from e2e.pods import (
    container_config,
    import_busybox,
    in_netns,
    pod_config,
    pod_status,
    remove_pod,
    run_container,
    run_pod,
)

MEMORY_LIMIT = 64 * 1024 * 1024
# A third of a CPU: the busy loop hits the quota in each period even on a busy node.
CPU_QUOTA, CPU_PERIOD = 30_000, 100_000
BASE_KEYS = ["container", "id", "image", "name", "namespace", "pod"]
# A metric's value in protojson ("value": "12") and in yaml (value: "12").
VALUE = re.compile(r'(?<="value": ")\d+(?=")|(?<=value: ")\d+(?=")')


@dataclass
class MetricsPod:
    daemon: Cribd
    pod_id: str
    busy: str
    idle: str
    netns: str
    gateway: str
    name: str


@pytest.fixture
def metrics_pod(net_cribd: Cribd, pod_network: PodNetwork, tmp_path: Path) -> Iterator[MetricsPod]:
    import_busybox(net_cribd)
    config = pod_config()
    config.log_directory = str(tmp_path / "logs")
    pod_id = run_pod(net_cribd, config)
    try:
        busy = run_container(
            net_cribd,
            pod_id,
            container_config(
                "busy",
                ["/bin/sh", "-c", "while true; do :; done"],
                resources=api_pb2.LinuxContainerResources(
                    cpu_quota=CPU_QUOTA, cpu_period=CPU_PERIOD, memory_limit_in_bytes=MEMORY_LIMIT
                ),
            ),
        )
        idle = run_container(net_cribd, pod_id, container_config("idle", ["/bin/sleep", "3600"]))
        _, info = pod_status(net_cribd, pod_id)
        yield MetricsPod(
            net_cribd, pod_id, busy, idle, info["netns"], pod_network.gateway, config.metadata.name
        )
    finally:
        remove_pod(net_cribd, pod_id)


def descriptors(daemon: Cribd) -> dict[str, api_pb2.MetricDescriptor]:
    r = daemon.runtime.ListMetricDescriptors(api_pb2.ListMetricDescriptorsRequest(), timeout=10)
    return {d.name: d for d in r.descriptors}


def pod_metrics(daemon: Cribd) -> list[api_pb2.PodSandboxMetrics]:
    return list(
        daemon.runtime.ListPodSandboxMetrics(api_pb2.ListPodSandboxMetricsRequest(), timeout=30).pod_metrics
    )


def labelled(metric: api_pb2.Metric, desc: api_pb2.MetricDescriptor) -> dict[str, str]:
    return dict(zip(desc.label_keys, metric.label_values, strict=True))


def value_of(metrics: list[api_pb2.Metric], name: str, **labels: str) -> int:
    """The one value of `name` whose extra labels match (the base labels are the same for all)."""
    found = [
        m.value.value
        for m in metrics
        if m.name == name and all(v in m.label_values[len(BASE_KEYS) :] for v in labels.values())
    ]
    assert len(found) == 1, f"{name} {labels}: {found}"
    return found[0]


def container_metrics(daemon: Cribd, pod_id: str, container_id: str) -> list[api_pb2.Metric]:
    for pod in pod_metrics(daemon):
        if pod.pod_sandbox_id == pod_id:
            for c in pod.container_metrics:
                if c.container_id == container_id:
                    return list(c.metrics)
    raise AssertionError(f"no metrics for container {container_id} of pod {pod_id}")


def pod_level_metrics(daemon: Cribd, pod_id: str) -> list[api_pb2.Metric]:
    return next(list(p.metrics) for p in pod_metrics(daemon) if p.pod_sandbox_id == pod_id)


def echo_on(address: str) -> tuple[socket.socket, threading.Thread]:
    """A one-shot echo server on the host side of the bridge."""
    server = socket.socket()
    server.bind((address, 0))
    server.listen(1)
    server.settimeout(20)

    def serve() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(20)
                received = 0
                while received < 200_000:
                    data = conn.recv(65536)
                    if not data:
                        break
                    received += len(data)
                    conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


def test_descriptors_cover_every_metric_and_numbers_follow_the_workload(metrics_pod: MetricsPod) -> None:
    daemon, pod_id, busy = metrics_pod.daemon, metrics_pod.pod_id, metrics_pod.busy
    descs = descriptors(daemon)
    # The list is static: a second call describes the same metrics.
    assert descriptors(daemon) == descs
    for name, desc in descs.items():
        assert name.startswith("container_") and desc.help
        assert list(desc.label_keys[: len(BASE_KEYS)]) == BASE_KEYS

    # CPU: the busy loop's usage grows by whole seconds; its quota throttles it.
    wait_until(
        lambda: value_of(container_metrics(daemon, pod_id, busy), "container_cpu_usage_seconds_total") >= 1,
        timeout=60,
        what="one second of CPU",
    )
    first = value_of(
        container_metrics(daemon, pod_id, busy), "container_cpu_usage_seconds_total", cpu="total"
    )
    wait_until(
        lambda: (
            value_of(container_metrics(daemon, pod_id, busy), "container_cpu_usage_seconds_total") > first
        ),
        timeout=60,
        what="CPU usage to grow",
    )
    metrics = container_metrics(daemon, pod_id, busy)
    assert value_of(metrics, "container_cpu_cfs_periods_total") > 0
    wait_until(
        lambda: (
            value_of(container_metrics(daemon, pod_id, busy), "container_cpu_cfs_throttled_periods_total") > 0
        ),
        timeout=30,
        what="the quota to throttle the busy loop",
    )
    assert value_of(metrics, "container_memory_working_set_bytes") > 0
    assert value_of(metrics, "container_memory_usage_bytes") >= value_of(
        metrics, "container_memory_working_set_bytes"
    )
    assert value_of(metrics, "container_processes") >= 1
    assert value_of(metrics, "container_threads") >= 1
    assert value_of(metrics, "container_spec_memory_limit_bytes") == MEMORY_LIMIT
    assert value_of(metrics, "container_spec_cpu_quota") == CPU_QUOTA
    assert value_of(metrics, "container_spec_cpu_period") == CPU_PERIOD
    assert value_of(metrics, "container_oom_events_total") == 0
    assert value_of(metrics, "container_fs_limit_bytes") > 0
    # The idle container has no limit and next to no CPU.
    idle = container_metrics(daemon, pod_id, metrics_pod.idle)
    assert value_of(idle, "container_spec_memory_limit_bytes") == 0
    assert value_of(idle, "container_cpu_usage_seconds_total") <= 1

    # Labels: the kubelet's cAdvisor labels, one value per key.
    labels = labelled(
        next(m for m in metrics if m.name == "container_memory_rss"), descs["container_memory_rss"]
    )
    assert labels == {
        "container": "busy",
        "id": busy,
        "image": "crib.e2e/busybox:1",
        "name": labels["name"],
        "namespace": "e2e",
        "pod": metrics_pod.name,
    }
    assert labels["name"].startswith(f"k8s_busy_{metrics_pod.name}_e2e_")

    # Network: traffic between the pod's netns and the bridge's gateway.
    def counters() -> tuple[int, int]:
        pod = pod_level_metrics(daemon, pod_id)
        return (
            value_of(pod, "container_network_receive_bytes_total", interface="eth0"),
            value_of(pod, "container_network_transmit_bytes_total", interface="eth0"),
        )

    rx0, tx0 = counters()
    server, thread = echo_on(metrics_pod.gateway)
    port = server.getsockname()[1]
    client = in_netns(
        metrics_pod.netns,
        "import socket\n"
        f"c = socket.create_connection(({metrics_pod.gateway!r}, {port}), timeout=20)\n"
        "c.sendall(b'x' * 100_000); c.shutdown(socket.SHUT_WR)\n"
        "n = 0\n"
        "while (d := c.recv(65536)): n += len(d)\n"
        "print(n)\n",
    )
    thread.join(timeout=30)
    assert client.returncode == 0 and client.stdout.strip() == "100000", client.stderr
    rx1, tx1 = counters()
    assert tx1 - tx0 >= 100_000 and rx1 - rx0 >= 100_000, (rx0, rx1, tx0, tx1)
    pod_level = pod_level_metrics(daemon, pod_id)
    eth0 = next(m for m in pod_level if m.name == "container_network_transmit_packets_total")
    assert labelled(eth0, descs[eth0.name])["container"] == "POD"
    assert labelled(eth0, descs[eth0.name])["pod"] == metrics_pod.name
    assert value_of(pod_level, "container_network_transmit_packets_total", interface="eth0") > 0

    # Every metric has a descriptor, a type, and as many label values as its descriptor has keys.
    listed = pod_metrics(daemon)
    assert [p.pod_sandbox_id for p in listed] == [pod_id]
    assert sorted(c.container_id for c in listed[0].container_metrics) == sorted([busy, metrics_pod.idle])
    all_metrics = [*listed[0].metrics, *(m for c in listed[0].container_metrics for m in c.metrics)]
    for m in all_metrics:
        assert m.name in descs, m.name
        assert len(m.label_values) == len(descs[m.name].label_keys), m.name
        assert m.timestamp == 0 and m.HasField("value")
    # What every cgroup v1 or v2 host reports (swap and peak usage depend on the kernel).
    core = {
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
        "container_memory_rss",
        "container_memory_cache",
        "container_network_receive_bytes_total",
        "container_network_transmit_bytes_total",
        "container_processes",
        "container_spec_memory_limit_bytes",
        "container_fs_usage_bytes",
        "container_oom_events_total",
    }
    assert core <= {m.name for m in all_metrics}
    counters_named = {m.name for m in all_metrics if m.metric_type == api_pb2.COUNTER}
    assert "container_cpu_usage_seconds_total" in counters_named
    assert "container_memory_working_set_bytes" not in counters_named

    # The stream carries the same pods and series.
    streamed = [
        p
        for r in daemon.runtime.StreamPodSandboxMetrics(api_pb2.StreamPodSandboxMetricsRequest(), timeout=30)
        for p in r.pod_sandbox_metrics
    ]
    assert [p.pod_sandbox_id for p in streamed] == [pod_id]

    def series(p: api_pb2.PodSandboxMetrics) -> set[tuple[str, str, tuple[str, ...]]]:
        return {
            (c.container_id, m.name, tuple(m.label_values)) for c in p.container_metrics for m in c.metrics
        } | {("", m.name, tuple(m.label_values)) for m in p.metrics}

    assert series(streamed[0]) == series(listed[0])


def test_stopped_pods_report_nothing(metrics_pod: MetricsPod) -> None:
    daemon = metrics_pod.daemon
    daemon.runtime.StopPodSandbox(
        api_pb2.StopPodSandboxRequest(pod_sandbox_id=metrics_pod.pod_id), timeout=60
    )
    assert pod_metrics(daemon) == []
    streamed = list(
        daemon.runtime.StreamPodSandboxMetrics(api_pb2.StreamPodSandboxMetricsRequest(), timeout=30)
    )
    assert streamed == []


def test_included_pod_metrics_limits_the_families(
    cribd_factory: Callable[..., Cribd], pod_network: PodNetwork
) -> None:
    daemon = cribd_factory('[stats]\nincluded_pod_metrics = ["cpu", "network"]\n')
    pod_network.install(daemon.cni_conf_dir)
    daemon.start()
    import_busybox(daemon)
    names = set(descriptors(daemon))
    assert "container_cpu_usage_seconds_total" in names
    assert "container_network_receive_bytes_total" in names
    assert not any(n.startswith(("container_memory", "container_spec", "container_fs")) for n in names)
    pod_id = run_pod(daemon, pod_config())
    try:
        run_container(daemon, pod_id, container_config("sleeper", ["/bin/sleep", "3600"]))
        (pod,) = pod_metrics(daemon)
        returned = {m.name for m in pod.metrics} | {m.name for c in pod.container_metrics for m in c.metrics}
        assert returned and returned <= names
        assert "container_network_receive_bytes_total" in returned
    finally:
        remove_pod(daemon, pod_id)


# --- cribctl and crictl ---------------------------------------------------------------------------


def cribctl(daemon: Cribd, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cribctl_argv(daemon, *args), capture_output=True, text=True, timeout=CALL_TIMEOUT_S, env=client_env()
    )


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"{r.args}: {r.stderr}"
    return r.stdout


def test_cribctl_metricdescs_and_metricsp(metrics_pod: MetricsPod) -> None:
    daemon = metrics_pod.daemon
    descs = json.loads(ok(cribctl(daemon, "metricdescs")))
    assert {d["name"] for d in descs["descriptors"]} == set(descriptors(daemon))
    assert yaml.safe_load(ok(cribctl(daemon, "metricdescs", "-o", "yaml"))) == descs
    by_name = {d["name"]: d for d in descs["descriptors"]}

    listed = json.loads(ok(cribctl(daemon, "metricsp", "--output", "json")))
    (pod,) = listed["podMetrics"]
    assert pod["podSandboxId"] == metrics_pod.pod_id
    for metric in [*pod["metrics"], *(m for c in pod["containerMetrics"] for m in c["metrics"])]:
        assert len(metric["labelValues"]) == len(by_name[metric["name"]]["labelKeys"])
        assert metric["metricType"] in ("COUNTER", "GAUGE")
        assert int(metric["value"]["value"]) >= 0 and metric["timestamp"] == "0"
    from_yaml = yaml.safe_load(ok(cribctl(daemon, "metricsp", "-o", "yaml")))
    assert [p["podSandboxId"] for p in from_yaml["podMetrics"]] == [metrics_pod.pod_id]

    # crictl shows the command's help, successfully, for arguments or an unknown format.
    for args in (("metricsp", "extra"), ("metricsp", "-o", "table"), ("metricdescs", "-o", "wide")):
        r = cribctl(daemon, *args)
        assert r.returncode == 0 and "--output" in r.stdout, r

    # --watch prints every 500 ms until interrupted, then exits 0.
    proc = subprocess.Popen(
        cribctl_argv(daemon, "metricsp", "-w"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=client_env(),
    )
    try:
        time.sleep(2.5)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    documents = out.decode().count('"podMetrics"')
    assert documents >= 2, out[-500:]


def _shape(doc: dict) -> dict:
    """A metricsp document without what changes between two calls: values and timestamps."""

    def metric(m: dict) -> tuple:
        return (m["name"], m["metricType"], tuple(m["labelValues"]), sorted(m), sorted(m["value"]))

    return {
        p["podSandboxId"]: (
            sorted(metric(m) for m in p["metrics"]),
            {c["containerId"]: sorted(metric(m) for m in c["metrics"]) for c in p["containerMetrics"]},
            sorted(p),
        )
        for p in doc["podMetrics"]
    }


def test_output_matches_crictl(metrics_pod: MetricsPod) -> None:
    daemon = metrics_pod.daemon
    for args in (("metricdescs",), ("metricdescs", "-o", "yaml")):
        assert ok(cribctl(daemon, *args)) == ok(crictl(daemon, *args)), args
    ours_doc = json.loads(ok(cribctl(daemon, "metricsp")))
    theirs_doc = json.loads(ok(crictl(daemon, "metricsp", "-o", "json")))
    assert list(ours_doc) == list(theirs_doc) == ["podMetrics"]
    assert _shape(ours_doc) == _shape(theirs_doc)
    ours_yaml = yaml.safe_load(ok(cribctl(daemon, "metricsp", "-o", "yaml")))
    theirs_yaml = yaml.safe_load(ok(crictl(daemon, "metricsp", "-o", "yaml")))
    assert _shape(ours_yaml) == _shape(theirs_yaml)
    # Byte for byte once the values are masked (they move between the two calls).
    for args in (("metricsp",), ("metricsp", "-o", "yaml")):
        ours_text, theirs_text = ok(cribctl(daemon, *args)), ok(crictl(daemon, *args))
        assert VALUE.sub("N", ours_text) == VALUE.sub("N", theirs_text), args
    for args in (("metricsp", "extra"), ("metricdescs", "-o", "table")):
        ours_r, theirs_r = cribctl(daemon, *args), crictl(daemon, *args)
        assert ours_r.returncode == theirs_r.returncode == 0, (ours_r, theirs_r)
