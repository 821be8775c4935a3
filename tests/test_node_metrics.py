"""cribd's Prometheus metrics: named by the conventions, each documented, recorded as promised."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

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
