"""Attaching a pod to its network with CNI plugins, per the CNI spec (1.0 and older).

ADD runs the plugins of the network's list in order, each getting the
previous one's result as `prevResult`; the final result is cached on disk
*before* the caller is told it succeeded, so DEL (which runs the list in
reverse with the cached result) can always release what ADD took, even after
a crash or a reboot. A failed ADD is undone with a DEL of the same list.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from crib import node_metrics, spawn, tracing
from crib.cni.config import NetworkConfigList, find_plugin
from crib.errors import DeadlineExceeded, Internal, Unavailable
from crib.log_setup import get_logger

log = get_logger("crib.cni")

PLUGIN_TIMEOUT_S = 120.0
# An fsync of the result cache on a busy disk: seconds at worst.
CACHE_WRITE_TIMEOUT_S = 60.0
IFNAME = "eth0"


class PluginError(Internal):
    pass


@dataclass(frozen=True)
class Attachment:
    """Who is being attached, as the plugins are told."""

    container_id: str
    netns: str
    ifname: str = IFNAME
    args: dict[str, str] = field(default_factory=dict)
    # portMappings, bandwidth, dns, ipRanges… given to plugins that declare the capability.
    capability_args: dict[str, Any] = field(default_factory=dict)

    def cni_args(self) -> str:
        return ";".join(f"{k}={v}" for k, v in {"IgnoreUnknown": "1", **self.args}.items())


def _version_at_least(version: str, major: int, minor: int) -> bool:
    try:
        parts = [int(p) for p in version.split(".")[:2]]
    except ValueError:
        return False
    return tuple(parts + [0] * (2 - len(parts))) >= (major, minor)


def plugin_config(
    net: NetworkConfigList, plugin: dict[str, Any], prev_result: dict[str, Any] | None, att: Attachment
) -> dict[str, Any]:
    conf = dict(plugin)
    conf["name"] = net.name
    conf["cniVersion"] = net.cni_version
    if prev_result is not None:
        conf["prevResult"] = prev_result
    caps = plugin.get("capabilities") or {}
    runtime = {k: v for k, v in att.capability_args.items() if caps.get(k)}
    if runtime:
        conf["runtimeConfig"] = {**(conf.get("runtimeConfig") or {}), **runtime}
    return conf


def plugin_env(command: str, att: Attachment, bin_dirs: list[str]) -> dict[str, str]:
    """The environment of a CNI plugin call (the CNI spec's variables; nothing of cribd's)."""
    return {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": att.container_id,
        "CNI_NETNS": att.netns,
        "CNI_IFNAME": att.ifname,
        "CNI_ARGS": att.cni_args(),
        "CNI_PATH": ":".join(bin_dirs),
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    }


async def _exec_plugin(
    command: str, plugin: dict[str, Any], conf: dict[str, Any], att: Attachment, bin_dirs: list[str]
) -> dict[str, Any] | None:
    binary = find_plugin(plugin["type"], bin_dirs)
    if binary is None:
        raise Unavailable(f"CNI plugin {plugin['type']!r} not found in {':'.join(bin_dirs)}")
    env = plugin_env(command, att, bin_dirs)
    try:
        code, out, err = await spawn.run(
            [str(binary)], timeout=PLUGIN_TIMEOUT_S, input=json.dumps(conf).encode(), env=env
        )
    except TimeoutError:
        raise DeadlineExceeded(
            f"CNI plugin {plugin['type']} {command} took longer than {PLUGIN_TIMEOUT_S:g}s"
        ) from None
    if code != 0:
        detail = out.decode(errors="replace").strip() or err.decode(errors="replace").strip()
        with contextlib.suppress(ValueError, AttributeError):
            doc = json.loads(detail)
            extra = f": {doc['details']}" if doc.get("details") else ""
            detail = f"{doc.get('msg', '')}{extra} (code {doc.get('code')})"
        raise PluginError(f"CNI plugin {plugin['type']} {command} failed: {detail}")
    if command != "ADD" or not out.strip():
        return None
    try:
        result = json.loads(out)
    except ValueError:
        raise PluginError(f"CNI plugin {plugin['type']} returned no valid JSON result") from None
    return result if isinstance(result, dict) else None


class CNICache:
    """`<dir>/<network>-<container id>-<ifname>`: the config and result of each ADD."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, network: str, att: Attachment) -> Path:
        return self.dir / f"{network}-{att.container_id}-{att.ifname}"

    def save(self, net: NetworkConfigList, att: Attachment, result: dict[str, Any]) -> None:
        record = {
            "kind": "cniCacheV1",
            "containerId": att.container_id,
            "ifName": att.ifname,
            "networkName": net.name,
            "netns": att.netns,
            "cniArgs": att.args,
            "capabilityArgs": att.capability_args,
            "config": net.raw,
            "result": result,
        }
        path = self._path(net.name, att)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(record, f)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)

    def load(self, network: str, att: Attachment) -> dict[str, Any] | None:
        try:
            return json.loads(self._path(network, att).read_text())
        except (FileNotFoundError, ValueError):
            return None

    def delete(self, network: str, att: Attachment) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(network, att).unlink()

    def entries(self) -> list[CachedAttachment]:
        """Every cached ADD, for the sweep at start-up of pods no record knows."""
        out = []
        for path in sorted(self.dir.iterdir()):
            if path.suffix == ".tmp":
                path.unlink(missing_ok=True)
                continue
            try:
                record = json.loads(path.read_text())
                out.append(
                    CachedAttachment(
                        record["networkName"],
                        Attachment(
                            container_id=record["containerId"],
                            netns=record.get("netns", ""),
                            ifname=record.get("ifName", "eth0"),
                            args=record.get("cniArgs") or {},
                            capability_args=record.get("capabilityArgs") or {},
                        ),
                        record["config"],
                    )
                )
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return out


