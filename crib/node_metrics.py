"""cribd's own Prometheus metrics, for a node's scraper (`[metrics] address`).

Not the CRI's metrics RPCs (cri_server/metrics.py and pod_metrics.py, the containers' cAdvisor figures
for the kubelet): these describe the runtime itself. Every layer records into the
objects below (always: an increment costs well under a microsecond); the HTTP
endpoint that serves them is off unless configured. They live in their own
registry, so a test can read them and nothing global leaks in. Every metric is
listed in the README.

prometheus_client is imported only when the metrics are read: when the endpoint starts,
or something reads `REGISTRY`. Importing it brings its exposition's HTTP server,
urllib.request and the email package, about 3 MB resident that a cribd without the
endpoint (the default) never uses (issue 17). Until then the Counter, Gauge and Histogram
below hold the figures themselves; the registry reads them through a collector that
yields the samples prometheus_client's own classes would (tests/test_node_metrics.py
compares the two expositions).
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric


class _Child:
    """One series (one set of label values): its value, under a lock (threads record too)."""

    __slots__ = ("_lock", "created", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1) -> None:
        with self._lock:
            self.value += amount


class _CounterChild(_Child):
    __slots__ = ()

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        with self._lock:
            self.value += amount


class _GaugeChild(_Child):
    __slots__ = ()

    def dec(self, amount: float = 1) -> None:
        with self._lock:
            self.value -= amount

    def set(self, value: float) -> None:
        with self._lock:
            self.value = float(value)


class _HistogramChild(_Child):
    __slots__ = ("bounds", "counts")

    def __init__(self, bounds: list[float]) -> None:
        super().__init__()
        self.bounds = bounds
        self.counts = [0.0] * len(bounds)

    def observe(self, amount: float) -> None:
        # The first bucket whose upper bound is >= amount (the last is +Inf).
        i = bisect.bisect_left(self.bounds, amount)
        with self._lock:
            self.value += amount
            self.counts[i] += 1


class _Metric:
    """A metric family: its series by label values, as prometheus_client's metric classes keep them."""

    type = ""
    child: type[_Child] = _Child

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str] = (), *, into: list[_Metric]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()
        # An unlabelled metric is its own one series, there from the start.
        self._only = None if self.labelnames else self._new_child()
        into.append(self)

    def _new_child(self) -> Any:
        return self.child()

    def labels(self, *values: object, **kw: object) -> Any:
        if not self.labelnames:
            raise ValueError(f"No label names were set when constructing {self.type}:{self.name}")
        if values and kw:
            raise ValueError("Can't pass both *args and **kwargs")
        if kw:
            if sorted(kw) != sorted(self.labelnames):
                raise ValueError("Incorrect label names")
            key = tuple(str(kw[n]) for n in self.labelnames)
        else:
            if len(values) != len(self.labelnames):
                raise ValueError("Incorrect label count")
            key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            with self._lock:
                child = self._children.setdefault(key, self._new_child())
        return child

    def _series(self) -> Iterator[tuple[dict[str, str], Any]]:
        if self._only is not None:
            yield {}, self._only
            return
        with self._lock:
            children = list(self._children.items())
        for key, child in children:
            yield dict(zip(self.labelnames, key, strict=True)), child

    def _unlabelled(self) -> Any:
        if self._only is None:
            raise ValueError(f"{self.type} metric is missing label values")
        return self._only


class Counter(_Metric):
    type = "counter"
    child = _CounterChild

    def inc(self, amount: float = 1) -> None:
        self._unlabelled().inc(amount)


class Gauge(_Metric):
    type = "gauge"
    child = _GaugeChild

    def inc(self, amount: float = 1) -> None:
        self._unlabelled().inc(amount)

    def dec(self, amount: float = 1) -> None:
        self._unlabelled().dec(amount)

    def set(self, value: float) -> None:
        self._unlabelled().set(value)


class Histogram(_Metric):
    type = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float],
        into: list[_Metric],
    ) -> None:
        bounds = [float(b) for b in buckets]
        if bounds != sorted(bounds):
            raise ValueError("Buckets not in sorted order")
        if bounds[-1] != math.inf:
            bounds.append(math.inf)
        self.bounds = bounds
        super().__init__(name, documentation, labelnames, into=into)

    def _new_child(self) -> _HistogramChild:
        return _HistogramChild(self.bounds)

    def observe(self, amount: float) -> None:
        self._unlabelled().observe(amount)


