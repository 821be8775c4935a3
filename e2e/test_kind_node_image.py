"""The kind node image (deploy/kind/build-node-image.sh) checked against kind's node-image contract.

No Docker engine runs here, so `kind create cluster` cannot; instead each thing
kind needs of a node image is listed below with where kind's source requires it
(paths in the Go module sigs.k8s.io/kind at the version build-node-image.sh pins,
read here from go's module cache) and where crib's image meets it, and each is
checked on the built archive: its image config, the files of its one layer
(extracted here), kind's node files as kind ships them but for crib's edits, the
systemd units it enables, kubeadm validating the config
kind would write with deploy/kind/cluster.yaml's patches, and a cribd serving
the node's image store. Then test_node_boots_on_crib runs the image as kind's
docker provider runs a node, on crib: `cribctl load`, a privileged container of
its own PID namespace, kind's entrypoint, systemd up to multi-user, cribd.service
serving the preloaded images inside, and a clean halt on SIGRTMIN+3.

The image is built with test images (busybox, under the names `kubeadm config
images list` prints) in its crib store; CRIB_KIND_IMAGES=DIR builds it with the
archives in DIR instead (the real control-plane images). Builds are cached by
their inputs in /var/cache/crib/kind, so only a change to crib, deploy/kind or
the images rebuilds it (2 to 6 min cold, 1 to 2.5 min with the Debian root cached).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from crib.proto.cri import api_pb2
from e2e import pods
from e2e.harness.cribd import REPO_ROOT, Cribd
from e2e.harness.kind_node import BUILD, NodeImage, kind_module
from e2e.harness.machine import machine_state
from e2e.harness.network import PodNetwork
from e2e.harness.wait import wait_until
from e2e.images import archives, builder

KUBE_VERSION = os.environ.get("KUBE_VERSION", "v1.36.3")
KUBE_BIN = Path(os.environ.get("CRIB_KUBE_CACHE", "/var/cache/crib/kube")) / KUBE_VERSION / "bin"
CLUSTER_YAML = REPO_ROOT / "deploy/kind/cluster.yaml"
TAG = f"crib.local/kind-node:{KUBE_VERSION}"
CRIB_SOCKET = "unix:///run/crib/crib.sock"
BUILD_TIMEOUT_S = 1800

# One worker should run them all (one build and extraction, a module fixture). Where
# xdist does not group them (pytest 9 with xdist 3.8 here spreads even grouped tests),
# each worker extracts its own copy and the build script's lock makes the second wait
# for the first build and copy its result.
pytestmark = [pytest.mark.timeout(BUILD_TIMEOUT_S + 300), pytest.mark.xdist_group("kind-node-image")]


def _kubeadm_images() -> list[str]:
    out = subprocess.run(
        [str(KUBE_BIN / "kubeadm"), "config", "images", "list", "--kubernetes-version", KUBE_VERSION],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    # crib's pods need no pause image (catatonit under runc), as kind's node image
    # builder drops kubeadm's pause for containerd's own sandbox image (buildcontext.go).
    return [i for i in out if "/pause:" not in i]


def _test_images(d: Path) -> list[str]:
    """Busybox images under the control-plane images' names, one docker-save archive each."""
    refs = _kubeadm_images()
    for ref in refs:
        name = ref.rsplit("/", 1)[1].split(":")[0]
        image = builder.busybox_image(labels={"crib.test/kind-node-image": ref})
        archives.docker_save_tar([(image, [ref])], d / f"{name}.tar")
    return refs


