"""kubeadm brings up a control plane whose pods run on crib (issue 16, the kubeadm path).

One `kubeadm init` for the module (e2e/kube/kubeadm.py): etcd, kube-apiserver,
kube-controller-manager and kube-scheduler as static pods on crib from the images
deploy/kind/control-plane-images.sh makes, kube-proxy and CoreDNS as kubeadm's addon
phases install them, deploy/cni's bridge conflist as the CNI. The last test runs
`kubeadm reset` and checks that nothing is left.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crib.proto.cri import api_pb2
from e2e.kube.cluster import NODE_NAME
from e2e.kube.control_plane_images import build_binaries, kubeadm_images
from e2e.kube.images import AGNHOST, BUSYBOX
from e2e.kube.kube import Kube, container, is_ready, pod_manifest, shell
from e2e.kube.kubeadm import KubeadmCluster

CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
# kubeadm init (images built and loaded, static pods, add-ons) takes 2-4 minutes here.
UP_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def kubeadm_cluster(request: pytest.FixtureRequest) -> Iterator[KubeadmCluster]:
    # kubeadm's paths are fixed: the shared cluster of the other tests must not be up.
    assert not getattr(request.config, "_crib_kube_cluster_up", False), (
        "the e2e/kube cluster is up; the kubeadm tests must run before it (see conftest.py)"
    )
    c = KubeadmCluster(Path(tempfile.mkdtemp(prefix="crib-kubeadm-")), build_binaries())
    yield c.up_or_down()
    report = c.down()
    keys = ("reset_failed", "crib_forced", "cgroups_with_processes", "sysctls_not_restored")
    leaks = {k: report[k] for k in keys if report.get(k)}
    assert not leaks, f"the kubeadm cluster left these behind: {leaks}"


@pytest.fixture
def kube(kubeadm_cluster: KubeadmCluster, request: pytest.FixtureRequest) -> Iterator[Kube]:
    request.node._kube_cluster = kubeadm_cluster
    ns = f"kubeadm-{int(time.time() * 1000) % 10**8}"
    k = Kube(kubeadm_cluster, ns)
    k.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    kubeadm_cluster.wait_service_account(ns)
    yield k
    k.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s", check=False)
    k.close()


@pytest.mark.timeout(UP_TIMEOUT_S)
def test_control_plane_runs_as_static_pods_on_crib(kube: Kube) -> None:
    c: KubeadmCluster = kube.cluster  # type: ignore[assignment]
    system = Kube(c, "kube-system")
    images = set(kubeadm_images(c.bin))
    # All of them loaded into crib from deploy/kind/control-plane-images.sh's archives.
    loaded = kube.images().ListImages(api_pb2.ListImagesRequest(), timeout=30).images
    assert images <= {tag for image in loaded for tag in image.repo_tags}
    for name in CONTROL_PLANE:
        pod = system.wait_ready(f"{name}-{NODE_NAME}", timeout=60)
        # A mirror pod: the kubelet runs it from /etc/kubernetes/manifests, not the API.
        assert "kubernetes.io/config.mirror" in pod["metadata"]["annotations"], name
        (image,) = {s["image"] for s in pod["spec"]["containers"]}
        assert image in images, f"{name} runs {image}, not one of kubeadm's {sorted(images)}"
        sandbox = system.crib_sandbox(pod)
        assert sandbox.metadata.name == pod["metadata"]["name"]
        (ctr,) = system.crib_containers(pod, name)
        assert ctr.state == api_pb2.CONTAINER_RUNNING, ctr
    system.close()
    node = c.node()
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("crib://")
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.36.3"


def test_addons_run_on_crib(kube: Kube) -> None:
    c: KubeadmCluster = kube.cluster  # type: ignore[assignment]
    system = Kube(c, "kube-system")
    pods = system.http.get("/api/v1/namespaces/kube-system/pods").json()["items"]
    by_app = {}
    for p in pods:
        app = p["metadata"].get("labels", {}).get("k8s-app")
        if app in ("kube-proxy", "kube-dns"):
            by_app.setdefault(app, []).append(p)
    assert len(by_app.get("kube-proxy", [])) == 1, by_app.keys()
    assert len(by_app.get("kube-dns", [])) == 2, "kubeadm's CoreDNS Deployment has two replicas"
    for p in by_app["kube-proxy"] + by_app["kube-dns"]:
        assert is_ready(p), p["metadata"]["name"]
        assert system.crib_containers(p), f"crib runs no container for {p['metadata']['name']}"
    # kube-proxy runs in iptables mode through the image's iptables-nft.
    logs = system.kubectl("logs", by_app["kube-proxy"][0]["metadata"]["name"]).stdout
    assert "Using iptables Proxier" in logs, logs[-2000:]
    system.close()


def test_service_name_resolves_through_coredns_and_cluster_ip_reaches_backend(kube: Kube) -> None:
    kube.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [container("web", AGNHOST, "netexec", "--http-port=8080")],
                        "terminationGracePeriodSeconds": 2,
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
        pod_manifest("client", [shell("client", "sleep 3600", image=BUSYBOX)]),
    )
    kube.wait_ready("client", timeout=90)
    kube.wait(
        "deployment web available",
        lambda: kube.get("deployments", "web"),
        lambda d: d["status"].get("availableReplicas") == 1,
        timeout=90,
    )
    backend = kube.http.get(f"/api/v1/namespaces/{kube.ns}/pods", params={"labelSelector": "app=web"}).json()
    (web_pod,) = backend["items"]
    web_name = web_pod["metadata"]["name"]
    cluster_ip = kube.get("services", "web")["spec"]["clusterIP"]
    fqdn = f"web.{kube.ns}.svc.cluster.local"

    def in_client(script: str) -> str:
        return kube.kubectl("exec", "client", "--", "sh", "-c", script, timeout=60).stdout

    # The pod's resolv.conf points at kube-dns's ClusterIP (CoreDNS behind kube-proxy).
    resolv = in_client("cat /etc/resolv.conf")
    assert "nameserver 10.96.0.10" in resolv, resolv
    assert f"search {kube.ns}.svc.cluster.local" in resolv, resolv
    lookup = kube.wait(
        f"{fqdn} resolved by CoreDNS",
        lambda: in_client(f"nslookup {fqdn} 10.96.0.10 || true"),
        lambda out: cluster_ip in out,
        timeout=60,
    )
    assert cluster_ip in lookup
    # By the short name (the search path) and by the ClusterIP: kube-proxy's DNAT to the pod.
    # (Debian's busybox wget crashes on -T, so `timeout` bounds it.)
    by_name = kube.wait(
        "web/hostname through the Service name",
        lambda: in_client("timeout 5 wget -q -O - http://web/hostname || true"),
        lambda out: out.strip() == web_name,
        timeout=60,
    )
    assert by_name.strip() == web_name
    assert in_client(f"timeout 5 wget -q -O - http://{cluster_ip}/hostname").strip() == web_name


def test_kubeadm_reset_leaves_nothing_behind(kubeadm_cluster: KubeadmCluster) -> None:
    c = kubeadm_cluster
    proc = c.reset()
    assert proc.returncode == 0, c.log_tail("kubeadm-reset", 60)
    # reset removed every pod through crib's socket; its mounts, netns and kube-proxy's
    # rules (after `kube-proxy --cleanup`) are gone.
    left = c.reset_leftovers()
    assert not left, f"left after kubeadm reset: {left}"
