"""The files a pod's containers share: /etc/resolv.conf, /etc/hosts, /etc/hostname."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from crib.errors import InvalidArgument
from crib.proto.cri import api_pb2

HOST_RESOLV_CONF = Path("/etc/resolv.conf")
HOST_HOSTS = Path("/etc/hosts")
DEFAULT_HOSTS = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "fe00::0\tip6-mcastprefix\n"
    "fe00::1\tip6-allnodes\n"
    "fe00::2\tip6-allrouters\n"
)


def resolv_conf(dns: api_pb2.DNSConfig) -> str:
    """From the pod's DNSConfig; the node's own file when the pod sets none."""
    if not (dns.servers or dns.searches or dns.options):
        try:
            return HOST_RESOLV_CONF.read_text()
        except OSError:
            return ""
    for value in (*dns.servers, *dns.searches, *dns.options):
        if "\n" in value or not value.strip():
            raise InvalidArgument(f"dns_config: invalid entry {value!r}")
    lines = []
    if dns.searches:
        lines.append("search " + " ".join(dns.searches))
    lines += [f"nameserver {s}" for s in dns.servers]
    if dns.options:
        lines.append("options " + " ".join(dns.options))
    return "\n".join(lines) + "\n"


def hosts(host_network: bool, hostname: str, ips: list[str]) -> str:
    if host_network:
        try:
            return HOST_HOSTS.read_text()
        except OSError:
            return DEFAULT_HOSTS
    text = DEFAULT_HOSTS
    if hostname and ips:
        text += "".join(f"{ip}\t{hostname}\n" for ip in ips)
    return text


def pod_hostname(config: api_pb2.PodSandboxConfig, host_network: bool) -> str:
    """The pod's hostname; without one the pod keeps the node's, as with containerd."""
    if host_network or not config.hostname:
        return socket.gethostname()
    name = config.hostname
    # sethostname(2) takes at most 64 bytes.
    if len(name.encode()) > 64 or "\n" in name or "/" in name or "\0" in name:
        raise InvalidArgument(f"hostname {name!r} is not a valid host name")
    return name


def write(directory: Path, name: str, text: str) -> Path:
    """Atomically, readable by every user in the pod (0644)."""
    path = directory / name
    tmp = directory / f".{name}.tmp"
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)
    return path
