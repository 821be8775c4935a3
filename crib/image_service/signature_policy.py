"""The signature policy checked at PullImage: a containers-policy.json(5) file, as CRI-O's.

A policy names, per scope of the `docker` transport (a registry host, a repository
namespace, a repository, one tagged or digested image, or a `*.example.com`
wildcard), the requirements an image must meet; only the most specific matching
scope applies (then the transport's `""` scope, then the global `default`). crib
interprets `insecureAcceptAnything`, `reject` and `sigstoreSigned` with public keys
(cosign's ECDSA keys). Parsing is strict, as containers/image's: an unknown,
duplicated or unsupported key refuses the whole file, with the key named.

The check runs once the manifest the user named is resolved and before any blob is
fetched, so a refused image leaves nothing behind. cosign signs that manifest's
digest (an index's, for a multi-platform image) and keeps its signatures in the same
repository under the tag `sha256-<hex>.sig`: an OCI manifest whose simple-signing
layers are the signed payloads, each with its base64 signature in an annotation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from crib.errors import FailedPrecondition, InvalidArgument, NotFound
from crib.image_service import reference
from crib.image_service.reference import Reference
from crib.log_setup import get_logger

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

log = get_logger("crib.policy")

SIMPLESIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
COSIGN_SIGNATURE_TYPE = "cosign container image signature"
# Payloads are a few hundred bytes; the cap keeps a hostile registry from filling memory.
MAX_PAYLOAD_BYTES = 64 << 10
# Signatures read per image: a registry cannot make one pull fetch payloads without end.
MAX_SIGNATURES = 64
MAX_POLICY_BYTES = 4 << 20

INSECURE_ACCEPT_ANYTHING = "insecureAcceptAnything"
REJECT = "reject"
SIGSTORE_SIGNED = "sigstoreSigned"
# Requirement types of containers-policy.json(5) that crib knows but does not verify.
_UNSUPPORTED_TYPES = {
    "signedBy": "GPG simple signing is not supported by crib; use sigstoreSigned",
    "signedBaseLayer": "not supported by crib",
}
# sigstoreSigned keys crib does not verify (keyless signing and transparency logs).
_UNSUPPORTED_SIGSTORE_KEYS = (
    "fulcio",
    "pki",
    "rekorPublicKeyPath",
    "rekorPublicKeyPaths",
    "rekorPublicKeyData",
    "rekorPublicKeyDatas",
)
_KEY_SOURCES = ("keyPath", "keyPaths", "keyData", "keyDatas")

MATCH_REPO_DIGEST_OR_EXACT = "matchRepoDigestOrExact"
MATCH_REPOSITORY = "matchRepository"
MATCH_EXACT = "matchExact"
EXACT_REFERENCE = "exactReference"
EXACT_REPOSITORY = "exactRepository"

_HOST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


class PolicyError(Exception):
    """A policy file crib refuses; `key` is the JSON path of the offending key."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}" if key else reason)
        self.key = key
        self.reason = reason


class Rejected(Exception):
    """Why one signature, or one requirement, did not accept the image."""


class KeyUnusable(Exception):
    """A public key the policy names that cannot be read or used."""


# --- the policy, parsed ------------------------------------------------------------------------


@dataclass(frozen=True)
class IdentityRule:
    """signedIdentity: which docker-reference a signature may claim for the image."""

    type: str = MATCH_REPO_DIGEST_OR_EXACT
    # The reference of exactReference, the repository of exactRepository.
    value: str = ""

    def accepts(self, intended: Reference, signed_text: str) -> bool:
        try:
            signed = reference.parse(signed_text, default_tag=False)
        except InvalidArgument:
            return False
        name_only = not signed.tag and not signed.digest
        if self.type == MATCH_REPOSITORY:
            return signed.name == intended.name
        if self.type == EXACT_REPOSITORY:
            return signed.name == reference.parse(self.value, default_tag=False).name
        if name_only:
            # The other rules want the signature to name one image, not a repository.
            return False
        if self.type == MATCH_EXACT:
            return str(signed) == str(intended)
        if self.type == EXACT_REFERENCE:
            return str(signed) == str(reference.parse(self.value, default_tag=False))
        # matchRepoDigestOrExact: a tag must match exactly; a digest is checked against the
        # signed digest already, so the repository is enough.
        if intended.digest:
            return signed.name == intended.name
        return str(signed) == str(intended)


