"""Registry host directories in containerd's format (`[image] config_path`), so a node's certs.d works as is.

`<config_path>/<host>/hosts.toml` (the host as `myregistry.io:5000` or `myregistry.io_5000_`, or
`_default` for any registry without a folder of its own) says where a registry's images come
from: the `[host."…"]` tables in file order, each tried before the `server` (the registry
itself when not given), each with its capabilities, CAs (`ca`), client certificates
(`client`), `skip_verify`, extra headers (`[header]`), `override_path` and `dial_timeout`.
As Docker and CRI-O read the same folders, `*.crt` files (CAs) and `*.cert`/`*.key` pairs
(client certificates) in a host's folder apply to that host's server.

A folder is read on every pull, so edits apply without a restart, as containerd's do. A
broken hosts.toml or certificate file fails the pulls that need it with FAILED_PRECONDITION
naming the file and the key, logged once; cribd itself goes on serving.

Where crib differs from containerd: drop-in certificate files apply along with a hosts.toml,
not only without one (Docker's and CRI-O's reading); a malformed hosts.toml fails the pull
instead of being logged and replaced by the drop-in files; unknown keys are ignored as
containerd ignores them, but logged once.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import ssl
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from crib.errors import FailedPrecondition
from crib.image_service.registry import CONNECT_TIMEOUT_S, Endpoint, TLSSettings
from crib.log_setup import get_logger

log = get_logger("crib.host_dirs")

HOSTS_FILE = "hosts.toml"
DEFAULT_DIR = "_default"
CAPABILITIES = ("pull", "resolve", "push", "referrers")
_ENTRY_KEYS = frozenset(
    {"capabilities", "ca", "client", "skip_verify", "header", "override_path", "dial_timeout"}
)
_TOP_KEYS = _ENTRY_KEYS | {"server", "host"}
# Docker Hub's API host serves docker.io itself: not a mirror.
_DOCKER_HUB = ("docker.io", "registry-1.docker.io")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0
}  # fmt: skip


def _error(where: str, reason: str) -> FailedPrecondition:
    return FailedPrecondition(f"{where}: {reason}")


def _kind(value: Any) -> str:
    for tp, name in ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string")):
        if isinstance(value, tp):
            return name
    return {list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def go_duration(text: str) -> float | None:
    """Seconds in a Go duration (`1s`, `500ms`, `1m30s`), as containerd reads dial_timeout; else None."""
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            return None
        total += float(m[1]) * _DURATION_UNITS[m[2]]
        pos = m.end()
    return total if text and pos == len(text) else None


def dir_names(host: str) -> list[str]:
    """The folders that may configure `host`, first found wins (containerd's hostPaths on Unix)."""
    names = []
    idx = host.rfind(":")
    if idx > 0:
        # ':' is awkward in paths (and not allowed on Windows): myregistry.io_5000_ comes first.
        names.append(f"{host[:idx]}_{host[idx + 1 :]}_")
    return [*names, host, DEFAULT_DIR]


@dataclass(frozen=True)
class HostEntry:
    """One host of a hosts.toml: a `[host."…"]` table, or the top level for the server."""

    url: str  # scheme://host[:port][/prefix] without /v2; "" for the registry itself (no `server`)
    api_path: str = "/v2"
    capabilities: frozenset[str] = frozenset(CAPABILITIES)
    tls: TLSSettings | None = None
    headers: tuple[tuple[str, str], ...] = ()
    connect_timeout: float = CONNECT_TIMEOUT_S

    def endpoints(self, registry: str, fallback: bool) -> list[Endpoint]:
        parts = urlsplit(self.url)
        proxy = parts.netloc != registry and (registry, parts.netloc) != _DOCKER_HUB
        endpoint = Endpoint(
            self.url,
            parts.netloc,
            mirror=proxy,
            fallback=fallback,
            capabilities=self.capabilities,
            tls=self.tls if parts.scheme == "https" else None,
            headers=self.headers,
            api_path=self.api_path,
            ns=registry if proxy else "",
            connect_timeout=self.connect_timeout,
        )
        if parts.scheme == "http" and self.tls is not None and parts.port != 80:
            # As containerd: a plain-HTTP host given TLS settings is tried over HTTPS with them first.
            https = replace(endpoint, url="https" + self.url[len("http") :], fallback=True, tls=self.tls)
            return [https, endpoint]
        return [endpoint]


@dataclass(frozen=True)
class HostsConfig:
    """A host folder: its hosts in the order tried, the server last."""

    folder: Path
    mirrors: tuple[HostEntry, ...]
    server: HostEntry
    # Unknown keys, logged once and otherwise ignored.
    warnings: tuple[str, ...] = ()

    def endpoints(self, registry: str, upstream: list[Endpoint]) -> list[Endpoint]:
        """Where to pull `registry`'s images from; `upstream` is how crib reaches the registry itself."""
        out = [e for entry in self.mirrors for e in entry.endpoints(registry, fallback=True)]
        server = self.server
        if server.url:
            return out + server.endpoints(registry, fallback=False)
        for endpoint in upstream:
            https = endpoint.url.startswith("https://")
            out.append(
                replace(
                    endpoint,
                    capabilities=server.capabilities,
                    tls=server.tls if https else None,
                    headers=server.headers,
                    connect_timeout=server.connect_timeout,
                )
            )
        return out


class _Reader:
    """Typed access to one table of a hosts.toml; errors name the file and the dotted key."""

    def __init__(self, source: Path, folder: Path, prefix: str, table: dict[str, Any]) -> None:
        self.source, self.folder, self.prefix, self.table = source, folder, prefix, table

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def where(self, name: str) -> str:
        return f"{self.source}: {self.key(name)}"

    def wrong(self, name: str, expected: str, value: Any) -> FailedPrecondition:
        return _error(self.where(name), f"expected {expected}, got {_kind(value)}")

    def path(self, p: str) -> str:
        # Relative paths are the host folder's, as containerd resolves them.
        return p if os.path.isabs(p) else str(self.folder / p)

    def boolean(self, name: str) -> bool | None:
        value = self.table.get(name)
        if value is not None and not isinstance(value, bool):
            raise self.wrong(name, "a boolean", value)
        return value

    def strings(self, name: str, expected: str) -> list[str] | None:
        value = self.table.get(name)
        if value is None:
            return None
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise self.wrong(name, expected, value)

    def capabilities(self) -> frozenset[str]:
        value = self.table.get("capabilities")
        if value is not None and not isinstance(value, list):
            raise self.wrong("capabilities", "an array of strings", value)
        names = self.strings("capabilities", "an array of strings")
        if not names:
            # None listed: every capability, as containerd reads an empty list too.
            return frozenset(CAPABILITIES)
        for name in names:
            if name.lower() not in CAPABILITIES:
                known = ", ".join(CAPABILITIES)
                raise _error(self.where("capabilities"), f"unknown capability {name!r} (one of {known})")
        return frozenset(n.lower() for n in names)

    def client(self) -> list[tuple[str, str, str]]:
        value = self.table.get("client")
        if value is None:
            return []
        where = self.where("client")
        expected = "a path, an array of paths, or an array of [cert, key] pairs"
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise self.wrong("client", expected, value)
        pairs = []
        for item in items:
            if isinstance(item, str):
                # The key is in the same file.
                pairs.append((self.path(item), "", where))
            elif isinstance(item, list) and len(item) == 2 and all(isinstance(p, str) for p in item):
                cert, key = item
                pairs.append((self.path(cert), self.path(key) if key else "", where))
            else:
                raise self.wrong("client", expected, item)
        return pairs

    def headers(self) -> tuple[tuple[str, str], ...]:
        table = self.table.get("header")
        if table is None:
            return ()
        if not isinstance(table, dict):
            raise self.wrong("header", "a table", table)
        out = []
        for name, value in table.items():
            key = f"header.{json.dumps(name) if '.' in name else name}"
            if not _HEADER_NAME.fullmatch(name):
                raise _error(self.where(key), "is not a valid HTTP header name")
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise self.wrong(key, "a string or an array of strings", value)
            for v in values:
                if any(c in v for c in "\r\n\0"):
                    raise _error(self.where(key), "a header value may not hold CR, LF or NUL")
                out.append((name, v))
        return tuple(out)

    def entry(self, url: str, warnings: list[str], allowed: frozenset[str] = _ENTRY_KEYS) -> HostEntry:
        for name in self.table:
            if name not in allowed:
                warnings.append(f"{self.where(name)}: unknown key, ignored")
        ca = self.strings("ca", "a path or an array of paths")
        ca_files = tuple((self.path(p), self.where("ca")) for p in ca or ())
        client = tuple(self.client())
        skip_verify = self.boolean("skip_verify")
        override_path = bool(self.boolean("override_path"))
        tls = None
        if ca_files or client or skip_verify is not None:
            tls = TLSSettings(ca_files, client, bool(skip_verify))
        timeout = CONNECT_TIMEOUT_S
        raw = self.table.get("dial_timeout")
        if raw is not None:
            seconds = go_duration(raw) if isinstance(raw, str) else None
            if seconds is None:
                raise _error(self.where("dial_timeout"), f'expected a duration such as "5s", got {raw!r}')
            # 0 is Go's "no timeout"; crib keeps its own bound instead of waiting forever.
            timeout = seconds or CONNECT_TIMEOUT_S
        base, api_path = self.host_url(url, override_path) if url else ("", "/v2")
        return HostEntry(base, api_path, self.capabilities(), tls, self.headers(), timeout)

    def host_url(self, raw: str, override_path: bool) -> tuple[str, str]:
        """(URL without the API root, the API root): `/v2` unless override_path puts it in the URL."""
        key = self.prefix or "server"
        # A bare host:port is HTTPS, as containerd reads it.
        text = raw if "://" in raw else f"https://{raw}"
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - a bad port raises here
        except ValueError as exc:
            raise _error(f"{self.source}: {key}", f"{raw!r} is not a URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _error(f"{self.source}: {key}", f"{raw!r} is not an http:// or https:// URL with a host")
        path = posixpath.normpath(parts.path) if parts.path else ""
        path = "" if path in ("/", ".") else path
        if override_path:
            return f"{parts.scheme}://{parts.netloc}{path}", ""
        return f"{parts.scheme}://{parts.netloc}{path.removesuffix('/v2')}", "/v2"


def _drop_ins(folder: Path) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str, str], ...]]:
    """Docker's layout: *.crt are CAs; a *.cert is a client certificate with the *.key of its name."""
    try:
        names = sorted(e.name for e in os.scandir(folder) if e.is_file())
    except OSError as exc:
        raise _error(str(folder), f"cannot list the host folder: {exc.strerror}") from None
    where = f"{folder} (Docker-style certificate files)"
    ca = tuple((str(folder / n), where) for n in names if n.endswith(".crt"))
    client = []
    for name in names:
        if name.endswith(".cert"):
            key = name.removesuffix(".cert") + ".key"
            # Without its .key, the key must be in the .cert file (containerd reads it so too).
            client.append((str(folder / name), str(folder / key) if key in names else "", where))
    return ca, tuple(client)


