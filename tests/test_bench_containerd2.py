"""The config the benchmarks give containerd 2.x (e2e/harness/containerd2.py), and how a run
goes on without it (bench/containerd2).

The config must be TOML containerd reads as version 3, use the built 2.x shim rather than the
1.6 one on PATH, and keep everything the daemon writes (sockets, state, netns mounts, runc's
state) under its own dir, so two containerds and a cleanup after failure do not meet.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import containerd2
from e2e.harness import containerd2 as ctrd2_config

RUNTIME = "io.containerd.cri.v1.runtime"
IMAGES = "io.containerd.cri.v1.images"


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def test_config_names_the_built_shim_the_pause_image_and_its_own_dirs(tmp_path: Path) -> None:
    bin_dir = Path("/cache/containerd-v2/bin")
    registries = {"127.0.0.1:5000": "http://127.0.0.1:5000"}
    path = ctrd2_config.write_dir(tmp_path, bin_dir, "127.0.0.1:5000/bench/pause:1", registries)
    config = tomllib.loads(path.read_text())

    assert config["version"] == 3
    assert config["imports"] == []
    assert config["grpc"]["address"] == str(ctrd2_config.socket(tmp_path))
    runtime = config["plugins"][RUNTIME]
    runc = runtime["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["runtime_path"] == "/cache/containerd-v2/bin/containerd-shim-runc-v2"
    assert runtime["restrict_oom_score_adj"] is True
    assert runtime["cni"] == {"conf_dir": f"{tmp_path}/net.d", "bin_dirs": ["/usr/lib/cni"]}
    images = config["plugins"][IMAGES]
    assert images["pinned_images"]["sandbox"] == "127.0.0.1:5000/bench/pause:1"
    assert images["registry"]["config_path"] == f"{tmp_path}/certs.d"
    # Every path it writes to is under its dir; the only others are what it runs.
    paths = {s for s in _strings(config) if s.startswith("/")}
    outside = {p for p in paths if not p.startswith(f"{tmp_path}/")}
    assert outside == {runc["runtime_path"], "/usr/lib/cni"}


def test_registries_are_reached_over_plain_http_through_their_hosts_toml(tmp_path: Path) -> None:
    local = "http://127.0.0.1:5000"
    ctrd2_config.write_dir(tmp_path, Path("/bin"), "", {"127.0.0.1:5000": local, "docker.io": local})
    hosts = tomllib.loads((tmp_path / "certs.d" / "127.0.0.1:5000" / "hosts.toml").read_text())
    assert hosts["server"] == local
    assert hosts["host"][local]["capabilities"] == ["pull", "resolve"]
    # A mirror: the local registry first, docker.io itself only when it fails.
    mirror = tomllib.loads((tmp_path / "certs.d" / "docker.io" / "hosts.toml").read_text())
    assert mirror["server"] == "https://docker.io"
    assert mirror["host"] == {local: {"capabilities": ["pull", "resolve"]}}


def test_without_a_registry_no_sandbox_image_is_pinned(tmp_path: Path) -> None:
    config = tomllib.loads(ctrd2_config.write_dir(tmp_path, Path("/bin")).read_text())
    assert "pinned_images" not in config["plugins"][IMAGES]
    assert list((tmp_path / "certs.d").iterdir()) == []


def test_a_failed_build_leaves_containerd2_out_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "build.sh"
    script.write_text("#!/bin/sh\necho 'go: module lookup disabled' >&2\nexit 1\n")
    script.chmod(0o755)
    monkeypatch.setattr(containerd2, "BUILD", script)
    assert containerd2.build() is None
    assert "module lookup disabled" in capsys.readouterr().out


def test_a_build_gives_the_bin_dir_it_printed_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "build.sh"
    script.write_text(f"#!/bin/sh\necho 'go: downloading' >&2\necho {tmp_path}/bin\n")
    script.chmod(0o755)
    monkeypatch.setattr(containerd2, "BUILD", script)
    assert containerd2.build() == tmp_path / "bin"
    assert containerd2.build(enabled=False) is None