@dataclass(frozen=True)
class KeySource:
    """A public key of sigstoreSigned: a file read at each check, or data from the policy."""

    path: str = ""
    pem: bytes = b""

    def __str__(self) -> str:
        return self.path or "keyData"


@dataclass(frozen=True)
class Requirement:
    type: str
    keys: tuple[KeySource, ...] = ()
    identity: IdentityRule = IdentityRule()


@dataclass(frozen=True)
class Rule:
    """The requirements that apply to one image, and where the policy says so."""

    # None: the global default.
    scope: str | None
    requirements: tuple[Requirement, ...]

    @property
    def where(self) -> str:
        # As the policy file spells them, so the entry is easy to find.
        if self.scope is None:
            return "default"
        return f"transports.docker scope {json.dumps(self.scope)}"


@dataclass(frozen=True)
class Policy:
    default: tuple[Requirement, ...]
    # transports.docker: scope → requirements.
    docker: dict[str, tuple[Requirement, ...]]

    def rule_for(self, ref: Reference) -> Rule:
        """The most specific scope matching `ref`, as containers-policy.json(5) orders them."""
        for scope in scopes_of(ref):
            if scope in self.docker:
                return Rule(scope, self.docker[scope])
        if "" in self.docker:
            return Rule("", self.docker[""])
        return Rule(None, self.default)


def policy_identity(ref: Reference) -> Reference:
    """The image a pull names, for scopes and signed identities: a digest wins over a tag
    (containers/image takes no reference with both)."""
    if ref.digest:
        return ref.with_digest(ref.digest)
    return ref


def scopes_of(ref: Reference) -> list[str]:
    """Scopes matching `ref`, most specific first: the image, its repository, each parent
    namespace up to the registry host, then `*.` wildcards of the host (without its port)."""
    ident = policy_identity(ref)
    out = [str(ident)]
    name = ident.name
    while True:
        out.append(name)
        slash = name.rfind("/")
        if slash < 0:
            break
        name = name[:slash]
    host = name.split(":", 1)[0] if not name.startswith("[") else name
    while "." in host:
        host = host.split(".", 1)[1]
        out.append(f"*.{host}")
    return out


# --- parsing -----------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise PolicyError(json.dumps(key), "duplicated key")
        out[key] = value
    return out


