"""ImageService over the real socket: pulls from the real local registry, names, removal, disk use."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest

from crib.proto.cri import api_pb2
from e2e.conftest import AUTH_PASSWORD, AUTH_USER
from e2e.harness.cribd import Cribd
from e2e.harness.proxy import Proxy
from e2e.harness.registry import Registry
from e2e.harness.wait import wait_until
from e2e.images import builder
from e2e.images.builder import Entry, ImageRecipe, LayerSpec
from e2e.images.registry_client import RegistryClient

PULL_TIMEOUT = 120


def pull(
    daemon: Cribd, image: str, auth: api_pb2.AuthConfig | None = None, timeout: float = PULL_TIMEOUT
) -> str:
    request = api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=image), auth=auth)
    return daemon.images.PullImage(request, timeout=timeout).image_ref


def status(daemon: Cribd, image: str, verbose: bool = False) -> api_pb2.ImageStatusResponse:
    return daemon.images.ImageStatus(
        api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=image), verbose=verbose), timeout=10
    )


def listed(daemon: Cribd) -> list[api_pb2.Image]:
    return list(daemon.images.ListImages(api_pb2.ListImagesRequest(), timeout=10).images)


def remove(daemon: Cribd, image: str) -> None:
    daemon.images.RemoveImage(api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=image)), timeout=30)


def blobs(daemon: Cribd) -> set[str]:
    d = daemon.root / "content" / "blobs" / "sha256"
    return {p.name for p in d.iterdir()} if d.exists() else set()


def ingest_files(daemon: Cribd) -> list[str]:
    d = daemon.root / "content" / "ingest"
    return [p.name for p in d.iterdir()] if d.exists() else []


def layer_dirs(daemon: Cribd) -> set[str]:
    d = daemon.root / "layers"
    return {p.name for p in d.iterdir()} if d.exists() else set()


def push(registry: Registry, repo: str, tag: str, image: builder.BuiltImage) -> str:
    with RegistryClient(registry.url) as client:
        return client.push_image(repo, tag, image)


@pytest.fixture
def daemon(cribd_factory: Callable[..., Cribd]) -> Cribd:
    return cribd_factory().start()


@pytest.mark.parametrize(
    ("fmt", "compression"),
    [("oci", "gzip"), ("oci", "zstd"), ("oci", "none"), ("docker", "gzip"), ("docker", "none")],
)
def test_pull_by_tag_and_digest(daemon: Cribd, registry: Registry, fmt: str, compression: str) -> None:
    image = builder.busybox_image(fmt, compression, user="www-data", cmd=["httpd", "-f"])
    repo = f"pull/{fmt}-{compression}"
    digest = push(registry, repo, "v1", image)
    name = f"{registry.host}/{repo}"

    image_ref = pull(daemon, f"{name}:v1")
    assert image_ref == image.config.digest
    st = status(daemon, f"{name}:v1").image
    assert st.id == image_ref
    assert list(st.repo_tags) == [f"{name}:v1"]
    assert list(st.repo_digests) == [f"{name}@{digest}"]
    assert st.size == image.config.size + sum(layer.size for layer in image.layers)
    assert st.username == "www-data" and not st.HasField("uid")

    # By digest: the same image, found by every one of its names.
    assert pull(daemon, f"{name}@{digest}") == image_ref
    for spec in (
        image_ref,
        image_ref.removeprefix("sha256:"),
        image_ref[7:19],
        f"{name}@{digest}",
        f"{name}:v1",
    ):
        assert status(daemon, spec).image.id == image_ref, spec
    # The unpacked rootfs is what the layers held.
    top = daemon.root / "layers"
    assert any((top / d / "bin" / "busybox").is_file() for d in layer_dirs(daemon))
    assert any(
        (top / d / "etc" / "crib-e2e").read_text() == f"amd64 {compression}\n"
        for d in layer_dirs(daemon)
        if (top / d / "etc" / "crib-e2e").exists()
    )


def test_index_and_manifest_list_pick_amd64(daemon: Cribd, registry: Registry) -> None:
    for fmt in ("oci", "docker"):
        amd64 = builder.busybox_image(fmt, architecture="amd64")
        arm64 = builder.busybox_image(fmt, architecture="arm64", variant="v8")
        index = builder.build_index([arm64, amd64], fmt)
        with RegistryClient(registry.url) as client:
            index_digest = client.push_index(f"multi/{fmt}", "latest", index)
        name = f"{registry.host}/multi/{fmt}"
        assert pull(daemon, name) == amd64.config.digest
        st = status(daemon, name).image
        # The repo digest is the index's: what the name resolved to.
        assert f"{name}@{index_digest}" in st.repo_digests
        assert pull(daemon, f"{name}@{index_digest}") == amd64.config.digest


def test_status_of_a_missing_image_is_empty_and_verbose_has_config(daemon: Cribd, registry: Registry) -> None:
    assert not status(daemon, "docker.io/library/nothing:here").HasField("image")
    assert not status(daemon, "sha256:" + "0" * 64).HasField("image")
    image = builder.busybox_image(user="33", working_dir="/var/www", stop_signal="SIGQUIT")
    push(registry, "verbose/img", "1", image)
    name = f"{registry.host}/verbose/img:1"
    pull(daemon, name)
    r = status(daemon, name, verbose=True)
    assert r.image.uid.value == 33 and r.image.username == ""
    info = json.loads(r.info["info"])
    assert info["imageSpec"]["config"]["WorkingDir"] == "/var/www"
    assert info["imageSpec"]["config"]["StopSignal"] == "SIGQUIT"
    assert len(info["imageSpec"]["history"]) == 2
    assert info["manifestDigest"] == image.manifest.digest


def test_auth_registry_needs_credentials(daemon: Cribd, auth_registry: Registry) -> None:
    image = builder.busybox_image()
    with RegistryClient(auth_registry.url, auth=(AUTH_USER, AUTH_PASSWORD)) as client:
        client.push_image("private/img", "1", image)
    name = f"{auth_registry.host}/private/img:1"
    with pytest.raises(grpc.RpcError) as info:
        pull(daemon, name)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert auth_registry.host in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        pull(daemon, name, api_pb2.AuthConfig(username=AUTH_USER, password="wrong"))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (
        pull(daemon, name, api_pb2.AuthConfig(username=AUTH_USER, password=AUTH_PASSWORD))
        == image.config.digest
    )
    remove(daemon, name)
    encoded = base64.b64encode(f"{AUTH_USER}:{AUTH_PASSWORD}".encode()).decode()
    assert pull(daemon, name, api_pb2.AuthConfig(auth=encoded)) == image.config.digest
    assert image.config.digest.removeprefix("sha256:") in blobs(daemon)
    assert not ingest_files(daemon)


def test_https_registry_trusted_through_the_node_ca_store(cribd_factory: Callable[..., Cribd]) -> None:
    reg = Registry(tls=True).start()
    try:
        image = builder.busybox_image()
        with RegistryClient(reg.url, ca_file=str(reg.ca_file)) as client:
            client.push_image("tls/img", "1", image)
        # The node trusts the registry's CA (SSL_CERT_FILE stands in for /etc/ssl/certs).
        trusting = cribd_factory().start(env={"SSL_CERT_FILE": str(reg.ca_file)})
        assert pull(trusting, f"{reg.host}/tls/img:1") == image.config.digest
        # Without the CA, HTTPS fails verification and plain HTTP meets a TLS server.
        other = cribd_factory().start()
        with pytest.raises(grpc.RpcError) as info:
            pull(other, f"{reg.host}/tls/img:1")
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert f"https://{reg.host}" in info.value.details()
        assert "CERTIFICATE_VERIFY_FAILED" in info.value.details()
        assert not listed(other) and not blobs(other)
    finally:
        reg.stop()


def test_bad_references_and_missing_images(daemon: Cribd, registry: Registry) -> None:
    for bad, code in (
        ("Upper/Case", grpc.StatusCode.INVALID_ARGUMENT),
        ("", grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with pytest.raises(grpc.RpcError) as info:
            pull(daemon, bad)
        assert info.value.code() == code
    with pytest.raises(grpc.RpcError) as info:
        pull(daemon, f"{registry.host}/no/such:image")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert registry.host in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        pull(daemon, "127.0.0.1:1/nothing/listens:here")
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert not blobs(daemon) and not listed(daemon)


def test_mirrors_serve_other_registries_under_the_asked_name(
    cribd_factory: Callable[..., Cribd], registry: Registry
) -> None:
    image = builder.busybox_image()
    digest = push(registry, "e2e-test-images/busybox", "1.29-2", image)
    push(registry, "library/busybox", "1.36", image)
    dead = "http://127.0.0.1:1"
    daemon = cribd_factory(
        f'[image.mirrors."registry.k8s.io"]\nendpoints = ["{dead}", "{registry.url}"]\nmirrors_only = true\n'
        f'[image.mirrors."docker.io"]\nendpoints = ["{registry.url}"]\nmirrors_only = true\n'
    ).start()
    k8s_name = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
    assert pull(daemon, k8s_name) == image.config.digest
    assert pull(daemon, "busybox:1.36") == image.config.digest
    images = listed(daemon)
    assert len(images) == 1
    assert sorted(images[0].repo_tags) == ["docker.io/library/busybox:1.36", k8s_name]
    assert f"registry.k8s.io/e2e-test-images/busybox@{digest}" in images[0].repo_digests
    # Removing by one tag removes the image with all its tags.
    remove(daemon, "docker.io/library/busybox:1.36")
    assert listed(daemon) == []
    assert not status(daemon, k8s_name).HasField("image")
    assert not blobs(daemon) and not layer_dirs(daemon)
    remove(daemon, k8s_name)  # idempotent


def test_a_moved_tag_leaves_the_old_image_by_digest(daemon: Cribd, registry: Registry) -> None:
    first = builder.busybox_image(cmd=["first"])
    second = builder.busybox_image(cmd=["second"])
    d1 = push(registry, "moving/tag", "latest", first)
    name = f"{registry.host}/moving/tag"
    pull(daemon, name)
    push(registry, "moving/tag", "latest", second)
    pull(daemon, name)
    by_id = {i.id: i for i in listed(daemon)}
    assert list(by_id[second.config.digest].repo_tags) == [f"{name}:latest"]
    assert list(by_id[first.config.digest].repo_tags) == []
    assert list(by_id[first.config.digest].repo_digests) == [f"{name}@{d1}"]
    # Both images share the busybox layer: removing one keeps it for the other.
    remove(daemon, first.config.digest)
    assert status(daemon, name).image.id == second.config.digest
    assert builder.busybox_image().layers[0].digest.removeprefix("sha256:") in blobs(daemon)


def test_image_fs_info_moves_with_an_image(daemon: Cribd, registry: Registry) -> None:
    def usage() -> tuple[int, int]:
        r = daemon.images.ImageFsInfo(api_pb2.ImageFsInfoRequest(), timeout=10)
        fs = r.image_filesystems[0]
        assert fs.fs_id.mountpoint == str(daemon.root) and fs.timestamp > 0
        assert r.container_filesystems[0].fs_id.mountpoint == str(daemon.root / "containers")
        return fs.used_bytes.value, fs.inodes_used.value

    before = usage()
    image = builder.busybox_image(compression="none")
    push(registry, "fsinfo/img", "1", image)
    pull(daemon, f"{registry.host}/fsinfo/img:1")
    during = usage()
    stored = sum(layer.size for layer in image.layers)
    # Compressed blobs plus their unpacked copy: at least twice the busybox binary.
    assert during[0] - before[0] >= stored
    assert during[1] - before[1] >= 200  # busybox and its applet links
    remove(daemon, f"{registry.host}/fsinfo/img:1")
    assert usage() == before


HOSTILE = {
    "dotdot": [Entry("../escape-dotdot", data=b"x")],
    "absolute": [Entry("/tmp/crib-e2e-absolute", data=b"x")],
    "symlink-then-file": [
        Entry("evil", "symlink", linkname="/tmp"),
        Entry("evil/crib-e2e-through-link", data=b"x"),
    ],
    "hardlink-passwd": [Entry("passwd", "hardlink", linkname="/etc/passwd")],
    "whiteout-outside": [Entry("../.wh.passwd", data=b"")],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_layers_are_refused_and_leave_nothing(daemon: Cribd, registry: Registry, case: str) -> None:
    before_tmp = set(os.listdir("/tmp"))
    passwd = Path("/etc/passwd").read_bytes()
    recipe = ImageRecipe([LayerSpec(builder.busybox_rootfs()), LayerSpec(HOSTILE[case], "gzip")])
    image = builder.build_image(recipe)
    push(registry, f"hostile/{case}", "1", image)
    with pytest.raises(grpc.RpcError) as info:
        pull(daemon, f"{registry.host}/hostile/{case}:1")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "layer entry" in info.value.details()
    assert listed(daemon) == []
    assert not blobs(daemon) and not layer_dirs(daemon) and not ingest_files(daemon)
    assert Path("/etc/passwd").read_bytes() == passwd
    assert not {n for n in set(os.listdir("/tmp")) - before_tmp if "crib-e2e-" in n and "escape" in n}
    assert not Path("/tmp/crib-e2e-absolute").exists()
    assert not Path("/tmp/crib-e2e-through-link").exists()
    assert not (daemon.root.parent / "escape-dotdot").exists()


def test_schema1_is_refused(daemon: Cribd) -> None:
    # docker-registry 2.8 no longer stores schema 1, so a tiny server plays an old registry.
    body = json.dumps(
        {"schemaVersion": 1, "name": "old/img", "tag": "1", "fsLayers": [], "history": []}
    ).encode()

    class OldRegistry(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.docker.distribution.manifest.v1+prettyjws")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), OldRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(grpc.RpcError) as info:
            pull(daemon, f"127.0.0.1:{server.server_port}/old/img:1")
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "schema 1" in info.value.details()
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def private_registry() -> Iterator[Registry]:
    """A registry of the test's own, to kill midway."""
    reg = Registry().start()
    yield reg
    reg.stop()


