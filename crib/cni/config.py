"""Finding the pod network's CNI config, as libcni and the kubelet expect.

Files in the conf dir ending in .conf, .conflist or .json are read in name
order; the first usable one wins, or the one whose network name the config
asks for. Usable means: valid JSON, a network name, at least one plugin, each
with a type whose binary exists in one of the bin dirs. Until such a file
exists the node reports NetworkReady=false with the reason below.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_EXTENSIONS = (".conf", ".conflist", ".json")


class NetworkNotReady(Exception):
    """No usable CNI config; the message tells the operator what to fix."""


@dataclass(frozen=True)
class NetworkConfigList:
    name: str
    cni_version: str
    path: Path
    plugins: list[dict[str, Any]] = field(hash=False)
    raw: dict[str, Any] = field(hash=False)


def _parse(path: Path) -> NetworkConfigList:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path.name}: not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: not a JSON object")
    if path.suffix == ".conflist":
        plugins = data.get("plugins")
        if not isinstance(plugins, list) or not plugins:
            raise ValueError(f"{path.name}: a .conflist needs a non-empty 'plugins' list")
        raw = data
    else:
        # A single-plugin .conf is a list of one (libcni's ConfListFromConf).
        plugins = [data]
        raw = {"cniVersion": data.get("cniVersion", ""), "name": data.get("name"), "plugins": plugins}
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{path.name}: no network 'name'")
    for i, plugin in enumerate(plugins):
        if not isinstance(plugin, dict) or not isinstance(plugin.get("type"), str) or not plugin["type"]:
            raise ValueError(f"{path.name}: plugin {i} has no 'type'")
    version = raw.get("cniVersion", "")
    return NetworkConfigList(name, version if isinstance(version, str) else "", path, plugins, raw)


def find_plugin(plugin_type: str, bin_dirs: list[str]) -> Path | None:
    if "/" in plugin_type or plugin_type in (".", ".."):
        return None
    for d in bin_dirs:
        candidate = Path(d) / plugin_type
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def load_network(conf_dir: str, bin_dirs: list[str], network_name: str = "") -> NetworkConfigList:
    """The network pods join, or NetworkNotReady saying why there is none."""
    try:
        names = sorted(e.name for e in os.scandir(conf_dir) if e.name.endswith(CONFIG_EXTENSIONS))
    except FileNotFoundError:
        raise NetworkNotReady(f"cni config uninitialized: {conf_dir} does not exist") from None
    except OSError as exc:
        raise NetworkNotReady(f"cni config uninitialized: cannot read {conf_dir}: {exc.strerror}") from exc
    problems: list[str] = []
    for fname in names:
        try:
            net = _parse(Path(conf_dir) / fname)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if network_name and net.name != network_name:
            continue
        missing = [p["type"] for p in net.plugins if find_plugin(p["type"], bin_dirs) is None]
        if missing:
            problems.append(
                f"{fname}: plugin binaries {', '.join(missing)} not found in {':'.join(bin_dirs)}"
            )
            continue
        return net
    wanted = f"network {network_name!r}" if network_name else "network config"
    detail = f" ({'; '.join(problems)})" if problems else ""
    raise NetworkNotReady(f"cni config uninitialized: no usable {wanted} in {conf_dir}{detail}")
