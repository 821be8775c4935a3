"""Sign test images as cosign does, without cosign: no cosign binary and no internet here.

cosign keeps an image's signatures in its repository under the tag `sha256-<hex>.sig`: an
OCI manifest with one layer per signature, the layer blob being the "simple signing" JSON
payload and its descriptor's `dev.cosignproject.cosign/signature` annotation the base64
ECDSA-SHA256 signature of exactly those bytes.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from e2e.images.builder import OCI_CONFIG, OCI_MANIFEST, Blob
from e2e.images.registry_client import RegistryClient

SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"


def new_key(directory: Path, name: str) -> tuple[ec.EllipticCurvePrivateKey, Path]:
    """An ECDSA P-256 key pair, as `cosign generate-key-pair` makes; its public key as a PEM file."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = directory / f"{name}.pub"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key, public


def payload(docker_reference: str, manifest_digest: str) -> bytes:
    return json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": docker_reference},
                "image": {"docker-manifest-digest": manifest_digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        }
    ).encode()


def signature_of(key: ec.EllipticCurvePrivateKey, signed: bytes) -> bytes:
    """What cosign signs with: ECDSA over SHA-256 of the payload bytes (DER-encoded)."""
    return key.sign(signed, ec.ECDSA(hashes.SHA256()))


def signature_tag(manifest_digest: str) -> str:
    return manifest_digest.replace(":", "-", 1) + ".sig"


def push_signature(
    client: RegistryClient, repo: str, manifest_digest: str, signed: bytes, signature: bytes
) -> None:
    """Push `signed` (a payload) with `signature` as the `.sig` of `manifest_digest` in `repo`."""
    layer = Blob(SIMPLESIGNING, signed)
    config = Blob(
        OCI_CONFIG,
        json.dumps(
            {
                "architecture": "",
                "os": "",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
            }
        ).encode(),
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [
            layer.descriptor(annotations={SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()})
        ],
    }
    client.push_blob(repo, layer)
    client.push_blob(repo, config)
    client.push_manifest(
        repo, signature_tag(manifest_digest), Blob(OCI_MANIFEST, json.dumps(manifest).encode())
    )


def sign(
    client: RegistryClient,
    repo: str,
    manifest_digest: str,
    docker_reference: str,
    key: ec.EllipticCurvePrivateKey,
) -> bytes:
    """Sign the image `manifest_digest` of `repo` as `docker_reference`, as `cosign sign --key` does;
    returns the payload signed."""
    signed = payload(docker_reference, manifest_digest)
    push_signature(client, repo, manifest_digest, signed, signature_of(key, signed))
    return signed