def _archive_refs(d: Path) -> list[str]:
    refs = []
    for a in sorted(d.glob("*.tar")):
        with tarfile.open(a) as t:
            member = t.extractfile("manifest.json")
            assert member is not None
            refs += [tag for entry in json.load(member) for tag in entry.get("RepoTags") or []]
    return refs


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeImage]:
    work = tmp_path_factory.mktemp("kind-node")
    try:
        if os.environ.get("CRIB_KIND_IMAGES"):
            images_dir = Path(os.environ["CRIB_KIND_IMAGES"])
            refs = _archive_refs(images_dir)
        else:
            images_dir = work / "images"
            images_dir.mkdir()
            refs = _test_images(images_dir)
        archive = work / "node-image.tar"
        env = dict(os.environ, CRIB_PYTHON=sys.executable, KUBE_VERSION=KUBE_VERSION)
        build = subprocess.run(
            [str(BUILD), "--images", str(images_dir), "--tag", TAG, str(archive)],
            capture_output=True,
            text=True,
            env=env,
            timeout=BUILD_TIMEOUT_S,
        )
        assert build.returncode == 0, f"build failed:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}"
        yield NodeImage.extract(archive, work, refs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---- the checks -----------------------------------------------------------------------------------


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with p.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def check_archive_shape(n: NodeImage, _: Callable[..., Cribd]) -> None:
    # Every blob is what its name says; manifest.json (docker < 25, podman) and the
    # OCI index (docker >= 25, skopeo) name the same config and layer.
    for digest, p in n.blobs.items():
        assert _sha256(p) == digest, p
    assert len(n.docker_manifest) == 1
    entry = n.docker_manifest[0]
    assert entry["RepoTags"] == [TAG]
    config_digest = "sha256:" + Path(entry["Config"]).name
    layer_digest = "sha256:" + Path(entry["Layers"][0]).name
    assert n.config["rootfs"] == {"type": "layers", "diff_ids": [layer_digest]}
    assert (n.archive.parent / "archive/oci-layout").exists()
    [desc] = n.index["manifests"]
    assert desc["annotations"]["io.containerd.image.name"] == TAG
    oci = json.loads(n.blobs[desc["digest"]].read_text())
    assert oci["config"]["digest"] == config_digest
    assert [layer["digest"] for layer in oci["layers"]] == [layer_digest]
    name, tag = TAG.rsplit(":", 1)
    assert n.repositories == {name: {tag: config_digest.split(":")[1]}}
    assert (n.config["os"], n.config["architecture"]) == ("linux", "amd64")


def check_entrypoint(n: NodeImage, _: Callable[..., Cribd]) -> None:
    assert n.config["config"]["Entrypoint"] == ["/usr/local/bin/entrypoint", "/sbin/init"]
    entrypoint = n.path("/usr/local/bin/entrypoint")
    assert entrypoint.stat().st_mode & 0o111 == 0o111
    # kind's own script (check_kind_files: one line added), ending in exec of init.
    text = entrypoint.read_text()
    assert text.startswith("#!/bin/bash\n") and text.rstrip().endswith('exec "$@"')
    for step in ("fix_mount", "fix_cgroup", "fix_machine_id", "fix_product_uuid", "select_iptables"):
        assert f"\n{step}\n" in text, step
    assert n.resolve("/bin/bash").is_file()


# kind's node files the image takes from sigs.k8s.io/kind (images/base/files), with the
# edits build-node-image.sh makes to them (old text, new text); all others are kind's bytes.
KIND_FILES = {
    "usr/local/bin/entrypoint": 0o755,
    "kind/bin/create-kubelet-cgroup-v2.sh": 0o755,
    "kind/bin/undo-mount-hacks.sh": 0o755,
    "kind/README.txt": 0o644,
    "etc/default/kubelet": 0o644,
    "etc/sysctl.d/10-network-magic.conf": 0o644,
    "etc/sysctl.d/10-network-security.conf": 0o644,
    "etc/systemd/system/kubelet.service": 0o644,
    "etc/systemd/system/kubelet.slice": 0o644,
    "etc/systemd/system/kubelet.service.d/10-kubeadm.conf": 0o644,
    "etc/systemd/system/kubelet.service.d/11-kind.conf": 0o644,
    "etc/systemd/system/undo-mount-hacks.service": 0o644,
}
CRIB_EDITS = {
    "usr/local/bin/entrypoint": (
        "configure_containerd() {\n",
        "configure_containerd() {\n"
        "  [[ -f /etc/containerd/config.toml ]] || return 0 # crib: no containerd in this node\n",
    ),
    "etc/default/kubelet": ("/system.slice/containerd.service", "/system.slice/cribd.service"),
}


def check_kind_files(n: NodeImage, _: Callable[..., Cribd]) -> None:
    kind = kind_module() / "images/base/files"
    for f, mode in KIND_FILES.items():
        theirs = (kind / f).read_text()
        if f in CRIB_EDITS:
            old, new = CRIB_EDITS[f]
            assert theirs.count(old) == 1, f
            theirs = theirs.replace(old, new)
        assert n.text(f) == theirs, f
        assert n.path(f).stat().st_mode & 0o777 == mode, f
    # Nothing of containerd's: no config, units or hook.
    containerd = ("etc/containerd/config.toml", "etc/systemd/system/containerd.service")
    for f in (*containerd, "kind/bin/mount-product-files.sh"):
        assert not n.path(f).exists(), f
    assert n.text("LICENSES/sigs.k8s.io/kind/LICENSE") == (kind_module() / "LICENSE").read_text()


def check_systemd_init(n: NodeImage, _: Callable[..., Cribd]) -> None:
    init = n.path("/sbin/init")
    assert init.is_symlink() and os.readlink(init) == "/usr/lib/systemd/systemd"
    assert n.resolve("/sbin/init").is_file()
    assert n.resolve("/sbin/init").stat().st_mode & 0o111


def check_stop_signal(n: NodeImage, _: Callable[..., Cribd]) -> None:
    assert n.config["config"]["StopSignal"] == "SIGRTMIN+3"


def check_container_env(n: NodeImage, _: Callable[..., Cribd]) -> None:
    env = n.config["config"]["Env"]
    assert "container=docker" in env
    assert any(e.startswith("PATH=") and "/usr/local/bin" in e for e in env)


def check_kind_version(n: NodeImage, _: Callable[..., Cribd]) -> None:
    # nodeutils.KubeVersion: exactly one line, a semantic version kind parses.
    assert n.text("/kind/version").splitlines() == [KUBE_VERSION]


def check_kube_programs(n: NodeImage, _: Callable[..., Cribd]) -> None:
    for program in ("kubelet", "kubeadm", "kubectl"):
        p = n.path(f"/usr/bin/{program}")
        assert p.stat().st_mode & 0o111, program
        assert _sha256(p) == _sha256(KUBE_BIN / program), program
    assert n.run("/usr/bin/kubelet", "--version").stdout.strip() == f"Kubernetes {KUBE_VERSION}"
    assert n.run("/usr/bin/kubeadm", "version", "-o", "short").stdout.strip() == KUBE_VERSION


def check_kubelet_unit(n: NodeImage, _: Callable[..., Cribd]) -> None:
    assert n.enabled("kubelet.service")
    dropin = n.text("/etc/systemd/system/kubelet.service.d/10-kubeadm.conf")
    assert "ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS" in dropin
    assert "EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env" in dropin
    unit = n.unit("kubelet.service")
    assert unit.get("Unit", "ConditionPathExists") == "/var/lib/kubelet/config.yaml"
    assert unit.get("Service", "Slice") == "kubelet.slice"
    assert n.path("/etc/systemd/system/kubelet.slice").is_file()
    # The runtime's cgroup, for the kubelet's stats: cribd's, not containerd's.
    assert (
        n.text("/etc/default/kubelet").strip()
        == "KUBELET_EXTRA_ARGS=--runtime-cgroups=/system.slice/cribd.service"
    )
    assert not n.path("/etc/systemd/system/containerd.service").exists()


def check_cribd_before_kubelet(n: NodeImage, _: Callable[..., Cribd]) -> None:
    assert n.enabled("cribd.service")
    cribd = n.unit("cribd.service")
    kubelet = n.unit("kubelet.service")
    assert "kubelet.service" in cribd.words("Unit", "Before")
    assert "cribd.service" in kubelet.words("Unit", "After")
    assert "cribd.service" in kubelet.words("Unit", "Wants")
    assert cribd.get("Service", "ExecStart") == "/usr/local/bin/cribd"
    assert "/run/crib/crib.sock" in cribd.get("Service", "ExecStartPost")
    # undo-mount-hacks (kind's, with crib's drop-in) runs before the runtime and the kubelet.
    assert n.enabled("undo-mount-hacks.service")
    before = set(n.unit("undo-mount-hacks.service").words("Unit", "Before"))
    assert {"cribd.service", "kubelet.service"} <= before


def check_services_like_kind(n: NodeImage, _: Callable[..., Cribd]) -> None:
    wants = sorted(p.name for p in n.path("/etc/systemd/system/multi-user.target.wants").iterdir())
    assert wants == ["cribd.service", "kubelet.service", "undo-mount-hacks.service"]
    assert not list(n.path("/lib/systemd/system/multi-user.target.wants").iterdir())
    assert not n.path("/lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service").exists()
    binfmt = n.path("/etc/systemd/system/systemd-binfmt.service")
    assert binfmt.is_symlink() and os.readlink(binfmt) == "/dev/null"
    assert "ReadKMsg=no" in n.text("/etc/systemd/journald.conf").splitlines()
    assert n.path("/etc/kubernetes/manifests").is_dir()


def check_crib_installed(n: NodeImage, _: Callable[..., Cribd]) -> None:
    for program in ("cribd", "cribctl"):
        assert n.resolve(f"/usr/local/bin/{program}").is_file(), program
    version = n.run("/usr/local/bin/cribd", "--version")
    assert version.returncode == 0 and version.stdout.startswith("cribd "), version.stderr
    # Runtime packages only: no test tools in a node.
    venv = n.path("/opt/crib/.venv/lib")
    assert not list(venv.glob("python3*/site-packages/pytest")), "test extras installed"
    for program in ("runc", "conmon", "catatonit"):
        assert n.resolve(f"/usr/bin/{program}").is_file(), program
    assert n.resolve("/usr/lib/cni/bridge").is_file()
    toml = n.text("/etc/crib/crib.toml")
    assert 'cgroup_driver = "systemd"' in toml.splitlines()
    conflist = json.loads(n.text("/etc/cni/net.d/10-crib-bridge.conflist"))
    assert conflist["plugins"][0]["type"] == "bridge"


def check_crictl(n: NodeImage, _: Callable[..., Cribd]) -> None:
    crictl = n.path("/usr/local/bin/crictl")
    assert crictl.stat().st_mode & 0o111
    version = n.run("/usr/local/bin/crictl", "--version")
    assert version.returncode == 0 and version.stdout.startswith("crictl version "), version.stderr
    config = yaml.safe_load(n.text("/etc/crictl.yaml"))
    assert config == {"runtime-endpoint": CRIB_SOCKET, "image-endpoint": CRIB_SOCKET}


def _kind_kubeadm_config(patches: list[str]) -> list[dict[str, Any]]:
    """The kubeadm config kind writes for a 1.36 node (v1beta4 template, kubeadm/config.go), as far
    as crib's patches touch it, with the patches merged as kind merges them (by kind, maps merged)."""
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "kubeadm.k8s.io/v1beta4",
            "kind": "ClusterConfiguration",
            "kubernetesVersion": KUBE_VERSION,
            "clusterName": "kind",
            "controlPlaneEndpoint": "kind-control-plane:6443",
            "networking": {"podSubnet": "10.244.0.0/16", "serviceSubnet": "10.96.0.0/16"},
        },
        {
            "apiVersion": "kubeadm.k8s.io/v1beta4",
            "kind": "InitConfiguration",
            "bootstrapTokens": [{"token": "abcdef.0123456789abcdef"}],
            "localAPIEndpoint": {"advertiseAddress": "172.18.0.2", "bindPort": 6443},
            "nodeRegistration": {
                "criSocket": "unix:///run/containerd/containerd.sock",
                "kubeletExtraArgs": [{"name": "node-ip", "value": "172.18.0.2"}],
            },
        },
        {
            "apiVersion": "kubeadm.k8s.io/v1beta4",
            "kind": "JoinConfiguration",
            "nodeRegistration": {"criSocket": "unix:///run/containerd/containerd.sock"},
            "discovery": {
                "bootstrapToken": {
                    "apiServerEndpoint": "kind-control-plane:6443",
                    "token": "abcdef.0123456789abcdef",
                    "unsafeSkipCAVerification": True,
                }
            },
        },
        {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "cgroupDriver": "systemd",
            "cgroupRoot": "/kubelet",
            "failSwapOn": False,
        },
    ]

    def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
        for k, v in patch.items():
            if isinstance(v, dict) and isinstance(target.get(k), dict):
                merge(target[k], v)
            else:
                target[k] = v

    for raw in patches:
        patch = yaml.safe_load(raw)
        matched = [d for d in docs if d["kind"] == patch["kind"]]
        assert matched, f"patch for {patch['kind']} matches nothing kind writes"
        for d in matched:
            merge(d, {k: v for k, v in patch.items() if k not in ("kind", "apiVersion")})
    return docs


