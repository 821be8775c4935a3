"""Tracing on a real cribd: its spans reach an OTLP/HTTP collector, under the caller's trace.

The collector is the test's own: an HTTP server thread that takes POST /v1/traces and
parses the body as the OTLP protobuf it is. cribd is stopped with SIGTERM, which sends
what its batch processor still holds.
"""

from __future__ import annotations

import gzip
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from crib.proto.cri import api_pb2
from e2e.harness.cribd import Cribd
from e2e.harness.network import PodNetwork
from e2e.harness.registry import Registry
from e2e.harness.wait import wait_until
from e2e.images import builder
from e2e.images.registry_client import RegistryClient
from e2e.pods import POD_TIMEOUT, pod_config, remove_pod


class Collector:
    """An OTLP/HTTP traces receiver on 127.0.0.1; `spans` are what it was sent, with their service."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Span]] = []
        self.requests = 0
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                collector.receive(ExportTraceServiceRequest.FromString(body))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def receive(self, request: ExportTraceServiceRequest) -> None:
        with self._lock:
            self.requests += 1
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                service = resource.get("service.name", "")
                for scope_spans in resource_spans.scope_spans:
                    self.spans += [(service, s) for s in scope_spans.spans]

    def trace(self, trace_id: str) -> list[Span]:
        with self._lock:
            return [s for _, s in self.spans if s.trace_id.hex() == trace_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.close()


def _attributes(span: Span) -> dict[str, object]:
    out: dict[str, object] = {}
    for a in span.attributes:
        kind = a.value.WhichOneof("value")
        out[a.key] = getattr(a.value, kind) if kind else None
    return out


def _under(span: Span, root: Span, by_id: dict[bytes, Span]) -> bool:
    """Whether `root` is among `span`'s ancestors."""
    parent = span.parent_span_id
    while parent:
        if parent == root.span_id:
            return True
        parent = by_id[parent].parent_span_id if parent in by_id else b""
    return False


def _tracing_cribd(
    cribd_factory: Callable[..., Cribd], pod_network: PodNetwork, endpoint: str, **extra: str
) -> Cribd:
    text = f'[tracing]\nendpoint = "{endpoint}"\n' + "".join(f"{k} = {v}\n" for k, v in extra.items())
    daemon = cribd_factory(text)
    pod_network.install(daemon.cni_conf_dir)
    return daemon.start()


def test_run_pod_sandbox_continues_the_callers_trace(
    cribd_factory: Callable[..., Cribd], pod_network: PodNetwork, collector: Collector
) -> None:
    daemon = _tracing_cribd(cribd_factory, pod_network, collector.url)
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    traceparent = f"00-{trace_id}-{parent_id}-01"
    pod_id = daemon.runtime.RunPodSandbox(
        api_pb2.RunPodSandboxRequest(config=pod_config("traced")),
        timeout=POD_TIMEOUT,
        metadata=[("traceparent", traceparent)],
    ).pod_sandbox_id
    remove_pod(daemon, pod_id)
    # SIGTERM: cribd sends the spans its batch processor still holds before it exits.
    assert daemon.stop() == 0
    spans = collector.trace(trace_id)

    (rpc,) = [s for s in spans if s.name == "runtime.v1.RuntimeService/RunPodSandbox"]
    assert rpc.kind == Span.SPAN_KIND_SERVER
    assert rpc.parent_span_id.hex() == parent_id
    assert rpc.status.code != Status.STATUS_CODE_ERROR
    attributes = _attributes(rpc)
    assert attributes["rpc.system"] == "grpc" and attributes["rpc.method"] == "RunPodSandbox"
    assert attributes["rpc.grpc.status_code"] == 0
    assert attributes["crib.name"] == "e2e/traced"
    assert {service for service, s in collector.spans if s.trace_id.hex() == trace_id} == {"cribd"}

    by_id = {s.span_id: s for s in spans}
    children = {s.name for s in spans if _under(s, rpc, by_id)}
    assert {"cni.add", "runc run"} <= children, children
    (cni_add,) = [s for s in spans if s.name == "cni.add"]
    assert _attributes(cni_add)["crib.pod_sandbox_id"] == pod_id
    assert _attributes(cni_add)["cni.network"] == pod_network.name
    # RemovePodSandbox carried no trace context: a trace of its own, with CNI DEL in it.
    removes = [s for _, s in collector.spans if s.name == "runtime.v1.RuntimeService/RemovePodSandbox"]
    assert len(removes) == 1 and removes[0].trace_id.hex() != trace_id
    assert _attributes(removes[0])["crib.pod_sandbox_id"] == pod_id
    remove_trace = collector.trace(removes[0].trace_id.hex())
    assert "cni.del" in {s.name for s in remove_trace}


