"""cribctl's image commands against a real cribd, the local registry and archive files.

Where a crictl binary is available ($CRICTL or `crictl` on PATH), the outputs
crictl also has (images, inspecti, imagefsinfo) are compared with its own on
the same cribd, timestamps aside.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from e2e.conftest import AUTH_PASSWORD, AUTH_USER
from e2e.harness.cribd import REPO_ROOT, Cribd
from e2e.harness.proxy import Proxy
from e2e.harness.registry import Registry
from e2e.images import archives, builder
from e2e.images.builder import BuiltImage
from e2e.images.registry_client import RegistryClient

CALL_TIMEOUT_S = 120


def cribctl(
    daemon: Cribd, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CRICTL_", "CONTAINER_RUNTIME", "CRI_"))}
    base["PYTHONPATH"] = str(REPO_ROOT)
    r = subprocess.run(
        [sys.executable, "-m", "crib.cribctl.main", "-r", f"unix://{daemon.socket}", *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=CALL_TIMEOUT_S,
        env={**base, **(env or {})},
        # No controlling terminal: getpass reads the password from stdin.
        start_new_session=True,
    )
    return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(), r.stderr.decode())


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"{r.args[3:]}: {r.stderr}"
    return r.stdout


def push(
    registry: Registry, repo: str, tag: str | None, image: BuiltImage, auth: tuple[str, str] | None = None
) -> str:
    with RegistryClient(registry.url, auth=auth) as client:
        return client.push_image(repo, tag, image)


def _ids(daemon: Cribd) -> list[str]:
    return ok(cribctl(daemon, "images", "-q")).split()


@pytest.fixture(scope="module")
def busybox() -> BuiltImage:
    return builder.busybox_image()


def test_pull_list_inspect_remove(cribd: Cribd, registry: Registry, busybox: BuiltImage) -> None:
    digest = push(registry, "e2e/busybox", "1.0", busybox)
    name = f"{registry.host}/e2e/busybox:1.0"
    image_id = busybox.config.digest
    assert ok(cribctl(cribd, "pull", name)) == f"Image is up to date for {image_id}\n"
    # A second pull of what is there is still a success.
    assert ok(cribctl(cribd, "pull", name)) == f"Image is up to date for {image_id}\n"

    table = ok(cribctl(cribd, "images")).splitlines()
    assert table[0].split() == ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"]
    repo, tag, short_id, size = table[1].split()
    assert (repo, tag, short_id) == (f"{registry.host}/e2e/busybox", "1.0", image_id[7:20])
    assert re.fullmatch(r"\d+(\.\d+)?(B|kB|MB)", size)
    assert _ids(cribd) == [image_id]
    assert ok(cribctl(cribd, "images", "--digests")).splitlines()[1].split()[2] == digest[7:20]
    assert ok(cribctl(cribd, "img", "--digests", "--no-trunc")).splitlines()[1].split()[2:4] == [
        digest,
        image_id,
    ]
    # The name filter is the runtime's; an unknown name lists nothing.
    assert ok(cribctl(cribd, "images", "-q", name)) == f"{image_id}\n"
    assert ok(cribctl(cribd, "images", "-q", f"{registry.host}/e2e/other:1")) == ""

    doc = json.loads(ok(cribctl(cribd, "inspecti", name)))
    assert doc["status"]["id"] == image_id
    assert doc["status"]["repoTags"] == [name]
    assert doc["status"]["repoDigests"] == [f"{registry.host}/e2e/busybox@{digest}"]
    assert doc["info"]["imageSpec"]["config"]["Cmd"] == ["/bin/sh"]
    assert "info" not in json.loads(ok(cribctl(cribd, "inspecti", "-q", image_id)))
    table_text = ok(cribctl(cribd, "inspecti", "-o", "table", image_id[7:20]))
    assert table_text.startswith(
        f"ID: {image_id}\nTag: {name}\nDigest: {registry.host}/e2e/busybox@{digest}\n"
    )
    assert "\nInfo: map[info:{" in table_text
    assert json.loads(ok(cribctl(cribd, "images", "-o", "json")))["images"][0]["id"] == image_id

    assert ok(cribctl(cribd, "rmi", image_id)) == f"Deleted: {name}\n"
    assert _ids(cribd) == []
    r = cribctl(cribd, "inspecti", image_id)
    assert (r.returncode, r.stderr) == (1, f'cribctl: no such image "{image_id}" present\n')


def test_pull_by_digest_shows_none_tag(cribd: Cribd, registry: Registry, busybox: BuiltImage) -> None:
    digest = push(registry, "e2e/bydigest", None, busybox)
    ref = f"{registry.host}/e2e/bydigest@{digest}"
    ok(cribctl(cribd, "pull", ref))
    row = ok(cribctl(cribd, "images")).splitlines()[1].split()
    assert row[:2] == [f"{registry.host}/e2e/bydigest", "<none>"]
    assert ok(cribctl(cribd, "images", "-q", "-f", "dangling=true")) == f"{busybox.config.digest}\n"
    # Without tags, rmi names the image by its digests.
    assert ok(cribctl(cribd, "rmi", ref)) == f"Deleted: {ref}\n"


def test_pull_with_credentials(cribd: Cribd, auth_registry: Registry, busybox: BuiltImage) -> None:
    creds = (AUTH_USER, AUTH_PASSWORD)
    push(auth_registry, "e2e/private", "1", busybox, auth=creds)
    name = f"{auth_registry.host}/e2e/private:1"
    r = cribctl(cribd, "pull", name)
    assert r.returncode == 1 and r.stderr.startswith("cribctl: pulling image: "), r.stderr

    ok(cribctl(cribd, "pull", "--creds", f"{AUTH_USER}:{AUTH_PASSWORD}", name))
    ok(cribctl(cribd, "rmi", name))
    token = base64.b64encode(f"{AUTH_USER}:{AUTH_PASSWORD}".encode()).decode()
    ok(cribctl(cribd, "pull", "--auth", token, name))
    ok(cribctl(cribd, "rmi", name))
    ok(cribctl(cribd, "pull", name, env={"CRICTL_CREDS": f"{AUTH_USER}:{AUTH_PASSWORD}"}))
    ok(cribctl(cribd, "rmi", name))
    # -u prompts for the password; without a terminal getpass reads stdin.
    ok(cribctl(cribd, "pull", "-u", AUTH_USER, name, stdin=f"{AUTH_PASSWORD}\n".encode()))
    ok(cribctl(cribd, "rmi", name))
    r = cribctl(cribd, "pull", "--creds", f"{AUTH_USER}:wrong", name)
    assert r.returncode == 1 and r.stderr.startswith("cribctl: pulling image: "), r.stderr
    r = cribctl(cribd, "pull", "--creds", "x", "--auth", token, name)
    assert r.stderr == "cribctl: both `--creds` and `--auth` are specified\n"


def _big_image(seed: int, mib: int = 4) -> BuiltImage:
    # Incompressible and uncompressed: the pull's time is spent moving bytes.
    data = (seed.to_bytes(4, "big") + os.urandom(1 << 16)) * (mib << 4)
    layer = builder.LayerSpec([builder.Entry("big", data=data)], "none")
    return builder.build_image(builder.ImageRecipe([layer]))


def test_timeout_bounds_the_connect_not_the_pull(cribd: Cribd, registry: Registry) -> None:
    push(registry, "e2e/big", "cut", _big_image(1))
    push(registry, "e2e/big", "whole", _big_image(2))
    # Through a proxy at 2 MB/s each 4 MiB pull lasts over 2 s, however fast the machine.
    proxy = Proxy(registry.port).start()
    proxy.rate = 2_000_000
    try:
        # --pull-timeout bounds the whole pull, so it cuts it...
        r = cribctl(cribd, "pull", "--pull-timeout", "400ms", f"127.0.0.1:{proxy.port}/e2e/big:cut")
        assert r.returncode == 1
        assert (
            r.stderr
            == "cribctl: pulling image: rpc error: code = DeadlineExceeded desc = context deadline exceeded\n"
        )
        # ...and the same --timeout, which bounds only the connection as in crictl, does not.
        start = time.monotonic()
        ok(cribctl(cribd, "--timeout", "400ms", "pull", f"127.0.0.1:{proxy.port}/e2e/big:whole"))
        assert time.monotonic() - start > 2.0, "the throttled pull outlasted the 400 ms timeout"
    finally:
        proxy.stop()


def test_load_archives(cribd: Cribd, tmp_path: Path, busybox: BuiltImage) -> None:
    oci, docker, docker25 = tmp_path / "oci.tar", tmp_path / "docker.tar", tmp_path / "docker25.tar"
    untagged = builder.busybox_image(compression="zstd")
    archives.oci_layout_tar([(busybox, "example.com/e2e/oci:1"), (untagged, None)], oci)
    assert ok(cribctl(cribd, "load", "-i", str(oci))) == (
        f"Loaded image: example.com/e2e/oci:1\nLoaded image ID: {untagged.config.digest}\n"
    )
    v25 = builder.busybox_image(labels={"saved-by": "docker 25"})
    archives.docker_save_tar_v25([(v25, ["e2e/v25:latest"])], docker25)
    assert ok(cribctl(cribd, "load", "--input", str(docker25))) == "Loaded image: docker.io/e2e/v25:latest\n"
    # Without -i, the archive comes on stdin.
    plain = builder.busybox_image(fmt="docker", compression="none")
    archives.docker_save_tar([(plain, ["busybox:saved"])], docker)
    assert (
        ok(cribctl(cribd, "load", stdin=docker.read_bytes()))
        == "Loaded image: docker.io/library/busybox:saved\n"
    )
    assert set(_ids(cribd)) == {
        busybox.config.digest,
        untagged.config.digest,
        v25.config.digest,
        plain.config.digest,
    }


def test_load_errors(cribd: Cribd, tmp_path: Path) -> None:
    r = cribctl(cribd, "load", "-i", str(tmp_path / "absent.tar"))
    assert r.stderr == f"cribctl: open {tmp_path}/absent.tar: no such file or directory\n"
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all" * 100)
    r = cribctl(cribd, "load", "-i", str(junk))
    assert r.returncode == 1
    assert r.stderr.startswith("cribctl: loading image: rpc error: code = InvalidArgument desc = "), r.stderr


def test_import_rootfs(cribd: Cribd, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(builder.tar_bytes(builder.busybox_rootfs()))
    out = ok(
        cribctl(
            cribd,
            "import",
            "--entrypoint", "/bin/sh -c",
            "--cmd", '["echo", "hello world"]',
            "--env", "A=1", "--env", "PATH=/bin",
            "--workdir", "/tmp",
            "--user", "33",
            "--expose", "80", "--expose", "53/udp",
            "--stop-signal", "SIGQUIT",
            "--label", "a=b=c",
            str(rootfs),
            "example.com/e2e/imported:1",
        )
    )  # fmt: skip
    m = re.fullmatch(r"Imported image: example\.com/e2e/imported:1 \((sha256:[0-9a-f]{64})\)\n", out)
    assert m, out
    doc = json.loads(ok(cribctl(cribd, "inspecti", "example.com/e2e/imported:1")))
    assert doc["status"]["id"] == m.group(1)
    assert doc["status"]["uid"] == {"value": "33"}
    assert doc["info"]["imageSpec"]["config"] == {
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["echo", "hello world"],
        "Env": ["A=1", "PATH=/bin"],
        "WorkingDir": "/tmp",
        "User": "33",
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
        "StopSignal": "SIGQUIT",
        "Labels": {"a": "b=c"},
    }
    assert "Uid: value:33\n" in ok(cribctl(cribd, "images", "-v", "example.com/e2e/imported:1"))
    # A gzipped rootfs from stdin.
    gz = builder.compress(rootfs.read_bytes(), "gzip")
    out = ok(cribctl(cribd, "import", "-", "example.com/e2e/imported:gz", stdin=gz))
    assert out.startswith("Imported image: example.com/e2e/imported:gz (sha256:")
    r = cribctl(cribd, "import", str(rootfs), "Not A Name")
    assert r.returncode == 1 and r.stderr.startswith(
        "cribctl: importing image: rpc error: code = InvalidArgument"
    )


def test_rmi_prune_keeps_pinned_and_all_removes_it(
    cribd_factory: Callable[..., Cribd], registry: Registry, busybox: BuiltImage
) -> None:
    pause = builder.busybox_image(labels={"role": "pause"})
    push(registry, "e2e/pause", "1", pause)
    push(registry, "e2e/app", "1", busybox)
    daemon = cribd_factory(f'[image]\nsandbox_image = "{registry.host}/e2e/pause:1"\n').start()
    ok(cribctl(daemon, "pull", f"{registry.host}/e2e/pause:1"))
    ok(cribctl(daemon, "pull", f"{registry.host}/e2e/app:1"))
    pinned = ok(cribctl(daemon, "images", "--pinned")).splitlines()
    assert [line.split()[-1] for line in pinned] == ["PINNED", "false", "true"]
    # No containers yet (ListContainers may be UNIMPLEMENTED): every unpinned image goes.
    assert ok(cribctl(daemon, "rmi", "--prune")) == f"Deleted: {registry.host}/e2e/app:1\n"
    assert _ids(daemon) == [pause.config.digest]
    assert ok(cribctl(daemon, "rmi", "-a")) == f"Deleted: {registry.host}/e2e/pause:1\n"
    r = cribctl(daemon, "rmi", "-a")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "cribctl: No images to remove\n")
    r = cribctl(daemon, "rmi", "nothing-here:1")
    assert (r.returncode, r.stderr) == (1, "cribctl: no such image nothing-here:1\n")


def test_imagefsinfo(cribd: Cribd) -> None:
    doc = json.loads(ok(cribctl(cribd, "imagefsinfo")))
    assert doc["status"]["imageFilesystems"][0]["fsId"]["mountpoint"].startswith(str(cribd.root))
    lines = ok(cribctl(cribd, "imagefsinfo", "-o", "table")).splitlines()
    assert lines[0] == "Container Filesystem " and "Image Filesystem " in lines
    r = cribctl(cribd, "imagefsinfo", "-o", "xml")
    assert r.stderr == 'cribctl: unsupported format: "xml"\n'


# --- against crictl ----------------------------------------------------------------------


def _crictl() -> str | None:
    return os.environ.get("CRICTL") or shutil.which("crictl")


_TIMESTAMPS = re.compile(r"""("timestamp": "|TimeStamp\[\d+\]: |timestamp: ["'])\d+""")


def _populate(daemon: Cribd, registry: Registry, tmp_path: Path) -> list[str]:
    """Images of every kind crictl shows differently: the names to inspect."""
    tagged = builder.busybox_image()
    push(registry, "cmp/busybox", "1.36", tagged)
    push(registry, "cmp/busybox", "latest", tagged)
    digest = push(registry, "cmp/bydigest", None, builder.busybox_image(fmt="docker", compression="none"))
    names = [f"{registry.host}/cmp/busybox:1.36", f"{registry.host}/cmp/bydigest@{digest}"]
    for name in (*names, f"{registry.host}/cmp/busybox:latest"):
        ok(cribctl(daemon, "pull", name))
    archive = tmp_path / "untagged.tar"
    untagged = builder.busybox_image(compression="zstd")
    archives.oci_layout_tar([(untagged, None)], archive)
    ok(cribctl(daemon, "load", "-i", str(archive)))
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(builder.tar_bytes(builder.busybox_rootfs()))
    ok(cribctl(daemon, "import", "--user", "33", str(rootfs), "example.com/cmp/imported:1"))
    ok(cribctl(daemon, "import", "--user", "www-data", str(rootfs), "example.com/cmp/named-user:1"))
    return [*names, untagged.config.digest, "example.com/cmp/imported:1", "example.com/cmp/named-user:1"]


@pytest.mark.skipif(_crictl() is None, reason="no crictl binary ($CRICTL or PATH) to compare against")
def test_output_matches_crictl(cribd: Cribd, registry: Registry, tmp_path: Path) -> None:
    names = _populate(cribd, registry, tmp_path)
    commands = [
        ["images"],
        ["images", "--digests", "--no-trunc"],
        ["images", "--digests", "--pinned"],
        ["images", "-v"],
        ["images", "-q"],
        ["images", "-o", "json"],
        ["images", "-f", "dangling=false"],
        ["images", "-f", f"since={registry.host}/cmp/busybox:latest"],
        ["images", "-f", "reference=bydigest"],
        ["inspecti", *names],
        ["inspecti", names[0]],
        ["inspecti", "-q", names[1]],
        ["inspecti", "-o", "table", *names],
        ["imagefsinfo"],
        ["imagefsinfo", "-o", "table"],
    ]
    mismatches = []
    for args in commands:
        ours = ok(cribctl(cribd, *args))
        theirs = subprocess.run(
            [_crictl(), "--config", "/dev/null", "-r", f"unix://{cribd.socket}", *args],
            capture_output=True,
            text=True,
            timeout=CALL_TIMEOUT_S,
        )
        assert theirs.returncode == 0, theirs.stderr
        if _TIMESTAMPS.sub(r"\1<t>", ours) != _TIMESTAMPS.sub(r"\1<t>", theirs.stdout):
            mismatches.append(f"$ {' '.join(args)}\n--- crictl\n{theirs.stdout}--- cribctl\n{ours}")
    assert not mismatches, "\n".join(mismatches)


@pytest.mark.skipif(_crictl() is None, reason="no crictl binary ($CRICTL or PATH) to compare against")
@pytest.mark.parametrize(
    "args", [["images", "-o", "yaml"], ["inspecti", "-o", "yaml"], ["imagefsinfo", "-o", "yaml"]]
)
def test_yaml_matches_crictl(cribd: Cribd, registry: Registry, busybox: BuiltImage, args: list[str]) -> None:
    push(registry, "cmp/busybox", "1", busybox)
    ok(cribctl(cribd, "pull", f"{registry.host}/cmp/busybox:1"))
    if args[0] == "inspecti":
        args = [*args, busybox.config.digest]
    theirs = subprocess.run(
        [_crictl(), "--config", "/dev/null", "-r", f"unix://{cribd.socket}", *args],
        capture_output=True,
        text=True,
        timeout=CALL_TIMEOUT_S,
    )
    assert theirs.returncode == 0, theirs.stderr
    assert _TIMESTAMPS.sub(r"\1<t>", ok(cribctl(cribd, *args))) == _TIMESTAMPS.sub(r"\1<t>", theirs.stdout)
