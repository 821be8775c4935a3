"""cribd's own Prometheus metrics, for a node's scraper (`[metrics] address`).

Not the CRI's metrics RPCs (cri_server/metrics.py, the containers' cAdvisor figures
for the kubelet): these describe the runtime itself. Every layer records into the
objects below (always: an increment costs well under a microsecond); the HTTP
endpoint that serves them is off unless configured. They live in their own
registry, so a test can read them and nothing global leaks in. Every metric is
listed in the README.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

# Small calls take under a millisecond; pulls and sandbox starts take seconds.
_RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_STEP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_PULL_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)

GRPC_REQUESTS = Counter(
    "crib_grpc_requests", "CRI calls served, by method and gRPC code.", ["method", "code"], registry=REGISTRY
)
GRPC_DURATION = Histogram(
    "crib_grpc_request_duration_seconds",
    "Time to serve a CRI call, by method.",
    ["method"],
    buckets=_RPC_BUCKETS,
    registry=REGISTRY,
)
PULL_BYTES = Counter(
    "crib_image_pull_bytes", "Bytes of blobs downloaded, by registry.", ["registry"], registry=REGISTRY
)
PULL_LAYERS = Counter(
    "crib_image_pull_layers",
    "Layers of pulled images, by registry and whether they were downloaded or already present.",
    ["registry", "outcome"],
    registry=REGISTRY,
)
PULL_DURATION = Histogram(
    "crib_image_pull_duration_seconds",
    "Time of a whole image pull, by registry and outcome (ok, error, cancelled).",
    ["registry", "outcome"],
    buckets=_PULL_BUCKETS,
    registry=REGISTRY,
)
UNPACK_DURATION = Histogram(
    "crib_image_unpack_duration_seconds",
    "Time to unpack one layer into the layer store.",
    buckets=_STEP_BUCKETS,
    registry=REGISTRY,
)
STREAMING_SESSIONS = Counter(
    "crib_streaming_sessions",
    "Streaming sessions begun, by kind (exec, attach, portforward) and protocol (spdy, websocket).",
    ["kind", "protocol"],
    registry=REGISTRY,
)
STREAMING_ACTIVE = Gauge(
    "crib_streaming_sessions_active", "Streaming sessions open now, by kind.", ["kind"], registry=REGISTRY
)
CNI_DURATION = Histogram(
    "crib_cni_operation_duration_seconds",
    "Time of a CNI operation on a pod's network (all plugins of the list), by operation.",
    ["operation"],
    buckets=_STEP_BUCKETS,
    registry=REGISTRY,
)
CNI_ERRORS = Counter(
    "crib_cni_operation_errors", "CNI operations that failed, by operation.", ["operation"], registry=REGISTRY
)
STORE_WRITE_DURATION = Histogram(
    "crib_state_store_write_duration_seconds",
    "Time of one write to the state store (a record put or deleted, or a transaction committed).",
    buckets=_STORE_BUCKETS,
    registry=REGISTRY,
)


@contextmanager
def timed(histogram: Histogram, errors: Counter | None = None, **labels: str) -> Iterator[None]:
    """Observe the block's duration; count it in `errors` too when it raises."""
    started = time.perf_counter()
    try:
        yield
    except BaseException:
        if errors is not None:
            errors.labels(**labels).inc()
        raise
    finally:
        (histogram.labels(**labels) if labels else histogram).observe(time.perf_counter() - started)


class StateCollector(Collector):
    """Pods and containers by state and live conmons, counted when scraped.

    `counts` is the daemon's: it reads the domain's indexes, which only the event loop
    changes; a scrape from the HTTP thread may see a count one change old, never a torn one
    (the indexes are dicts, read by iteration over a snapshot list).
    """

    def __init__(self, counts: Callable[[], dict[str, Any]]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self.counts()
        pods = GaugeMetricFamily("crib_pods", "Pod sandboxes, by state.", labels=["state"])
        for state, n in sorted(counts["pods"].items()):
            pods.add_metric([state], n)
        yield pods
        containers = GaugeMetricFamily("crib_containers", "Containers, by state.", labels=["state"])
        for state, n in sorted(counts["containers"].items()):
            containers.add_metric([state], n)
        yield containers
        yield GaugeMetricFamily(
            "crib_conmon_processes", "conmon processes cribd knows to be running.", value=counts["conmons"]
        )


class MetricsServer:
    """The /metrics endpoint, in a thread of its own (prometheus_client's WSGI server)."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.host = host.strip("[]") or "127.0.0.1"
        self.port = int(port)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Raises OSError when the address cannot be bound (the caller logs it and goes on)."""
        self._server, self._thread = start_http_server(self.port, self.host, registry=REGISTRY)
        self.port = self._server.server_address[1]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
