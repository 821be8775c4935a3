"""Container RPC views: proto messages built from crib.container records, filters, stats."""

from __future__ import annotations

import json
import time

from crib.container.cgroup_stats import CgroupStats
from crib.container.containers import CREATED, EXITED, RUNNING, Container, Containers
from crib.cri_server import wire
from crib.proto.cri import api_pb2

STREAM_CHUNK = 500
_STATES = {
    CREATED: api_pb2.CONTAINER_CREATED,
    RUNNING: api_pb2.CONTAINER_RUNNING,
    EXITED: api_pb2.CONTAINER_EXITED,
}


def state_of(container: Container) -> int:
    return _STATES.get(container.state, api_pb2.CONTAINER_UNKNOWN)


def _image_spec(container: Container) -> api_pb2.ImageSpec:
    spec = api_pb2.ImageSpec()
    spec.CopyFrom(container.config.image)
    # A name of the image, not the ID the kubelet created it with: the kubelet shows this as
    # the container's image (and compares it with the pod's).
    spec.image = container.image_name or spec.image or container.image_id
    return spec


def container_item(container: Container) -> api_pb2.Container:
    config = container.config
    return api_pb2.Container(
        id=container.id,
        pod_sandbox_id=container.sandbox_id,
        metadata=config.metadata,
        image=_image_spec(container),
        image_ref=container.image_ref,
        state=state_of(container),
        created_at=container.created_at,
        labels=config.labels,
        annotations=config.annotations,
        image_id=container.image_id,
    )


def container_status(container: Container) -> api_pb2.ContainerStatus:
    config = container.config
    signal_name = api_pb2.Signal.Name(config.stop_signal) if config.stop_signal else "RUNTIME_DEFAULT"
    return api_pb2.ContainerStatus(
        id=container.id,
        metadata=config.metadata,
        state=state_of(container),
        created_at=container.created_at,
        started_at=container.started_at,
        finished_at=container.finished_at,
        exit_code=container.exit_code,
        image=_image_spec(container),
        image_ref=container.image_ref,
        reason=container.reason,
        message=container.message,
        labels=config.labels,
        annotations=config.annotations,
        mounts=config.mounts,
        log_path=container.log_path,
        resources=api_pb2.ContainerResources(linux=container.resources),
        image_id=container.image_id,
        user=api_pb2.ContainerUser(
            linux=api_pb2.LinuxContainerUser(
                uid=container.uid, gid=container.gid, supplemental_groups=container.groups
            )
        ),
        stop_signal=api_pb2.Signal.Value(signal_name),
    )


def status_info(containers: Containers, container: Container) -> dict[str, str]:
    spec = containers.env.read_spec(container.id)
    return {
        "info": json.dumps(
            {
                "pid": container.pid,
                "conmonPid": container.conmon_pid,
                "sandboxID": container.sandbox_id,
                "runtimeHandler": container.handler,
                "runtimeSpec": spec,
            }
        )
    }


def matches(container: Container, f: api_pb2.ContainerFilter) -> bool:
    if f.id and not container.id.startswith(f.id):
        return False
    if f.HasField("state") and state_of(container) != f.state.state:
        return False
    if f.pod_sandbox_id and not container.sandbox_id.startswith(f.pod_sandbox_id):
        return False
    labels = container.config.labels
    return all(labels.get(k) == v for k, v in f.label_selector.items())


def list_containers(containers: Containers, f: api_pb2.ContainerFilter) -> list[api_pb2.Container]:
    return [container_item(c) for c in containers.list() if matches(c, f)]


def list_containers_wire(containers: Containers, f: api_pb2.ContainerFilter) -> bytes:
    """A serialized ListContainersResponse (field 1: containers), from cached items."""
    return wire.list_reply(containers.list(), f, lambda r: matches(r, f), container_item)


def stats_message(
    container: Container, cg: CgroupStats | None, layer: tuple[int, int], layer_dir: str
) -> api_pb2.ContainerStats:
    now = time.time_ns()
    config = container.config
    stats = api_pb2.ContainerStats(
        attributes=api_pb2.ContainerAttributes(
            id=container.id, metadata=config.metadata, labels=config.labels, annotations=config.annotations
        ),
        writable_layer=api_pb2.FilesystemUsage(
            timestamp=now,
            fs_id=api_pb2.FilesystemIdentifier(mountpoint=layer_dir),
            used_bytes=api_pb2.UInt64Value(value=layer[0]),
            inodes_used=api_pb2.UInt64Value(value=layer[1]),
        ),
    )
    if cg is not None:
        if cg.cpu_usage_ns is not None:
            stats.cpu.timestamp = cg.timestamp_ns
            stats.cpu.usage_core_nano_seconds.value = cg.cpu_usage_ns
        stats.memory.timestamp = cg.timestamp_ns
        if cg.memory_working_set_bytes is not None:
            stats.memory.working_set_bytes.value = cg.memory_working_set_bytes
        if cg.memory_usage_bytes is not None:
            stats.memory.usage_bytes.value = cg.memory_usage_bytes
        if cg.memory_limit_bytes is not None and cg.memory_working_set_bytes is not None:
            stats.memory.available_bytes.value = max(0, cg.memory_limit_bytes - cg.memory_working_set_bytes)
        if cg.memory_rss_bytes is not None:
            stats.memory.rss_bytes.value = cg.memory_rss_bytes
        if cg.memory_page_faults is not None:
            stats.memory.page_faults.value = cg.memory_page_faults
        if cg.memory_major_page_faults is not None:
            stats.memory.major_page_faults.value = cg.memory_major_page_faults
    return stats
