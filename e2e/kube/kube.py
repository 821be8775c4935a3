"""What the cluster tests use to drive Kubernetes: kubectl, the API, the kubelet's endpoints.

Waits are bounded polls of the API (a GET costs a few ms here) on a condition
the test names, so a failure says what never happened and shows the object.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

import grpc
import httpx
import yaml

from crib.proto.cri import api_pb2, api_pb2_grpc
from e2e.kube.cluster import NODE_NAME, Cluster
from e2e.kube.images import BUSYBOX

POLL_S = 0.2
KUBECTL_TIMEOUT_S = 120.0


class Kube:
    def __init__(self, cluster: Cluster, namespace: str = "default") -> None:
        self.cluster = cluster
        self.ns = namespace
        self.http = cluster.api()

    def close(self) -> None:
        self.http.close()

    # --- kubectl ---

    def kubectl(
        self, *args: str, input: str | None = None, timeout: float = KUBECTL_TIMEOUT_S, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.cluster.kubectl_path), f"--kubeconfig={self.cluster.admin_kubeconfig}"]
        argv += ["-n", self.ns, *args]
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def apply(self, *objects: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))

    def delete(self, kind: str, name: str, *flags: str) -> None:
        self.kubectl("delete", kind, name, "--ignore-not-found", *flags)

    # --- API ---

    def _path(self, kind: str, name: str = "", namespaced: bool = True) -> str:
        groups = {"jobs": "/apis/batch/v1", "deployments": "/apis/apps/v1"}
        base = groups.get(kind, "/api/v1")
        ns = f"/namespaces/{self.ns}" if namespaced else ""
        return f"{base}{ns}/{kind}" + (f"/{name}" if name else "")

    def get(self, kind: str, name: str) -> dict[str, Any]:
        r = self.http.get(self._path(kind, name))
        r.raise_for_status()
        return r.json()

    def get_or_none(self, kind: str, name: str) -> dict[str, Any] | None:
        r = self.http.get(self._path(kind, name))
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()

    def pod(self, name: str) -> dict[str, Any]:
        return self.get("pods", name)

    def raw(self, path: str) -> str:
        r = self.http.get(path, timeout=60)
        r.raise_for_status()
        return r.text

    def kubelet(self, path: str) -> str:
        """A kubelet endpoint (/stats/summary, /metrics, /metrics/cadvisor) through the API server."""
        return self.raw(f"/api/v1/nodes/{NODE_NAME}/proxy{path}")

    def events(self, name: str) -> list[dict[str, Any]]:
        r = self.http.get(
            f"/api/v1/namespaces/{self.ns}/events", params={"fieldSelector": f"involvedObject.name={name}"}
        )
        r.raise_for_status()
        return r.json()["items"]

    def event_reasons(self, name: str) -> list[str]:
        return [e["reason"] for e in self.events(name)]

    def wait(
        self,
        what: str,
        fetch: Callable[[], Any],
        condition: Callable[[Any], bool],
        timeout: float = 60.0,
    ) -> Any:
        """Poll `fetch()` until `condition` holds on its result; returns that result."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                last = fetch()
                if condition(last):
                    return last
            except (httpx.HTTPError, KeyError, IndexError, TypeError):
                pass
            if time.monotonic() > deadline:
                # Sets (of image names, say) are shown sorted.
                shown = json.dumps(last, indent=1, default=sorted)[-3000:] if last is not None else "-"
                raise AssertionError(
                    f"timed out after {timeout:.0f}s waiting for {what}; last seen:\n{shown}"
                )
            time.sleep(POLL_S)

    def wait_pod(
        self, name: str, condition: Callable[[dict[str, Any]], bool], what: str, timeout: float = 60.0
    ):
        return self.wait(f"pod {self.ns}/{name}: {what}", lambda: self.pod(name), condition, timeout)

    def wait_ready(self, name: str, timeout: float = 60.0) -> dict[str, Any]:
        return self.wait_pod(name, is_ready, "Ready", timeout)

    def wait_phase(self, name: str, phase: str, timeout: float = 60.0) -> dict[str, Any]:
        return self.wait_pod(name, lambda p: p["status"].get("phase") == phase, f"phase {phase}", timeout)

    def wait_gone(self, kind: str, name: str, timeout: float = 60.0) -> None:
        self.wait(
            f"{kind} {self.ns}/{name} gone",
            lambda: self.get_or_none(kind, name),
            lambda o: o is None,
            timeout,
        )

    def wait_event(self, name: str, reason: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        return self.wait(
            f"event {reason} on {self.ns}/{name}",
            lambda: self.events(name),
            lambda evs: any(e["reason"] == reason for e in evs),
            timeout,
        )

    # --- crib's own view ---

    def runtime(self) -> api_pb2_grpc.RuntimeServiceStub:
        return api_pb2_grpc.RuntimeServiceStub(grpc.insecure_channel(self.cluster.endpoint))

    def images(self) -> api_pb2_grpc.ImageServiceStub:
        return api_pb2_grpc.ImageServiceStub(grpc.insecure_channel(self.cluster.endpoint))

    def crib_sandbox(self, pod: dict[str, Any]) -> api_pb2.PodSandboxStatus:
        """crib's ready sandbox for a Kubernetes pod, found by the pod UID label the kubelet sets."""
        uid = pod_uid(pod)
        rt = self.runtime()
        flt = api_pb2.PodSandboxFilter(
            label_selector={"io.kubernetes.pod.uid": uid},
            state=api_pb2.PodSandboxStateValue(state=api_pb2.SANDBOX_READY),
        )
        items = rt.ListPodSandbox(api_pb2.ListPodSandboxRequest(filter=flt), timeout=10).items
        assert len(items) == 1, f"crib has {len(items)} ready sandboxes for pod uid {uid}"
        return rt.PodSandboxStatus(
            api_pb2.PodSandboxStatusRequest(pod_sandbox_id=items[0].id), timeout=10
        ).status

    def crib_containers(self, pod: dict[str, Any], name: str = "") -> list[api_pb2.Container]:
        labels = {"io.kubernetes.pod.uid": pod_uid(pod)}
        if name:
            labels["io.kubernetes.container.name"] = name
        flt = api_pb2.ContainerFilter(label_selector=labels)
        return list(
            self.runtime().ListContainers(api_pb2.ListContainersRequest(filter=flt), timeout=10).containers
        )


def pod_uid(pod: dict[str, Any]) -> str:
    """The UID the kubelet runs the pod under: a static pod's is its config hash, not its mirror's."""
    annotations = pod["metadata"].get("annotations", {})
    return annotations.get("kubernetes.io/config.mirror") or pod["metadata"]["uid"]


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def container_status(pod: dict[str, Any], name: str, init: bool = False) -> dict[str, Any]:
    key = "initContainerStatuses" if init else "containerStatuses"
    for s in pod["status"].get(key, []):
        if s["name"] == name:
            return s
    raise KeyError(name)


def restarts(pod: dict[str, Any], name: str) -> int:
    return container_status(pod, name)["restartCount"]


def pod_manifest(name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    """A pod labelled app=<name>, with a short grace period unless `spec` says otherwise."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": containers, "terminationGracePeriodSeconds": 2, **spec},
    }


def shell(name: str, script: str, image: str = "", **extra: Any) -> dict[str, Any]:
    """A container running `sh -c script` (busybox unless `image` says otherwise)."""
    return container(name, image or BUSYBOX, "-c", script, command=["sh"], **extra)


def container(name: str, image: str, *args: str, command: list[str] | None = None, **extra: Any):
    c: dict[str, Any] = {"name": name, "image": image, "imagePullPolicy": "IfNotPresent", **extra}
    if command is not None:
        c["command"] = command
    if args:
        c["args"] = list(args)
    return c
