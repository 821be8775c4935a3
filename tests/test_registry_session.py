"""The registry session's auth flows against a scripted registry (httpx MockTransport)."""

from __future__ import annotations

import base64
import ssl
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from crib.errors import DeadlineExceeded, NotFound, PermissionDenied, Unauthenticated, Unavailable
from crib.image_service.auth import Credentials
from crib.image_service.registry import Endpoint, RegistrySession

MANIFEST = b'{"schemaVersion":2}'


class Body(httpx.AsyncByteStream):
    """A streamed body, as a real registry's: MockTransport reads plain content up front."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self):  # type: ignore[override]
        yield self.data


class FakeRegistry:
    """A registry behind a token server: bearer tokens per scope, as Docker Hub does."""

    def __init__(self, users: dict[str, str] | None = None, basic: bool = False, refresh: str = "") -> None:
        self.users = users or {}
        self.basic = basic
        self.refresh = refresh
        self.requests: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = urlsplit(str(request.url))
        if url.netloc == "auth.example":
            return self.token(request)
        header = request.headers.get("authorization", "")
        if self.basic:
            expected = {
                "Basic " + base64.b64encode(f"{u}:{p}".encode()).decode() for u, p in self.users.items()
            }
            if header not in expected:
                return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        elif header != "Bearer good-token":
            challenge = (
                'Bearer realm="https://auth.example/token",service="reg.example",scope="repository:a/b:pull"'
            )
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        if url.path.endswith("/manifests/missing"):
            return httpx.Response(404)
        if url.path.endswith("/manifests/forbidden"):
            return httpx.Response(403)
        if url.path.endswith("/manifests/busy"):
            return httpx.Response(503)
        return httpx.Response(
            200, stream=Body(MANIFEST), headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
        )

    def token(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            form = parse_qs(request.content.decode())
            ok = form.get("grant_type") == ["refresh_token"] and form.get("refresh_token") == [self.refresh]
            return httpx.Response(200, json={"access_token": "good-token"}) if ok else httpx.Response(401)
        query = parse_qs(urlsplit(str(request.url)).query)
        assert query["scope"] == ["repository:a/b:pull"] and query["service"] == ["reg.example"]
        header = request.headers.get("authorization", "")
        if self.users:
            expected = {
                "Basic " + base64.b64encode(f"{u}:{p}".encode()).decode() for u, p in self.users.items()
            }
            if header not in expected:
                return httpx.Response(401)
        return httpx.Response(200, json={"token": "good-token"})


def _session(fake: FakeRegistry, creds: Credentials | None = None) -> RegistrySession:
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake.handler))
    return RegistrySession(
        http, Endpoint("https://reg.example", "reg.example"), "a/b", creds, stall_timeout=5
    )


async def test_anonymous_bearer_token_flow_and_token_reuse() -> None:
    fake = FakeRegistry()
    s = _session(fake)
    body, ctype, _ = await s.manifest("latest", "pull")
    assert body == MANIFEST and ctype.startswith("application/vnd.oci")
    await s.manifest("v2", "pull")
    # challenge, token, retry, then the second manifest straight with the kept token
    assert [urlsplit(str(r.url)).netloc for r in fake.requests] == [
        "reg.example",
        "auth.example",
        "reg.example",
        "reg.example",
    ]


async def test_credentials_go_to_the_token_realm() -> None:
    fake = FakeRegistry(users={"u": "p"})
    assert (await _session(fake, Credentials("u", "p")).manifest("latest", "pull"))[0] == MANIFEST
    token_request = fake.requests[1]
    assert parse_qs(urlsplit(str(token_request.url)).query)["account"] == ["u"]
    with pytest.raises(Unauthenticated, match=r"refused the credentials"):
        await _session(FakeRegistry(users={"u": "p"}), Credentials("u", "wrong")).manifest("latest", "pull")


async def test_identity_token_is_a_refresh_token_and_registry_token_is_used_as_is() -> None:
    fake = FakeRegistry(refresh="r3fresh")
    assert (await _session(fake, Credentials(identity_token="r3fresh")).manifest("x", "pull"))[0] == MANIFEST
    assert fake.requests[1].method == "POST"
    direct = FakeRegistry()
    await _session(direct, Credentials(registry_token="good-token")).manifest("x", "pull")
    assert len(direct.requests) == 1


async def test_basic_auth() -> None:
    fake = FakeRegistry(users={"u": "p"}, basic=True)
    assert (await _session(fake, Credentials("u", "p")).manifest("x", "pull"))[0] == MANIFEST
    with pytest.raises(Unauthenticated, match="requires valid credentials"):
        await _session(FakeRegistry(users={"u": "p"}, basic=True)).manifest("x", "pull")
    with pytest.raises(Unauthenticated):
        await _session(FakeRegistry(users={"u": "p"}, basic=True), Credentials("u", "bad")).manifest(
            "x", "pull"
        )


async def test_status_codes_become_grpc_codes() -> None:
    fake = FakeRegistry()
    s = _session(fake)
    with pytest.raises(NotFound, match=r"not found on registry reg\.example"):
        await s.manifest("missing", "pull a/b:missing")
    with pytest.raises(PermissionDenied):
        await s.manifest("forbidden", "pull")
    with pytest.raises(Unavailable, match="HTTP 503"):
        await s.manifest("busy", "pull")


async def test_network_failures_are_unavailable_or_deadline() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def stall(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    for handler, exc in ((refuse, Unavailable), (stall, DeadlineExceeded)):
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        s = RegistrySession(http, Endpoint("https://reg.example", "reg.example"), "a/b", None, 5)
        with pytest.raises(exc, match=r"reg\.example"):
            await s.manifest("x", "pull")


async def test_tls_failures_say_which_certificate_is_wrong() -> None:
    """A refused client certificate arrives as a TLS alert while reading, which httpcore
    passes through as ssl.SSLError: UNAVAILABLE saying so, not INTERNAL."""

    def raising(exc: Exception) -> httpx.MockTransport:
        def handler(request: httpx.Request) -> httpx.Response:
            raise exc

        return httpx.MockTransport(handler)

    alert = ssl.SSLError(1, "[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate")
    untrusted = httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    cases = (
        (alert, "pull: registry reg.example refused the TLS client certificate"),
        (untrusted, "pull: registry reg.example's TLS certificate is not trusted"),
    )
    for exc, says in cases:
        http = httpx.AsyncClient(transport=raising(exc))
        s = RegistrySession(http, Endpoint("https://reg.example", "reg.example"), "a/b", None, 5)
        with pytest.raises(Unavailable) as info:
            await s.manifest("x", "pull")
        assert info.value.message.startswith(says)
