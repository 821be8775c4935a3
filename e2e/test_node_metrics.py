"""cribd's own Prometheus endpoint (`[metrics] address`), scraped around a pod's life.

A pull from the test registry, a pod with a container, an exec through the streaming
server and the removal of it all must move the counters they concern; the state gauges
follow the pod; a second cribd that finds the port taken keeps serving the CRI.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from crib.proto.cri import api_pb2
from e2e.harness.clients import CALL_TIMEOUT_S, client_env, cribctl_argv
from e2e.harness.cribd import Cribd
from e2e.harness.network import PodNetwork
from e2e.harness.registry import Registry
from e2e.harness.scrape import metrics_url
from e2e.harness.wait import wait_until
from e2e.images import builder
from e2e.pods import container_config, pod_config, push_and_pull, remove_pod, run_container, run_pod

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def metrics_cribd(cribd_factory: Callable[..., Cribd], pod_network: PodNetwork) -> Cribd:
    daemon = cribd_factory('[metrics]\naddress = "127.0.0.1:0"\n')
    pod_network.install(daemon.cni_conf_dir)
    return daemon.start()


def test_a_pod_lifecycle_moves_the_counters(metrics_cribd: Cribd, registry: Registry) -> None:
    daemon = metrics_cribd
    url = metrics_url(daemon)
    before = _scrape(url)
    assert _value(before, "process_resident_memory_bytes") > 0

    ref, _ = push_and_pull(
        daemon, registry.url, registry.host, "e2e/metrics-busybox", builder.busybox_image()
    )
    pod_id = run_pod(daemon, pod_config("metrics"))
    try:
        cid = run_container(daemon, pod_id, container_config("c", ["sleep", "1000"], image=ref))
        done = subprocess.run(
            cribctl_argv(daemon, "exec", cid, "echo", "through-streaming"),
            capture_output=True,
            text=True,
            env=client_env(),
            timeout=CALL_TIMEOUT_S,
        )
        assert done.stdout == "through-streaming\n", done.stderr
        during = _scrape(url)
        assert _value(during, "crib_pods", state="ready") == 1
        assert _value(during, "crib_containers", state="running") == 1
        assert _value(during, "crib_conmon_processes") == 1
    finally:
        remove_pod(daemon, pod_id)
    # The session's end is counted when the server has closed it.
    wait_until(lambda: _value(_scrape(url), "crib_streaming_sessions_active", kind="exec") == 0, 10)
    after = _scrape(url)

    def moved(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    for method in ("RunPodSandbox", "CreateContainer", "StartContainer", "PullImage", "Exec"):
        assert moved("crib_grpc_requests_total", method=method, code="OK") == 1, method
    assert moved("crib_grpc_request_duration_seconds_count", method="RunPodSandbox") == 1
    assert moved("crib_image_pull_layers_total", registry=registry.host, outcome="downloaded") == 2
    assert moved("crib_image_pull_bytes_total", registry=registry.host) > 100_000
    assert moved("crib_image_pull_duration_seconds_count", registry=registry.host, outcome="ok") == 1
    assert moved("crib_streaming_sessions_total", kind="exec", protocol="spdy") == 1
    assert moved("crib_cni_operation_duration_seconds_count", operation="add") == 1
    assert moved("crib_cni_operation_duration_seconds_count", operation="del") >= 1
    assert moved("crib_cni_operation_errors_total", operation="add") == 0
    assert moved("crib_state_store_write_duration_seconds_count") >= 6
    assert (
        _value(after, "crib_pods", state="ready") == 0
        and _value(after, "crib_containers", state="running") == 0
    )
    # A refused call is counted under its code.
    missing = api_pb2.ContainerStatusRequest(container_id="no-such-container")
    with pytest.raises(Exception, match="NOT_FOUND"):
        daemon.runtime.ContainerStatus(missing, timeout=10)
    assert (
        moved_after(url, after, "crib_grpc_requests_total", method="ContainerStatus", code="NOT_FOUND") == 1
    )


def pulled_unpacks(before: Samples, after: Samples) -> float:
    name = "crib_image_unpack_duration_seconds_count"
    return _value(after, name) - _value(before, name)


def moved_after(url: str, since: Samples, name: str, **labels: str) -> float:
    return _value(_scrape(url), name, **labels) - _value(since, name, **labels)


def test_a_taken_metrics_port_leaves_the_cri_serving(
    metrics_cribd: Cribd, cribd_factory: Callable[..., Cribd]
) -> None:
    taken = re.sub(r"/metrics$", "", metrics_url(metrics_cribd)).removeprefix("http://")
    second = cribd_factory(f'[metrics]\naddress = "{taken}"\n').start()
    assert second.runtime.Version(api_pb2.VersionRequest(), timeout=10).runtime_name == "crib"
    failures = [
        json.loads(line)
        for line in second.log_path.read_text().splitlines()
        if '"metrics.listen_failed"' in line
    ]
    assert failures and failures[0]["key"] == "metrics.address" and failures[0]["address"] == taken