def load(folder: Path) -> HostsConfig:
    """A host folder's configuration: its hosts.toml (if any) and its drop-in certificate files."""
    source = folder / HOSTS_FILE
    warnings: list[str] = []
    try:
        text = source.read_text()
    except FileNotFoundError:
        text = None
    except (OSError, UnicodeDecodeError) as exc:
        raise _error(str(source), f"cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    mirrors: list[HostEntry] = []
    if text is None:
        server = HostEntry("")
    else:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise _error(str(source), f"is not valid TOML: {exc}") from None
        top = _Reader(source, folder, "", doc)
        server_url = doc.get("server", "")
        if not isinstance(server_url, str):
            raise top.wrong("server", "a URL string", server_url)
        hosts = doc.get("host", {})
        if not isinstance(hosts, dict):
            raise top.wrong("host", 'tables such as [host."https://mirror.example"]', hosts)
        # tomllib keeps the tables in file order: the order the hosts are tried in.
        for url, table in hosts.items():
            prefix = f"host.{json.dumps(url)}"
            if not isinstance(table, dict):
                raise _error(f"{source}: {prefix}", f"expected a table, got {_kind(table)}")
            mirrors.append(_Reader(source, folder, prefix, table).entry(url, warnings))
        server = top.entry(server_url, warnings, _TOP_KEYS)
    ca, client = _drop_ins(folder)
    if ca or client:
        tls = server.tls or TLSSettings()
        server = replace(server, tls=replace(tls, ca=tls.ca + ca, client=tls.client + client))
    return HostsConfig(folder, tuple(mirrors), server, tuple(warnings))


def _read(path: str, where: str, what: str) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise _error(where, f"cannot read the {what} {path}: {exc.strerror}") from None


def ssl_context(tls: TLSSettings) -> ssl.SSLContext:
    """The node's CA store plus the given CAs (containerd adds them to the system pool), and the
    client certificates; a file that does not load fails with where it was named."""
    ctx = ssl.create_default_context()
    for path, where in tls.ca:
        _read(path, where, "CA file")
        try:
            ctx.load_verify_locations(cafile=path)
        except ssl.SSLError as exc:
            reason = f"the CA file {path} holds no usable PEM certificate ({exc.reason})"
            raise _error(where, reason) from None
    if tls.skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    # OpenSSL keeps one certificate per key type, the last loaded: reversed, the first listed wins.
    for cert, key, where in reversed(tls.client):
        _read(cert, where, "client certificate")
        if key:
            _read(key, where, "client key")
        try:
            ctx.load_cert_chain(cert, key or None)
        except ssl.SSLError as exc:
            pair = f"{cert} with key {key}" if key else f"{cert} (key in the same file)"
            raise _error(where, f"the client certificate {pair} does not load ({exc.reason})") from None
    return ctx


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class HostDirs:
    """The `config_path` directory: endpoints for a registry, and an HTTP client per TLS setting."""

    def __init__(self, root: str, make_client: Callable[[ssl.SSLContext], httpx.AsyncClient]) -> None:
        self.root = Path(root)
        self.make_client = make_client
        # One client per distinct TLS settings and the files' versions: a rotated
        # certificate gets a new client (the old one is closed with cribd).
        self._clients: dict[tuple[Any, ...], httpx.AsyncClient] = {}
        self._reported: set[str] = set()

    def _report(self, message: str, event: str) -> None:
        """Log a configuration problem once, not on every pull that meets it."""
        if message not in self._reported:
            self._reported.add(message)
            log.warning(event, error=message)

    def folder(self, registry: str) -> Path | None:
        for name in dir_names(registry):
            path = self.root / name
            if path.is_dir():
                return path
        return None

    def endpoints(self, registry: str, upstream: list[Endpoint]) -> list[Endpoint] | None:
        """The registry's endpoints from its folder (or `_default`); None when neither exists."""
        folder = self.folder(registry)
        if folder is None:
            return None
        try:
            config = load(folder)
        except FailedPrecondition as exc:
            self._report(exc.message, "host_dirs.invalid")
            raise
        for warning in config.warnings:
            self._report(warning, "host_dirs.unknown_key")
        return config.endpoints(registry, upstream)

    def client(self, tls: TLSSettings) -> httpx.AsyncClient:
        files = [p for p, _ in tls.ca] + [p for c, k, _ in tls.client for p in (c, k) if p]
        key = (tls, tuple(_stamp(p) for p in files))
        client = self._clients.get(key)
        if client is None:
            try:
                ctx = ssl_context(tls)
            except FailedPrecondition as exc:
                self._report(exc.message, "host_dirs.invalid_certificate")
                raise
            client = self._clients[key] = self.make_client(ctx)
        return client

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
