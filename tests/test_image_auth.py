"""Registry credentials and the 401 challenge."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from crib.cri_server.image import pull_arguments
from crib.errors import InvalidArgument
from crib.image_service import auth
from crib.image_service.registry import parse_challenge
from crib.proto.cri import api_pb2


def test_auth_config_forms() -> None:
    assert auth.from_auth_config() is None
    c = auth.from_auth_config(auth=base64.b64encode(b"u:p:w").decode())
    assert (c.username, c.password) == ("u", "p:w")
    c = auth.from_auth_config(username="u", password="p")
    assert (c.username, c.password) == ("u", "p")
    assert auth.from_auth_config(registry_token="t").registry_token == "t"
    with pytest.raises(InvalidArgument, match="base64"):
        auth.from_auth_config(auth="%%%")
    with pytest.raises(InvalidArgument, match="user:password"):
        auth.from_auth_config(auth=base64.b64encode(b"nocolon").decode())


def test_auth_that_is_not_ascii_is_invalid_argument() -> None:
    # Found by e2e/test_fuzz_rpc.py: b64decode raised ValueError, which became INTERNAL.
    with pytest.raises(InvalidArgument, match="base64"):
        auth.from_auth_config(auth="\u00e9t\u00e9:x")


def test_a_registry_token_that_cannot_be_a_header_is_invalid_argument() -> None:
    # Found by e2e/test_fuzz_rpc.py: httpx could not encode it into the Authorization header,
    # which became INTERNAL.
    for token in ("\x80", "a b", "line\nbreak", "\u00e9"):
        with pytest.raises(InvalidArgument, match="registry_token"):
            auth.from_auth_config(registry_token=token)
    assert auth.from_auth_config(registry_token="eyJ.abc-_~+/=").registry_token == "eyJ.abc-_~+/="


def test_secrets_are_not_in_repr() -> None:
    c = auth.Credentials("user", "hunter2", "idtok", "regtok")
    text = repr(c)
    assert "user" in text and "hunter2" not in text and "idtok" not in text and "regtok" not in text


def test_auth_file_lookup(tmp_path: Path) -> None:
    f = tmp_path / "config.json"
    f.write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:pw").decode()},
                    "127.0.0.1:5000": {"username": "a", "password": "b"},
                    "https://quay.io": {"identitytoken": "refresh"},
                }
            }
        )
    )
    assert auth.from_auth_file(str(f), "docker.io").username == "hub"
    assert auth.from_auth_file(str(f), "127.0.0.1:5000").password == "b"
    assert auth.from_auth_file(str(f), "quay.io").identity_token == "refresh"
    assert auth.from_auth_file(str(f), "ghcr.io") is None
    assert auth.from_auth_file(str(tmp_path / "missing.json"), "docker.io") is None
    assert auth.from_auth_file("", "docker.io") is None
    f.write_text("not json")
    assert auth.from_auth_file(str(f), "docker.io") is None


def test_challenge_parsing() -> None:
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/busybox:pull",
    }
    assert parse_challenge('Basic realm="crib-e2e"') == ("basic", {"realm": "crib-e2e"})
    assert parse_challenge("") == ("", {})


def test_credentials_go_only_to_the_registry_their_server_address_names() -> None:
    spec = api_pb2.ImageSpec(image="127.0.0.1:5000/app:1")
    for address, sent in (
        ("", True),
        ("127.0.0.1:5000", True),
        ("https://127.0.0.1:5000/v2/", True),
        ("other.example:5000", False),
    ):
        a = api_pb2.AuthConfig(username="u", password="p", server_address=address)
        assert (pull_arguments("PullImage", spec, a)[1] is not None) == sent, address
    hub = api_pb2.AuthConfig(username="u", password="p", server_address="https://index.docker.io/v1/")
    assert pull_arguments("PullImage", api_pb2.ImageSpec(image="busybox"), hub)[1] is not None
