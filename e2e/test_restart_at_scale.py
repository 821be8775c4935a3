"""cribd SIGKILLed under 100 pods (running, exited and exiting containers), then restarted.

Every pod and container comes back with the same ID, state, exit code and IP; recovery
takes under 5 s; removing everything afterwards leaves the machine as it was.
"""

from __future__ import annotations

import json
import os
import signal
import time

from crib.proto.cri import api_pb2
from e2e.harness.cribd import Cribd
from e2e.harness.machine import machine_state
from e2e.harness.network import PodNetwork
from e2e.harness.wait import wait_until
from e2e.pods import (
    container_config,
    container_status,
    import_busybox,
    list_pods,
    pod_config,
    pod_status,
    remove_pod,
    run_container,
    run_pod,
    wait_exited,
)

PODS = int(os.environ.get("CRIB_RESTART_PODS", "100"))
RECOVERY_BUDGET_S = 5.0


def _containers(daemon: Cribd) -> dict[str, api_pb2.ContainerStatus]:
    listed = daemon.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=30).containers
    return {c.id: container_status(daemon, c.id).status for c in listed}


def _pid(daemon: Cribd, container_id: str) -> int:
    return json.loads(container_status(daemon, container_id, verbose=True).info["info"])["pid"]


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_sigkill_under_100_pods_recovers_everything(net_cribd: Cribd, pod_network: PodNetwork) -> None:
    daemon = net_cribd
    import_busybox(daemon)
    warm = run_pod(daemon, pod_config("warm"))
    remove_pod(daemon, warm)
    before = machine_state(daemon, pod_network)
    exited, exiting = [], []
    for i in range(PODS):
        pod_id = run_pod(daemon, pod_config(f"p{i}"))
        kind = i % 3
        if kind == 0:
            run_container(daemon, pod_id, container_config("main", ["sleep", "3600"]))
        elif kind == 1:
            exited.append(
                run_container(daemon, pod_id, container_config("done", ["sh", "-c", f"exit {i % 7}"]))
            )
        else:
            # Still running at the kill, ends while cribd is down.
            exiting.append(
                run_container(daemon, pod_id, container_config("ending", ["sh", "-c", "sleep 2; exit 3"]))
            )
    for cid in exited:
        wait_exited(daemon, cid)
    pods = {p.id: (p.state, pod_status(daemon, p.id)[0].network.ip) for p in list_pods(daemon)}
    containers = _containers(daemon)
    assert len(pods) == PODS and len(containers) == PODS

    ending_pids = [
        json.loads(container_status(daemon, cid, verbose=True).info["info"])["pid"] for cid in exiting
    ]
    assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    # The exiting containers end while no cribd watches them.
    wait_until(lambda: all(_gone(pid) for pid in ending_pids), 30, "the exiting containers to end")
    started = time.monotonic()
    daemon.start()
    recovery = time.monotonic() - started
    print(f"restart under {PODS} pods: cribd ready after {recovery:.2f}s")
    assert recovery < RECOVERY_BUDGET_S, f"recovery took {recovery:.2f}s"

    assert {p.id: (p.state, pod_status(daemon, p.id)[0].network.ip) for p in list_pods(daemon)} == pods
    after = _containers(daemon)
    assert set(after) == set(containers)
    for cid, status in containers.items():
        now = after[cid]
        if cid in exiting:
            assert (now.state, now.exit_code) == (api_pb2.CONTAINER_EXITED, 3), cid
        else:
            assert (now.state, now.exit_code, now.started_at) == (
                status.state,
                status.exit_code,
                status.started_at,
            )
    for pod_id in pods:
        remove_pod(daemon, pod_id)
    assert machine_state(daemon, pod_network) == before
