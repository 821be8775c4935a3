"""The signature policy: parsing policy.json strictly, scope precedence, requirements, identity
rules, and verifying cosign signatures (good, bad, wrong key, tampered payload)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from crib.errors import FailedPrecondition
from crib.image_service import reference
from crib.image_service.registry import Endpoint, RegistrySession
from crib.image_service.signature_policy import (
    SIGNATURE_ANNOTATION,
    SIMPLESIGNING_MEDIA_TYPE,
    IdentityRule,
    Policy,
    PolicyError,
    PolicyFile,
    Rejected,
    UntrustedSignature,
    check,
    fetch_signatures,
    parse_policy,
    scopes_of,
    signature_tag,
    verify_signature,
)

DIGEST = "sha256:" + "a" * 64
OTHER_DIGEST = "sha256:" + "b" * 64
APP = "127.0.0.1:5000/e2e/app"


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def pem(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def payload(digest: str = DIGEST, identity: str = f"{APP}:1", **extra: Any) -> bytes:
    doc = {
        "critical": {
            "identity": {"docker-reference": identity},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": {"creator": "crib tests"},
        **extra,
    }
    return json.dumps(doc).encode()


def sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> UntrustedSignature:
    return UntrustedSignature(data, base64.b64encode(key.sign(data, ec.ECDSA(hashes.SHA256()))).decode())


def write_policy(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(doc))
    return path


def ref(text: str) -> reference.Reference:
    return reference.parse(text)


async def run_check(
    policy: Policy, image: str, signatures: list[UntrustedSignature] | None = None, digest: str = DIGEST
) -> str:
    """The rule that accepted the image, or raises FailedPrecondition; fails if signatures were
    fetched when none were given (requirements without signatures must not ask the registry)."""

    async def fetch() -> list[UntrustedSignature]:
        assert signatures is not None, "signatures fetched for a requirement that needs none"
        return signatures

    rule = await check(policy, Path("/etc/p.json"), ref(image), digest, fetch, f"pull {image}")
    return rule.where


# --- parsing -----------------------------------------------------------------------------------


def test_a_full_policy_parses(tmp_path: Path) -> None:
    key = new_key()
    policy = parse_policy(
        json.dumps(
            {
                "default": [{"type": "reject"}],
                "transports": {
                    "docker": {
                        "": [{"type": "insecureAcceptAnything"}],
                        "127.0.0.1:5000": [{"type": "sigstoreSigned", "keyPath": "/k.pub"}],
                        f"{APP}": [
                            {
                                "type": "sigstoreSigned",
                                "keyData": base64.b64encode(pem(key)).decode(),
                                "signedIdentity": {"type": "matchRepository"},
                            }
                        ],
                        f"{APP}:1": [{"type": "sigstoreSigned", "keyPaths": ["/a.pub", "/b.pub"]}],
                        "*.example.com": [{"type": "insecureAcceptAnything"}],
                        "quay.io/x/y": [
                            {
                                "type": "sigstoreSigned",
                                "keyPath": "/k.pub",
                                "signedIdentity": {"type": "exactRepository", "dockerRepository": "x.io/y"},
                            }
                        ],
                    },
                    # CRI-O's default policy has this; crib pulls over docker only and leaves it be.
                    "docker-daemon": {"": [{"type": "insecureAcceptAnything"}]},
                },
            }
        ).encode()
    )
    assert [r.type for r in policy.default] == ["reject"]
    assert set(policy.docker) == {"", "127.0.0.1:5000", APP, f"{APP}:1", "*.example.com", "quay.io/x/y"}
    (signed,) = policy.docker[APP]
    assert signed.identity == IdentityRule("matchRepository")
    assert signed.keys[0].pem == pem(key)
    assert [k.path for k in policy.docker[f"{APP}:1"][0].keys] == ["/a.pub", "/b.pub"]
    # signedIdentity defaults to matchRepoDigestOrExact.
    assert policy.docker["127.0.0.1:5000"][0].identity == IdentityRule("matchRepoDigestOrExact")


SIG = {"type": "sigstoreSigned", "keyPath": "/k.pub"}


@pytest.mark.parametrize(
    ("doc", "key", "reason"),
    [
        ({"transports": {}}, "default", "missing"),
        ({"default": []}, "default", "non-empty"),
        ({"default": [{"type": "insecureAcceptAnything"}], "extra": 1}, "extra", "unknown key"),
        ({"default": [{"type": "acceptEverything"}]}, "default[0].type", "unknown requirement type"),
        ({"default": [{"type": "reject", "why": "x"}]}, "default[0].why", "unknown key"),
        ({"default": [{"type": "signedBy", "keyType": "GPGKeys"}]}, "default[0].type", "GPG"),
        ({"default": [{**SIG, "keyPth": "/x"}]}, "default[0].keyPth", "unknown key"),
        ({"default": [{**SIG, "fulcio": {}}]}, "default[0].fulcio", "not supported"),
        (
            {"default": [{**SIG, "rekorPublicKeyPath": "/r"}]},
            "default[0].rekorPublicKeyPath",
            "not supported",
        ),
        ({"default": [{"type": "sigstoreSigned"}]}, "default[0]", "exactly one of keyPath"),
        ({"default": [{**SIG, "keyData": "eA=="}]}, "default[0]", "exactly one of keyPath"),
        ({"default": [{**SIG, "keyPath": "k.pub"}]}, "default[0].keyPath", "absolute"),
        ({"default": [{"type": "sigstoreSigned", "keyPaths": []}]}, "default[0].keyPaths", "non-empty"),
        ({"default": [{"type": "sigstoreSigned", "keyData": "!!"}]}, "default[0].keyData", "base64"),
        ({"default": [{"type": "sigstoreSigned", "keyData": "eA=="}]}, "default[0].keyData", "PEM"),
        (
            {"default": [{**SIG, "signedIdentity": {"type": "matchAnything"}}]},
            "default[0].signedIdentity.type",
            "unknown signedIdentity",
        ),
        (
            {"default": [{**SIG, "signedIdentity": {"type": "matchExact", "x": 1}}]},
            "default[0].signedIdentity.x",
            "unknown key",
        ),
        (
            {
                "default": [
                    {**SIG, "signedIdentity": {"type": "remapIdentity", "prefix": "a", "signedPrefix": "b"}}
                ]
            },
            "default[0].signedIdentity.type",
            "not supported",
        ),
        (
            {"default": [{**SIG, "signedIdentity": {"type": "exactReference", "dockerReference": "q.io/a"}}]},
            "default[0].signedIdentity.dockerReference",
            "neither a tag nor a digest",
        ),
        (
            {"default": [{"type": "reject"}], "transports": {"docker": {"-bad-": [{"type": "reject"}]}}},
            'transports.docker["-bad-"]',
            "is not a registry host",
        ),
        (
            {"default": [{"type": "reject"}], "transports": {"docker": {"docker.io/busybox": [SIG]}}},
            'transports.docker["docker.io/busybox"]',
            "docker.io/library/busybox",
        ),
        (
            {"default": [{"type": "reject"}], "transports": {"docker": {"ex*.com": [SIG]}}},
            'transports.docker["ex*.com"]',
            "wildcards",
        ),
        (
            {"default": [{"type": "reject"}], "transports": {"docker": {f"{APP}": []}}},
            f'transports.docker["{APP}"]',
            "non-empty",
        ),
        (
            {"default": [{"type": "reject"}], "transports": {"docker": {APP: [{"type": "nope"}]}}},
            f'transports.docker["{APP}"][0].type',
            "unknown requirement type",
        ),
    ],
)
def test_an_invalid_policy_names_the_key(doc: dict[str, Any], key: str, reason: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(json.dumps(doc).encode())
    assert info.value.key == key
    assert reason in info.value.reason


def test_duplicated_keys_and_bad_json_are_refused() -> None:
    with pytest.raises(PolicyError, match='"default": duplicated key'):
        parse_policy(b'{"default": [{"type": "reject"}], "default": [{"type": "reject"}]}')
    with pytest.raises(PolicyError, match="not valid JSON"):
        parse_policy(b'{"default": [')
    with pytest.raises(PolicyError, match="must be a JSON object"):
        parse_policy(b"[]")


def test_the_policy_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    file = PolicyFile(path)
    with pytest.raises(FailedPrecondition, match=f"signature policy {path}: cannot read it"):
        file.load()
    path.write_text('{"default": [{"type": "reject"}], "transports": {"docker": {"q.io": [{"typ": 1}]}}}')
    with pytest.raises(FailedPrecondition) as info:
        file.load()
    assert str(path) in info.value.message
    assert 'transports.docker["q.io"][0].type: must be a string' in info.value.message
    path.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
    os.utime(path, ns=(1, 1))  # a new mtime even on a coarse clock
    assert file.load().default[0].type == "insecureAcceptAnything"
    assert file.load() is file.load()  # unchanged: not parsed again


# --- scopes ------------------------------------------------------------------------------------


def test_scopes_run_from_the_image_to_host_wildcards() -> None:
    assert scopes_of(ref("reg.example.com:5000/a/b/c:1")) == [
        "reg.example.com:5000/a/b/c:1",
        "reg.example.com:5000/a/b/c",
        "reg.example.com:5000/a/b",
        "reg.example.com:5000/a",
        "reg.example.com:5000",
        "*.example.com",
        "*.com",
    ]
    # A digest is the image's identity, also when a tag comes with it.
    assert scopes_of(ref(f"busybox:1@{DIGEST}"))[:3] == [
        f"docker.io/library/busybox@{DIGEST}",
        "docker.io/library/busybox",
        "docker.io/library",
    ]


def _layered() -> Policy:
    accept = [{"type": "insecureAcceptAnything"}]
    return parse_policy(
        json.dumps(
            {
                "default": [{"type": "reject"}],
                "transports": {
                    "docker": {
                        "127.0.0.1:5000": accept,
                        "127.0.0.1:5000/e2e": [{"type": "reject"}],
                        APP: accept,
                        f"{APP}:bad": [{"type": "reject"}],
                        "*.example.com": [{"type": "reject"}],
                        "reg.example.com": accept,
                    }
                },
            }
        ).encode()
    )


@pytest.mark.parametrize(
    ("image", "scope"),
    [
        (f"{APP}:1", APP),
        (f"{APP}:bad", f"{APP}:bad"),
        ("127.0.0.1:5000/e2e/other:1", "127.0.0.1:5000/e2e"),
        ("127.0.0.1:5000/elsewhere:1", "127.0.0.1:5000"),
        ("reg.example.com/x:1", "reg.example.com"),
        ("other.example.com/x:1", "*.example.com"),
        ("quay.io/x:1", None),
    ],
)
def test_the_most_specific_scope_wins(image: str, scope: str | None) -> None:
    assert _layered().rule_for(ref(image)).scope == scope


def test_the_transport_default_comes_before_the_global_default() -> None:
    policy = parse_policy(
        b'{"default": [{"type": "reject"}], '
        b'"transports": {"docker": {"": [{"type": "insecureAcceptAnything"}]}}}'
    )
    assert policy.rule_for(ref("quay.io/x:1")).scope == ""


# --- requirements ------------------------------------------------------------------------------


async def test_insecure_accept_anything_and_reject() -> None:
    policy = _layered()
    assert await run_check(policy, f"{APP}:1") == f'transports.docker scope "{APP}"'
    with pytest.raises(FailedPrecondition) as info:
        await run_check(policy, f"{APP}:bad")
    assert info.value.message == (
        f"pull {APP}:bad: refused by signature policy /etc/p.json "
        f'(transports.docker scope "{APP}:bad", requirement reject): every image is rejected'
    )
    with pytest.raises(FailedPrecondition, match=r"\(default, requirement reject\)"):
        await run_check(policy, "quay.io/x:1")


def _sigstore(tmp_path: Path, *keys: ec.EllipticCurvePrivateKey, **extra: Any) -> Policy:
    paths = []
    for i, key in enumerate(keys):
        paths.append(tmp_path / f"key{i}.pub")
        paths[-1].write_bytes(pem(key))
    req: dict[str, Any] = {"type": "sigstoreSigned", **extra}
    if len(paths) == 1:
        req["keyPath"] = str(paths[0])
    else:
        req["keyPaths"] = [str(p) for p in paths]
    return parse_policy(
        json.dumps({"default": [{"type": "reject"}], "transports": {"docker": {APP: [req]}}}).encode()
    )


async def test_sigstore_signed_accepts_a_good_signature(tmp_path: Path) -> None:
    key = new_key()
    policy = _sigstore(tmp_path, key)
    assert await run_check(policy, f"{APP}:1", [sign(key, payload())]) == f'transports.docker scope "{APP}"'
    # One accepted signature is enough, whatever the others are.
    other = sign(new_key(), payload())
    assert await run_check(policy, f"{APP}:1", [other, sign(key, payload())])


async def test_sigstore_signed_refusals_say_why(tmp_path: Path) -> None:
    key = new_key()
    policy = _sigstore(tmp_path, key)
    cases: list[tuple[list[UntrustedSignature], str]] = [
        ([], f"a signature is required, but {DIGEST} has none"),
        ([sign(new_key(), payload())], "not signed by a trusted key"),
        ([sign(key, payload(digest=OTHER_DIGEST))], f"signature for digest {OTHER_DIGEST} does not match"),
        ([sign(key, payload(identity=f"{APP}:2"))], f"signature for identity '{APP}:2' is not accepted"),
        ([UntrustedSignature(payload(), None)], f"missing {SIGNATURE_ANNOTATION} annotation"),
        ([UntrustedSignature(b"", "x", broken="payload does not match")], "payload does not match"),
        ([sign(new_key(), payload()), sign(new_key(), payload())], "none of the 2 signatures is accepted"),
    ]
    for signatures, reason in cases:
        with pytest.raises(FailedPrecondition) as info:
            await run_check(policy, f"{APP}:1", signatures)
        assert f'(transports.docker scope "{APP}", requirement sigstoreSigned): ' in info.value.message
        assert reason in info.value.message, info.value.message


async def test_any_of_key_paths_may_have_signed(tmp_path: Path) -> None:
    first, second = new_key(), new_key()
    policy = _sigstore(tmp_path, first, second)
    assert await run_check(policy, f"{APP}:1", [sign(second, payload())])


async def test_an_unusable_key_file_fails_the_pull_naming_it(tmp_path: Path) -> None:
    policy = _sigstore(tmp_path, new_key())
    (tmp_path / "key0.pub").unlink()
    with pytest.raises(FailedPrecondition, match=f"key {tmp_path}/key0.pub: cannot read it"):
        await run_check(policy, f"{APP}:1", [])
    (tmp_path / "key0.pub").write_bytes(pem(ed25519.Ed25519PrivateKey.generate()))
    with pytest.raises(FailedPrecondition, match="not an ECDSA public key"):
        await run_check(policy, f"{APP}:1", [])


async def test_every_requirement_must_accept() -> None:
    policy = parse_policy(b'{"default": [{"type": "insecureAcceptAnything"}, {"type": "reject"}]}')
    with pytest.raises(FailedPrecondition, match=r"\(default, requirement \[1\] reject\)"):
        await run_check(policy, "quay.io/x:1")


# --- verifying one signature -------------------------------------------------------------------


def test_verify_good_bad_wrong_key_and_tampered_payload() -> None:
    key = new_key()
    good = sign(key, payload())
    verify_signature(good, [key.public_key()], IdentityRule(), ref(f"{APP}:1"), DIGEST)
    with pytest.raises(Rejected, match="not signed by a trusted key"):
        verify_signature(good, [new_key().public_key()], IdentityRule(), ref(f"{APP}:1"), DIGEST)
    # The payload changed after signing: the signature no longer covers it.
    tampered = UntrustedSignature(payload(digest=OTHER_DIGEST), good.signature)
    with pytest.raises(Rejected, match="not signed by a trusted key"):
        verify_signature(tampered, [key.public_key()], IdentityRule(), ref(f"{APP}:1"), OTHER_DIGEST)
    garbled = UntrustedSignature(good.payload, "@@@")
    with pytest.raises(Rejected, match="not valid base64"):
        verify_signature(garbled, [key.public_key()], IdentityRule(), ref(f"{APP}:1"), DIGEST)
    flipped = base64.b64decode(good.signature or "")
    flipped = flipped[:-1] + bytes([flipped[-1] ^ 1])
    with pytest.raises(Rejected, match="not signed by a trusted key"):
        verify_signature(
            UntrustedSignature(good.payload, base64.b64encode(flipped).decode()),
            [key.public_key()],
            IdentityRule(),
            ref(f"{APP}:1"),
            DIGEST,
        )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "invalid signature payload"),
        (payload(extra=1), "exactly critical, optional"),
        (payload().replace(b"cosign container image signature", b"other"), "unrecognized signature type"),
        (
            json.dumps({"critical": {"type": "cosign container image signature"}, "optional": None}).encode(),
            "critical",
        ),
    ],
)
def test_a_signed_but_malformed_payload_is_rejected(body: bytes, reason: str) -> None:
    key = new_key()
    with pytest.raises(Rejected, match=reason):
        verify_signature(sign(key, body), [key.public_key()], IdentityRule(), ref(f"{APP}:1"), DIGEST)


@pytest.mark.parametrize(
    ("rule", "image", "signed", "accepted"),
    [
        # matchRepoDigestOrExact: a tag must match exactly, a digest needs only the repository.
        ("matchRepoDigestOrExact", f"{APP}:1", f"{APP}:1", True),
        ("matchRepoDigestOrExact", f"{APP}:1", f"{APP}:2", False),
        ("matchRepoDigestOrExact", f"{APP}:1", APP, False),
        ("matchRepoDigestOrExact", f"{APP}@{DIGEST}", f"{APP}:2", True),
        ("matchRepoDigestOrExact", f"{APP}@{DIGEST}", "127.0.0.1:5000/e2e/other:2", False),
        ("matchRepoDigestOrExact", f"{APP}@{DIGEST}", APP, False),
        # matchRepository: the repository is enough (what /usr/bin/cosign signs).
        ("matchRepository", f"{APP}:1", APP, True),
        ("matchRepository", f"{APP}:1", f"{APP}:2", True),
        ("matchRepository", f"{APP}:1", "127.0.0.1:5000/e2e/other", False),
        # matchExact: the very same name, so a digest pull needs a digest signature.
        ("matchExact", f"{APP}:1", f"{APP}:1", True),
        ("matchExact", f"{APP}@{DIGEST}", f"{APP}:1", False),
        ("matchExact", f"{APP}@{DIGEST}", f"{APP}@{DIGEST}", True),
        ("matchExact", f"{APP}:1", APP, False),
        # Names compare normalized.
        ("matchRepoDigestOrExact", "docker.io/library/busybox:1", "busybox:1", True),
        ("matchRepository", f"{APP}:1", "Not A Reference", False),
    ],
)
def test_identity_rules(rule: str, image: str, signed: str, accepted: bool) -> None:
    assert IdentityRule(rule).accepts(ref(image), signed) is accepted


def test_exact_reference_and_repository_name_the_signed_identity() -> None:
    image = ref("mirror.local/vendor/app:1")
    assert IdentityRule("exactReference", "vendor.io/app:1").accepts(image, "vendor.io/app:1")
    assert not IdentityRule("exactReference", "vendor.io/app:1").accepts(image, "mirror.local/vendor/app:1")
    assert IdentityRule("exactRepository", "vendor.io/app").accepts(image, "vendor.io/app")
    assert not IdentityRule("exactRepository", "vendor.io/app").accepts(image, "vendor.io/other")


# --- cosign's signatures in a registry ---------------------------------------------------------


def _blob_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _sig_manifest(layers: list[dict[str, Any]]) -> bytes:
    config = b"{}"
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _blob_digest(config),
                "size": len(config),
            },
            "layers": layers,
        }
    ).encode()


class Body(httpx.AsyncByteStream):
    """A streamed body, as a real registry's: MockTransport reads plain content up front."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self):  # type: ignore[override]
        yield self.data