def _path(prefix: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{prefix}.{key}" if prefix else key
    return f"{prefix}[{json.dumps(key)}]"


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PolicyError(where, "must be a JSON object")
    return value


def _only(obj: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in obj:
        if key not in allowed:
            raise PolicyError(_path(where, key), "unknown key")


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise PolicyError(where, "must be a string")
    return value


def _key_path(value: Any, where: str) -> KeySource:
    path = _string(value, where)
    if not path.startswith("/"):
        raise PolicyError(where, f"must be an absolute path, got {path!r}")
    return KeySource(path=path)


def _key_data(value: Any, where: str) -> KeySource:
    try:
        pem = base64.b64decode(_string(value, where), validate=True)
    except binascii.Error:
        raise PolicyError(where, "is not valid base64") from None
    try:
        load_public_key(pem)
    except Rejected as exc:
        raise PolicyError(where, str(exc)) from None
    return KeySource(pem=pem)


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise PolicyError(where, "must be a non-empty JSON array")
    return value


def _identity(value: Any, where: str) -> IdentityRule:
    obj = _object(value, where)
    kind = _string(obj.get("type"), _path(where, "type"))
    if kind in (MATCH_REPO_DIGEST_OR_EXACT, MATCH_REPOSITORY, MATCH_EXACT):
        _only(obj, ("type",), where)
        return IdentityRule(kind)
    if kind in (EXACT_REFERENCE, EXACT_REPOSITORY):
        field = "dockerReference" if kind == EXACT_REFERENCE else "dockerRepository"
        _only(obj, ("type", field), where)
        text = _string(obj.get(field), _path(where, field))
        try:
            ref = reference.parse(text, default_tag=False)
        except InvalidArgument as exc:
            raise PolicyError(_path(where, field), exc.message) from None
        if kind == EXACT_REFERENCE and not ref.tag and not ref.digest:
            raise PolicyError(_path(where, field), f"{text!r} has neither a tag nor a digest")
        if kind == EXACT_REPOSITORY and (ref.tag or ref.digest):
            raise PolicyError(_path(where, field), f"{text!r} must be a repository, without tag or digest")
        return IdentityRule(kind, text)
    if kind == "remapIdentity":
        raise PolicyError(_path(where, "type"), "remapIdentity is not supported by crib")
    raise PolicyError(_path(where, "type"), f"unknown signedIdentity type {kind!r}")


def _requirement(value: Any, where: str) -> Requirement:
    obj = _object(value, where)
    kind = _string(obj.get("type"), _path(where, "type"))
    if kind in (INSECURE_ACCEPT_ANYTHING, REJECT):
        _only(obj, ("type",), where)
        return Requirement(kind)
    if kind in _UNSUPPORTED_TYPES:
        raise PolicyError(_path(where, "type"), f"{kind}: {_UNSUPPORTED_TYPES[kind]}")
    if kind != SIGSTORE_SIGNED:
        raise PolicyError(_path(where, "type"), f"unknown requirement type {kind!r}")
    for key in _UNSUPPORTED_SIGSTORE_KEYS:
        if key in obj:
            raise PolicyError(_path(where, key), "not supported by crib (public keys only)")
    _only(obj, ("type", *_KEY_SOURCES, "signedIdentity"), where)
    given = [k for k in _KEY_SOURCES if k in obj]
    if len(given) != 1:
        raise PolicyError(
            where, f"exactly one of {', '.join(_KEY_SOURCES)} must be present, got {len(given) or 'none'}"
        )
    (source,) = given
    at = _path(where, source)
    if source == "keyPath":
        keys = (_key_path(obj[source], at),)
    elif source == "keyData":
        keys = (_key_data(obj[source], at),)
    elif source == "keyPaths":
        keys = tuple(_key_path(v, _path(at, i)) for i, v in enumerate(_list(obj[source], at)))
    else:
        keys = tuple(_key_data(v, _path(at, i)) for i, v in enumerate(_list(obj[source], at)))
    identity = IdentityRule()
    if "signedIdentity" in obj:
        identity = _identity(obj["signedIdentity"], _path(where, "signedIdentity"))
    return Requirement(kind, keys, identity)


def _requirements(value: Any, where: str) -> tuple[Requirement, ...]:
    return tuple(_requirement(v, _path(where, i)) for i, v in enumerate(_list(value, where)))


def _check_scope(scope: str, where: str) -> None:
    """A docker scope must be able to match: the fully expanded form, as the pull's names are."""
    if scope == "":
        return
    if scope.startswith("*."):
        if not _HOST_RE.fullmatch(scope[2:]):
            raise PolicyError(where, "a wildcard scope is *. and a host name, without a port")
        return
    if "*" in scope:
        raise PolicyError(where, "wildcards are only a leading *. of a host name (*.example.com)")
    if "/" not in scope:
        if not re.fullmatch(rf"{_HOST_RE.pattern}(?::[0-9]+)?|\[[0-9A-Fa-f:]+\](?::[0-9]+)?", scope):
            raise PolicyError(where, "is not a registry host[:port]")
        return
    try:
        parsed = reference.parse(scope, default_tag=False)
    except InvalidArgument as exc:
        raise PolicyError(where, exc.message) from None
    if parsed.tag and parsed.digest:
        raise PolicyError(where, "a scope has a tag or a digest, not both")
    if str(parsed) != scope:
        # "busybox" or "docker.io/busybox" never match: pulls are looked up fully expanded.
        raise PolicyError(where, f"is not in the fully expanded form; write {str(parsed)!r}")


def _check_other_transport(value: Any, where: str) -> None:
    """crib pulls over the docker transport only; other transports (docker-daemon, dir, …) are
    checked for shape and otherwise left alone, so CRI-O's policy files load as they are."""
    for scope, reqs in _object(value, where).items():
        at = _path(where, scope)
        for i, req in enumerate(_list(reqs, at)):
            _string(_object(req, _path(at, i)).get("type"), _path(_path(at, i), "type"))


def parse_policy(data: bytes) -> Policy:
    """A policy.json's bytes → Policy, or PolicyError naming the key."""
    try:
        doc = json.loads(data, object_pairs_hook=_no_duplicates)
    except PolicyError:
        raise
    except ValueError as exc:
        raise PolicyError("", f"not valid JSON: {exc}") from None
    top = _object(doc, "policy")
    _only(top, ("default", "transports"), "")
    if "default" not in top:
        raise PolicyError("default", "is missing (the global default requirements are mandatory)")
    default = _requirements(top["default"], "default")
    docker: dict[str, tuple[Requirement, ...]] = {}
    transports = _object(top.get("transports", {}), "transports")
    for name, scopes in transports.items():
        where = _path("transports", name)
        if name != "docker":
            _check_other_transport(scopes, where)
            continue
        for scope, reqs in _object(scopes, where).items():
            at = _path(where, scope)
            _check_scope(scope, at)
            docker[scope] = _requirements(reqs, at)
    return Policy(default, docker)


class PolicyFile:
    """The configured policy file, read again when it changes (no restart needed to edit it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, ...] | None = None
        # The parsed policy, or why the file is refused (kept so an unchanged bad file is
        # neither parsed nor logged again at every pull).
        self._parsed: Policy | str = ""

    def load(self) -> Policy:
        """The policy, or FailedPrecondition naming the file and why it is refused."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            self._stamp = None
            raise FailedPrecondition(
                f"signature policy {self.path}: cannot read it: {exc.strerror or exc}"
            ) from None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if stamp != self._stamp:
            self._parsed = self._read(st.st_size)
            self._stamp = stamp
        if isinstance(self._parsed, str):
            raise FailedPrecondition(self._parsed)
        return self._parsed

    def _read(self, size: int) -> Policy | str:
        try:
            if size > MAX_POLICY_BYTES:
                raise PolicyError("", f"larger than {MAX_POLICY_BYTES} bytes")
            policy = parse_policy(self.path.read_bytes())
        except OSError as exc:
            return f"signature policy {self.path}: cannot read it: {exc.strerror or exc}"
        except PolicyError as exc:
            return f"signature policy {self.path} is refused: {exc}"
        log.info("image.signature_policy_loaded", path=str(self.path), docker_scopes=len(policy.docker))
        return policy


# --- verifying one signature -------------------------------------------------------------------


@dataclass(frozen=True)
class UntrustedSignature:
    """One cosign signature as the registry sent it: nothing in it is trusted yet."""

    payload: bytes
    # The base64 signature annotation; None when the layer had none.
    signature: str | None
    # Set when the signature could not even be read (its blob did not match its digest).
    broken: str = ""


def load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    # cryptography costs cribd ~9 MB of memory: loaded only by a node that verifies signatures.
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise Rejected(f"not a PEM public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise Rejected("not an ECDSA public key (crib verifies cosign's ECDSA keys)")
    return key


def read_keys(keys: tuple[KeySource, ...]) -> list[ec.EllipticCurvePublicKey]:
    """The requirement's keys, key files read now (a rotated key needs no restart)."""
    out = []
    for source in keys:
        pem = source.pem
        if source.path:
            try:
                pem = Path(source.path).read_bytes()
            except OSError as exc:
                raise KeyUnusable(f"key {source.path}: cannot read it: {exc.strerror or exc}") from None
        try:
            out.append(load_public_key(pem))
        except Rejected as exc:
            raise KeyUnusable(f"key {source}: {exc}") from None
    return out


def _exact(obj: Any, fields: tuple[str, ...], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict) or set(obj) != set(fields):
        raise Rejected(f"invalid signature payload: {where} must hold exactly {', '.join(fields)}")
    return obj


def _payload_claims(payload: bytes) -> tuple[str, str]:
    """(docker-manifest-digest, docker-reference) of a simple-signing payload, parsed strictly."""
    try:
        doc = json.loads(payload, object_pairs_hook=_no_duplicates)
    except (ValueError, PolicyError) as exc:
        raise Rejected(f"invalid signature payload: {exc}") from None
    doc = _exact(doc, ("critical", "optional"), "the payload")
    optional = doc["optional"]
    # cosign writes "optional": null when it has no annotations.
    if optional is not None and not isinstance(optional, dict):
        raise Rejected("invalid signature payload: optional must be an object")
    critical = _exact(doc["critical"], ("type", "image", "identity"), "critical")
    if critical["type"] != COSIGN_SIGNATURE_TYPE:
        raise Rejected(f"unrecognized signature type {critical['type']!r}")
    digest = _exact(critical["image"], ("docker-manifest-digest",), "critical.image")[
        "docker-manifest-digest"
    ]
    ident = _exact(critical["identity"], ("docker-reference",), "critical.identity")["docker-reference"]
    if not isinstance(digest, str) or not isinstance(ident, str):
        raise Rejected("invalid signature payload: digest and reference must be strings")
    return digest, ident


def verify_signature(
    sig: UntrustedSignature,
    keys: list[ec.EllipticCurvePublicKey],
    identity: IdentityRule,
    intended: Reference,
    manifest_digest: str,
) -> None:
    """Accept `sig` for the image `intended` whose manifest has `manifest_digest`, or raise Rejected.

    The signature is checked first: nothing in the payload counts before a trusted key has
    signed its exact bytes."""
    if sig.broken:
        raise Rejected(sig.broken)
    if sig.signature is None:
        raise Rejected(f"missing {SIGNATURE_ANNOTATION} annotation")
    try:
        raw = base64.b64decode(sig.signature, validate=True)
    except binascii.Error:
        raise Rejected("the signature is not valid base64") from None
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415 (see load_public_key)
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    for key in keys:
        try:
            key.verify(raw, sig.payload, ec.ECDSA(hashes.SHA256()))
            break
        except InvalidSignature:
            continue
    else:
        raise Rejected("cryptographic signature verification failed: not signed by a trusted key")
    digest, signed_ref = _payload_claims(sig.payload)
    if digest != manifest_digest:
        raise Rejected(f"signature for digest {digest} does not match the image's {manifest_digest}")
    if not identity.accepts(policy_identity(intended), signed_ref):
        raise Rejected(f"signature for identity {signed_ref!r} is not accepted ({identity.type})")


# --- evaluating the policy for a pull ----------------------------------------------------------


async def check(
    policy: Policy,
    source: Path,
    ref: Reference,
    manifest_digest: str,
    fetch_signatures: Callable[[], Awaitable[list[UntrustedSignature]]],
    what: str,
) -> Rule:
    """Every requirement of the rule for `ref` must accept the image whose top manifest has
    `manifest_digest`; FailedPrecondition names the policy file, the scope and the requirement
    that refused it. Returns the rule applied."""
    rule = policy.rule_for(ref)
    signatures: list[UntrustedSignature] | None = None
    for i, req in enumerate(rule.requirements):
        label = req.type if len(rule.requirements) == 1 else f"[{i}] {req.type}"
        where = f"{rule.where}, requirement {label}"
        try:
            if req.type == REJECT:
                raise Rejected("every image is rejected")
            if req.type == SIGSTORE_SIGNED:
                keys = read_keys(req.keys)
                if signatures is None:
                    signatures = await fetch_signatures()
                _accept_one(signatures, keys, req.identity, ref, manifest_digest)
        except Rejected as exc:
            raise FailedPrecondition(
                f"{what}: refused by signature policy {source} ({where}): {exc}"
            ) from None
        except KeyUnusable as exc:
            raise FailedPrecondition(f"{what}: signature policy {source} ({where}): {exc}") from None
    return rule


def _accept_one(
    signatures: list[UntrustedSignature],
    keys: list[ec.EllipticCurvePublicKey],
    identity: IdentityRule,
    ref: Reference,
    manifest_digest: str,
) -> None:
    """One accepted signature is enough; otherwise say why each was not."""
    reasons = []
    for sig in signatures:
        try:
            verify_signature(sig, keys, identity, ref, manifest_digest)
            return
        except Rejected as exc:
            reasons.append(str(exc))
    if not reasons:
        raise Rejected(f"a signature is required, but {manifest_digest} has none")
    if len(reasons) == 1:
        raise Rejected(reasons[0])
    raise Rejected(f"none of the {len(reasons)} signatures is accepted: {'; '.join(reasons)}")


# --- cosign's signatures in the registry -------------------------------------------------------


class RegistryReader(Protocol):
    """What fetching signatures needs of a registry session (RegistrySession has it)."""

    async def manifest(self, ref: str, what: str) -> tuple[bytes, str, str]: ...

    def blob(self, digest: str, what: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]: ...


def signature_tag(manifest_digest: str) -> str:
    """`sha256:<hex>` → `sha256-<hex>.sig`, where cosign keeps an image's signatures."""
    return manifest_digest.replace(":", "-", 1) + ".sig"


async def fetch_signatures(
    session: RegistryReader, manifest_digest: str, what: str
) -> list[UntrustedSignature]:
    """The cosign signatures of `manifest_digest` in the session's repository; none if no `.sig` tag."""
    what = f"{what}: signatures {signature_tag(manifest_digest)}"
    try:
        body, _, _ = await session.manifest(signature_tag(manifest_digest), what)
    except NotFound:
        return []
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise InvalidArgument(f"{what}: not valid JSON: {exc}") from None
    layers = doc.get("layers") if isinstance(doc, dict) else None
    if not isinstance(layers, list):
        raise InvalidArgument(f"{what}: the signature manifest has no layers list")
    out = []
    for layer in layers[:MAX_SIGNATURES]:
        if not isinstance(layer, dict) or layer.get("mediaType") != SIMPLESIGNING_MEDIA_TYPE:
            continue  # another kind of attachment
        annotations = layer.get("annotations")
        signature = annotations.get(SIGNATURE_ANNOTATION) if isinstance(annotations, dict) else None
        out.append(
            await _read_payload(session, layer, signature if isinstance(signature, str) else None, what)
        )
    return out


async def _read_payload(
    session: RegistryReader, layer: dict[str, Any], signature: str | None, what: str
) -> UntrustedSignature:
    digest, size = layer.get("digest"), layer.get("size")
    if not isinstance(digest, str) or not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        return UntrustedSignature(b"", signature, f"signature layer has an unsupported digest {digest!r}")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_PAYLOAD_BYTES:
        return UntrustedSignature(b"", signature, f"signature payload {digest} has an unusable size {size!r}")
    payload = bytearray()
    try:
        async with session.blob(digest, f"{what}: payload {digest}") as chunks:
            async for chunk in chunks:
                payload += chunk
                if len(payload) > size:
                    break
    except NotFound:
        return UntrustedSignature(b"", signature, f"signature payload {digest} is missing from the registry")
    if len(payload) != size or "sha256:" + hashlib.sha256(payload).hexdigest() != digest:
        return UntrustedSignature(b"", signature, f"signature payload does not match its digest {digest}")
    return UntrustedSignature(bytes(payload), signature)
