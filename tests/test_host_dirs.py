"""Registry host dirs: containerd's hosts.toml (its documented examples), Docker's certificate
files, the endpoints and TLS they make, capabilities in the pull path, and errors naming file and key."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from crib.config import ImageSection, RegistryMirror
from crib.errors import FailedPrecondition, NotFound
from crib.image_service import host_dirs, reference
from crib.image_service.content_store import sha256_digest
from crib.image_service.host_dirs import HostDirs, dir_names, go_duration
from crib.image_service.image_pull import ImagePuller
from crib.image_service.registry import Endpoint, RegistrySession, TLSSettings
from e2e.harness.registry import make_ca, make_client_cert

ALL = ["pull", "push", "referrers", "resolve"]
DOCKER_HUB = [Endpoint("https://registry-1.docker.io", "docker.io")]


def folder_with(root: Path, name: str, hosts_toml: str | None) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    if hosts_toml is not None:
        (folder / "hosts.toml").write_text(hosts_toml)
    return folder


def summary(endpoints: list[Endpoint]) -> list[tuple[Any, ...]]:
    return [(e.url, e.api_path, e.fallback, e.mirror, e.ns, sorted(e.capabilities)) for e in endpoints]


def test_containerd_simple_docker_io_example(tmp_path: Path) -> None:
    folder = folder_with(
        tmp_path,
        "docker.io",
        'server = "https://docker.io"\n\n'
        '[host."https://registry-1.docker.io"]\n  capabilities = ["pull", "resolve"]\n',
    )
    endpoints = host_dirs.load(folder).endpoints("docker.io", DOCKER_HUB)
    # Docker Hub's API host is docker.io itself: no ?ns=, and the kubelet's credentials go there.
    assert summary(endpoints) == [
        ("https://registry-1.docker.io", "/v2", True, False, "", ["pull", "resolve"]),
        ("https://docker.io", "/v2", False, False, "", ALL),
    ]
    assert all(e.tls is None for e in endpoints)


def test_containerd_local_mirror_example(tmp_path: Path) -> None:
    folder = folder_with(
        tmp_path,
        "docker.io",
        'server = "https://registry-1.docker.io"    # Exclude this to not use upstream\n\n'
        '[host."https://public-mirror.example.com"]\n'
        '  capabilities = ["pull"]                  # Requires less trust\n'
        '[host."https://docker-mirror.internal"]\n'
        '  capabilities = ["pull", "resolve"]\n'
        '  ca = "docker-mirror.crt"                 # Or absolute path\n',
    )
    endpoints = host_dirs.load(folder).endpoints("docker.io", DOCKER_HUB)
    assert summary(endpoints) == [
        ("https://public-mirror.example.com", "/v2", True, True, "docker.io", ["pull"]),
        ("https://docker-mirror.internal", "/v2", True, True, "docker.io", ["pull", "resolve"]),
        ("https://registry-1.docker.io", "/v2", False, False, "", ALL),
    ]
    # A relative path is the host folder's; errors will name the file and the key.
    where = f'{folder}/hosts.toml: host."https://docker-mirror.internal".ca'
    assert endpoints[1].tls == TLSSettings(ca=((str(folder / "docker-mirror.crt"), where),))


def test_default_folder_serves_every_registry_without_its_own(tmp_path: Path) -> None:
    folder_with(
        tmp_path, "_default", '[host."https://registry.example.com"]\n  capabilities = ["pull", "resolve"]\n'
    )
    dirs = HostDirs(str(tmp_path), httpx.AsyncClient)
    upstream = [Endpoint("https://quay.io", "quay.io")]
    # The upstream registry comes after the defined hosts.
    assert summary(dirs.endpoints("quay.io", upstream) or []) == [
        ("https://registry.example.com", "/v2", True, True, "quay.io", ["pull", "resolve"]),
        ("https://quay.io", "/v2", False, False, "", ALL),
    ]
    # The mirror as `server`: only the mirror.
    (tmp_path / "_default" / "hosts.toml").write_text('server = "https://registry.example.com"\n')
    assert summary(dirs.endpoints("quay.io", upstream) or []) == [
        ("https://registry.example.com", "/v2", False, True, "quay.io", ALL),
    ]
    # A registry's own folder wins over _default; host_port_ before host:port, as containerd looks.
    folder_with(tmp_path, "reg.example:5000", 'server = "https://colon.example"\n')
    assert dirs.folder("reg.example:5000") == tmp_path / "reg.example:5000"
    folder_with(tmp_path, "reg.example_5000_", 'server = "https://underscore.example"\n')
    assert [e.url for e in dirs.endpoints("reg.example:5000", []) or []] == ["https://underscore.example"]
    assert dir_names("reg.example:5000") == ["reg.example_5000_", "reg.example:5000", "_default"]
    assert dir_names("ghcr.io") == ["ghcr.io", "_default"]


def test_no_folder_and_no_default_means_none(tmp_path: Path) -> None:
    assert HostDirs(str(tmp_path), httpx.AsyncClient).endpoints("quay.io", []) is None
    assert HostDirs(str(tmp_path / "absent"), httpx.AsyncClient).endpoints("quay.io", []) is None


def test_containerd_bypass_tls_example_tries_https_before_http(tmp_path: Path) -> None:
    folder = folder_with(
        tmp_path,
        "docker.io",
        'server = "https://registry-1.docker.io"\n\n'
        '[host."http://192.168.31.250:5000"]\n'
        '  capabilities = ["pull", "resolve", "push"]\n  skip_verify = true\n'
        '[host."http://plain.example:80"]\n  skip_verify = true\n',
    )
    endpoints = host_dirs.load(folder).endpoints("docker.io", DOCKER_HUB)
    # As containerd: an http host with TLS settings is tried over HTTPS first (port 80 aside).
    assert [(e.url, e.tls) for e in endpoints] == [
        ("https://192.168.31.250:5000", TLSSettings(skip_verify=True)),
        ("http://192.168.31.250:5000", None),
        ("http://plain.example:80", None),
        ("https://registry-1.docker.io", None),
    ]
    assert all(e.fallback for e in endpoints[:3])


def test_containerd_host_fields_example(tmp_path: Path) -> None:
    folder = folder_with(
        tmp_path,
        "myregistry.io:5000",
        """
