"""Registry host dirs (`[image] config_path`, containerd's hosts.toml) against a real cribd and real
HTTPS registries: a private CA, mutual TLS, a mirror tried before the server, broken files."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from crib.proto.cri import api_pb2
from e2e.harness.cribd import Cribd
from e2e.harness.registry import Registry, make_ca, make_client_cert
from e2e.images import builder
from e2e.images.builder import Entry, ImageRecipe, LayerSpec
from e2e.images.registry_client import RegistryClient

PULL_TIMEOUT = 60


def small_image(text: str) -> builder.BuiltImage:
    """A one-file image: each test's own content, so a pull cannot be satisfied by another's blobs."""
    return builder.build_image(ImageRecipe([LayerSpec([Entry("hello", data=f"{text}\n".encode())])]))


def pull(daemon: Cribd, image: str) -> str:
    request = api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=image))
    return daemon.images.PullImage(request, timeout=PULL_TIMEOUT).image_ref


def pull_error(daemon: Cribd, image: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        pull(daemon, image)
    return info.value


def host_dir(certs_d: Path, registry: Registry, hosts_toml: str | None = None) -> Path:
    """`certs_d/<host:port>/`, emptied, with `hosts_toml` when given."""
    folder = certs_d / registry.host
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if hosts_toml is not None:
        (folder / "hosts.toml").write_text(hosts_toml)
    return folder


@pytest.fixture
def certs_d(tmp_path: Path) -> Path:
    d = tmp_path / "certs.d"
    d.mkdir()
    return d


@pytest.fixture
def daemon(cribd_factory: Callable[..., Cribd], certs_d: Path) -> Cribd:
    return cribd_factory(f'[image]\nconfig_path = "{certs_d}"\n').start()


@pytest.fixture
def tls_registry() -> Iterator[Registry]:
    reg = Registry(tls=True).start()
    yield reg
    reg.stop()


def test_a_private_ca_from_hosts_toml_or_a_dropped_in_crt(
    daemon: Cribd, certs_d: Path, tls_registry: Registry
) -> None:
    reg = tls_registry
    assert reg.ca_file is not None
    images = {tag: small_image(f"private ca {tag}") for tag in ("toml", "crt", "none")}
    with RegistryClient(reg.url, ca_file=str(reg.ca_file)) as client:
        for tag, image in images.items():
            client.push_image("private/img", tag, image)
    name = f"{reg.host}/private/img"

    # `ca` relative to the host's folder, on the server: trusted.
    folder = host_dir(certs_d, reg, f'server = "https://{reg.host}"\nca = "registry-ca.pem"\n')
    shutil.copy(reg.ca_file, folder / "registry-ca.pem")
    assert pull(daemon, f"{name}:toml") == images["toml"].config.digest

    # Docker's layout: a *.crt in the folder is a CA for that host (no hosts.toml at all).
    folder = host_dir(certs_d, reg)
    shutil.copy(reg.ca_file, folder / "ca.crt")
    assert pull(daemon, f"{name}:crt") == images["crt"].config.digest

    # The folder without the CA (edits apply without a restart): the certificate is not trusted.
    host_dir(certs_d, reg, f'server = "https://{reg.host}"\n')
    error = pull_error(daemon, f"{name}:none")
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "certificate" in error.details() and reg.host in error.details()


def test_mutual_tls_with_the_client_certificate_the_registry_accepts(
    cribd_factory: Callable[..., Cribd], certs_d: Path, tmp_path: Path
) -> None:
    clients_ca = make_ca(tmp_path, "clients-ca")
    good = make_client_cert(tmp_path, "good", clients_ca)
    rogue = make_client_cert(tmp_path, "rogue", make_ca(tmp_path, "rogue-ca"))
    reg = Registry(tls=True, client_cas=[clients_ca[0]]).start()
    try:
        assert reg.ca_file is not None
        images = {tag: small_image(f"mtls {tag}") for tag in ("pair", "dropin", "rogue", "none")}
        with RegistryClient(reg.url, ca_file=str(reg.ca_file), cert=(str(good[0]), str(good[1]))) as client:
            for tag, image in images.items():
                client.push_image("mtls/img", tag, image)
        daemon = cribd_factory(f'[image]\nconfig_path = "{certs_d}"\n').start()
        name = f"{reg.host}/mtls/img"

        def hosts_toml(client: str) -> str:
            return f'server = "https://{reg.host}"\nca = "{reg.ca_file}"\n{client}'

        # containerd's [cert, key] pairs, absolute paths.
        host_dir(certs_d, reg, hosts_toml(f'client = [["{good[0]}", "{good[1]}"]]\n'))
        assert pull(daemon, f"{name}:pair") == images["pair"].config.digest

        # Docker's layout: client.cert with client.key beside it, the CA as a *.crt.
        folder = host_dir(certs_d, reg)
        shutil.copy(reg.ca_file, folder / "registry.crt")
        shutil.copy(good[0], folder / "client.cert")
        shutil.copy(good[1], folder / "client.key")
        assert pull(daemon, f"{name}:dropin") == images["dropin"].config.digest

        # A certificate another CA signed: the registry refuses the handshake.
        host_dir(certs_d, reg, hosts_toml(f'client = [["{rogue[0]}", "{rogue[1]}"]]\n'))
        error = pull_error(daemon, f"{name}:rogue")
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "client certificate" in error.details() and reg.host in error.details()

        # No client certificate at all: refused as well.
        host_dir(certs_d, reg, hosts_toml(""))
        error = pull_error(daemon, f"{name}:none")
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "client certificate" in error.details()
        assert len(daemon.images.ListImages(api_pb2.ListImagesRequest(), timeout=10).images) == 2
    finally:
        reg.stop()


def test_a_mirror_host_is_asked_before_the_server(
    daemon: Cribd, certs_d: Path, tls_registry: Registry, registry: Registry
) -> None:
    upstream, mirror = tls_registry, registry
    image = small_image("only on the mirror")
    with RegistryClient(mirror.url) as client:
        digest = client.push_image("mirrored/img", "1", image)
    name = f"{upstream.host}/mirrored/img"
    server = f'server = "https://{upstream.host}"\nca = "{upstream.ca_file}"\n'

    # The image is only on the mirror: the pull under the upstream's name works through it.
    host_dir(certs_d, upstream, f'{server}\n[host."{mirror.url}"]\ncapabilities = ["pull", "resolve"]\n')
    assert pull(daemon, f"{name}:1") == image.config.digest
    st = daemon.images.ImageStatus(
        api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=f"{name}:1")), timeout=10
    ).image
    assert f"{name}@{digest}" in st.repo_digests

    # A mirror trusted only to pull does not resolve tags (the server, which lacks it, is asked),
    # but serves what is asked by digest, which is verified.
    daemon.images.RemoveImage(
        api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=f"{name}:1")), timeout=30
    )
    host_dir(certs_d, upstream, f'{server}\n[host."{mirror.url}"]\ncapabilities = ["pull"]\n')
    error = pull_error(daemon, f"{name}:1")
    assert error.code() == grpc.StatusCode.NOT_FOUND and upstream.host in error.details()
    assert pull(daemon, f"{name}@{digest}") == image.config.digest


def test_a_broken_hosts_toml_fails_the_pull_naming_the_file_and_cribd_keeps_serving(
    daemon: Cribd, certs_d: Path, tls_registry: Registry
) -> None:
    reg = tls_registry
    image = small_image("after the fix")
    with RegistryClient(reg.url, ca_file=str(reg.ca_file)) as client:
        client.push_image("broken/img", "1", image)
    name = f"{reg.host}/broken/img:1"

    folder = host_dir(certs_d, reg, f'server = "https://{reg.host}"\n[host."https://m.example"\n')
    hosts_toml = folder / "hosts.toml"
    for _ in range(2):
        error = pull_error(daemon, name)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert str(hosts_toml) in error.details() and "not valid TOML" in error.details()
    # Logged once, however many pulls meet it.
    assert daemon.log_text().count('"host_dirs.invalid"') == 1

    hosts_toml.write_text(f'server = "https://{reg.host}"\nskip_verify = "yes"\n')
    error = pull_error(daemon, name)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"{hosts_toml}: skip_verify: expected a boolean" in error.details()

    hosts_toml.write_text(f'[host."https://{reg.host}"]\nca = "missing-ca.pem"\n')
    error = pull_error(daemon, name)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f'{hosts_toml}: host."https://{reg.host}".ca' in error.details()
    assert str(folder / "missing-ca.pem") in error.details()

    # cribd goes on serving, and the fixed file is read at the next pull.
    assert daemon.runtime.Version(api_pb2.VersionRequest(), timeout=5).runtime_name == "crib"
    hosts_toml.write_text(f'server = "https://{reg.host}"\nca = "{reg.ca_file}"\n')
    assert pull(daemon, name) == image.config.digest
