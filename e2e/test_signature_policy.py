"""The signature policy at PullImage, on a real cribd and registry: cosign signatures verified
before any blob is fetched, refusals that name the policy rule and leave nothing behind."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from crib.proto.cri import api_pb2
from e2e.harness.cribd import Cribd
from e2e.harness.registry import Registry
from e2e.images import builder, cosign_signer
from e2e.images.registry_client import RegistryClient
from e2e.test_image_pull import blobs, ingest_files, layer_dirs, listed, pull


def refused(daemon: Cribd, image: str) -> str:
    """PullImage of `image` fails with FAILED_PRECONDITION; its message."""
    with pytest.raises(grpc.RpcError) as info:
        pull(daemon, image)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION, info.value.details()
    return info.value.details() or ""


def policy_daemon(cribd_factory: Callable[..., Cribd], path: Path, policy: dict[str, Any] | str) -> Cribd:
    path.write_text(policy if isinstance(policy, str) else json.dumps(policy))
    return cribd_factory(f'[image]\nsignature_policy = "{path}"\n').start()


def test_signed_images_pull_and_the_rest_are_refused_leaving_nothing(
    cribd_factory: Callable[..., Cribd], registry: Registry, tmp_path: Path
) -> None:
    key, public = cosign_signer.new_key(tmp_path, "trusted")
    other_key, _ = cosign_signer.new_key(tmp_path, "other")
    host = registry.host
    images = {
        name: builder.busybox_image(labels={"name": name}) for name in ("signed", "unsigned", "other-key")
    }
    amd64 = builder.busybox_image(labels={"name": "multi"})
    index = builder.build_index([builder.busybox_image(architecture="arm64", variant="v8"), amd64])
    with RegistryClient(registry.url) as client:
        digests = {name: client.push_image(f"sigpol/{name}", "1", image) for name, image in images.items()}
        cosign_signer.sign(client, "sigpol/signed", digests["signed"], f"{host}/sigpol/signed:1", key)
        cosign_signer.sign(
            client, "sigpol/other-key", digests["other-key"], f"{host}/sigpol/other-key:1", other_key
        )
        # The signed image's signature copied under the unsigned one: signed bytes, wrong digest.
        copied = cosign_signer.payload(f"{host}/sigpol/unsigned:1", digests["signed"])
        cosign_signer.push_signature(
            client, "sigpol/copied", digests["unsigned"], copied, cosign_signer.signature_of(key, copied)
        )
        client.push_image("sigpol/copied", "1", images["unsigned"])
        # A multi-platform image: cosign signs the index's digest.
        index_digest = client.push_index("sigpol/multi", "1", index)
        cosign_signer.sign(client, "sigpol/multi", index_digest, f"{host}/sigpol/multi:1", key)
        for repo in ("sigpol/open", "sigpol/closed", "elsewhere/app"):
            client.push_image(repo, "1", builder.busybox_image(labels={"name": repo}))
    daemon = policy_daemon(
        cribd_factory,
        tmp_path / "policy.json",
        {
            "default": [{"type": "reject"}],
            "transports": {
                "docker": {
                    f"{host}/sigpol": [{"type": "sigstoreSigned", "keyPath": str(public)}],
                    f"{host}/sigpol/open": [{"type": "insecureAcceptAnything"}],
                    f"{host}/sigpol/closed": [{"type": "reject"}],
                }
            },
        },
    )
    rule = f'transports.docker scope "{host}/sigpol", requirement sigstoreSigned'

    # Refusals first, on an empty store: nothing of a refused image may stay.
    message = refused(daemon, f"{host}/sigpol/unsigned:1")
    assert f"refused by signature policy {tmp_path / 'policy.json'} ({rule})" in message
    assert f"a signature is required, but {digests['unsigned']} has none" in message
    assert "not signed by a trusted key" in refused(daemon, f"{host}/sigpol/other-key:1")
    assert f"signature for digest {digests['signed']} does not match" in refused(
        daemon, f"{host}/sigpol/copied:1"
    )
    closed = refused(daemon, f"{host}/sigpol/closed:1")
    assert f'(transports.docker scope "{host}/sigpol/closed", requirement reject)' in closed
    assert "(default, requirement reject)" in refused(daemon, f"{host}/elsewhere/app:1")
    assert not blobs(daemon) and not layer_dirs(daemon) and not ingest_files(daemon) and not listed(daemon)

    assert pull(daemon, f"{host}/sigpol/signed:1") == images["signed"].config.digest
    # By digest, matchRepoDigestOrExact needs only the repository of the signed identity.
    assert pull(daemon, f"{host}/sigpol/signed@{digests['signed']}") == images["signed"].config.digest
    assert pull(daemon, f"{host}/sigpol/multi:1") == amd64.config.digest
    assert pull(daemon, f"{host}/sigpol/open:1")

    # A refusal after pulls leaves the content store as it was.
    before = blobs(daemon)
    refused(daemon, f"{host}/sigpol/unsigned:1")
    assert blobs(daemon) == before and not ingest_files(daemon)
    assert len(listed(daemon)) == 3


def test_a_malformed_policy_fails_pulls_naming_the_file_and_cribd_serves_on(
    cribd_factory: Callable[..., Cribd], registry: Registry, tmp_path: Path
) -> None:
    with RegistryClient(registry.url) as client:
        client.push_image("sigpol/any", "1", builder.busybox_image(labels={"name": "any"}))
    path = tmp_path / "policy.json"
    daemon = policy_daemon(
        cribd_factory, path, {"default": [{"type": "insecureAcceptAnything", "keyPth": "/etc/k.pub"}]}
    )
    assert daemon.runtime.Version(api_pb2.VersionRequest(), timeout=5).runtime_name == "crib"
    printed = daemon.run("--print-config")
    assert printed.returncode == 0, printed.stderr
    assert tomllib.loads(printed.stdout)["image"]["signature_policy"] == str(path)
    image = f"{registry.host}/sigpol/any:1"
    message = refused(daemon, image)
    assert f"signature policy {path} is refused: default[0].keyPth: unknown key" in message
    assert "image.signature_policy_unusable" in daemon.log_text()
    assert not blobs(daemon)
    # Fixed in place: the next pull reads it again, no restart.
    path.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    assert pull(daemon, image)
    path.unlink()
    assert f"signature policy {path}: cannot read it" in refused(daemon, image)
    assert daemon.runtime.Version(api_pb2.VersionRequest(), timeout=5).runtime_name == "crib"
