"""ListMetricDescriptors, ListPodSandboxMetrics and StreamPodSandboxMetrics: cAdvisor's metrics from crib.

Only a kubelet with the PodAndContainerStatsFromCRI gate calls them, to serve
/metrics/cadvisor; what they answer is built by pod_metrics.py (and the cgroup and
filesystem readers of runtime/metric_sources.py), imported at the first of these calls, in
a worker thread: most nodes never make one, and an idle cribd's memory is not spent on it
(issue 17).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import ModuleType
from typing import TYPE_CHECKING

import grpc

from crib import first_use
from crib.cri_server import wire
from crib.proto.cri import api_pb2

if TYPE_CHECKING:
    from crib.container.containers import Containers
    from crib.cri_server.pod_metrics import Collector
    from crib.sandbox.sandboxes import Sandboxes

# Pods per StreamPodSandboxMetrics message: a busy pod is ~10 KiB of metrics, so a message
# stays far below the kubelet's 16 MiB.
POD_METRICS_CHUNK = 100


async def _pod_metrics() -> ModuleType:
    return await first_use.module("crib.cri_server.pod_metrics")


class MetricsService:
    """The kubelet's /metrics/cadvisor with PodAndContainerStatsFromCRI: the metrics RPCs."""

    def __init__(self, sandboxes: Sandboxes, containers: Containers, families: list[str]) -> None:
        self.sandboxes = sandboxes
        self.containers = containers
        self.families = families

    async def _collector(self) -> Collector:
        return (await _pod_metrics()).Collector(self.sandboxes, self.containers, self.families)

    async def ListMetricDescriptors(
        self, request: api_pb2.ListMetricDescriptorsRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.ListMetricDescriptorsResponse:
        descriptors = (await _pod_metrics()).descriptors(self.families)
        return api_pb2.ListMetricDescriptorsResponse(descriptors=descriptors)

    async def ListPodSandboxMetrics(
        self, request: api_pb2.ListPodSandboxMetricsRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.ListPodSandboxMetricsResponse:
        collector = await self._collector()
        return api_pb2.ListPodSandboxMetricsResponse(pod_metrics=await collector.collect(collector.targets()))

    async def StreamPodSandboxMetrics(
        self, request: api_pb2.StreamPodSandboxMetricsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[api_pb2.StreamPodSandboxMetricsResponse]:
        # The pods are fixed when the call starts, then read a chunk at a time: each pod goes out
        # once, and the stream ends after the last chunk (no pods: no message, as containerd).
        collector = await self._collector()
        for chunk in wire.chunks(collector.targets(), POD_METRICS_CHUNK):
            yield api_pb2.StreamPodSandboxMetricsResponse(pod_sandbox_metrics=await collector.collect(chunk))