def test_a_pull_traces_its_registry_requests_and_unpacks(
    cribd_factory: Callable[..., Cribd], registry: Registry, collector: Collector
) -> None:
    image = builder.busybox_image("oci", "gzip")
    with RegistryClient(registry.url) as client:
        client.push_image("traced/busybox", "v1", image)
    name = f"{registry.host}/traced/busybox:v1"
    daemon = cribd_factory(f'[tracing]\nendpoint = "{collector.url}"\n').start()
    trace_id = secrets.token_hex(16)
    daemon.images.PullImage(
        api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=name)),
        timeout=120,
        metadata=[("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01")],
    )
    assert daemon.stop() == 0
    spans = collector.trace(trace_id)
    (rpc,) = [s for s in spans if s.name == "runtime.v1.ImageService/PullImage"]
    assert _attributes(rpc)["crib.image"] == name
    by_id = {s.span_id: s for s in spans}
    under = [s for s in spans if _under(s, rpc, by_id)]
    manifests = [s for s in under if s.name == "registry.manifest"]
    assert manifests and _attributes(manifests[0])["crib.reference"] == "v1"
    assert all(_attributes(s)["crib.registry"] == registry.host for s in manifests)
    fetched = {_attributes(s)["crib.digest"] for s in under if s.name == "registry.blob"}
    assert {layer.digest for layer in image.layers} | {image.config.digest} <= fetched
    assert len([s for s in under if s.name == "layer.unpack"]) == len(image.layers)
    # A registry on 127.0.0.1 is tried with HTTPS first: that one request fails, then HTTP serves.
    failed = [s for s in under if s.status.code == Status.STATUS_CODE_ERROR]
    assert [(s.name, _attributes(s)["crib.endpoint"]) for s in failed] == [
        ("registry.manifest", f"https://{registry.host}")
    ]
    assert "cannot reach registry" in failed[0].status.message


def test_an_unreachable_collector_neither_breaks_nor_slows_calls(
    cribd_factory: Callable[..., Cribd], pod_network: PodNetwork
) -> None:
    # A port nothing listens on: every export is refused and retried in the background.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    daemon = _tracing_cribd(cribd_factory, pod_network, f"http://127.0.0.1:{port}/v1/traces")
    pod_id = daemon.runtime.RunPodSandbox(
        api_pb2.RunPodSandboxRequest(config=pod_config("untraced")), timeout=POD_TIMEOUT
    ).pod_sandbox_id
    started = time.monotonic()
    for _ in range(50):
        daemon.runtime.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id), timeout=5)
    # ~1 ms a call when nothing is in the way; the exporter's retries happen off the call path.
    assert time.monotonic() - started < 2.5
    # Past the first export attempt (the batch delay is 5 s), logged as cribd's own event.
    wait_until(lambda: '"event": "tracing.sdk"' in daemon.log_text(), 20, "a failed export in the log")
    daemon.runtime.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id), timeout=5)
    remove_pod(daemon, pod_id)
    # The flush at exit gives up after its bound instead of holding the daemon.
    started = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - started < 10