def check_cri_socket(n: NodeImage, _: Callable[..., Cribd]) -> None:
    cluster = yaml.safe_load(CLUSTER_YAML.read_text())
    docs = _kind_kubeadm_config(cluster["kubeadmConfigPatches"])
    by_kind = {d["kind"]: d for d in docs}
    assert by_kind["InitConfiguration"]["nodeRegistration"]["criSocket"] == CRIB_SOCKET
    assert by_kind["JoinConfiguration"]["nodeRegistration"]["criSocket"] == CRIB_SOCKET
    assert by_kind["KubeletConfiguration"]["containerRuntimeEndpoint"] == CRIB_SOCKET
    # The image's own kubeadm accepts the config kind would write (strict field checks).
    conf = n.rootfs / "tmp/kubeadm.conf"
    conf.write_text(yaml.safe_dump_all(docs))
    try:
        validate = n.run("/usr/bin/kubeadm", "config", "validate", "--config", "/tmp/kubeadm.conf")
    finally:
        conf.unlink()
    assert validate.returncode == 0, validate.stdout + validate.stderr
    # kind's unpatched config names containerd's socket: the image leads it to crib too.
    assert (
        'criSocket: "unix:///run/containerd/containerd.sock"'
        in (kind_module() / "pkg/cluster/internal/kubeadm/config.go").read_text()
    )
    cribd = n.unit("cribd.service")
    assert "/bin/ln -sfn /run/crib/crib.sock /run/containerd/containerd.sock" in cribd.values(
        "Service", "ExecStartPre"
    )


