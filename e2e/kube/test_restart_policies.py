"""Restart policies, CrashLoopBackOff, Jobs, init containers and sidecars under the kubelet, on crib."""

from __future__ import annotations

from e2e.kube.images import BUSYBOX
from e2e.kube.kube import Kube, container, container_status, pod_manifest, restarts, shell


def test_always_restarts_a_container_that_exits_zero_and_backs_off(kube: Kube) -> None:
    # Kubelet 1.36 requeues a crash-looping pod at its backoff expiry, so the
    # CrashLoopBackOff waiting state lives only for the sync that restarts the
    # container; a poll cannot count on seeing it. The BackOff event, which the
    # kubelet records each time it refuses a restart, is the dependable sign.
    kube.apply(pod_manifest("always", [shell("main", "echo run; exit 0")]))
    pod = kube.wait_pod(
        "always",
        lambda p: restarts(p, "main") >= 2 and "BackOff" in kube.event_reasons("always"),
        "two restarts and a BackOff event",
        120,
    )
    status = container_status(pod, "main")
    last = status["lastState"]["terminated"]
    assert last["exitCode"] == 0 and last["reason"] == "Completed"
    assert pod["status"]["phase"] == "Running"


def test_on_failure_restarts_failures_until_success(kube: Kube) -> None:
    # Fails on the first run and succeeds on the second: the count survives in an emptyDir.
    script = "n=$(cat /state/n 2>/dev/null || echo 0); echo $((n+1)) > /state/n; [ $n -ge 1 ]"
    kube.apply(
        pod_manifest(
            "onfailure",
            [
                shell(
                    "main",
                    script,
                    volumeMounts=[{"name": "state", "mountPath": "/state"}],
                )
            ],
            restartPolicy="OnFailure",
            volumes=[{"name": "state", "emptyDir": {}}],
        )
    )
    pod = kube.wait_phase("onfailure", "Succeeded", 120)
    status = container_status(pod, "main")
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert status["state"]["terminated"]["exitCode"] == 0


def test_never_leaves_a_failed_container_failed(kube: Kube) -> None:
    kube.apply(pod_manifest("never", [shell("main", "exit 3")], restartPolicy="Never"))
    pod = kube.wait_phase("never", "Failed", 60)
    status = container_status(pod, "main")
    assert status["restartCount"] == 0
    assert status["state"]["terminated"]["exitCode"] == 3
    assert status["state"]["terminated"]["reason"] == "Error"


def test_job_runs_to_completion(kube: Kube) -> None:
    kube.apply(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "count"},
            "spec": {
                "completions": 2,
                "backoffLimit": 0,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [shell("main", "echo counted")],
                    }
                },
            },
        }
    )
    job = kube.wait(
        "job count complete",
        lambda: kube.get("jobs", "count"),
        lambda j: j["status"].get("succeeded", 0) == 2,
        120,
    )
    assert any(c["type"] == "Complete" and c["status"] == "True" for c in job["status"]["conditions"])
    logs = kube.kubectl("logs", "-l", "job-name=count", "--prefix=false").stdout.split()
    assert logs == ["counted", "counted"]


def test_init_containers_run_in_order_before_the_main_container(kube: Kube) -> None:
    mounts = [{"name": "work", "mountPath": "/work"}]
    kube.apply(
        pod_manifest(
            "inits",
            [shell("main", "cat /work/order; sleep 3600", volumeMounts=mounts)],
            initContainers=[
                shell(
                    f"init{i}",
                    f"echo init{i} >> /work/order",
                    volumeMounts=mounts,
                )
                for i in (1, 2, 3)
            ],
            volumes=[{"name": "work", "emptyDir": {}}],
        )
    )
    pod = kube.wait_ready("inits")
    for i in (1, 2, 3):
        done = container_status(pod, f"init{i}", init=True)["state"]["terminated"]
        assert done["exitCode"] == 0 and done["reason"] == "Completed"
    ends = [
        container_status(pod, f"init{i}", init=True)["state"]["terminated"]["finishedAt"] for i in (1, 2, 3)
    ]
    assert ends == sorted(ends)

    def main_log() -> list[str]:
        return kube.kubectl("logs", "inits").stdout.split()

    kube.wait("main's log", main_log, lambda out: out == ["init1", "init2", "init3"], 30)


def test_restartable_init_container_keeps_running_beside_the_main_container(kube: Kube) -> None:
    kube.apply(
        pod_manifest(
            "sidecar",
            [container("main", BUSYBOX, "3600", command=["sleep"])],
            initContainers=[
                shell(
                    "side",
                    "echo up; while [ ! -f /tmp/die ]; do sleep 0.2; done",
                    restartPolicy="Always",
                    startupProbe={"exec": {"command": ["true"]}, "periodSeconds": 1},
                ),
            ],
        )
    )
    pod = kube.wait_ready("sidecar")
    side = container_status(pod, "side", init=True)
    assert "running" in side["state"] and side["started"] is True
    assert "running" in container_status(pod, "main")["state"]
    assert len(kube.crib_containers(pod)) == 2
    # The sidecar restarts on its own when it dies, while the main container keeps running.
    kube.kubectl("exec", "sidecar", "-c", "side", "--", "touch", "/tmp/die")
    pod = kube.wait_pod(
        "sidecar",
        lambda p: (
            container_status(p, "side", init=True)["restartCount"] >= 1
            and "running" in container_status(p, "side", init=True)["state"]
        ),
        "the sidecar restarted",
        60,
    )
    assert restarts(pod, "main") == 0
    # The pod is not Ready while its sidecar restarts, and Ready again once it has started.
    kube.wait_ready("sidecar", timeout=30)
