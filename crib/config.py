"""cribd's configuration: one TOML file, every key optional, flags on top.

Unknown keys and wrong types are refused with the key's dotted name, so a typo
in `/etc/crib/crib.toml` stops the daemon instead of being silently ignored.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_CONFIG_PATH = Path("/etc/crib/crib.toml")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "console")
CGROUP_DRIVERS = ("cgroupfs", "systemd")
# The cAdvisor metric families ListPodSandboxMetrics can report (CRI-O's included_pod_metrics names).
METRIC_FAMILIES = ("cpu", "memory", "network", "oom", "process", "spec", "disk")


class ConfigError(Exception):
    """A config file or flag that cribd refuses; `key` is its dotted name."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}" if key else reason)
        self.key = key
        self.reason = reason


@dataclass
class RegistryMirror:
    """Where to pull a registry host's images from, tried in order."""

    endpoints: list[str] = field(default_factory=list)
    # Never fall back to the upstream host (air-gapped nodes).
    mirrors_only: bool = False


@dataclass
class ImageSection:
    sandbox_image: str = "registry.k8s.io/pause:3.10"
    # Build the sandbox image from the node's catatonit when it is missing
    # (no pull needed); false: pull it from its registry.
    build_sandbox_image: bool = True
    mirrors: dict[str, RegistryMirror] = field(default_factory=dict)
    insecure_registries: list[str] = field(default_factory=list)
    auth_file: str = ""
    # A containerd-style registry hosts directory (`<host>/hosts.toml`, Docker's *.crt, *.cert,
    # *.key): a host with a folder there (or `_default`) ignores `mirrors`. Empty: not used.
    config_path: str = ""
    max_concurrent_downloads: int = 3
    # Images the kubelet's GC must keep (ImageStatus and ListImages say pinned): CRI-O's patterns,
    # an exact name, a glob with `*` at the end, or a keyword with `*` at both ends.
    pinned_images: list[str] = field(default_factory=list)
    # RemoveImage refuses a pinned image unless this is set.
    remove_pinned: bool = False
    # Seconds without a single byte from the registry before a pull is cancelled.
    stall_timeout: float = 60.0
    # A containers-policy.json(5) file checked at every PullImage (CRI-O's signature_policy);
    # empty: no signature policy, every image is accepted.
    signature_policy: str = ""


@dataclass
class CNISection:
    bin_dirs: list[str] = field(default_factory=lambda: ["/opt/cni/bin", "/usr/lib/cni"])
    conf_dir: str = "/etc/cni/net.d"
    # Empty: the first usable config file in name order, as libcni picks it.
    network_name: str = ""


@dataclass
class RuntimeHandler:
    """One CRI runtime handler (RuntimeClass) backed by an OCI runtime binary."""

    binary: str = "runc"


def _default_handlers() -> dict[str, RuntimeHandler]:
    return {"runc": RuntimeHandler("runc"), "crun": RuntimeHandler("crun")}


@dataclass
class RuntimeSection:
    default_handler: str = "runc"
    handlers: dict[str, RuntimeHandler] = field(default_factory=_default_handlers)
    conmon: str = "conmon"
    cgroup_driver: str = "cgroupfs"
    # CDI spec files (containerd's cdi_spec_dirs); later dirs take priority.
    cdi_spec_dirs: list[str] = field(default_factory=lambda: ["/etc/cdi", "/var/run/cdi"])


@dataclass
class StreamingSection:
    address: str = "127.0.0.1"
    # 0 picks a free port at start-up, as containerd and CRI-O do.
    port: int = 0
    # Seconds a session may go without traffic, and a client may take to open its streams.
    idle_timeout: float = 4 * 3600.0
    creation_timeout: float = 30.0
    # Both set: serve HTTPS.
    tls_cert: str = ""
    tls_key: str = ""


@dataclass
class StatsSection:
    # Which metric families ListPodSandboxMetrics reports (the kubelet's /metrics/cadvisor with
    # PodAndContainerStatsFromCRI); "disk" walks each writable layer, so it costs the most.
    included_pod_metrics: list[str] = field(default_factory=lambda: list(METRIC_FAMILIES))


@dataclass
class MetricsSection:
    # host:port of cribd's own Prometheus endpoint (/metrics); empty: not served.
    address: str = ""