def check_default_cni_manifest(n: NodeImage, _: Callable[..., Cribd]) -> None:
    docs = [d for d in yaml.safe_load_all(n.text("/kind/manifests/default-cni.yaml")) if d]
    assert docs and all(
        d.get("apiVersion") and d.get("kind") and d.get("metadata", {}).get("name") for d in docs
    )


def _serve_store(n: NodeImage, cribd_factory: Callable[..., Cribd]) -> Cribd:
    # A cribd of this checkout on the node's own store (as the node's cribd will find it).
    return cribd_factory().start("--root", str(n.path("/var/lib/crib")))


def check_images_in_store(n: NodeImage, cribd_factory: Callable[..., Cribd]) -> None:
    assert n.images, "no images were built into the node"
    daemon = _serve_store(n, cribd_factory)
    listed = daemon.images.ListImages(api_pb2.ListImagesRequest(), timeout=30).images
    tags = sorted(t for image in listed for t in image.repo_tags)
    assert tags == n.images
    assert n.text("/kind/crib-images").split() == n.images
    for ref in n.images:
        status = daemon.images.ImageStatus(
            api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=ref)), timeout=30
        )
        assert status.image.id, ref
    # Their layers are unpacked in the store: containers can start without a pull.
    assert any(n.path("/var/lib/crib/layers").iterdir())


