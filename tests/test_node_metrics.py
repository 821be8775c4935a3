"""cribd's Prometheus metrics: named by the conventions, each documented, recorded as promised."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge as PromGauge
from prometheus_client import Histogram as PromHistogram
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from crib import node_metrics

README = Path(__file__).resolve().parent.parent / "README.md"


def _families() -> list[str]:
    collector = node_metrics.StateCollector(lambda: {"pods": {}, "containers": {}, "conmons": 0})
    names = [f.name for f in collector.collect()]
    for family in node_metrics.REGISTRY.collect():
        names.append(family.name + ("_total" if family.type == "counter" else ""))
    return names


def test_every_crib_metric_is_prefixed_and_documented() -> None:
    names = _families()
    ours = [n for n in names if not n.startswith("process_")]
    assert ours and all(re.fullmatch(r"crib_[a-z_]+", n) for n in ours), ours
    # Units in the name, as Prometheus asks: durations in seconds, sizes in bytes.
    assert all(n.endswith("_seconds") for n in ours if "duration" in n)
    documented = README.read_text()
    missing = [n for n in ours if f"`{n}`" not in documented]
    assert not missing, f"metrics the README does not list: {missing}"


def _sample(name: str, **labels: str) -> float:
    return node_metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_timed_observes_and_counts_errors() -> None:
    observed = _sample("crib_cni_operation_duration_seconds_count", operation="add")
    failed = _sample("crib_cni_operation_errors_total", operation="add")
    with node_metrics.timed(node_metrics.CNI_DURATION, node_metrics.CNI_ERRORS, operation="add"):
        pass
    with (
        pytest.raises(RuntimeError),
        node_metrics.timed(node_metrics.CNI_DURATION, node_metrics.CNI_ERRORS, operation="add"),
    ):
        raise RuntimeError("plugin failed")
    assert _sample("crib_cni_operation_duration_seconds_count", operation="add") == observed + 2
    assert _sample("crib_cni_operation_errors_total", operation="add") == failed + 1


def test_state_gauges_come_from_the_counts() -> None:
    collector = node_metrics.StateCollector(
        lambda: {"pods": Counter(ready=2, notready=1), "containers": Counter(running=3), "conmons": 3}
    )
    samples = {(s.name, tuple(s.labels.items())): s.value for f in collector.collect() for s in f.samples}
    assert samples[("crib_pods", (("state", "ready"),))] == 2
    assert samples[("crib_pods", (("state", "notready"),))] == 1
    assert samples[("crib_containers", (("state", "running"),))] == 3
    assert samples[("crib_conmon_processes", ())] == 3


def _record(counter: Any, gauge: Any, histogram: Any, plain: Any, plain_counter: Any) -> None:
    counter.labels("Version", "OK").inc()
    counter.labels(method="Status", code="OK").inc(2.5)
    counter.labels("Version", "OK").inc()
    counter.labels("RunPodSandbox", "UNKNOWN")
    gauge.labels("exec").inc()
    gauge.labels("exec").inc()
    gauge.labels("exec").dec()
    gauge.labels("attach").set(4)
    for seconds in (0.0005, 0.001, 0.05, 5.0, 1.0):
        histogram.labels("Version").observe(seconds)
    histogram.labels("Status").observe(0.2)
    plain.observe(0.7)
    plain_counter.inc(3)


def _created_masked(exposition: bytes) -> str:
    """Creation times differ by when each object was made; the rest must be byte for byte."""
    return re.sub(r"(_created(\{[^}]*\})?) \S+", r"\1 T", exposition.decode())


def test_the_exposition_is_what_prometheus_clients_own_metrics_give() -> None:
    """The metrics record without prometheus_client; read, they must be its samples exactly."""
    ours: list[node_metrics._Metric] = []
    _record(
        node_metrics.Counter("t_requests", "Calls.", ["method", "code"], into=ours),
        node_metrics.Gauge("t_active", "Open.", ["kind"], into=ours),
        node_metrics.Histogram("t_seconds", "Time.", ["method"], buckets=(0.001, 0.01, 0.1, 1), into=ours),
        node_metrics.Histogram("t_plain_seconds", "Plain.", buckets=(0.5, 1), into=ours),
        node_metrics.Counter("t_plain", "Plain count.", into=ours),
    )
    our_registry = CollectorRegistry(auto_describe=True)
    our_registry.register(node_metrics.MetricsCollector(ours))

    theirs = CollectorRegistry(auto_describe=True)
    _record(
        PromCounter("t_requests", "Calls.", ["method", "code"], registry=theirs),
        PromGauge("t_active", "Open.", ["kind"], registry=theirs),
        PromHistogram("t_seconds", "Time.", ["method"], buckets=(0.001, 0.01, 0.1, 1), registry=theirs),
        PromHistogram("t_plain_seconds", "Plain.", buckets=(0.5, 1), registry=theirs),
        PromCounter("t_plain", "Plain count.", registry=theirs),
    )
    for generate in (generate_latest, generate_openmetrics):
        assert _created_masked(generate(our_registry)) == _created_masked(generate(theirs))
    assert 't_seconds_bucket{le="+Inf",method="Version"} 5.0' in generate_latest(our_registry).decode()


def test_metrics_refuse_what_prometheus_client_refuses() -> None:
    ours: list[node_metrics._Metric] = []
    counter = node_metrics.Counter("t_refused", "Refused.", ["method"], into=ours)
    plain = node_metrics.Counter("t_refused_plain", "Refused.", into=ours)
    with pytest.raises(ValueError, match="missing label values"):
        counter.inc()
    with pytest.raises(ValueError, match="Incorrect label count"):
        counter.labels("a", "b")
    with pytest.raises(ValueError, match="Incorrect label names"):
        counter.labels(path="a")
    with pytest.raises(ValueError, match="No label names"):
        plain.labels("a")
    with pytest.raises(ValueError, match="non-negative"):
        plain.inc(-1)


def test_collectors_registered_before_the_registry_is_made_are_in_it() -> None:
    collector = node_metrics.StateCollector(lambda: {"pods": {}, "containers": {}, "conmons": 7})
    node_metrics.register(collector)
    try:
        assert node_metrics.REGISTRY.get_sample_value("crib_conmon_processes") == 7
        assert node_metrics.REGISTRY.get_sample_value("process_open_fds")
    finally:
        node_metrics.REGISTRY.unregister(collector)