@dataclass
class TracingSection:
    # The OTLP/HTTP traces URL of a collector, e.g. "http://127.0.0.1:4318/v1/traces"; empty: off.
    endpoint: str = ""
    # The share of new traces recorded (0..1); a call that continues the kubelet's trace
    # follows the kubelet's decision instead.
    sampling_ratio: float = 1.0
    service_name: str = "cribd"


@dataclass
class Config:
    # Empty: `<state>/crib.sock`.
    listen: str = ""
    root: str = "/var/lib/crib"
    state: str = "/run/crib"
    log_level: str = "info"
    log_format: str = "json"
    image: ImageSection = field(default_factory=ImageSection)
    cni: CNISection = field(default_factory=CNISection)
    runtime: RuntimeSection = field(default_factory=RuntimeSection)
    streaming: StreamingSection = field(default_factory=StreamingSection)
    stats: StatsSection = field(default_factory=StatsSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    tracing: TracingSection = field(default_factory=TracingSection)

    @property
    def socket_path(self) -> Path:
        return Path(self.listen) if self.listen else Path(self.state) / "crib.sock"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["listen"] = str(self.socket_path)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


# --- building from TOML -----------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}s"
    if origin is dict:
        return "a table"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}[tp]


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    wrong = ConfigError(key, f"expected {_type_name(tp)}, got {_toml_type(value)}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise wrong
        return _build(tp, value, key)
    if origin is list:
        if not isinstance(value, list):
            raise wrong
        (item_tp,) = typing.get_args(tp)
        return [_convert(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise wrong
        _, item_tp = typing.get_args(tp)
        return {k: _convert(item_tp, v, f"{key}.{_quote(k)}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise wrong
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise wrong
        return value
    raise TypeError(f"unsupported config type {tp!r}")


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _quote(k: str) -> str:
    """A TOML key: bare when it can be, quoted otherwise (`"docker.io"`)."""
    return k if _BARE_KEY.fullmatch(k) else json.dumps(k)


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise ConfigError(f"{prefix}.{key}" if prefix else key, "unknown key")
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        tp = hints[name]
        if isinstance(tp, types.UnionType):
            raise TypeError(f"unsupported config type {tp!r}")
        kwargs[name] = _convert(tp, value, key)
    return cls(**kwargs)


def parse(text: str, source: str = "config") -> Config:
    """Parse TOML text into a validated Config."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{source} is not valid TOML: {exc}") from exc
    config = _build(Config, data)
    validate(config)
    return config


def load(path: Path | None) -> Config:
    """Load the config file; a missing default file means built-in defaults.

    An explicitly named file (`path` given) must exist.
    """
    target = path or DEFAULT_CONFIG_PATH
    try:
        text = target.read_text()
    except FileNotFoundError:
        if path is not None:
            raise ConfigError("", f"config file {target} does not exist") from None
        config = Config()
        validate(config)
        return config
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {target}: {exc.strerror}") from exc
    return parse(text, str(target))


def apply_overrides(config: Config, **overrides: str | None) -> Config:
    """Apply command-line flags (None means not given) and validate again."""
    changes = {k: v for k, v in overrides.items() if v is not None}
    config = dataclasses.replace(config, **changes)
    validate(config)
    return config


# --- semantic checks --------------------------------------------------------------------------


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(key, f"must be one of {', '.join(allowed)}, got {value!r}")


def _absolute(key: str, value: str) -> None:
    if not value.startswith("/"):
        raise ConfigError(key, f"must be an absolute path, got {value!r}")


def normalize_listen(value: str) -> str:
    """`unix:///run/x.sock` or `/run/x.sock` → `/run/x.sock`."""
    if value.startswith("unix://"):
        value = value[len("unix://") :]
    return value


def validate(config: Config) -> None:
    config.listen = normalize_listen(config.listen)
    if config.listen:
        _absolute("listen", config.listen)
    _absolute("root", config.root)
    _absolute("state", config.state)
    _one_of("log_level", config.log_level, LOG_LEVELS)
    _one_of("log_format", config.log_format, LOG_FORMATS)

    image = config.image
    if image.max_concurrent_downloads < 1:
        raise ConfigError("image.max_concurrent_downloads", "must be at least 1")
    if image.stall_timeout <= 0:
        raise ConfigError("image.stall_timeout", "must be a positive number of seconds")
    if image.auth_file:
        _absolute("image.auth_file", image.auth_file)
    if image.config_path:
        _absolute("image.config_path", image.config_path)
    if image.signature_policy:
        _absolute("image.signature_policy", image.signature_policy)
    for host, mirror in image.mirrors.items():
        key = f"image.mirrors.{_quote(host)}"
        if not mirror.endpoints:
            raise ConfigError(f"{key}.endpoints", "must list at least one mirror endpoint")
        for i, endpoint in enumerate(mirror.endpoints):
            if not endpoint.startswith(("http://", "https://")):
                raise ConfigError(
                    f"{key}.endpoints[{i}]", f"must start with http:// or https://: {endpoint!r}"
                )

    _absolute("cni.conf_dir", config.cni.conf_dir)
    for i, d in enumerate(config.cni.bin_dirs):
        _absolute(f"cni.bin_dirs[{i}]", d)

    runtime = config.runtime
    _one_of("runtime.cgroup_driver", runtime.cgroup_driver, CGROUP_DRIVERS)
    if not runtime.handlers:
        raise ConfigError("runtime.handlers", "must define at least one runtime handler")
    if runtime.default_handler not in runtime.handlers:
        raise ConfigError(
            "runtime.default_handler",
            f"{runtime.default_handler!r} is not one of the handlers ({', '.join(sorted(runtime.handlers))})",
        )
    for name, handler in runtime.handlers.items():
        if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ConfigError(f"runtime.handlers.{_quote(name)}", "handler names are letters, digits, - _ .")
        if not handler.binary:
            raise ConfigError(f"runtime.handlers.{_quote(name)}.binary", "must not be empty")
    if not runtime.conmon:
        raise ConfigError("runtime.conmon", "must not be empty")
    for d in runtime.cdi_spec_dirs:
        if not d.startswith("/"):
            raise ConfigError("runtime.cdi_spec_dirs", f"{d!r} is not an absolute path")

    streaming = config.streaming
    try:
        ipaddress.ip_address(streaming.address)
    except ValueError:
        raise ConfigError("streaming.address", f"must be an IP address, got {streaming.address!r}") from None
    if not 0 <= streaming.port <= 65535:
        raise ConfigError("streaming.port", f"must be 0..65535, got {streaming.port}")
    for key in ("idle_timeout", "creation_timeout"):
        if getattr(streaming, key) <= 0:
            raise ConfigError(f"streaming.{key}", "must be a positive number of seconds")
    if bool(streaming.tls_cert) != bool(streaming.tls_key):
        raise ConfigError("streaming.tls_cert", "tls_cert and tls_key go together")

    seen: set[str] = set()
    for i, family in enumerate(config.stats.included_pod_metrics):
        _one_of(f"stats.included_pod_metrics[{i}]", family, METRIC_FAMILIES)
        if family in seen:
            raise ConfigError(f"stats.included_pod_metrics[{i}]", f"{family!r} is listed twice")
        seen.add(family)

    for i, pattern in enumerate(config.image.pinned_images):
        inner = pattern.strip("*") if pattern.startswith("*") else pattern.removesuffix("*")
        if not inner or "*" in inner:
            raise ConfigError(
                f"image.pinned_images[{i}]",
                f"{pattern!r}: a name, name* or *word*, with no other wildcard",
            )

    address = config.metrics.address
    if address:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError("metrics.address", f"must be host:port, got {address!r}")

    tracing = config.tracing
    if tracing.endpoint:
        url = urlsplit(tracing.endpoint)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ConfigError(
                "tracing.endpoint", f"must be an http:// or https:// URL, got {tracing.endpoint!r}"
            )
    if not 0.0 <= tracing.sampling_ratio <= 1.0:
        raise ConfigError("tracing.sampling_ratio", f"must be 0..1, got {tracing.sampling_ratio}")
    if not tracing.service_name:
        raise ConfigError("tracing.service_name", "must not be empty")


# --- printing ---------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # JSON string escapes are a subset of TOML basic-string escapes.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot print {value!r} as TOML")


def _emit_table(data: dict[str, Any], path: list[str], out: list[str]) -> None:
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    if path and (scalars or not tables):
        out.append("")
        out.append("[" + ".".join(_quote(p) for p in path) + "]")
    for k, v in scalars.items():
        out.append(f"{_quote(k)} = {_toml_value(v)}")
    for k, v in tables.items():
        _emit_table(v, [*path, k], out)


def to_toml(config: Config) -> str:
    """The effective config as a TOML file cribd would accept unchanged."""
    out: list[str] = []
    _emit_table(config.to_dict(), [], out)
    return "\n".join(out).lstrip("\n") + "\n"