@dataclass(frozen=True)
class Requirement:
    what: str
    kind_source: str  # where kind requires it (paths in the module sigs.k8s.io/kind, kind_module())
    met_by: str  # where crib's image meets it
    check: Callable[[NodeImage, Callable[..., Cribd]], None] | None


REQUIREMENTS = [
    Requirement(
        "an image archive docker load and podman load read",
        "pkg/cluster/internal/providers/docker/provision.go: `docker run ... node.Image`",
        "deploy/kind/image_archive.py: docker save (>= 25) shape, manifest.json + repositories + OCI index",
        check_archive_shape,
    ),
    Requirement(
        "kind's entrypoint starts /sbin/init",
        "images/base/Dockerfile ENTRYPOINT; "
        "pkg/build/nodeimage/buildcontext.go `docker commit --change ENTRYPOINT`",
        "kind's entrypoint (build-node-image.sh step 4); image config Entrypoint",
        check_entrypoint,
    ),
    Requirement(
        "kind's node files (entrypoint, kubelet units, undo-mount-hacks, sysctls), crib's edits only",
        "images/base/Dockerfile (COPY of images/base/files)",
        "build-node-image.sh step 4: from the module sigs.k8s.io/kind (pinned), two edits, crib's drop-ins",
        check_kind_files,
    ),
    Requirement(
        "systemd is PID 1",
        "images/base/Dockerfile `ln -s /usr/lib/systemd/systemd /sbin/init`",
        "build-node-image.sh step 2",
        check_systemd_init,
    ),
    Requirement(
        "stop signal SIGRTMIN+3 (systemd re-executes on SIGTERM)",
        "images/base/Dockerfile STOPSIGNAL",
        "build-node-image.sh step 7 (image config)",
        check_stop_signal,
    ),
    Requirement(
        "container=docker for systemd",
        "images/base/Dockerfile ENV container=docker",
        "build-node-image.sh step 7 (image config)",
        check_container_env,
    ),
    Requirement(
        "/kind/version, one line",
        "pkg/cluster/nodeutils/util.go KubeVersion; pkg/build/nodeimage/buildcontext.go",
        "build-node-image.sh step 4",
        check_kind_version,
    ),
    Requirement(
        "kubelet, kubeadm, kubectl in /usr/bin",
        "pkg/build/nodeimage/buildcontext.go (`/usr/bin/` + binary); kubelet.service ExecStart",
        "build-node-image.sh step 4 (from /var/cache/crib/kube)",
        check_kube_programs,
    ),
    Requirement(
        "kubelet unit enabled with kubeadm's drop-in, in kubelet.slice",
        "images/base/files/etc/systemd/system/kubelet.service, kubelet.service.d/10-kubeadm.conf, "
        "kubelet.service.d/11-kind.conf; images/base/Dockerfile `systemctl enable kubelet.service`",
        "kind's units (build-node-image.sh step 4); /etc/default/kubelet edited to name cribd's cgroup",
        check_kubelet_unit,
    ),
    Requirement(
        "the container runtime as a unit started before the kubelet",
        "images/base/Dockerfile `systemctl enable containerd.service`; "
        "images/base/files/etc/systemd/system/undo-mount-hacks.service Before=",
        "scripts/install.sh --node enables cribd.service; deploy/kind/files: cribd.service.d/10-kind.conf, "
        "kubelet.service.d/12-crib.conf, undo-mount-hacks.service.d/10-crib.conf",
        check_cribd_before_kubelet,
    ),
    Requirement(
        "no other services at boot; kmsg off; binfmt masked; manifests dir",
        "images/base/Dockerfile (rm *.wants, ReadKMsg=no, mask systemd-binfmt, "
        "mkdir /etc/kubernetes/manifests)",
        "build-node-image.sh step 2 and 4",
        check_services_like_kind,
    ),
    Requirement(
        "crib installed by its install.sh, runtime packages only",
        "(crib's side of containerd's install in images/base/Dockerfile)",
        "build-node-image.sh step 3: scripts/install.sh --node in the root",
        check_crib_installed,
    ),
    Requirement(
        "crictl on the node, talking to the runtime",
        "pkg/cluster/nodeutils/util.go ImageID (`crictl inspecti`, before `kind load`); "
        "pkg/cluster/provider.go CollectLogs (`crictl images`)",
        "build-node-image.sh step 4: crictl from e2e/critools, /etc/crictl.yaml on crib's socket",
        check_crictl,
    ),
    Requirement(
        "kubeadm's criSocket and the kubelet's runtime endpoint are crib's",
        "pkg/cluster/internal/kubeadm/config.go (criSocket fixed to containerd's); "
        "pkg/cluster/internal/create/actions/config/config.go (kubeadmConfigPatches)",
        "deploy/kind/cluster.yaml patches; cribd.service.d/10-kind.conf links containerd's socket to crib's",
        check_cri_socket,
    ),
    Requirement(
        "/kind/manifests/default-cni.yaml",
        "pkg/cluster/internal/create/actions/installcni/cni.go (`cat`, then `kubectl create -f -`)",
        "deploy/kind/files/kind/manifests/default-cni.yaml (crib's bridge conflist networks one node)",
        check_default_cni_manifest,
    ),
    Requirement(
        "the control-plane images already in the runtime's store",
        "pkg/build/nodeimage/buildcontext.go prePullImagesAndWriteManifests (kubeadm config images list)",
        "build-node-image.sh step 5 (cribctl load into the node's /var/lib/crib)",
        check_images_in_store,
    ),
    Requirement(
        "crib's cribctl load reads the archive",
        "(docker load / podman load cannot run here)",
        "deploy/kind/image_archive.py",
        None,
    ),
    Requirement(
        "the node's output says systemd reached multi-user (kind waits for it)",
        "pkg/cluster/internal/providers/common/cgroups.go NodeReachedCgroupsReadyRegexp; "
        "providers/docker/provision.go createContainerWithWaitUntilSystemdReachesMultiUserSystem",
        "the image booted on crib: kind's entrypoint, systemd, cribd.service",
        None,
    ),
    Requirement(
        "the node stops on SIGRTMIN+3",
        "images/base/Dockerfile STOPSIGNAL (systemd re-executes on SIGTERM)",
        "the image booted on crib and stopped with StopContainer",
        None,
    ),
]
# Checked by test_node_boots_on_crib (None above): they need the image running.


