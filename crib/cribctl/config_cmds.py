"""crictl's config: get, set and list the client config file's options, editing the file in place."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from crib.cribctl import endpoint
from crib.cribctl.client import Command, CommandError
from crib.cribctl.endpoint import (
    CONFIG_KEYS,
    GO_FALSE,
    GO_TRUE,
    ClientConfig,
    ClientConfigError,
    Endpoints,
    read_client_config,
)
from crib.cribctl.golike import go_quote
from crib.cribctl.util import CLEAR_SCREEN, SliceAppend, add_command, show_help, table

_INT_KEYS = frozenset({"timeout"})
_BOOL_KEYS = frozenset({"debug", "pull-image-on-create", "disable-pull-on-run"})
_LINE = re.compile(r"^(?P<key>[A-Za-z0-9_-]+)(?P<sep>\s*:[ \t]*)(?P<value>.*?)(?P<comment>\s+#.*)?$")

CONFIG_EPILOG = """\
EXAMPLES:
   # Set the key "debug" to "true"
   cribctl config --set debug=true

   # Set the key "debug" to "true"
   cribctl config debug true

   # Get the value of "debug"
   cribctl config --get debug

   # Show the full configuration
   cribctl config --list

CRICTL OPTIONS:
   runtime-endpoint:      Container Runtime Interface (CRI) runtime endpoint (default: "")
   image-endpoint:        Container Runtime Interface (CRI) image endpoint (default: "")
   timeout:               Timeout of connecting to server (default: 2)
   debug:                 Enable debug output (default: false)
   pull-image-on-create:  Enable pulling image on create requests (default: false)
   disable-pull-on-run:   Disable pulling image on run requests (default: false)"""


def config_values(config: ClientConfig) -> dict[str, str]:
    """Each option as crictl prints it (strconv.Itoa, strconv.FormatBool)."""
    return {
        "runtime-endpoint": config.runtime_endpoint,
        "image-endpoint": config.image_endpoint,
        "timeout": str(config.timeout),
        "debug": "true" if config.debug else "false",
        "pull-image-on-create": "true" if config.pull_image_on_create else "false",
        "disable-pull-on-run": "true" if config.disable_pull_on_run else "false",
    }


def set_config_value(config: ClientConfig, key: str, value: str) -> None:
    """crictl's setValue: strconv.Atoi for timeout, strconv.ParseBool for the switches."""
    if key in ("runtime-endpoint", "image-endpoint"):
        setattr(config, key.replace("-", "_"), value)
    elif key in _INT_KEYS:
        if not re.fullmatch(r"[+-]?\d+", value):
            raise CommandError(
                f"parse timeout value '{value}': strconv.Atoi: parsing {go_quote(value)}: invalid syntax"
            )
        config.timeout = int(value)
    elif key in _BOOL_KEYS:
        if value not in GO_TRUE | GO_FALSE:
            raise CommandError(
                f"parse {key} value '{value}': strconv.ParseBool: parsing {go_quote(value)}: invalid syntax"
            )
        setattr(config, key.replace("-", "_"), value in GO_TRUE)
    else:
        raise CommandError(f"no configuration option named {key}")


def _yaml_scalar(key: str, value: str, old: str | None) -> str:
    """The value's text in the file: a string keeps the old quoting, and is double-quoted
    where go-yaml would (empty, or it would read back as another type)."""
    if key in _INT_KEYS or key in _BOOL_KEYS:
        return value
    double = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if old is not None and old.startswith('"'):
        return double
    if old is not None and old.startswith("'"):
        return "'" + value.replace("'", "''") + "'"
    resolved = yaml.safe_load(value) if value else None
    plain_ok = value != "" and isinstance(resolved, str) and resolved == value
    if plain_ok and not re.search(r"^[\s!&*>|%@`#,\[\]{}'\"?:-]|:\s|\s#|\s$", value):
        return value
    return double