@dataclass(frozen=True)
class CachedAttachment:
    network: str
    attachment: Attachment
    config: dict[str, Any]


def _span_attributes(net: NetworkConfigList, att: Attachment) -> dict[str, str]:
    return {"crib.pod_sandbox_id": att.container_id, "cni.network": net.name, "cni.netns": att.netns}


async def add(
    net: NetworkConfigList, att: Attachment, bin_dirs: list[str], cache: CNICache
) -> dict[str, Any]:
    with (
        tracing.span("cni.add", **_span_attributes(net, att)),
        node_metrics.timed(node_metrics.CNI_DURATION, node_metrics.CNI_ERRORS, operation="add"),
    ):
        return await _add(net, att, bin_dirs, cache)


async def _add(
    net: NetworkConfigList, att: Attachment, bin_dirs: list[str], cache: CNICache
) -> dict[str, Any]:
    prev: dict[str, Any] | None = None
    try:
        for plugin in net.plugins:
            conf = plugin_config(net, plugin, prev, att)
            result = await _exec_plugin("ADD", plugin, conf, att, bin_dirs)
            if result is not None:
                prev = result
        if prev is None:
            raise PluginError(f"CNI network {net.name} returned no result")
        # On disk before anyone relies on it: DEL must always find it.
        await _save(cache, net, att, prev)
    except BaseException:
        # Undo whatever the plugins that ran already took (IPs, links, rules).
        with contextlib.suppress(Exception):
            await delete(net, att, bin_dirs, cache, prev_result=prev)
        raise
    return prev


async def _save(cache: CNICache, net: NetworkConfigList, att: Attachment, result: dict[str, Any]) -> None:
    """The result written and fsync'd off the loop: under the fuzzer's load an fsync on the
    loop blocked it for 100 ms. Cancelled, it still waits for the write to end: the undo that
    follows removes the file, and a rename landing after that would leave a cache entry for an
    attachment that is gone."""
    write = asyncio.ensure_future(asyncio.to_thread(cache.save, net, att, result))
    try:
        await asyncio.shield(write)
    except asyncio.CancelledError:
        await asyncio.wait([write], timeout=CACHE_WRITE_TIMEOUT_S)
        raise


async def delete(
    net: NetworkConfigList,
    att: Attachment,
    bin_dirs: list[str],
    cache: CNICache,
    prev_result: dict[str, Any] | None = None,
) -> None:
    """DEL in reverse order with the cached result; tolerant of what is already gone."""
    with (
        tracing.span("cni.del", **_span_attributes(net, att)),
        node_metrics.timed(node_metrics.CNI_DURATION, node_metrics.CNI_ERRORS, operation="del"),
    ):
        await _delete(net, att, bin_dirs, cache, prev_result)


async def _delete(
    net: NetworkConfigList,
    att: Attachment,
    bin_dirs: list[str],
    cache: CNICache,
    prev_result: dict[str, Any] | None,
) -> None:
    cached = cache.load(net.name, att)
    if cached is not None:
        # The config that ADD used, not today's file.
        with contextlib.suppress(KeyError, ValueError, TypeError):
            net = NetworkConfigList(
                cached["config"]["name"],
                cached["config"].get("cniVersion", ""),
                net.path,
                cached["config"]["plugins"],
                cached["config"],
            )
        prev_result = cached.get("result", prev_result)
        # And the capability args ADD had: the node's pod CIDR (ipRanges) may have come since,
        # and host-local refuses a DEL whose ranges differ ("range set 0 overlaps with 1").
        if isinstance(cached.get("capabilityArgs"), dict):
            att = replace(att, capability_args=cached["capabilityArgs"])
    errors = []
    for plugin in reversed(net.plugins):
        prev = prev_result if _version_at_least(net.cni_version, 0, 4) else None
        conf = plugin_config(net, plugin, prev, att)
        try:
            await _exec_plugin("DEL", plugin, conf, att, bin_dirs)
        except (PluginError, Unavailable) as exc:
            errors.append(exc.message)
    if errors:
        raise PluginError(f"CNI DEL for {att.container_id}: {'; '.join(errors)}")
    await asyncio.to_thread(cache.delete, net.name, att)


async def delete_cached(entry: CachedAttachment, bin_dirs: list[str], cache: CNICache) -> None:
    """DEL an attachment from its cached config alone (its pod's record is gone)."""
    raw = entry.config
    net = NetworkConfigList(raw["name"], raw.get("cniVersion", ""), Path(""), raw["plugins"], raw)
    await delete(net, entry.attachment, bin_dirs, cache)


async def check(net: NetworkConfigList, att: Attachment, bin_dirs: list[str], cache: CNICache) -> None:
    cached = cache.load(net.name, att)
    if cached is None:
        raise PluginError(f"no cached CNI result for {att.container_id}")
    if not _version_at_least(net.cni_version, 0, 4):
        return
    for plugin in net.plugins:
        await _exec_plugin("CHECK", plugin, plugin_config(net, plugin, cached["result"], att), att, bin_dirs)


def result_ips(result: dict[str, Any]) -> list[str]:
    """Pod IPs from a CNI result of any version, IPv4 first."""
    addresses: list[str] = []
    for ip in result.get("ips") or []:
        if isinstance(ip, dict) and isinstance(ip.get("address"), str):
            addresses.append(ip["address"].split("/")[0])
    for key in ("ip4", "ip6"):  # CNI 0.2.0
        section = result.get(key)
        if isinstance(section, dict) and isinstance(section.get("ip"), str):
            addresses.append(section["ip"].split("/")[0])
    return sorted(dict.fromkeys(addresses), key=lambda a: ":" in a)