@pytest.mark.parametrize(
    "req", [r for r in REQUIREMENTS if r.check], ids=lambda r: r.check.__name__.removeprefix("check_")
)
def test_node_image_meets_kind_contract(
    req: Requirement, node: NodeImage, cribd_factory: Callable[..., Cribd]
) -> None:
    assert req.check is not None
    req.check(node, cribd_factory)


def test_requirements_name_their_sources() -> None:
    checks = [r.check for r in REQUIREMENTS if r.check]
    assert len(set(checks)) == len(checks)
    # Every path a requirement cites is in kind's module at the pinned version (a shortened
    # path names what it ends); not commands in `backquotes` nor absolute paths of a node.
    kind = kind_module()
    paths = [str(p.relative_to(kind)) for p in kind.rglob("*")]
    cited_path = re.compile(r"(?<![\w/.-])[\w.-]+(?:/[\w.-]+)+")
    for r in REQUIREMENTS:
        assert r.kind_source and r.met_by, r.what
        for cited in cited_path.findall(re.sub(r"`[^`]*`", "", r.kind_source)):
            assert any(p == cited or p.endswith("/" + cited) for p in paths), (r.what, cited)
    # The line kind waits for, as kind's source writes it.
    cgroups_go = kind / "pkg/cluster/internal/providers/common/cgroups.go"
    assert f'"{KIND_READY.pattern}"' in cgroups_go.read_text()