[host."https://mirror.registry"]
  capabilities = ["pull"]
  ca = "/etc/certs/mirror.pem"
  skip_verify = false
  [host."https://mirror.registry".header]
    x-custom-2 = ["value1", "value2"]

[host."https://mirror-bak.registry/us"]
  capabilities = ["pull"]
  skip_verify = true

[host."http://mirror.registry"]
  capabilities = ["pull"]

[host."https://test-1.registry"]
  capabilities = ["pull", "resolve", "push"]
  ca = ["/etc/certs/test-1-ca.pem", "/etc/certs/special.pem"]
  client = [["/etc/certs/client.cert", "/etc/certs/client.key"],["/etc/certs/client.pem", ""]]

[host."https://test-2.registry"]
  client = "/etc/certs/client.pem"

[host."https://test-3.registry"]
  client = ["/etc/certs/client-1.pem", "/etc/certs/client-2.pem"]
  dial_timeout = "1s"

[host."https://non-compliant-mirror.registry/v2/upstream"]
  capabilities = ["pull"]
  override_path = true

[header]
  x-custom-1 = "custom header"
""",
    )
    src = f"{folder}/hosts.toml"
    upstream = [
        Endpoint("https://myregistry.io:5000", "myregistry.io:5000", fallback=True),
        Endpoint("http://myregistry.io:5000", "myregistry.io:5000"),
    ]
    eps = host_dirs.load(folder).endpoints("myregistry.io:5000", upstream)
    assert [(e.url, e.api_path) for e in eps] == [
        ("https://mirror.registry", "/v2"),
        ("https://mirror-bak.registry/us", "/v2"),
        ("http://mirror.registry", "/v2"),
        ("https://test-1.registry", "/v2"),
        ("https://test-2.registry", "/v2"),
        ("https://test-3.registry", "/v2"),
        ("https://non-compliant-mirror.registry/v2/upstream", ""),
        ("https://myregistry.io:5000", "/v2"),
        ("http://myregistry.io:5000", "/v2"),
    ]
    mirror, bak, plain, test1, test2, test3, noncompliant, up_https, up_http = eps
    key = 'host."https://mirror.registry"'
    assert mirror.tls == TLSSettings(ca=(("/etc/certs/mirror.pem", f"{src}: {key}.ca"),))
    assert mirror.headers == (("x-custom-2", "value1"), ("x-custom-2", "value2"))
    assert bak.tls == TLSSettings(skip_verify=True)
    assert plain.tls is None and plain.headers == ()
    where = f'{src}: host."https://test-1.registry".client'
    assert test1.tls is not None
    assert [p for p, _ in test1.tls.ca] == ["/etc/certs/test-1-ca.pem", "/etc/certs/special.pem"]
    assert test1.tls.client == (
        ("/etc/certs/client.cert", "/etc/certs/client.key", where),
        ("/etc/certs/client.pem", "", where),
    )
    assert test2.tls is not None and [c[:2] for c in test2.tls.client] == [("/etc/certs/client.pem", "")]
    assert test3.tls is not None
    assert [c[:2] for c in test3.tls.client] == [
        ("/etc/certs/client-1.pem", ""),
        ("/etc/certs/client-2.pem", ""),
    ]
    assert test3.connect_timeout == 1.0 and test2.connect_timeout == 15.0
    assert sorted(noncompliant.capabilities) == ["pull"] and sorted(test2.capabilities) == ALL
    # The top level is the server's: the registry itself here, as no `server` is given.
    assert up_https.headers == (("x-custom-1", "custom header"),) == up_http.headers
    assert (up_https.fallback, up_http.fallback) == (True, False)
    assert all(e.ns == "myregistry.io:5000" and e.mirror for e in eps[:7])
    session = RegistrySession(httpx.AsyncClient(), noncompliant, "team/app", None, 5)
    assert session._url("manifests", "1") == (
        "https://non-compliant-mirror.registry/v2/upstream/team/app/manifests/1?ns=myregistry.io%3A5000"
    )


def test_docker_style_certificate_files_apply_to_the_host(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, "reg.example", None)
    for name in ("ca.crt", "extra.crt", "client.cert", "client.key", "lone.cert", "stray.key", "notes.txt"):
        (folder / name).write_text("x")
    (folder / "sub.crt").mkdir()
    where = f"{folder} (Docker-style certificate files)"
    upstream = [Endpoint("https://reg.example", "reg.example")]
    [endpoint] = host_dirs.load(folder).endpoints("reg.example", upstream)
    assert endpoint.tls == TLSSettings(
        ca=((str(folder / "ca.crt"), where), (str(folder / "extra.crt"), where)),
        # A .cert without its .key holds the key itself.
        client=(
            (str(folder / "client.cert"), str(folder / "client.key"), where),
            (str(folder / "lone.cert"), "", where),
        ),
    )
    # With a hosts.toml too they add to the server's own settings; mirrors keep theirs.
    (folder / "hosts.toml").write_text(
        'ca = "own.pem"\n[host."https://m.example"]\ncapabilities = ["pull"]\n'
    )
    mirror, server = host_dirs.load(folder).endpoints("reg.example", upstream)
    assert mirror.tls is None
    assert server.tls is not None
    assert [p for p, _ in server.tls.ca] == [str(folder / n) for n in ("own.pem", "ca.crt", "extra.crt")]
    assert len(server.tls.client) == 2


def test_go_durations() -> None:
    assert go_duration("1s") == 1.0
    assert go_duration("500ms") == 0.5
    assert go_duration("1m30s") == 90.0
    assert go_duration("1.5h") == 5400.0
    assert go_duration("0") == 0.0
    for bad in ("", "1", "soon", "1s2", "-1s", "1 s"):
        assert go_duration(bad) is None, bad


class Recorder:
    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **kw: Any) -> None:
        self.warnings.append((event, kw))


def test_unknown_keys_are_ignored_and_logged_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    monkeypatch.setattr(host_dirs, "log", recorder)
    folder_with(
        tmp_path, "reg.example", 'servr = "https://x"\n[host."https://m.example"]\nskip_verfy = true\n'
    )
    dirs = HostDirs(str(tmp_path), httpx.AsyncClient)
    for _ in range(3):
        endpoints = dirs.endpoints("reg.example", [Endpoint("https://reg.example", "reg.example")]) or []
        assert [e.url for e in endpoints] == ["https://m.example", "https://reg.example"]
    src = tmp_path / "reg.example" / "hosts.toml"
    assert recorder.warnings == [
        (
            "host_dirs.unknown_key",
            {"error": f'{src}: host."https://m.example".skip_verfy: unknown key, ignored'},
        ),
        ("host_dirs.unknown_key", {"error": f"{src}: servr: unknown key, ignored"}),
    ]


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("server = \n", "", "is not valid TOML"),
        ("server = 3", "server", "expected a URL string, got an integer"),
        ('host = "x"', "host", "expected tables"),
        ('[host."https://m"]\nca = 3', 'host."https://m".ca', "expected a path or an array of paths"),
        ("ca = [1]", "ca", "expected a path or an array of paths"),
        ("client = [1]", "client", "expected a path, an array of paths"),
        ('client = [["a"]]', "client", "[cert, key] pairs"),
        ('skip_verify = "yes"', "skip_verify", "expected a boolean, got a string"),
        ("override_path = 1", "override_path", "expected a boolean"),
        ('capabilities = ["pul"]', "capabilities", "unknown capability 'pul'"),
        ('capabilities = "pull"', "capabilities", "expected an array of strings"),
        ("[header]\nx-a = 1", "header.x-a", "expected a string or an array of strings"),
        ('[header]\n"bad name" = "v"', "header.bad name", "not a valid HTTP header name"),
        ('[header]\nx-a = "v\\nInjected: 1"', "header.x-a", "CR, LF or NUL"),
        ('dial_timeout = "soon"', "dial_timeout", "expected a duration"),
        ('server = "ftp://x"', "server", "http:// or https://"),
        ('[host."https://m:port"]', 'host."https://m:port"', "is not a URL"),
        ('[host."https://m".host."https://n"]\nca = 1', "", ""),
    ],
)
def test_a_bad_hosts_toml_names_the_file_and_the_key(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    folder = folder_with(tmp_path, "reg.example", text)
    if not reason:
        # containerd does not nest hosts: an unknown key, ignored.
        assert host_dirs.load(folder).warnings
        return
    with pytest.raises(FailedPrecondition) as info:
        host_dirs.load(folder)
    prefix = f"{folder}/hosts.toml: {key}: " if key else f"{folder}/hosts.toml: "
    assert info.value.message.startswith(prefix), info.value.message
    assert reason in info.value.message


def test_a_bad_folder_is_logged_once_and_fails_every_pull(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder()
    monkeypatch.setattr(host_dirs, "log", recorder)
    folder_with(tmp_path, "reg.example", "skip_verify = 1\n")
    dirs = HostDirs(str(tmp_path), httpx.AsyncClient)
    for _ in range(2):
        with pytest.raises(FailedPrecondition, match="skip_verify: expected a boolean"):
            dirs.endpoints("reg.example", [])
    assert [event for event, _ in recorder.warnings] == ["host_dirs.invalid"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d, "test-ca")
    cert, key = make_client_cert(d, "client", ca)
    _, other_key = make_client_cert(d, "other", ca)
    both = d / "both.pem"
    both.write_bytes(cert.read_bytes() + key.read_bytes())
    garbage = d / "garbage.pem"
    garbage.write_text("not a certificate\n")
    return {"ca": ca[0], "cert": cert, "key": key, "other_key": other_key, "both": both, "garbage": garbage}


def test_ssl_context_trusts_the_cas_and_presents_the_client_certificate(pki: dict[str, Path]) -> None:
    tls = TLSSettings(
        ca=((str(pki["ca"]), "w: ca"),),
        client=((str(pki["cert"]), str(pki["key"]), "w: client"), (str(pki["both"]), "", "w: client")),
    )
    ctx = host_dirs.ssl_context(tls)
    # The node's store plus the CA (containerd adds to the system pool).
    assert any(("commonName", "test-ca") in rdn for c in ctx.get_ca_certs() for rdn in c["subject"])
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    skip = host_dirs.ssl_context(TLSSettings(skip_verify=True))
    assert skip.verify_mode == ssl.CERT_NONE and not skip.check_hostname


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"ca": "missing"}, "cannot read the CA file {missing}: No such file or directory"),
        ({"ca": "garbage"}, "the CA file {garbage} holds no usable PEM certificate"),
        ({"client": ("cert", "missing")}, "cannot read the client key {missing}"),
        ({"client": ("missing", "")}, "cannot read the client certificate {missing}"),
        (
            {"client": ("cert", "other_key")},
            "the client certificate {cert} with key {other_key} does not load",
        ),
        ({"client": ("cert", "")}, "the client certificate {cert} (key in the same file) does not load"),
    ],
)
def test_certificate_files_that_do_not_load_name_where_they_were_given(
    pki: dict[str, Path], tmp_path: Path, files: dict[str, Any], message: str
) -> None:
    paths = {**{k: str(v) for k, v in pki.items()}, "missing": str(tmp_path / "missing.pem")}
    where = "/etc/crib/certs.d/reg/hosts.toml: ca"
    if "ca" in files:
        tls = TLSSettings(ca=((paths[files["ca"]], where),))
    else:
        cert, key = files["client"]
        tls = TLSSettings(client=((paths[cert], paths[key] if key else "", where),))
    with pytest.raises(FailedPrecondition) as info:
        host_dirs.ssl_context(tls)
    assert info.value.message.startswith(f"{where}: ")
    assert message.format(**paths) in info.value.message


async def test_one_client_per_tls_settings_renewed_when_a_file_changes(
    pki: dict[str, Path], tmp_path: Path
) -> None:
    made: list[httpx.AsyncClient] = []

    def make(ctx: ssl.SSLContext) -> httpx.AsyncClient:
        made.append(httpx.AsyncClient(verify=ctx))
        return made[-1]

    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki["ca"].read_bytes())
    dirs = HostDirs(str(tmp_path), make)
    tls = TLSSettings(ca=((str(ca), "w"),))
    assert dirs.client(tls) is dirs.client(TLSSettings(ca=((str(ca), "w"),)))
    assert dirs.client(TLSSettings(ca=((str(ca), "w"),), skip_verify=True)) is not dirs.client(tls)
    assert len(made) == 2
    ca.write_bytes(pki["ca"].read_bytes() + b"\n")  # a rotated CA file: a new client
    assert dirs.client(tls) is made[2]
    await dirs.aclose()
    assert all(c.is_closed for c in made)


# --- capabilities in the pull path ---------------------------------------------------------------

MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + "0" * 64,
            "size": 2,
        },
        "layers": [],
    }
).encode()
BLOB = "sha256:" + "1" * 64


class Body(httpx.AsyncByteStream):
    """A streamed body, as a real registry's: MockTransport reads plain content up front."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self):  # type: ignore[override]
        yield self.data


