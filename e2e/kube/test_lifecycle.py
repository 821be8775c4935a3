"""A pod's life under a real kubelet: Running and Ready, crib's IDs, graceful deletion, static pods."""

from __future__ import annotations

import time
from pathlib import Path

import grpc

from crib.proto.cri import api_pb2
from e2e.kube.cluster import NODE_NAME, Cluster
from e2e.kube.images import AGNHOST, BUSYBOX, HUB_BUSYBOX
from e2e.kube.kube import Kube, container, container_status, is_ready, pod_manifest, shell


def test_pod_runs_with_crib_ids_and_the_sandbox_ip(kube: Kube) -> None:
    kube.apply(
        pod_manifest(
            "web",
            [
                container(
                    "web",
                    AGNHOST,
                    "netexec",
                    "--http-port=8080",
                    readinessProbe={
                        "httpGet": {"path": "/hostname", "port": 8080},
                        "periodSeconds": 1,
                    },
                ),
                container("hub", HUB_BUSYBOX, command=["sleep", "3600"]),
            ],
        )
    )
    pod = kube.wait_ready("web")
    assert pod["status"]["phase"] == "Running"
    sandbox = kube.crib_sandbox(pod)
    assert pod["status"]["podIP"] == sandbox.network.ip
    assert sandbox.metadata.name == "web" and sandbox.metadata.namespace == kube.ns
    for name in ("web", "hub"):
        status = container_status(pod, name)
        assert status["containerID"].startswith("crib://")
        (crib_container,) = kube.crib_containers(pod, name)
        assert status["containerID"] == f"crib://{crib_container.id}"
        assert status["imageID"], status
        assert status["state"]["running"]["startedAt"]
        crib_status = (
            kube.runtime()
            .ContainerStatus(api_pb2.ContainerStatusRequest(container_id=crib_container.id), timeout=10)
            .status
        )
        # The kubelet shows crib's image_ref as the imageID.
        assert status["imageID"] == crib_status.image_ref
    # The pod answers on its IP, from the host, as the kubelet's HTTP probe just did.
    out = kube.kubectl("exec", "web", "-c", "web", "--", "hostname").stdout.strip()
    assert out == "web"
    node = kube.cluster.node()
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("crib://")


def test_deletion_runs_prestop_then_sigterm_then_sigkill_after_the_grace_period(
    kube: Kube, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    grace = 3
    script = (
        "trap 'echo term >> /out/log' TERM; echo started >> /out/log; "
        "while true; do sleep 0.1; done; echo exited >> /out/log"
    )
    kube.apply(
        pod_manifest(
            "stubborn",
            [
                shell(
                    "main",
                    script,
                    volumeMounts=[{"name": "out", "mountPath": "/out"}],
                    lifecycle={"preStop": {"exec": {"command": ["sh", "-c", "echo prestop >> /out/log"]}}},
                )
            ],
            volumes=[{"name": "out", "hostPath": {"path": str(out)}}],
            terminationGracePeriodSeconds=grace,
        )
    )
    pod = kube.wait_ready("stubborn")
    (crib_container,) = kube.crib_containers(pod, "main")
    t0 = time.monotonic()
    kube.kubectl("delete", "pod", "stubborn", "--wait=true", "--timeout=60s")
    took = time.monotonic() - t0
    # SIGTERM was trapped and ignored, so only SIGKILL at the end of the grace period ends it.
    assert (out / "log").read_text().split() == ["started", "prestop", "term"]
    assert took >= grace, f"the pod was gone after {took:.1f}s, before its {grace}s grace period"
    try:
        status = (
            kube.runtime()
            .ContainerStatus(api_pb2.ContainerStatusRequest(container_id=crib_container.id), timeout=10)
            .status
        )
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND
    else:
        assert status.state == api_pb2.CONTAINER_EXITED
        assert status.exit_code == 137


def test_static_pod_from_the_manifest_dir_runs_and_goes_away(cluster: Cluster, kube: Kube) -> None:
    manifest = cluster.manifests / f"static-{kube.ns}.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata:\n"
        f"  name: static\n  namespace: {kube.ns}\n"
        "spec:\n  terminationGracePeriodSeconds: 1\n  containers:\n"
        f"  - name: main\n    image: {BUSYBOX}\n    command: [sleep, '3600']\n"
    )
    mirror = f"static-{NODE_NAME}"
    try:
        pod = kube.wait_pod(mirror, is_ready, "mirror pod Ready")
        assert pod["metadata"]["annotations"]["kubernetes.io/config.source"] == "file"
        assert container_status(pod, "main")["containerID"].startswith("crib://")
        assert kube.crib_sandbox(pod).metadata.name == mirror
    finally:
        manifest.unlink()
    kube.wait_gone("pods", mirror)


def test_a_field_crib_cannot_apply_gets_an_event_naming_it(kube: Kube) -> None:
    # An SELinux label on a node without SELinux: crib refuses the sandbox, and the kubelet
    # shows crib's reason on the pod instead of starting it unlabelled.
    kube.apply(
        pod_manifest(
            "labelled",
            [container("main", BUSYBOX, command=["sleep", "3600"])],
            securityContext={"seLinuxOptions": {"level": "s0:c1,c2"}},
        )
    )
    events = kube.wait(
        "a warning naming selinux_options",
        lambda: kube.events("labelled"),
        lambda evs: any(e["type"] == "Warning" and "selinux_options" in e["message"] for e in evs),
    )
    failed = [e for e in events if e["type"] == "Warning" and "selinux_options" in e["message"]]
    assert failed[0]["reason"] == "FailedCreatePodSandBox", failed
    assert not is_ready(kube.pod("labelled"))
