"""Image references per the distribution grammar, normalized as the kubelet and containerd do.

`busybox` → `docker.io/library/busybox:latest`; `quay.io/x/y@sha256:…`;
`name:tag@digest` keeps both (the digest decides what is pulled). Anything
else is INVALID_ARGUMENT with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from crib.errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[[a-fA-F0-9:]+\]"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}"

_PATH_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_DOMAIN_RE = re.compile(_DOMAIN)
_TAG_RE = re.compile(_TAG)
_DIGEST_RE = re.compile(_DIGEST)
_SHA256_RE = re.compile(r"sha256:[0-9a-f]{64}")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def with_digest(self, digest: str) -> Reference:
        """`name@digest`, the form of a repo digest."""
        return Reference(self.domain, self.path, None, digest)

    def tagged(self) -> str | None:
        return f"{self.name}:{self.tag}" if self.tag else None


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    # The first component is a registry host only if it looks like one
    # (dot, port or "localhost"); otherwise the name lives on Docker Hub.
    if not sep or ("." not in first and ":" not in first and first != "localhost" and first.lower() == first):
        domain, path = DEFAULT_DOMAIN, name
    else:
        domain, path = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path
    return domain, path


def parse(text: str, default_tag: bool = True) -> Reference:
    """Parse and normalize a reference; `default_tag` adds :latest when neither tag nor digest is given."""
    if not text:
        raise InvalidArgument("image reference is empty")
    if text != text.strip() or any(c.isspace() for c in text):
        raise InvalidArgument(f"invalid image reference {text!r}: contains whitespace")
    if _HEX64_RE.fullmatch(text):
        raise InvalidArgument(f"invalid image reference {text!r}: a 64-character hex string is an image ID")
    name, at, digest = text.partition("@")
    if at:
        if not _DIGEST_RE.fullmatch(digest):
            raise InvalidArgument(f"invalid image reference {text!r}: malformed digest {digest!r}")
        if not _SHA256_RE.fullmatch(digest):
            raise InvalidArgument(
                f"invalid image reference {text!r}: unsupported digest {digest!r} (sha256 only)"
            )
    tag = None
    # A colon after the last slash starts the tag; one before it is a port.
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG_RE.fullmatch(tag):
            raise InvalidArgument(f"invalid image reference {text!r}: invalid tag {tag!r}")
    if not name:
        raise InvalidArgument(f"invalid image reference {text!r}: no repository name")
    domain, path = _split_domain(name)
    if not _DOMAIN_RE.fullmatch(domain):
        raise InvalidArgument(f"invalid image reference {text!r}: invalid registry host {domain!r}")
    if path.lower() != path:
        raise InvalidArgument(f"invalid image reference {text!r}: repository name must be lowercase")
    if not _PATH_RE.fullmatch(path):
        raise InvalidArgument(f"invalid image reference {text!r}: invalid repository name {path!r}")
    if len(f"{domain}/{path}") > NAME_TOTAL_LENGTH_MAX:
        raise InvalidArgument(f"invalid image reference {text!r}: name longer than {NAME_TOTAL_LENGTH_MAX}")
    if default_tag and tag is None and not at:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest or None)


def is_digest(text: str) -> bool:
    return bool(_SHA256_RE.fullmatch(text))