# ---- the node boots: the image run as kind runs it, on crib ---------------------------------------

# kind waits for this in the node's output before it goes on (providers/common/cgroups.go).
KIND_READY = re.compile(r"Reached target .*Multi-User System.*|detected cgroup v1")
BOOT_TIMEOUT_S = 120


def _global_sysctls(n: NodeImage) -> dict[Path, str]:
    """The host's values of the kernel settings the node's systemd-sysctl sets.

    kind's nodes are privileged, so systemd-sysctl in them writes /proc/sys; most of
    these are per network namespace, but some (fs.protected_*) are the host's own.
    """
    keys: set[str] = set()
    for d in ("usr/lib/sysctl.d", "etc/sysctl.d"):
        for conf in sorted((n.rootfs / d).glob("*.conf")):
            for line in conf.read_text().splitlines():
                key, sep, _ = line.partition("=")
                if sep and not line.lstrip().startswith(("#", ";")):
                    keys.add(key.strip().lstrip("-"))
    values = {}
    for key in keys:
        p = Path("/proc/sys") / key.replace(".", "/")
        if p.exists():
            values[p] = p.read_text()
    return values


def _leftovers(daemon: Cribd, net: PodNetwork) -> dict[str, list[str]]:
    # The image store grows by the pause image crib makes for the first pod: not a leftover.
    state = machine_state(daemon, net)
    del state["blobs"], state["layers"]
    return state


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


def _exec(daemon: Cribd, container_id: str, *cmd: str) -> tuple[int, str]:
    r = pods.exec_sync(daemon, container_id, list(cmd), timeout=30)
    return r.exit_code, (r.stdout + r.stderr).decode(errors="replace").strip()


