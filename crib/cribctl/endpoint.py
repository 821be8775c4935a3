"""Which CRI endpoints cribctl talks to, by crictl's rules, and the client config file
(crictl.yaml) they come from; docs/cribctl.md gives the precedence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

DEFAULT_CONFIG_PATH = Path("/etc/crictl.yaml")
DEFAULT_ENDPOINT = "unix:///run/crib/crib.sock"
DEFAULT_TIMEOUT_S = 2.0

# crictl's option names, in the order its WriteConfig appends missing ones.
CONFIG_KEYS = (
    "runtime-endpoint",
    "image-endpoint",
    "timeout",
    "debug",
    "pull-image-on-create",
    "disable-pull-on-run",
)
GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
GO_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class ClientConfigError(Exception):
    pass


@dataclass
class ClientConfig:
    runtime_endpoint: str = ""
    image_endpoint: str = ""
    timeout: int = 0
    debug: bool = False
    pull_image_on_create: bool = False
    disable_pull_on_run: bool = False


@dataclass(frozen=True)
class Endpoints:
    runtime: str
    image: str
    timeout: float
    debug: bool


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration string ("2s", "1m30s", "500ms"); a bare number is seconds."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(body):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    if pos != len(body) or not body:
        raise ValueError(f"invalid duration {text!r}")
    return sign * total


def _go_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value)
    if text in GO_TRUE:
        return True
    if text in GO_FALSE:
        return False
    raise ClientConfigError(f"parsing config option '{name}': invalid syntax: {text!r}")


def read_client_config(path: Path) -> ClientConfig:
    """crictl.yaml: flat `key: value` pairs; any other key is an error."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ClientConfigError(f"load config file: {exc.strerror}: {path}") from exc
    except yaml.YAMLError as exc:
        raise ClientConfigError(f"load config file {path}: {exc}") from exc
    config = ClientConfig()
    if data is None:
        return config
    if not isinstance(data, dict):
        raise ClientConfigError(f"load config file {path}: not a mapping")
    for name, value in data.items():
        if name not in CONFIG_KEYS:
            raise ClientConfigError(f"Config option '{name}' is not valid")
        if name == "runtime-endpoint":
            config.runtime_endpoint = "" if value is None else str(value)
        elif name == "image-endpoint":
            config.image_endpoint = "" if value is None else str(value)
        elif name == "timeout":
            try:
                config.timeout = int(str(value))
            except ValueError:
                raise ClientConfigError(
                    f"parsing config option 'timeout': invalid syntax: {value!r}"
                ) from None
        else:
            setattr(config, name.replace("-", "_"), _go_bool(name, value))
    return config


def resolve(
    *,
    runtime_endpoint: str | None,
    image_endpoint: str | None,
    timeout: str | None,
    debug: bool | None,
    config_path: str | None,
) -> Endpoints:
    """Apply crictl's precedence. None means "not set" by flag or environment."""
    explicit = config_path is not None
    path = Path(config_path) if explicit else DEFAULT_CONFIG_PATH
    config: ClientConfig | None = None
    if explicit or path.exists():
        try:
            config = read_client_config(path)
        except ClientConfigError:
            if explicit:
                raise
            config = None

    if timeout is not None:
        try:
            seconds = parse_go_duration(timeout)
        except ValueError as exc:
            raise ClientConfigError(f"invalid value {timeout!r} for flag --timeout: {exc}") from None
        flag_timeout = seconds if seconds > 0 else DEFAULT_TIMEOUT_S
    else:
        flag_timeout = None

    runtime = runtime_endpoint or (config.runtime_endpoint if config else "") or DEFAULT_ENDPOINT
    image = image_endpoint or (config.image_endpoint if config else "") or runtime
    if flag_timeout is not None:
        seconds = flag_timeout
    elif config and config.timeout > 0:
        seconds = float(config.timeout)
    else:
        seconds = DEFAULT_TIMEOUT_S
    dbg = debug if debug is not None else config.debug if config else False
    return Endpoints(runtime, image, seconds, dbg)


def grpc_target(endpoint: str) -> str:
    """A gRPC target for a crictl-style endpoint (`unix:///path`, or a bare path)."""
    if endpoint.startswith("unix://"):
        return endpoint
    if endpoint.startswith("/"):
        return f"unix://{endpoint}"
    raise ClientConfigError(
        f"endpoint {endpoint!r}: only unix sockets are supported (unix:///path/to/socket)"
    )
