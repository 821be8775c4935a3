"""The kubelet's probes against crib's containers: exec (ExecSync), HTTP, TCP and gRPC."""

from __future__ import annotations

from typing import Any

import pytest

from e2e.kube.images import AGNHOST, BUSYBOX
from e2e.kube.kube import Kube, container, container_status, is_ready, pod_manifest, restarts, shell

FAST = {"periodSeconds": 1, "failureThreshold": 1, "timeoutSeconds": 1}


def _restarted(kube: Kube, name: str, timeout: float = 90.0) -> dict[str, Any]:
    """Wait for the kubelet to restart container `main` after a failed liveness probe."""
    pod = kube.wait_pod(
        name,
        lambda p: restarts(p, "main") >= 1 and "terminated" in container_status(p, "main")["lastState"],
        "a restart with lastState.terminated",
        timeout,
    )
    last = container_status(pod, "main")["lastState"]["terminated"]
    assert last["containerID"].startswith("crib://")
    assert last["finishedAt"] >= last["startedAt"]
    return pod


LIVENESS_CASES = {
    # Each container passes its probe for a moment, then fails it for good.
    "exec": (
        shell(
            "main",
            "touch /tmp/healthy; sleep 2; rm /tmp/healthy; sleep 3600",
            livenessProbe={"exec": {"command": ["cat", "/tmp/healthy"]}, **FAST},
        ),
    ),
    "http": (
        shell(
            "main",
            "mkdir /www; echo ok > /www/healthz; httpd -p 8080 -h /www; sleep 2; rm /www/healthz; sleep 3600",
            livenessProbe={"httpGet": {"path": "/healthz", "port": 8080}, **FAST},
        ),
    ),
    "tcp": (
        shell(
            "main",
            "timeout 2 httpd -f -p 9000; sleep 3600",
            livenessProbe={"tcpSocket": {"port": 9000}, **FAST},
        ),
    ),
    "grpc": (
        container(
            "main",
            AGNHOST,
            "grpc-health-checking",
            "--port=5000",
            "--delay-unhealthy-sec=2",
            livenessProbe={"grpc": {"port": 5000}, **FAST},
        ),
    ),
}


@pytest.mark.parametrize("kind", sorted(LIVENESS_CASES))
def test_failing_liveness_probe_restarts_the_container(kube: Kube, kind: str) -> None:
    name = f"live-{kind}"
    kube.apply(pod_manifest(name, list(LIVENESS_CASES[kind])))
    pod = _restarted(kube, name)
    assert "Unhealthy" in kube.event_reasons(name)
    killing = [e["message"] for e in kube.events(name) if e["reason"] == "Killing"]
    assert any("failed liveness probe" in m for m in killing), killing
    assert pod["status"]["phase"] == "Running"


def test_readiness_probe_flips_ready(kube: Kube) -> None:
    probe = {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1, "failureThreshold": 1}
    kube.apply(
        pod_manifest("ready", [container("main", BUSYBOX, "3600", command=["sleep"], readinessProbe=probe)])
    )
    kube.wait_phase("ready", "Running")
    assert not is_ready(kube.pod("ready"))
    kube.kubectl("exec", "ready", "--", "touch", "/tmp/ready")
    kube.wait_ready("ready", timeout=30)
    kube.kubectl("exec", "ready", "--", "rm", "/tmp/ready")
    pod = kube.wait_pod("ready", lambda p: not is_ready(p), "not Ready again", 30)
    assert restarts(pod, "main") == 0


def test_startup_probe_holds_back_liveness_until_it_succeeds(kube: Kube) -> None:
    kube.apply(
        pod_manifest(
            "startup",
            [
                container(
                    "main",
                    BUSYBOX,
                    "3600",
                    command=["sleep"],
                    startupProbe={
                        "exec": {"command": ["cat", "/tmp/started"]},
                        "periodSeconds": 1,
                        "failureThreshold": 600,
                    },
                    # Fails from the start: only the startup probe keeps it from restarting the container.
                    livenessProbe={"exec": {"command": ["cat", "/tmp/alive"]}, **FAST},
                )
            ],
        )
    )
    pod = kube.wait_phase("startup", "Running")
    # Several liveness periods pass with no restart while the startup probe has not succeeded.
    kube.wait(
        "five startup probe failures",
        lambda: kube.events("startup"),
        lambda evs: sum(e.get("count", 1) for e in evs if "Startup probe failed" in e["message"]) >= 5,
        30,
    )
    pod = kube.pod("startup")
    assert restarts(pod, "main") == 0
    assert container_status(pod, "main")["started"] is False
    kube.kubectl("exec", "startup", "--", "touch", "/tmp/started")
    kube.wait_pod("startup", lambda p: container_status(p, "main")["started"] is True, "started", 30)
    # Now the liveness probe counts, and it fails.
    _restarted(kube, "startup", 60)


def test_exec_probe_that_outlives_its_timeout_is_a_timeout_not_an_error(kube: Kube) -> None:
    probe = {
        "exec": {"command": ["sleep", "10"]},
        "timeoutSeconds": 1,
        "periodSeconds": 2,
        "failureThreshold": 1,
    }
    kube.apply(
        pod_manifest(
            "slowprobe", [container("main", BUSYBOX, "3600", command=["sleep"], readinessProbe=probe)]
        )
    )
    events = kube.wait(
        "an Unhealthy event for the readiness probe",
        lambda: kube.events("slowprobe"),
        lambda evs: any(e["reason"] == "Unhealthy" for e in evs),
        60,
    )
    messages = [e["message"] for e in events if e["reason"] == "Unhealthy"]
    # The kubelet says "timed out" only when ExecSync answers DeadlineExceeded; any other
    # error would read "Readiness probe errored".
    assert any("Readiness probe failed" in m and "timed out" in m for m in messages), messages
    assert not any("errored" in m for m in messages), messages
    pod = kube.pod("slowprobe")
    assert not is_ready(pod)
    assert restarts(pod, "main") == 0
