"""Push and fetch test images over the registry's HTTP API (distribution spec v2)."""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx

from e2e.images.builder import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Blob,
    BuiltImage,
    BuiltIndex,
)

ACCEPT_ALL = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))
TIMEOUT = httpx.Timeout(30.0)


@dataclass(frozen=True)
class FetchedManifest:
    media_type: str
    data: bytes
    # What the registry says the digest is, checked against the bytes.
    digest: str


class RegistryClient:
    def __init__(
        self,
        base_url: str,
        auth: tuple[str, str] | None = None,
        ca_file: str | None = None,
        cert: tuple[str, str] | None = None,
    ) -> None:
        """`cert`: a (certificate, key) pair for a registry that wants a client certificate."""
        self.base_url = base_url.rstrip("/")
        verify: ssl.SSLContext | bool = True
        if ca_file or cert:
            verify = ssl.create_default_context(cafile=ca_file)
            if cert:
                verify.load_cert_chain(*cert)
        self.http = httpx.Client(base_url=self.base_url, auth=auth, timeout=TIMEOUT, verify=verify)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def push_blob(self, repo: str, blob: Blob) -> None:
        if self.http.head(f"/v2/{repo}/blobs/{blob.digest}").status_code == 200:
            return
        start = self.http.post(f"/v2/{repo}/blobs/uploads/")
        start.raise_for_status()
        location = urljoin(self.base_url + "/", start.headers["Location"])
        sep = "&" if "?" in location else "?"
        done = self.http.put(
            f"{location}{sep}digest={blob.digest}",
            content=blob.data,
            headers={"Content-Type": "application/octet-stream"},
        )
        done.raise_for_status()

    def push_manifest(self, repo: str, reference: str, manifest: Blob) -> None:
        r = self.http.put(
            f"/v2/{repo}/manifests/{reference}",
            content=manifest.data,
            headers={"Content-Type": manifest.media_type},
        )
        r.raise_for_status()
        assert r.headers.get("Docker-Content-Digest") == manifest.digest

    def push_image(self, repo: str, tag: str | None, image: BuiltImage) -> str:
        """Push blobs then the manifest, by digest and (if given) by tag; returns the digest."""
        for blob in image.blobs:
            self.push_blob(repo, blob)
        self.push_manifest(repo, image.manifest.digest, image.manifest)
        if tag:
            self.push_manifest(repo, tag, image.manifest)
        return image.manifest.digest

    def push_index(self, repo: str, tag: str, index: BuiltIndex) -> str:
        for image in index.images:
            self.push_image(repo, None, image)
        self.push_manifest(repo, tag, index.index)
        return index.index.digest

    def get_manifest(self, repo: str, reference: str) -> FetchedManifest:
        r = self.http.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": ACCEPT_ALL})
        r.raise_for_status()
        media_type = r.headers["Content-Type"].split(";")[0].strip()
        return FetchedManifest(media_type, r.content, r.headers.get("Docker-Content-Digest", ""))

    def get_blob(self, repo: str, digest: str) -> bytes:
        r = self.http.get(f"/v2/{repo}/blobs/{digest}", follow_redirects=True)
        r.raise_for_status()
        if "sha256:" + hashlib.sha256(r.content).hexdigest() != digest:
            raise AssertionError(f"blob {digest} came back with other content")
        return r.content
