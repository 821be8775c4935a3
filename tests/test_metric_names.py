"""crib's metric descriptors against the names and labels the kubelet's /metrics/cadvisor uses.

The facts below are read from the sources Kubernetes v1.36.3 builds with
(its go.mod pins github.com/google/cadvisor v0.56.2): cAdvisor's
metrics/prometheus.go gives each container metric's name and extra labels
(`extraLabels`); kubelet's pkg/kubelet/server/server.go,
containerPrometheusLabelsFunc, gives the labels every container series
carries. A crib metric must appear there with exactly those labels, or a
dashboard built for cAdvisor would not find it.
"""

from __future__ import annotations

from crib.config import METRIC_FAMILIES
from crib.cri_server import pod_metrics as mr

# kubelet v1.36.3 containerPrometheusLabelsFunc: id, name, image, pod, namespace, container
# (Prometheus orders label names).
KUBELET_CONTAINER_LABELS = ("container", "id", "image", "name", "namespace", "pod")

# cAdvisor v0.56.2 metrics/prometheus.go: name -> extraLabels, for the families crib reports.
CADVISOR_EXTRA_LABELS: dict[str, tuple[str, ...]] = {
    "container_cpu_usage_seconds_total": ("cpu",),
    "container_cpu_user_seconds_total": (),
    "container_cpu_system_seconds_total": (),
    "container_cpu_cfs_periods_total": (),
    "container_cpu_cfs_throttled_periods_total": (),
    "container_cpu_cfs_throttled_seconds_total": (),
    "container_memory_cache": (),
    "container_memory_rss": (),
    "container_memory_kernel_usage": (),
    "container_memory_mapped_file": (),
    "container_memory_swap": (),
    "container_memory_failcnt": (),
    "container_memory_usage_bytes": (),
    "container_memory_max_usage_bytes": (),
    "container_memory_working_set_bytes": (),
    "container_memory_failures_total": ("failure_type", "scope"),
    "container_fs_inodes_free": ("device",),
    "container_fs_inodes_total": ("device",),
    "container_fs_limit_bytes": ("device",),
    "container_fs_usage_bytes": ("device",),
    "container_network_receive_bytes_total": ("interface",),
    "container_network_receive_packets_total": ("interface",),
    "container_network_receive_packets_dropped_total": ("interface",),
    "container_network_receive_errors_total": ("interface",),
    "container_network_transmit_bytes_total": ("interface",),
    "container_network_transmit_packets_total": ("interface",),
    "container_network_transmit_packets_dropped_total": ("interface",),
    "container_network_transmit_errors_total": ("interface",),
    "container_oom_events_total": (),
    "container_processes": (),
    "container_file_descriptors": (),
    "container_sockets": (),
    "container_threads": (),
    "container_threads_max": (),
    # The spec family is described in the same file's collector (no extra labels).
    "container_spec_cpu_period": (),
    "container_spec_cpu_quota": (),
    "container_spec_cpu_shares": (),
    "container_spec_memory_limit_bytes": (),
    "container_spec_memory_reservation_limit_bytes": (),
    "container_spec_memory_swap_limit_bytes": (),
}


def test_every_descriptor_is_a_cadvisor_metric_with_its_labels() -> None:
    descriptors = mr.descriptors(list(METRIC_FAMILIES))
    assert descriptors
    for d in descriptors:
        assert d.name in CADVISOR_EXTRA_LABELS, f"{d.name} is not a metric of cAdvisor v0.56.2"
        keys = tuple(d.label_keys)
        assert keys[:6] == KUBELET_CONTAINER_LABELS, d.name
        assert keys[6:] == CADVISOR_EXTRA_LABELS[d.name], d.name


def test_each_family_reports_something_and_nothing_twice() -> None:
    seen: set[str] = set()
    for family in METRIC_FAMILIES:
        names = [d.name for d in mr.descriptors([family])]
        assert names, family
        assert not seen & set(names), family
        seen |= set(names)
