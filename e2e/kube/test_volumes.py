"""Volumes the kubelet prepares and crib mounts into the container."""

from __future__ import annotations

import base64
from pathlib import Path

from e2e.kube.images import BUSYBOX, HUB_BUSYBOX
from e2e.kube.kube import Kube, container, pod_manifest


def _sh(kube: Kube, pod: str, script: str, c: str = "main") -> str:
    return kube.kubectl("exec", pod, "-c", c, "--", "sh", "-c", script).stdout


def _mounts(kube: Kube, pod: str) -> dict[str, tuple[str, str]]:
    """mount point -> (fstype, options) as the container sees them."""
    table = {}
    for line in _sh(kube, pod, "cat /proc/mounts").splitlines():
        _, point, fstype, opts, *_ = line.split()
        table[point] = (fstype, opts)
    return table


def test_kubelet_volumes_are_mounted(kube: Kube, tmp_path: Path) -> None:
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    (host_dir / "from-host").write_text("host data\n")
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cm"},
            "data": {"greeting": "hello\n", "nested": "sub\n"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "sec"},
            "data": {"password": base64.b64encode(b"s3cret").decode()},
        },
    )
    mounts = [
        {"name": "disk", "mountPath": "/disk"},
        {"name": "mem", "mountPath": "/mem"},
        {"name": "cm", "mountPath": "/cm"},
        {"name": "sec", "mountPath": "/sec"},
        {"name": "down", "mountPath": "/down"},
        {"name": "host", "mountPath": "/host"},
        {"name": "cm", "mountPath": "/one/file", "subPath": "nested"},
        {"name": "disk", "mountPath": "/sub", "subPath": "deeper/dir"},
    ]
    kube.apply(
        pod_manifest(
            "vols",
            [container("main", BUSYBOX, "3600", command=["sleep"], volumeMounts=mounts)],
            volumes=[
                {"name": "disk", "emptyDir": {}},
                {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                {"name": "cm", "configMap": {"name": "cm"}},
                {"name": "sec", "secret": {"secretName": "sec", "defaultMode": 0o400}},
                {
                    "name": "down",
                    "downwardAPI": {
                        "items": [
                            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                            {
                                "path": "mem_limit",
                                "resourceFieldRef": {"containerName": "main", "resource": "limits.memory"},
                            },
                        ]
                    },
                },
                {"name": "host", "hostPath": {"path": str(host_dir), "type": "Directory"}},
            ],
        )
    )
    kube.wait_ready("vols")
    mounts_seen = _mounts(kube, "vols")
    assert mounts_seen["/mem"][0] == "tmpfs"
    assert mounts_seen["/disk"][0] != "tmpfs"
    assert _sh(kube, "vols", "cat /cm/greeting /one/file") == "hello\nsub\n"
    assert _sh(kube, "vols", "cat /sec/password; echo; stat -L -c %a /sec/password") == "s3cret\n400\n"
    assert _sh(kube, "vols", "cat /down/name") == "vols"
    assert 'app="vols"' in _sh(kube, "vols", "cat /down/labels")
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    token = _sh(kube, "vols", f"cat {sa}/token")
    assert token.count(".") == 2, "a JWT"
    assert _sh(kube, "vols", f"cat {sa}/namespace") == kube.ns
    assert "BEGIN CERTIFICATE" in _sh(kube, "vols", f"cat {sa}/ca.crt")
    # hostPath: both directions.
    assert _sh(kube, "vols", "cat /host/from-host; echo from-pod > /host/from-pod") == "host data\n"
    assert (host_dir / "from-pod").read_text() == "from-pod\n"
    # subPath of an emptyDir: the kubelet made the directory and the same bytes show in both places.
    _sh(kube, "vols", "echo via-sub > /sub/f")
    assert _sh(kube, "vols", "cat /disk/deeper/dir/f") == "via-sub\n"
    # A memory-backed emptyDir keeps its size limit.
    out = kube.kubectl(
        "exec", "vols", "--", "sh", "-c", "dd if=/dev/zero of=/mem/big bs=1M count=32 2>&1", check=False
    )
    assert out.returncode != 0 and "No space left" in out.stdout + out.stderr


def test_env_from_config_maps_and_secrets_reaches_the_process(kube: Kube) -> None:
    # Keys such as "data-1" are not shell names: busybox 1.35's ash drops them from its
    # children's environment, so the process that shows them is cat, run without a shell.
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "envcm"},
            "data": {"data-1": "value-1"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "envsec"},
            "data": {"data-2": base64.b64encode(b"value-2").decode()},
        },
    )
    kube.apply(
        pod_manifest(
            "envfrom",
            [
                container(
                    "main",
                    BUSYBOX,
                    "/proc/self/environ",
                    command=["cat"],
                    envFrom=[
                        {"configMapRef": {"name": "envcm"}},
                        {"prefix": "p-", "configMapRef": {"name": "envcm"}},
                        {"secretRef": {"name": "envsec"}},
                    ],
                    env=[{"name": "PLAIN", "value": "a b=c"}],
                )
            ],
            restartPolicy="Never",
        )
    )
    kube.wait_phase("envfrom", "Succeeded", 60)
    environ = kube.kubectl("logs", "envfrom").stdout.split("\0")
    for pair in ("data-1=value-1", "p-data-1=value-1", "data-2=value-2", "PLAIN=a b=c"):
        assert pair in environ, environ


def test_an_image_volume_is_mounted_read_only(kube: Kube) -> None:
    # ImageVolume is GA in 1.36: the kubelet pulls the image and sends Mount.image.
    mounts = [
        {"name": "img", "mountPath": "/img"},
        {"name": "img", "mountPath": "/imgbin", "subPath": "bin"},
    ]
    kube.apply(
        pod_manifest(
            "imgvol",
            [container("main", BUSYBOX, "3600", command=["sleep"], volumeMounts=mounts)],
            volumes=[{"name": "img", "image": {"reference": HUB_BUSYBOX, "pullPolicy": "IfNotPresent"}}],
        )
    )
    kube.wait_ready("imgvol", 120)
    assert _sh(kube, "imgvol", "ls /img/bin/busybox /imgbin/busybox").split() == [
        "/img/bin/busybox",
        "/imgbin/busybox",
    ]
    out = kube.kubectl("exec", "imgvol", "--", "touch", "/img/x", check=False)
    assert out.returncode != 0 and "Read-only file system" in out.stdout + out.stderr
    assert _mounts(kube, "imgvol")["/img"][1].split(",")[0] == "ro"