class Hosts:
    """Registries by host name behind one MockTransport; records every request."""

    def __init__(self, answers: dict[tuple[str, str], bytes]) -> None:
        self.answers = answers  # (host, kind) → body; anything else is 404
        self.requests: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        kind = "manifests" if "/manifests/" in request.url.path else "blobs"
        body = self.answers.get((request.url.host, kind))
        if body is None:
            return httpx.Response(404)
        return httpx.Response(
            200, stream=Body(body), headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
        )

    def asked(self) -> list[tuple[str, str, list[str]]]:
        out = [
            (r.url.host, r.url.path, parse_qs(urlsplit(str(r.url)).query).get("ns", []))
            for r in self.requests
        ]
        self.requests.clear()
        return out


def _puller(tmp_path: Path, hosts: Hosts, **image: Any) -> ImagePuller:
    http = httpx.AsyncClient(transport=httpx.MockTransport(hosts.handler))
    dirs = HostDirs(str(tmp_path), lambda ctx: http)
    config = ImageSection(config_path=str(tmp_path), **image)
    return ImagePuller(config, None, None, None, http, None, dirs)  # type: ignore[arg-type]


async def test_only_resolve_hosts_resolve_tags_and_pull_hosts_serve_content(tmp_path: Path) -> None:
    folder_with(
        tmp_path,
        "reg.example",
        'server = "https://reg.example"\n'
        '[host."https://pullonly.example"]\ncapabilities = ["pull"]\n'
        '[host."https://pullonly.example".header]\nx-mirror-token = ["a", "b"]\n'
        '[host."https://resolver.example/prefix"]\ncapabilities = ["resolve"]\n',
    )
    hosts = Hosts({("resolver.example", "manifests"): MANIFEST, ("reg.example", "blobs"): b"layer"})
    puller = _puller(tmp_path, hosts)

    chain, body, _, digest = await puller._resolve(reference.parse("reg.example/a/b:1"), None)
    assert body == MANIFEST and digest == sha256_digest(MANIFEST)
    # The tag goes only to the host trusted to resolve it, with the registry's name as ?ns=.
    assert hosts.asked() == [("resolver.example", "/prefix/v2/a/b/manifests/1", ["reg.example"])]
    assert chain.host == "resolver.example"
    # Content comes from the hosts that may pull, in order: the mirror lacks it, the server has it.
    async with chain.blob(BLOB, "pull") as chunks:
        assert b"".join([c async for c in chunks]) == b"layer"
    asked = hosts.requests[:]
    assert hosts.asked() == [
        ("pullonly.example", f"/v2/a/b/blobs/{BLOB}", ["reg.example"]),
        ("reg.example", f"/v2/a/b/blobs/{BLOB}", []),
    ]
    assert asked[0].headers.get_list("x-mirror-token") == ["a", "b"]
    assert "x-mirror-token" not in asked[1].headers

    # By digest, what comes back is verified: the hosts that may pull answer, the resolver is not asked.
    # (None of them has it by digest here.)
    with pytest.raises(NotFound):
        await puller._resolve(reference.parse(f"reg.example/a/b@{digest}"), None)
    assert [h for h, _, _ in hosts.asked()] == ["pullonly.example", "reg.example"]