def test_node_boots_on_crib(
    node: NodeImage, cribd_factory: Callable[..., Cribd], pod_network: PodNetwork
) -> None:
    """The image run as kind runs it (privileged, its own PID namespace, the image's entrypoint),
    here under crib instead of Docker: kind's entrypoint hands over to systemd, systemd reaches
    multi-user, cribd.service serves the preloaded images, the kubelet waits for kubeadm, and the
    node stops on its StopSignal with nothing left behind."""
    daemon = cribd_factory()
    pod_network.install(daemon.cni_conf_dir)
    daemon.start()
    sysctls = _global_sysctls(node)
    try:
        load = subprocess.run(
            [sys.executable, "-m", "crib.cribctl.main", "--runtime-endpoint", f"unix://{daemon.socket}",
             "--timeout", "600s", "load", "-i", str(node.archive)],
            capture_output=True, text=True, timeout=900, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
        )  # fmt: skip
        assert load.returncode == 0, load.stdout + load.stderr
        # crib's LoadImage, an independent reader of docker-save and OCI archives, takes it whole.
        assert f"Loaded image: {TAG}" in load.stdout
        request = api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=TAG), verbose=True)
        status = daemon.images.ImageStatus(request, timeout=30)
        assert status.image.id == "sha256:" + Path(node.docker_manifest[0]["Config"]).name
        image_config = json.loads(status.info["info"])["imageSpec"]["config"]
        assert image_config["Entrypoint"] == ["/usr/local/bin/entrypoint", "/sbin/init"]
        assert image_config["StopSignal"] == "SIGRTMIN+3"
        before = _leftovers(daemon, pod_network)
        pod_cfg = pods.pod_config("kind-control-plane")
        pod_cfg.log_directory = str(daemon.dir / "logs")
        pod_cfg.linux.security_context.privileged = True
        pod_cfg.linux.security_context.namespace_options.pid = api_pb2.CONTAINER
        pod = pods.run_pod(daemon, pod_cfg)
        security = api_pb2.LinuxContainerSecurityContext(privileged=True)
        security.namespace_options.pid = api_pb2.CONTAINER
        config = pods.container_config("node", [], image=TAG, security=security, tty=True)
        config.log_path = "node.log"
        node_id = pods.run_container(daemon, pod, config)
        log = daemon.dir / "logs" / "node.log"

        def running() -> bool:
            status = pods.container_status(daemon, node_id).status
            assert status.state == api_pb2.CONTAINER_RUNNING, (status, _tail(log))
            return _exec(daemon, node_id, "systemctl", "is-system-running")[1] in ("running", "degraded")

        wait_until(running, timeout=BOOT_TIMEOUT_S, what="systemd to finish booting the node")
        output = log.read_text(errors="replace")
        assert "INFO: starting init" in output  # kind's entrypoint ran to its end
        assert KIND_READY.search(output), _tail(log)
        assert _exec(daemon, node_id, "systemctl", "is-system-running") == (0, "running")
        assert _exec(daemon, node_id, "systemctl", "--failed", "--plain", "--no-legend") == (0, "")
        assert _exec(daemon, node_id, "cat", "/proc/1/comm") == (0, "systemd")
        assert _exec(daemon, node_id, "systemctl", "is-active", "cribd.service") == (0, "active")
        # Skipped until kubeadm writes its config, as in kind's own nodes.
        assert _exec(daemon, node_id, "systemctl", "show", "-p", "ConditionResult", "kubelet.service") == (
            0,
            "ConditionResult=no",
        )
        code, images = _exec(daemon, node_id, "crictl", "images", "-o", "json")
        assert code == 0, images
        tags = sorted(t for image in json.loads(images)["images"] for t in image["repoTags"])
        assert tags == node.images
        code, version = _exec(daemon, node_id, "crictl", "--runtime-endpoint",
                              "unix:///run/containerd/containerd.sock", "version")  # fmt: skip
        assert code == 0 and "RuntimeName:  crib" in version, version
        code, driver = _exec(daemon, node_id, "journalctl", "-u", "cribd", "-o", "cat", "--no-pager")
        assert '"cgroup_driver": "systemd"' in driver, driver[-2000:]

        # StopContainer sends the image's SIGRTMIN+3: systemd halts the node cleanly, well
        # before the 60 s after which a SIGKILL would end it (exit 137). Its last step,
        # reboot(RB_HALT_SYSTEM) in a PID namespace, ends the namespace's init with SIGINT
        # (reboot(2)): exit 130, as `docker stop` of a systemd container shows.
        t0 = time.monotonic()
        daemon.runtime.StopContainer(
            api_pb2.StopContainerRequest(container_id=node_id, timeout=60), timeout=90
        )
        assert time.monotonic() - t0 < 30
        status = pods.container_status(daemon, node_id).status
        assert status.state == api_pb2.CONTAINER_EXITED
        assert status.exit_code == 128 + signal.SIGINT, (status, _tail(log))
        assert log.read_text(errors="replace").rstrip().endswith("Halting system."), _tail(log)
        assert status.stop_signal == api_pb2.SIGRTMINPLUS3
        daemon.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=node_id), timeout=60)
        pods.stop_pod(daemon, pod)
        pods.remove_pod(daemon, pod)
        with contextlib.suppress(AssertionError):
            wait_until(lambda: _leftovers(daemon, pod_network) == before, timeout=30)
        assert _leftovers(daemon, pod_network) == before
    finally:
        for p, value in sysctls.items():
            if p.read_text() != value:
                p.write_text(value)