def _big_image(seed: int, mb: int = 24) -> builder.BuiltImage:
    """busybox plus an incompressible layer of `mb` MiB, different per seed."""
    data = random.Random(seed).randbytes(mb << 20)
    layers = [LayerSpec(builder.busybox_rootfs(), "gzip"), LayerSpec([Entry("big.bin", data=data)], "none")]
    return builder.build_image(ImageRecipe(layers))


def test_a_pull_cut_off_midway_leaves_nothing_and_the_next_one_works(
    daemon: Cribd, private_registry: Registry
) -> None:
    image = _big_image(3)
    push(private_registry, "big/img", "1", image)
    proxy = Proxy(private_registry.port).start()
    try:
        proxy.cut_after = 8 << 20
        proxy.on_cut = private_registry.kill
        with pytest.raises(grpc.RpcError) as info:
            pull(daemon, f"127.0.0.1:{proxy.port}/big/img:1")
        assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INVALID_ARGUMENT)
        assert proxy.cut_done.is_set()
        assert listed(daemon) == []
        assert not blobs(daemon) and not ingest_files(daemon) and not layer_dirs(daemon)
    finally:
        proxy.stop()
    # The registry comes back (same storage, new port): the pull now works.
    private_registry.start()
    assert pull(daemon, f"{private_registry.host}/big/img:1") == image.config.digest