def _session(manifests: dict[str, bytes], blobs: dict[str, bytes]) -> tuple[RegistrySession, list[str]]:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        asked.append(path)
        kind, _, name = path.removeprefix("/v2/e2e/app/").partition("/")
        found = (manifests if kind == "manifests" else blobs).get(name)
        if found is None:
            return httpx.Response(404)
        return httpx.Response(200, stream=Body(found))

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return RegistrySession(http, Endpoint("http://reg", "reg"), "e2e/app", None, 5), asked


async def test_signatures_come_from_the_sig_tag_of_the_digest() -> None:
    key = new_key()
    good = sign(key, payload())
    other_payload = b'{"in-toto": 1}'
    tampered = payload(identity="evil/x:1")
    layers = [
        {
            "mediaType": SIMPLESIGNING_MEDIA_TYPE,
            "digest": _blob_digest(good.payload),
            "size": len(good.payload),
            "annotations": {SIGNATURE_ANNOTATION: good.signature},
        },
        # Another kind of attachment: not a signature.
        {"mediaType": "application/vnd.in-toto+json", "digest": _blob_digest(other_payload), "size": 14},
    ]
    assert signature_tag(DIGEST) == f"sha256-{'a' * 64}.sig"
    blobs = {_blob_digest(good.payload): good.payload}
    session, asked = _session({signature_tag(DIGEST): _sig_manifest(layers)}, blobs)
    found = await fetch_signatures(session, DIGEST, "pull x")
    assert found == [good]
    assert asked[0] == f"/v2/e2e/app/manifests/{signature_tag(DIGEST)}"
    assert all(not p.endswith(_blob_digest(other_payload)) for p in asked)

    # A blob whose bytes do not hash to its digest is a broken signature, never a payload.
    session, _ = _session(
        {signature_tag(DIGEST): _sig_manifest(layers[:1])}, {_blob_digest(good.payload): tampered}
    )
    (broken,) = await fetch_signatures(session, DIGEST, "pull x")
    assert broken.broken and broken.payload == b""
    assert "does not match its digest" in broken.broken


async def test_no_sig_tag_means_no_signatures() -> None:
    session, _ = _session({}, {})
    assert await fetch_signatures(session, DIGEST, "pull x") == []
