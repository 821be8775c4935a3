"""A pod network for one test: its own bridge, subnet and IPAM dir, removed afterwards.

Bridges and subnets are unique on the machine, so tests run in parallel, also in test
sessions of other checkouts: each subnet is claimed with a lock on a file of its own
(released by destroy(), or by the kernel when the session ends), and one whose bridge
exists (a running cluster's) is passed over. Teardown deletes the bridge (the bridge
plugin never does) and reports iptables rules that mention the subnet, which would be
leaks.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

CNI_BIN = "/usr/lib/cni"
_counter = itertools.count()
CLAIMS_DIR = Path("/run/crib-e2e-nets")
# bridge -> the fd whose lock claims its subnet
_claims: dict[str, int] = {}


def _worker() -> int:
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name.removeprefix("gw") or 0) % 50


@dataclass
class PodNetwork:
    name: str
    bridge: str
    subnet: str
    gateway: str
    ipam_dir: Path

    def conflist(self, extra_plugins: list[dict] | None = None, portmap: bool = True) -> dict:
        plugins: list[dict] = [
            {
                "type": "bridge",
                "bridge": self.bridge,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": self.subnet, "gateway": self.gateway}]],
                    "dataDir": str(self.ipam_dir),
                },
            }
        ]
        if portmap:
            plugins.append({"type": "portmap", "capabilities": {"portMappings": True}})
        plugins += extra_plugins or []
        return {"cniVersion": "1.0.0", "name": self.name, "plugins": plugins}

    def install(self, conf_dir: Path, **kw: object) -> Path:
        conf_dir.mkdir(parents=True, exist_ok=True)
        path = conf_dir / "10-crib-e2e.conflist"
        path.write_text(json.dumps(self.conflist(**kw)))  # type: ignore[arg-type]
        return path

    def allocated_ips(self) -> list[str]:
        d = self.ipam_dir / self.name
        if not d.exists():
            return []
        return sorted(p.name for p in d.iterdir() if p.name[0].isdigit())

    def _mentions(self, line: str) -> bool:
        # Whole addresses only: 10.100.22.0/24 must not claim 10.100.226.2, another test's pod.
        prefix = re.escape(self.subnet.rsplit(".", 1)[0] + ".")
        return f'name: \\"{self.name}\\"' in line or re.search(rf"(?<![\d.]){prefix}\d", line) is not None

    def iptables_mentions(self) -> list[str]:
        rules = subprocess.run(["iptables-save"], capture_output=True, text=True, timeout=30).stdout
        return [line for line in rules.splitlines() if self._mentions(line)]

    def destroy(self) -> None:
        """Delete the bridge, and any iptables rule and chain the plugins left for this network;
        then give its subnet back."""
        try:
            self._delete()
        finally:
            _release(self.bridge)

    def _delete(self) -> None:
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=30)
        for table in ("nat", "filter"):
            dump = subprocess.run(
                ["iptables-save", "-t", table], capture_output=True, text=True, timeout=30
            ).stdout
            chains = set()
            for line in dump.splitlines():
                if line.startswith("-A ") and self._mentions(line):
                    parts = shlex.split(line)
                    subprocess.run(
                        ["iptables", "-t", table, "-D", *parts[1:]], capture_output=True, timeout=30
                    )
                    target = parts[parts.index("-j") + 1] if "-j" in parts else ""
                    if target.startswith("CNI-") and not target.startswith("CNI-HOSTPORT"):
                        chains.add(target)
                    if parts[1].startswith("CNI-") and not parts[1].startswith("CNI-HOSTPORT"):
                        chains.add(parts[1])
            for chain in chains:
                subprocess.run(["iptables", "-t", table, "-F", chain], capture_output=True, timeout=30)
                subprocess.run(["iptables", "-t", table, "-X", chain], capture_output=True, timeout=30)


def _bridge(w: int, third: int) -> str:
    return f"cribe2e{w}x{third}"[:15]  # an interface name has at most 15 characters


def _claim(w: int, start: int) -> int:
    """The first third octet from `start` on that no other network on this machine uses.

    Worker numbers repeat across test sessions (another checkout's suite runs alongside),
    and two networks on one subnet and bridge tear down each other's rules and bridge.
    """
    CLAIMS_DIR.mkdir(parents=True, exist_ok=True)
    for i in range(250):
        third = (start + i) % 250
        if Path("/sys/class/net", _bridge(w, third)).exists():
            continue  # in use by what holds no claim: a cluster whose starter has exited
        fd = os.open(CLAIMS_DIR / f"{w}-{third}", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        _claims[_bridge(w, third)] = fd
        return third
    raise RuntimeError(f"no free e2e pod subnet for worker {w}")


def _release(bridge: str) -> None:
    if (fd := _claims.pop(bridge, None)) is not None:
        os.close(fd)


def new_network(base: Path) -> PodNetwork:
    n = next(_counter)
    w = _worker()
    third = _claim(w, (os.getpid() + n * 7) % 250)
    subnet_prefix = f"10.{100 + w}.{third}"
    return PodNetwork(
        # The pid too: teardown removes rules by network name, and another test
        # session on this machine has the same worker numbers.
        name=f"crib-e2e-{w}-{os.getpid()}-{n}",
        bridge=_bridge(w, third),
        subnet=f"{subnet_prefix}.0/24",
        gateway=f"{subnet_prefix}.1",
        ipam_dir=base / "ipam",
    )