def _stall_after(proxy: Proxy, downstream_bytes: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while proxy.downstream_bytes < downstream_bytes and time.monotonic() < deadline:
        time.sleep(0.01)
    proxy.stall()


def test_a_stalled_registry_fails_the_pull_naming_it(
    cribd_factory: Callable[..., Cribd], private_registry: Registry
) -> None:
    daemon = cribd_factory("[image]\nstall_timeout = 2").start()
    image = _big_image(5, mb=8)
    push(private_registry, "stall/img", "1", image)
    proxy = Proxy(private_registry.port).start()
    try:
        # Slow enough to be midway through the layers when the stall begins: after 3 MiB of
        # them, however long the pull took to begin (a cribd's first pull imports its HTTP
        # stack and loads the CA store first).
        proxy.rate = 4 << 20
        midway = threading.Thread(target=_stall_after, args=(proxy, 3 << 20), daemon=True)
        midway.start()
        with pytest.raises(grpc.RpcError) as info:
            pull(daemon, f"127.0.0.1:{proxy.port}/stall/img:1")
        midway.join(30)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        details = info.value.details()
        assert f"127.0.0.1:{proxy.port}" in details and "sent no data for 2s" in details
        assert "layer sha256:" in details
        wait_until(lambda: not ingest_files(daemon))
        assert listed(daemon) == [] and not blobs(daemon)
    finally:
        proxy.resume()
        proxy.stop()


def test_concurrent_pulls_share_one_download(daemon: Cribd, registry: Registry) -> None:
    image = _big_image(7, mb=4)
    push(registry, "shared/img", "1", image)
    proxy = Proxy(registry.port).start()
    try:
        proxy.rate = 8 << 20
        results: list[str] = []
        errors: list[BaseException] = []

        def one() -> None:
            try:
                results.append(pull(daemon, f"127.0.0.1:{proxy.port}/shared/img:1"))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=one) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(PULL_TIMEOUT)
        assert not errors and results == [image.config.digest] * 3
        big = image.layers[1].digest
        assert sum(big in line for line in proxy.requests if line.startswith("GET")) == 1
    finally:
        proxy.stop()


