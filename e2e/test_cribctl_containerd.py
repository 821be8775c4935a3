"""cribctl against another CRI runtime: a private containerd (Debian's package).

cribctl is a crictl-compatible client, so it must work with any CRI runtime,
not only cribd. Each test starts its own containerd (e2e/harness/containerd.py:
its own root, state, sockets and empty CNI conf dir, CRI plugin with cgroupfs
and overlayfs) and runs `cribctl version/info/pods/ps/images` against it, the
endpoint given by CONTAINER_RUNTIME_ENDPOINT or --runtime-endpoint. Where a
crictl binary is available, its output is compared with cribctl's.
Skipped, saying so, where containerd is not installed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.harness.cleanup import mounts_under, processes_referencing
from e2e.harness.clients import CALL_TIMEOUT_S, client_env, crictl_bin
from e2e.harness.containerd import Containerd, containerd_bin
from e2e.harness.registry import Registry
from e2e.harness.terminal import on_a_terminal, read_all
from e2e.images import archives, builder
from e2e.test_image_pull import push

pytestmark = pytest.mark.skipif(
    containerd_bin() is None, reason="containerd is not installed (apt-get install containerd)"
)

IMAGE = "crib.e2e/ctrd/busybox:1"
POD_HEADER = ["POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME"]
PS_HEADER = ["CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD ID", "POD", "NAMESPACE"]
IMAGES_HEADER = ["IMAGE", "TAG", "IMAGE ID", "SIZE"]


@pytest.fixture
def containerd() -> Iterator[Containerd]:
    daemon = Containerd().start()
    try:
        yield daemon
    finally:
        left = daemon.stop()
        # Stopped and gone: no process, mount or file of it is left.
        assert daemon.proc is not None and daemon.proc.poll() is not None
        assert processes_referencing(daemon.dir) == [] and mounts_under(daemon.dir) == []
        assert not daemon.dir.exists()
        assert left["unmounted"] == [], left


def cribctl(daemon: Containerd, *args: str, via_env: bool = False) -> subprocess.CompletedProcess[str]:
    env = client_env()
    head = [sys.executable, "-m", "crib.cribctl.main", "--config", "/dev/null"]
    if via_env:
        env["CONTAINER_RUNTIME_ENDPOINT"] = daemon.endpoint
    else:
        head += ["--runtime-endpoint", daemon.endpoint]
    return subprocess.run([*head, *args], capture_output=True, text=True, timeout=CALL_TIMEOUT_S, env=env)


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"{r.args}: {r.stderr}"
    return r.stdout


def cells(text: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.rstrip()) for line in text.splitlines()]


def _containerd_version() -> str:
    # "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3"
    out = subprocess.run(
        [containerd_bin() or "containerd", "--version"], capture_output=True, text=True, timeout=30
    )
    return out.stdout.split()[2]


def test_version_and_info(containerd: Containerd) -> None:
    expected = f"Version:  0.1.0\nRuntimeName:  containerd\nRuntimeVersion:  {_containerd_version()}\n"
    expected += "RuntimeApiVersion:  v1\n"
    # The endpoint from the environment, as from the flag.
    assert ok(cribctl(containerd, "version", via_env=True)) == expected
    assert ok(cribctl(containerd, "version")) == expected

    info = json.loads(ok(cribctl(containerd, "info", via_env=True)))
    conditions = {c["type"]: c for c in info["status"]["conditions"]}
    assert conditions["RuntimeReady"]["status"] is True
    # Its CNI conf dir is empty: no network yet, with containerd's reason.
    assert conditions["NetworkReady"]["status"] is False
    assert conditions["NetworkReady"]["reason"] == "NetworkPluginNotReady"
    # containerd's own info (its CRI config), decoded from JSON as crictl does.
    assert info["config"]["containerd"]["snapshotter"] == "overlayfs"
    assert info["config"]["cni"]["confDir"] == str(containerd.dir / "net.d")
    assert info["config"]["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False


def test_empty_lists(containerd: Containerd) -> None:
    for via_env in (True, False):
        assert cells(ok(cribctl(containerd, "pods", via_env=via_env))) == [POD_HEADER]
        assert cells(ok(cribctl(containerd, "ps", "-a", via_env=via_env))) == [PS_HEADER]
        assert cells(ok(cribctl(containerd, "images", via_env=via_env))) == [IMAGES_HEADER]
    assert ok(cribctl(containerd, "pods", "-q")) == ""
    assert ok(cribctl(containerd, "ps", "-a", "-q")) == ""
    assert ok(cribctl(containerd, "images", "-q")) == ""
    assert json.loads(ok(cribctl(containerd, "pods", "-o", "json"))) == {"items": []}
    assert json.loads(ok(cribctl(containerd, "ps", "-a", "-o", "json"))) == {"containers": []}
    assert json.loads(ok(cribctl(containerd, "images", "-o", "json"))) == {"images": []}
    r = cribctl(containerd, "inspect", "0" * 64)
    assert r.returncode == 1 and r.stdout == "" and "not found" in r.stderr.lower(), r


def test_an_imported_image(containerd: Containerd, tmp_path: Path) -> None:
    image = builder.busybox_image()
    archives.docker_save_tar([(image, [IMAGE])], tmp_path / "busybox.tar")
    r = containerd.ctr("images", "import", str(tmp_path / "busybox.tar"))
    assert r.returncode == 0, r.stderr
    image_id = image.config.digest

    rows = cells(ok(cribctl(containerd, "images")))
    assert rows[0] == IMAGES_HEADER and len(rows) == 2, rows
    repo, tag, short_id, size = rows[1]
    assert (repo, tag, short_id) == ("crib.e2e/ctrd/busybox", "1", image_id[7:20])
    assert re.fullmatch(r"\d+(\.\d+)?(B|kB|MB)", size), size
    assert ok(cribctl(containerd, "images", "-q", via_env=True)) == f"{image_id}\n"
    assert cells(ok(cribctl(containerd, "images", "--no-trunc")))[1][2] == image_id
    listed = json.loads(ok(cribctl(containerd, "images", "-o", "json")))["images"]
    assert [(i["id"], i["repoTags"]) for i in listed] == [(image_id, [IMAGE])]

    doc = json.loads(ok(cribctl(containerd, "inspecti", IMAGE)))
    assert doc["status"]["id"] == image_id and doc["status"]["repoTags"] == [IMAGE]
    assert doc["info"]["imageSpec"]["rootfs"]["diff_ids"] == list(image.diff_ids)

    assert ok(cribctl(containerd, "rmi", IMAGE)) == f"Deleted: {IMAGE}\n"
    assert ok(cribctl(containerd, "images", "-q")) == ""


def test_pull_falls_back_to_a_plain_cri_pull(registry: Registry) -> None:
    """containerd has no crib.v1.CribService: `cribctl pull` on a terminal asks for
    progress, gets UNIMPLEMENTED, and pulls with the CRI's PullImage instead."""
    image = builder.busybox_image()
    push(registry, "ctrd/pulled", "1", image)
    name = f"{registry.host}/ctrd/pulled:1"
    mirror = f'[plugins."io.containerd.grpc.v1.cri".registry.mirrors."{registry.host}"]\n'
    mirror += f'endpoint = ["{registry.url}"]\n'
    daemon = Containerd(extra_config=mirror).start()
    try:
        head = [sys.executable, "-m", "crib.cribctl.main", "--config", "/dev/null", "-r", daemon.endpoint]
        with on_a_terminal([*head, "pull", name], {**client_env(), "TERM": "xterm"}) as (proc, master):
            raw = read_all(master, proc, CALL_TIMEOUT_S).decode()
            assert proc.wait(CALL_TIMEOUT_S) == 0, raw
        lines = [line for line in raw.replace("\r", "").splitlines() if line.strip()]
        # Nothing but crictl's line: no bars (there is no progress to show), no error.
        assert lines == [f"Image is up to date for {image.config.digest}"], raw
        assert ok(cribctl(daemon, "images", "-q")) == f"{image.config.digest}\n"
        # Off a terminal too, and for an image it has: the same line.
        assert ok(cribctl(daemon, "pull", name)) == f"Image is up to date for {image.config.digest}\n"
    finally:
        daemon.stop()


