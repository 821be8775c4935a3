"""A registry client for the Docker Registry HTTP API v2 / OCI distribution spec.

One `RegistrySession` per (endpoint, repository) of a pull. It answers a
registry's 401 challenge the way docker and containerd do: Basic with the
credentials, or Bearer through the token realm (anonymously, with basic
credentials, with an identity token as OAuth2 refresh token, or with a given
registry token), then retries once with the token, which it keeps for the rest
of the pull.

Every wait is bounded: connecting, and the gap between two reads of a body
(the pull's stall timeout), so a registry that stops sending fails the pull.
"""

from __future__ import annotations

import base64
import re
import ssl
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import httpx

from crib import tracing
from crib.errors import (
    CribError,
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from crib.image_service.auth import Credentials
from crib.image_service.manifest import ACCEPT, MAX_MANIFEST_BYTES
from crib.log_setup import get_logger

log = get_logger("crib.registry")

CONNECT_TIMEOUT_S = 15.0
USER_AGENT = "crib"
# What a host may be used for (containerd's capabilities); crib only pulls and resolves.
PULL_RESOLVE = frozenset({"pull", "resolve"})
_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
# TLS alerts a server sends when it does not take the client certificate (or wants one).
_CLIENT_CERT_REFUSED = re.compile(
    r"ALERT_(BAD_CERTIFICATE|CERTIFICATE_REQUIRED|UNKNOWN_CA|CERTIFICATE_UNKNOWN|"
    r"UNSUPPORTED_CERTIFICATE|CERTIFICATE_EXPIRED|CERTIFICATE_REVOKED)"
)
# What a broken connection raises: httpx's errors, and the ssl module's own when a TLS alert
# arrives while reading (httpcore passes those through).
CONNECTION_ERRORS = (httpx.HTTPError, ssl.SSLError)


@dataclass(frozen=True)
class TLSSettings:
    """An endpoint's own TLS trust and identity (from a hosts dir); each file with where it is named."""

    ca: tuple[tuple[str, str], ...] = ()  # (path, where)
    client: tuple[tuple[str, str, str], ...] = ()  # (cert, key or "" when in the cert file, where)
    skip_verify: bool = False


@dataclass(frozen=True)
class Endpoint:
    """Where to send a registry's requests: its own host or a mirror."""

    url: str  # scheme://host[:port][/path-prefix], without /v2
    host: str  # the host:port credentials are looked up for
    mirror: bool = False
    # When this endpoint fails, the next one is tried (mirrors; HTTPS to an
    # insecure registry before plain HTTP).
    fallback: bool = False
    # The rest only a hosts.toml sets (host_dirs.py).
    capabilities: frozenset[str] = PULL_RESOLVE
    tls: TLSSettings | None = None
    headers: tuple[tuple[str, str], ...] = ()
    # "" with override_path: the url is the API root itself.
    api_path: str = "/v2"
    # The registry a mirror stands in for, sent as ?ns= (as containerd does) so a
    # mirror of several registries knows which one is meant.
    ns: str = ""
    connect_timeout: float = CONNECT_TIMEOUT_S

    def __str__(self) -> str:
        return self.url


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="…",service="…",scope="…"` → ("bearer", {…})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
        for m in _CHALLENGE_PARAM.finditer(rest)
    }
    return scheme.lower(), params


def basic_authorization(creds: Credentials) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()


def unreachable(host: str, exc: BaseException) -> str:
    """Why `host` could not be reached, told plainly for the TLS failures a node's config can fix."""
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return (
            f"registry {host}'s TLS certificate is not trusted ({text}): its CA belongs in the "
            "node's CA store or in the `ca` of the registry's hosts.toml"
        )
    if _CLIENT_CERT_REFUSED.search(text):
        return (
            f"registry {host} refused the TLS client certificate, or wants one ({text}): "
            "see `client` in the registry's hosts.toml"
        )
    return f"cannot reach registry {host}: {text}"


def _status_error(response: httpx.Response, what: str, host: str) -> CribError:
    code = response.status_code
    if code == 401:
        return Unauthenticated(f"{what}: registry {host} requires valid credentials (HTTP 401)")
    if code == 403:
        return PermissionDenied(f"{what}: registry {host} denied access (HTTP 403)")
    if code == 404:
        return NotFound(f"{what}: not found on registry {host}")
    if code == 429 or code >= 500:
        return Unavailable(f"{what}: registry {host} answered HTTP {code}")
    return Unavailable(f"{what}: registry {host} answered HTTP {code}")


class RegistrySession:
    def __init__(
        self,
        http: httpx.AsyncClient,
        endpoint: Endpoint,
        repo: str,
        credentials: Credentials | None,
        stall_timeout: float,
    ) -> None:
        self.http = http
        self.endpoint = endpoint
        self.repo = repo
        self.credentials = credentials
        self.timeout = httpx.Timeout(
            connect=endpoint.connect_timeout, read=stall_timeout, write=stall_timeout, pool=stall_timeout
        )
        self._authorization: str | None = None
        if credentials and credentials.registry_token:
            self._authorization = f"Bearer {credentials.registry_token}"

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint.url).netloc

    def _url(self, kind: str, ref: str) -> str:
        url = f"{self.endpoint.url}{self.endpoint.api_path}/{self.repo}/{kind}/{ref}"
        return f"{url}?{urlencode({'ns': self.endpoint.ns})}" if self.endpoint.ns else url

    async def _authorize(self, response: httpx.Response, what: str) -> bool:
        """Answer a 401 challenge; False when there is nothing more to try."""
        header = response.headers.get("www-authenticate", "")
        scheme, params = parse_challenge(header)
        creds = self.credentials
        if scheme == "basic":
            if not creds or not creds.username:
                return False
            self._authorization = basic_authorization(creds)
            return True
        if scheme != "bearer" or "realm" not in params:
            return False
        self._authorization = f"Bearer {await self._fetch_token(params, what)}"
        return True

    async def _fetch_token(self, params: dict[str, str], what: str) -> str:
        realm = params["realm"]
        if not realm.startswith(("https://", "http://")):
            raise Unauthenticated(f"{what}: registry {self.host} gave an unusable token realm")
        scope = params.get("scope") or f"repository:{self.repo}:pull"
        creds = self.credentials
        try:
            if creds and creds.identity_token:
                form = {
                    "grant_type": "refresh_token",
                    "refresh_token": creds.identity_token,
                    "service": params.get("service", ""),
                    "scope": scope,
                    "client_id": USER_AGENT,
                }
                r = await self.http.post(realm, data=form, timeout=self.timeout)
            else:
                query = {"scope": scope}
                if "service" in params:
                    query["service"] = params["service"]
                auth = None
                if creds and creds.username:
                    query["account"] = creds.username
                    auth = httpx.BasicAuth(creds.username, creds.password)
                r = await self.http.get(f"{realm}?{urlencode(query)}", auth=auth, timeout=self.timeout)
        except httpx.TimeoutException:
            raise DeadlineExceeded(f"{what}: token service {realm} did not answer in time") from None
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"{what}: cannot reach token service {realm}: {exc}") from None
        if r.status_code in (401, 403):
            raise Unauthenticated(
                f"{what}: registry {self.host} refused the credentials (token HTTP {r.status_code})"
            )
        if r.status_code != 200:
            raise Unavailable(f"{what}: token service {realm} answered HTTP {r.status_code}")
        try:
            body = r.json()
        except ValueError:
            raise Unavailable(f"{what}: token service {realm} sent no JSON") from None
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise Unavailable(f"{what}: token service {realm} sent no token")
        return token

    @asynccontextmanager
    async def _get(self, url: str, what: str, accept: str | None = None) -> AsyncIterator[httpx.Response]:
        """GET with the challenge answered once; yields the open, successful response."""
        for attempt in range(2):
            headers = httpx.Headers(list(self.endpoint.headers))
            headers.setdefault("User-Agent", USER_AGENT)
            if accept:
                headers["Accept"] = accept
            if self._authorization:
                headers["Authorization"] = self._authorization
            try:
                request = self.http.build_request("GET", url, headers=headers, timeout=self.timeout)
                response = await self.http.send(request, stream=True, follow_redirects=True)
            except httpx.TimeoutException:
                raise DeadlineExceeded(f"{what}: registry {self.host} did not answer in time") from None
            except CONNECTION_ERRORS as exc:
                raise Unavailable(f"{what}: {unreachable(self.host, exc)}") from None
            try:
                if response.status_code == 401 and attempt == 0 and await self._authorize(response, what):
                    continue
                if response.status_code not in (200, 203):
                    raise _status_error(response, what, self.host)
                yield response
                return
            finally:
                await response.aclose()
        raise Unauthenticated(f"{what}: registry {self.host} requires valid credentials (HTTP 401)")

    def _span(self, name: str, **attributes: str) -> AbstractContextManager[tracing.Span]:
        return tracing.span(
            name,
            **{
                "crib.registry": self.host,
                # Which of the registry's endpoints: a mirror, or HTTPS before HTTP.
                "crib.endpoint": self.endpoint.url,
                "crib.repository": self.repo,
                "http.request.method": "GET",
            },
            **attributes,
        )

    async def manifest(self, ref: str, what: str) -> tuple[bytes, str, str]:
        """(body, Content-Type, Docker-Content-Digest) of a manifest or index."""
        with self._span("registry.manifest", **{"crib.reference": ref}):
            return await self._manifest(ref, what)

    async def _manifest(self, ref: str, what: str) -> tuple[bytes, str, str]:
        async with self._get(self._url("manifests", ref), what, ACCEPT) as response:
            body = bytearray()
            try:
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) > MAX_MANIFEST_BYTES:
                        raise InvalidArgument(f"{what}: manifest larger than {MAX_MANIFEST_BYTES} bytes")
            except httpx.TimeoutException:
                raise DeadlineExceeded(f"{what}: registry {self.host} stalled sending the manifest") from None
            except CONNECTION_ERRORS as exc:
                raise Unavailable(f"{what}: reading the manifest from {self.host} failed: {exc}") from None
            return (
                bytes(body),
                response.headers.get("content-type", ""),
                response.headers.get("docker-content-digest", ""),
            )

    @asynccontextmanager
    async def blob(self, digest: str, what: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """The blob's bytes as they arrive (undecoded: a gzip layer stays gzip)."""
        # The span lasts until the caller has read the blob: the download is the request's time.
        with self._span("registry.blob", **{"crib.digest": digest}):
            async with self._get(self._url("blobs", digest), what) as response:

                async def chunks() -> AsyncIterator[bytes]:
                    try:
                        async for chunk in response.aiter_raw():
                            yield chunk
                    except httpx.TimeoutException:
                        raise DeadlineExceeded(
                            f"{what}: registry {self.host} sent no data for {self.timeout.read:g}s"
                        ) from None
                    except CONNECTION_ERRORS as exc:
                        raise Unavailable(f"{what}: download from {self.host} broke off: {exc}") from None

                yield chunks()


class SessionChain:
    """The sessions a pull's content may come from, in order: the hosts that may pull.

    A request that fails goes on to the next session when its endpoint may fall
    back (a mirror, HTTPS before plain HTTP); content is checked by digest, so
    any of them may serve it. A download that broke off midway is not moved.
    """

    def __init__(self, sessions: list[RegistrySession], resolved_by: RegistrySession) -> None:
        assert sessions
        self.sessions = sessions
        # The host named in progress and errors: the one that resolved, then the last that answered.
        self.host = resolved_by.host

    def _failed(self, i: int, exc: CribError, failures: list[str]) -> CribError | None:
        """None: try the next session; else the error the request ends with."""
        endpoint = self.sessions[i].endpoint
        if endpoint.fallback and i + 1 < len(self.sessions):
            log.info("image.endpoint_failed", endpoint=endpoint.url, error=exc.message)
            failures.append(f"{endpoint.url}: {exc.message}")
            return None
        if failures:
            return type(exc)(f"{exc.message} (tried before: {'; '.join(failures)})")
        return exc

    async def manifest(self, ref: str, what: str) -> tuple[bytes, str, str]:
        failures: list[str] = []
        for i, session in enumerate(self.sessions):
            try:
                result = await session.manifest(ref, what)
            except CribError as exc:
                if (error := self._failed(i, exc, failures)) is None:
                    continue
                raise error from None
            self.host = session.host
            return result
        raise AssertionError("unreachable: the last session never falls back")

    @asynccontextmanager
    async def blob(self, digest: str, what: str) -> AsyncIterator[AsyncIterator[bytes]]:
        failures: list[str] = []
        for i, session in enumerate(self.sessions):
            async with AsyncExitStack() as stack:
                try:
                    chunks = await stack.enter_async_context(session.blob(digest, what))
                except CribError as exc:
                    if (error := self._failed(i, exc, failures)) is None:
                        continue
                    raise error from None
                yield chunks
                return
        raise AssertionError("unreachable: the last session never falls back")