def test_a_pull_past_its_deadline_stops_and_leaves_nothing(daemon: Cribd, registry: Registry) -> None:
    image = _big_image(11, mb=8)
    push(registry, "deadline/img", "1", image)
    proxy = Proxy(registry.port).start()
    try:
        proxy.rate = 1 << 20  # ~8 s for the big layer
        with pytest.raises(grpc.RpcError) as info:
            pull(daemon, f"127.0.0.1:{proxy.port}/deadline/img:1", timeout=1.5)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # cribd stops the pull at once: its partial download goes, nothing is recorded.
        wait_until(lambda: not ingest_files(daemon) and '"image.pull_failed"' in daemon.log_text())
        assert listed(daemon) == [] and not blobs(daemon)
        stopped_at = proxy.downstream_bytes
        assert stopped_at < 8 << 20
    finally:
        proxy.stop()


def test_sigterm_lets_an_inflight_pull_finish(daemon: Cribd, registry: Registry) -> None:
    image = _big_image(13, mb=4)
    push(registry, "graceful/img", "1", image)
    proxy = Proxy(registry.port).start()
    try:
        proxy.rate = 2 << 20  # ~2-3 s of pulling
        result: list[str] = []
        t = threading.Thread(
            target=lambda: result.append(pull(daemon, f"127.0.0.1:{proxy.port}/graceful/img:1"))
        )
        t.start()
        wait_until(lambda: proxy.downstream_bytes >= 1 << 20 or not t.is_alive())
        assert t.is_alive(), "the pull ended before SIGTERM"
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGTERM)
        t.join(30)
        assert result == [image.config.digest]
        # It exits 0 of that one SIGTERM; stop() would send a second one, which, landing after
        # the loop has given the signal back (cribd's last teardown), kills it with -15.
        assert daemon.proc.wait(30) == 0
    finally:
        proxy.stop()
