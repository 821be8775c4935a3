"""Registry credentials: from the CRI AuthConfig or a docker config.json-style auth file.

Secrets never reach a log or an error message: Credentials' repr hides them.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path

from crib.errors import InvalidArgument
from crib.log_setup import get_logger

log = get_logger("crib.auth")

# How Docker Hub appears as a key in docker's config.json.
_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io", "docker.io")


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = field(default="", repr=False)
    # An OAuth2 refresh token, traded for access tokens at the realm.
    identity_token: str = field(default="", repr=False)
    # A bearer token used as is.
    registry_token: str = field(default="", repr=False)

    def __bool__(self) -> bool:
        return bool(self.username or self.password or self.identity_token or self.registry_token)


def _decode_auth(auth: str, where: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(auth, validate=True).decode()
    except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII text b64decode refuses
        raise InvalidArgument(f"{where}: 'auth' is not base64 of user:password") from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise InvalidArgument(f"{where}: 'auth' is not base64 of user:password")
    return user, password


def from_auth_config(
    username: str = "", password: str = "", auth: str = "", identity_token: str = "", registry_token: str = ""
) -> Credentials | None:
    if auth and not (username or password):
        username, password = _decode_auth(auth, "auth config")
    # It goes into an Authorization header as it is: visible ASCII only (RFC 6750's token68 and more).
    if any(not 33 <= ord(c) <= 126 for c in registry_token):
        raise InvalidArgument("auth config: 'registry_token' may hold only visible ASCII characters")
    creds = Credentials(username, password, identity_token, registry_token)
    return creds or None


def _host_of(key: str) -> str:
    key = key.removeprefix("https://").removeprefix("http://")
    return key.split("/", 1)[0]


def from_auth_file(path: str, host: str) -> Credentials | None:
    """Credentials for `host` from a docker config.json (`auths` section)."""
    if not path:
        return None
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("auth_file.unreadable", path=path, error=str(exc))
        return None
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        return None
    wanted = set(_DOCKER_HUB_KEYS) if host == "docker.io" else {host}
    for key, entry in auths.items():
        if not isinstance(entry, dict) or (key not in wanted and _host_of(key) not in wanted):
            continue
        try:
            return from_auth_config(
                username=str(entry.get("username", "")),
                password=str(entry.get("password", "")),
                auth=str(entry.get("auth", "")),
                identity_token=str(entry.get("identitytoken", "")),
                registry_token=str(entry.get("registrytoken", "")),
            )
        except InvalidArgument:
            log.warning("auth_file.bad_entry", path=path, host=host)
            return None
    return None