async def test_no_host_may_resolve(tmp_path: Path) -> None:
    folder_with(
        tmp_path,
        "reg.example",
        'capabilities = ["push"]\n[host."https://m.example"]\ncapabilities = ["pull"]\n',
    )
    puller = _puller(tmp_path, Hosts({}))
    with pytest.raises(FailedPrecondition, match=r"no host in the hosts\.toml of reg\.example may 'resolve'"):
        await puller._resolve(reference.parse("reg.example/a/b:1"), None)


async def test_a_folder_takes_precedence_over_mirrors(tmp_path: Path) -> None:
    mirrors = {
        "reg.example": RegistryMirror(["https://short-form.example"]),
        "other.example": RegistryMirror(["https://short-form.example"], mirrors_only=True),
    }
    folder_with(tmp_path, "reg.example", '[host."https://from-folder.example"]\n')
    puller = _puller(tmp_path, Hosts({}), mirrors=mirrors)
    assert [e.url for e in puller.endpoints("reg.example")] == [
        "https://from-folder.example",
        "https://reg.example",
    ]
    assert [e.url for e in puller.endpoints("other.example")] == ["https://short-form.example"]
    # A _default folder covers every registry without its own, and so replaces their mirrors too.
    folder_with(tmp_path, "_default", None)
    assert [e.url for e in puller.endpoints("other.example")] == ["https://other.example"]


async def test_a_broken_certificate_fails_the_pull_before_any_host_is_asked(tmp_path: Path) -> None:
    folder = folder_with(
        tmp_path, "reg.example", '[host."https://m.example"]\nca = "gone.pem"\n[host."https://n.example"]\n'
    )
    hosts = Hosts({("n.example", "manifests"): MANIFEST})
    puller = _puller(tmp_path, hosts)
    with pytest.raises(FailedPrecondition) as info:
        await puller._resolve(reference.parse("reg.example/a/b:1"), None)
    assert info.value.message == (
        f'pull reg.example/a/b:1: {folder}/hosts.toml: host."https://m.example".ca: '
        f"cannot read the CA file {folder}/gone.pem: No such file or directory"
    )
    assert hosts.requests == []
