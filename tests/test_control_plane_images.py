"""The control-plane images' recipes (e2e/kube/control_plane_images.py), from stand-in binaries.

The images themselves run in e2e/kube/test_kubeadm.py; here: names, paths and what each holds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e.kube.control_plane_images import IPTABLES_NAMES, archive_name, recipes

KUBEADM_LIST = [
    "registry.k8s.io/kube-apiserver:v1.36.3",
    "registry.k8s.io/kube-controller-manager:v1.36.3",
    "registry.k8s.io/kube-scheduler:v1.36.3",
    "registry.k8s.io/kube-proxy:v1.36.3",
    "registry.k8s.io/coredns/coredns:v1.14.2",
    "registry.k8s.io/pause:3.10.2",
    "registry.k8s.io/etcd:3.6.8-0",
]


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    for name in (
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-proxy",
        "etcd",
        "coredns",
    ):
        (tmp_path / name).write_bytes(f"#!{name}\n".encode())
    return tmp_path


def _files(recipe) -> dict[str, object]:
    return {e.name: e for layer in recipe.layers for e in layer.entries}


def test_each_static_binary_sits_where_the_upstream_image_has_it(bin_dir: Path) -> None:
    made = recipes(bin_dir, KUBEADM_LIST)
    assert set(made) == set(KUBEADM_LIST)
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"):
        ref = next(r for r in KUBEADM_LIST if f"/{name}:" in r)
        files = _files(made[ref])
        binary = files[f"usr/local/bin/{name}"]
        assert binary.data == f"#!{name}\n".encode() and binary.mode == 0o755
        assert made[ref].entrypoint == [f"/usr/local/bin/{name}"]
        # kubeadm's manifests name the command only: PATH must find it.
        assert any(e.startswith("PATH=") and "/usr/local/bin" in e for e in made[ref].env)
        assert files["tmp"].mode == 0o1777 and "etc/passwd" in files
    coredns = made["registry.k8s.io/coredns/coredns:v1.14.2"]
    assert coredns.entrypoint == ["/coredns"] and "coredns" in _files(coredns)
    pause = made["registry.k8s.io/pause:3.10.2"]
    assert pause.entrypoint == ["/pause", "-P"] and pause.user == "65535:65535"


def test_kube_proxy_carries_iptables_nft_with_its_libraries(bin_dir: Path) -> None:
    files = _files(
        recipes(bin_dir, ["registry.k8s.io/kube-proxy:v1.36.3"])["registry.k8s.io/kube-proxy:v1.36.3"]
    )
    assert "usr/local/bin/kube-proxy" in files
    for name in ("iptables", "iptables-save", "iptables-restore", "ip6tables-restore"):
        assert name in IPTABLES_NAMES
        link = files[f"usr/sbin/{name}"]
        assert (link.kind, link.linkname) == ("symlink", "xtables-nft-multi")
    assert files["usr/sbin/xtables-nft-multi"].kind == "file"
    # The loader and libc at their canonical (merged /usr) paths, /lib64 a link to them.
    assert "usr/lib64/ld-linux-x86-64.so.2" in files
    assert "usr/lib/x86_64-linux-gnu/libc.so.6" in files
    assert (files["lib64"].kind, files["lib64"].linkname) == ("symlink", "usr/lib64")
    assert any(n.startswith("usr/lib/x86_64-linux-gnu/xtables/libxt_comment.so") for n in files)


def test_an_image_it_cannot_build_is_an_error(bin_dir: Path) -> None:
    with pytest.raises(ValueError, match="cannot build"):
        recipes(bin_dir, ["registry.k8s.io/kube-something:v1"])


def test_archive_names() -> None:
    assert archive_name("registry.k8s.io/coredns/coredns:v1.14.2") == "coredns_v1.14.2.tar"
    assert archive_name("registry.k8s.io/etcd:3.6.8-0") == "etcd_3.6.8-0.tar"
