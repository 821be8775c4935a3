"""GetContainerEvents: each event with its pod's status and its containers' statuses.

Evented PLEG drops an event that lacks them. The container code publishes an
event built here at the moment it happens (see Containers(make_event=...)).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc

from crib.container.containers import Container, Containers
from crib.cri_server.container import container_status
from crib.cri_server.sandbox import sandbox_status
from crib.proto.cri import api_pb2


def container_event(
    containers: Containers, container: Container, event_type: int
) -> api_pb2.ContainerEventResponse:
    event = api_pb2.ContainerEventResponse(
        container_id=container.id, container_event_type=event_type, created_at=time.time_ns()
    )
    sandboxes = containers.sandboxes
    sandbox = sandboxes.find(container.sandbox_id)
    if sandbox is not None:
        event.pod_sandbox_status.CopyFrom(sandbox_status(sandboxes, sandbox, False).status)
    event.containers_statuses.extend(container_status(c) for c in containers.in_pod(container.sandbox_id))
    if event_type == api_pb2.CONTAINER_DELETED_EVENT:
        event.containers_statuses.append(container_status(container))
    return event


class EventService:
    def __init__(self, containers: Containers) -> None:
        self.containers = containers

    async def GetContainerEvents(
        self, request: api_pb2.GetEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[api_pb2.ContainerEventResponse]:
        async for event in self.containers.events.subscribe():
            yield event