def render_config(text: str, config: ClientConfig) -> str:
    """The config file after setting `config`: known lines edited in place, missing keys appended."""
    values = config_values(config)
    lines = text.splitlines()
    seen: set[str] = set()
    flat = True
    for i, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith("#") or line.strip() in ("---", "..."):
            continue
        m = _LINE.match(line)
        if m is None or m.group("key") not in values:
            flat = False
            break
        key = m.group("key")
        old = m.group("value")
        lines[i] = (
            f"{key}{m.group('sep') or ': '}{_yaml_scalar(key, values[key], old)}{m.group('comment') or ''}"
        )
        if not m.group("sep").endswith((" ", "\t")):
            lines[i] = f"{key}: {_yaml_scalar(key, values[key], old)}{m.group('comment') or ''}"
        seen.add(key)
    if not flat:
        lines, seen = [], set()
    for key in CONFIG_KEYS:
        if key not in seen:
            lines.append(f"{key}: {_yaml_scalar(key, values[key], None)}")
    return "\n".join(lines) + "\n"


def config_path(args: argparse.Namespace) -> Path:
    # The same file endpoint.resolve read: --config, then CRI_CONFIG_FILE, then the default.
    explicit = getattr(args, "config", None) or os.environ.get("CRI_CONFIG_FILE") or None
    return Path(explicit) if explicit else endpoint.DEFAULT_CONFIG_PATH


def _load_config(path: Path) -> ClientConfig:
    try:
        return read_client_config(path)
    except ClientConfigError as exc:
        text = str(exc)
        raise CommandError(
            text if text.startswith("load config file") else f"load config file: {text}"
        ) from None


def _write_config(path: Path, config: ClientConfig) -> None:
    try:
        old = path.read_text() if path.exists() else ""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_config(old, config))
    except OSError as exc:
        raise CommandError(f"open {path}: {(exc.strerror or str(exc)).lower()}") from None


def cmd_config(args: argparse.Namespace, ep: Endpoints) -> None:
    path = config_path(args)
    if not path.exists():
        # crictl writes a file with every default before it reads one.
        _write_config(path, ClientConfig())
    config = _load_config(path)
    if args.get is not None:
        values = config_values(config)
        if args.get not in values:
            raise CommandError(f"no configuration option named {args.get}")
        print(values[args.get])
        return
    if args.set:
        for setting in args.set:
            for option in setting.split(","):
                pair = option.split("=")
                if len(pair) != 2:
                    raise CommandError(f"incorrectly specified option: {setting}")
                set_config_value(config, pair[0], pair[1])
        _write_config(path, config)
        return
    if args.list:
        rows = [["KEY", "VALUE"]] + [[k, v] for k, v in config_values(config).items()]
        sys.stdout.write(CLEAR_SCREEN + table(rows))
        return
    if not args.args:
        show_help(args)
        return
    key = args.args[0]
    value = args.args[1] if len(args.args) > 1 else ""
    print(
        "cribctl: no --get, --set or --list provided, "
        f"setting key {go_quote(key)} to value {go_quote(value)}",
        file=sys.stderr,
    )
    try:
        set_config_value(config, key, value)
    except CommandError as exc:
        raise CommandError(f"set {go_quote(key)} to {go_quote(value)}: {exc}") from None
    _write_config(path, config)


def register(sub: Any) -> dict[str, Command]:
    """Adds config; returns {name or alias: command}."""
    p = add_command(
        sub,
        "config",
        "get, set and list crictl configuration options",
        epilog=CONFIG_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("args", nargs="*", metavar="<crictl options>")
    p.add_argument("--get", metavar="OPTION", help="show the option value")
    p.add_argument(
        "--set",
        action=SliceAppend,
        metavar="OPTION=VALUE",
        help="set option (can specify multiple or separate values with commas: opt1=val1,opt2=val2)",
    )
    p.add_argument("--list", action="store_true", help="show all option values")

    return {"config": cmd_config}