_AGO = re.compile(r"(Less than a second|About an? (minute|hour)|\d+ (seconds?|minutes?|hours?)) ago")


def test_output_matches_crictl(containerd: Containerd, tmp_path: Path) -> None:
    image = builder.busybox_image()
    archives.docker_save_tar([(image, [IMAGE])], tmp_path / "busybox.tar")
    assert containerd.ctr("images", "import", str(tmp_path / "busybox.tar")).returncode == 0
    commands = [
        ["version"],
        ["pods"],
        ["pods", "-o", "json"],
        ["ps", "-a"],
        ["ps", "-a", "-o", "yaml"],
        ["images"],
        ["images", "-q"],
        ["images", "--digests", "--no-trunc"],
        ["images", "-o", "json"],
        ["inspecti", IMAGE],
        ["imagefsinfo"],
    ]
    for args in commands:
        ours = ok(cribctl(containerd, *args))
        argv = [crictl_bin(), "--config", "/dev/null", "-r", containerd.endpoint, *args]
        theirs = subprocess.run(
            argv, capture_output=True, text=True, timeout=CALL_TIMEOUT_S, env=client_env()
        )
        assert theirs.returncode == 0, theirs.stderr
        if args[0] == "imagefsinfo":  # usage samples of the moment
            ours, theirs_out = (re.sub(r'"\d+"', '"<N>"', t) for t in (ours, theirs.stdout))
        else:
            theirs_out = theirs.stdout
        assert _AGO.sub("<AGO>", ours) == _AGO.sub("<AGO>", theirs_out), args
    assert os.path.exists(containerd.socket)
