"""Resources: limits in the container's cgroup, OOM kills, and in-place resize without a restart."""

from __future__ import annotations

import json

from crib.proto.cri import api_pb2
from e2e.kube.images import BUSYBOX
from e2e.kube.kube import Kube, container, container_status, pod_manifest, restarts

CPU = "/sys/fs/cgroup/cpu"
MEMORY = "/sys/fs/cgroup/memory"


def _cgroup(kube: Kube, pod: str) -> dict[str, int]:
    """The container's own cgroup v1 limits, read inside it (runc mounts its cgroup there)."""
    out = kube.kubectl(
        "exec",
        pod,
        "--",
        "cat",
        f"{CPU}/cpu.cfs_quota_us",
        f"{CPU}/cpu.cfs_period_us",
        f"{CPU}/cpu.shares",
        f"{MEMORY}/memory.limit_in_bytes",
    ).stdout.split()
    quota, period, shares, memory = (int(x) for x in out)
    return {"quota": quota, "period": period, "shares": shares, "memory": memory}


def _resources(cpu_req: str, cpu_lim: str, mem: str) -> dict:
    return {"requests": {"cpu": cpu_req, "memory": mem}, "limits": {"cpu": cpu_lim, "memory": mem}}


def test_limits_land_in_the_cgroup_and_resize_in_place(kube: Kube) -> None:
    kube.apply(
        pod_manifest(
            "sized",
            [
                container(
                    "main", BUSYBOX, command=["sleep", "3600"], resources=_resources("100m", "200m", "64Mi")
                )
            ],
        )
    )
    pod = kube.wait_ready("sized")
    assert pod["status"]["qosClass"] == "Burstable"
    cg = _cgroup(kube, "sized")
    assert cg["quota"] * 1000 // cg["period"] == 200
    assert cg["shares"] == 102  # 100m, as the kubelet converts milli-CPU to shares
    assert cg["memory"] == 64 << 20
    (before,) = kube.crib_containers(pod, "main")

    patch = {"spec": {"containers": [{"name": "main", "resources": _resources("150m", "300m", "96Mi")}]}}
    kube.kubectl(
        "patch", "pod", "sized", "--subresource", "resize", "--type", "strategic", "-p", json.dumps(patch)
    )
    pod = kube.wait_pod(
        "sized",
        lambda p: (
            container_status(p, "main").get("resources", {}).get("limits", {}).get("cpu") == "300m"
            and not any(c["type"].startswith("PodResize") for c in p["status"].get("conditions", []))
        ),
        "the resize applied",
        60,
    )
    cg = _cgroup(kube, "sized")
    assert cg["quota"] * 1000 // cg["period"] == 300
    assert cg["shares"] == 153
    assert cg["memory"] == 96 << 20
    assert restarts(pod, "main") == 0
    (after,) = kube.crib_containers(pod, "main")
    assert after.id == before.id, "resized in place, not recreated"
    # crib reports the new limits in the container's status as well.
    status = (
        kube.runtime()
        .ContainerStatus(api_pb2.ContainerStatusRequest(container_id=after.id), timeout=10)
        .status
    )
    assert status.resources.linux.memory_limit_in_bytes == 96 << 20


def test_memory_hog_is_oom_killed(kube: Kube) -> None:
    # tail looks for the last lines of an endless line: it keeps all of it in memory.
    kube.apply(
        pod_manifest(
            "hog",
            [
                container(
                    "main",
                    BUSYBOX,
                    "/dev/zero",
                    command=["tail"],
                    resources=_resources("50m", "100m", "32Mi"),
                )
            ],
        )
    )
    pod = kube.wait_pod(
        "hog",
        lambda p: (
            container_status(p, "main").get("lastState", {}).get("terminated", {}).get("reason")
            == "OOMKilled"
            or container_status(p, "main")["state"].get("terminated", {}).get("reason") == "OOMKilled"
        ),
        "an OOMKilled termination",
        90,
    )
    status = container_status(pod, "main")
    terminated = status["lastState"].get("terminated") or status["state"]["terminated"]
    assert terminated["exitCode"] == 137