class MetricsCollector:
    """The metrics above for prometheus_client's registry: the samples its own Counter,
    Gauge and Histogram yield, in the same order (series in the order they were made)."""

    def __init__(self, metrics: list[_Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        from prometheus_client import metrics as pc_metrics  # noqa: PLC0415
        from prometheus_client.metrics_core import Metric  # noqa: PLC0415
        from prometheus_client.utils import floatToGoString  # noqa: PLC0415

        created = pc_metrics._use_created  # PROMETHEUS_DISABLE_CREATED_SERIES, as prometheus_client reads it
        for m in self.metrics:
            family = Metric(m.name, m.documentation, m.type)
            for labels, child in m._series():
                with child._lock:
                    value, stamp = child.value, child.created
                    counts = list(child.counts) if isinstance(child, _HistogramChild) else []
                if m.type == "counter":
                    family.add_sample(m.name + "_total", labels, value)
                    if created:
                        family.add_sample(m.name + "_created", labels, stamp)
                elif m.type == "gauge":
                    family.add_sample(m.name, labels, value)
                else:
                    acc = 0.0
                    for bound, n in zip(child.bounds, counts, strict=True):
                        acc += n
                        family.add_sample(m.name + "_bucket", {**labels, "le": floatToGoString(bound)}, acc)
                    family.add_sample(m.name + "_count", labels, acc)
                    family.add_sample(m.name + "_sum", labels, value)
                    if created:
                        family.add_sample(m.name + "_created", labels, stamp)
            yield family


_METRICS: list[_Metric] = []
# Collectors registered before the registry exists (StateCollector): it takes them when made.
_PENDING: list[Any] = []
_registry_lock = threading.Lock()


def _make_registry() -> CollectorRegistry:
    from prometheus_client import CollectorRegistry, ProcessCollector  # noqa: PLC0415

    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    registry.register(MetricsCollector(_METRICS))
    for collector in _PENDING:
        registry.register(collector)
    _PENDING.clear()
    return registry


def registry() -> CollectorRegistry:
    """The registry the endpoint serves, made (and prometheus_client imported) at the first call."""
    with _registry_lock:
        made = globals().get("REGISTRY")
        if made is None:
            made = globals()["REGISTRY"] = _make_registry()
    return made


def __getattr__(name: str) -> Any:
    """`node_metrics.REGISTRY`: registry(), for its readers (tests)."""
    if name == "REGISTRY":
        return registry()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register(collector: Any) -> None:
    """Add a collector to the registry: now if it is made, else when it is."""
    with _registry_lock:
        made = globals().get("REGISTRY")
        if made is None:
            _PENDING.append(collector)
            return
    made.register(collector)


# Small calls take under a millisecond; pulls and sandbox starts take seconds.
_RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_STEP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_PULL_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)

GRPC_REQUESTS = Counter(
    "crib_grpc_requests", "CRI calls served, by method and gRPC code.", ["method", "code"], into=_METRICS
)
GRPC_DURATION = Histogram(
    "crib_grpc_request_duration_seconds",
    "Time to serve a CRI call, by method.",
    ["method"],
    buckets=_RPC_BUCKETS,
    into=_METRICS,
)
PULL_BYTES = Counter(
    "crib_image_pull_bytes", "Bytes of blobs downloaded, by registry.", ["registry"], into=_METRICS
)
PULL_LAYERS = Counter(
    "crib_image_pull_layers",
    "Layers of pulled images, by registry and whether they were downloaded or already present.",
    ["registry", "outcome"],
    into=_METRICS,
)
PULL_DURATION = Histogram(
    "crib_image_pull_duration_seconds",
    "Time of a whole image pull, by registry and outcome (ok, error, cancelled).",
    ["registry", "outcome"],
    buckets=_PULL_BUCKETS,
    into=_METRICS,
)
UNPACK_DURATION = Histogram(
    "crib_image_unpack_duration_seconds",
    "Time to unpack one layer into the layer store.",
    buckets=_STEP_BUCKETS,
    into=_METRICS,
)
STREAMING_SESSIONS = Counter(
    "crib_streaming_sessions",
    "Streaming sessions begun, by kind (exec, attach, portforward) and protocol (spdy, websocket).",
    ["kind", "protocol"],
    into=_METRICS,
)
STREAMING_ACTIVE = Gauge(
    "crib_streaming_sessions_active", "Streaming sessions open now, by kind.", ["kind"], into=_METRICS
)
CNI_DURATION = Histogram(
    "crib_cni_operation_duration_seconds",
    "Time of a CNI operation on a pod's network (all plugins of the list), by operation.",
    ["operation"],
    buckets=_STEP_BUCKETS,
    into=_METRICS,
)
CNI_ERRORS = Counter(
    "crib_cni_operation_errors", "CNI operations that failed, by operation.", ["operation"], into=_METRICS
)
STORE_WRITE_DURATION = Histogram(
    "crib_state_store_write_duration_seconds",
    "Time of one write to the state store (a record put or deleted, or a transaction committed).",
    buckets=_STORE_BUCKETS,
    into=_METRICS,
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


class StateCollector:
    """Pods and containers by state and live conmons, counted when scraped.

    `counts` is the daemon's: it reads the domain's indexes, which only the event loop
    changes; a scrape from the HTTP thread may see a count one change old, never a torn one
    (the indexes are dicts, read by iteration over a snapshot list).
    """

    def __init__(self, counts: Callable[[], dict[str, Any]]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily  # noqa: PLC0415  (read: it is imported)

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
        from prometheus_client import start_http_server  # noqa: PLC0415

        self._server, self._thread = start_http_server(self.port, self.host, registry=registry())
        self.port = self._server.server_address[1]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
