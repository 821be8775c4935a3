"""What a kubelet changes on the host, recorded before it starts and put back after.

The kubelet writes kernel tunables, makes iptables chains and cgroups, and
needs a routable node IP. Each helper here records the before-state in a form
that fits in the cluster's state file, so `kube-down` in another process can
undo it as the test teardown does.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

CMD_TIMEOUT_S = 30
# The tunables kubelet's setupKernelTunables writes (pkg/kubelet/cm/container_manager_linux.go).
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)


def _run(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=CMD_TIMEOUT_S, check=check)


# --- sysctls ---------------------------------------------------------------------------------


def read_sysctls() -> dict[str, str]:
    values = {}
    for key in KUBELET_SYSCTLS:
        with contextlib.suppress(OSError):
            values[key] = Path("/proc/sys", key).read_text().strip()
    return values


def restore_sysctls(values: dict[str, str]) -> None:
    for key, value in values.items():
        with contextlib.suppress(OSError):
            Path("/proc/sys", key).write_text(value)


# --- iptables --------------------------------------------------------------------------------


def iptables_chains() -> dict[str, list[str]]:
    """'<binary> <table>' -> chain names, for iptables and ip6tables."""
    chains: dict[str, list[str]] = {}
    for binary in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            out = _run(f"{binary}-save", "-t", table).stdout
            chains[f"{binary} {table}"] = sorted(
                line[1:].split()[0] for line in out.splitlines() if line.startswith(":")
            )
    return chains


def remove_new_kube_chains(before: dict[str, list[str]]) -> list[str]:
    """Delete the KUBE-* chains that appeared since `before` (the kubelet's canaries and hints)."""
    removed = []
    for key, names in iptables_chains().items():
        binary, table = key.split()
        new = [n for n in names if n.startswith("KUBE-") and n not in before.get(key, [])]
        for chain in new:
            # Rules that jump to it go first, then the chain itself.
            for line in _run(f"{binary}-save", "-t", table).stdout.splitlines():
                if line.startswith("-A ") and f"-j {chain}" in line:
                    _run(binary, "-t", table, "-D", *line.split()[1:])
            _run(binary, "-t", table, "-F", chain)
            _run(binary, "-t", table, "-X", chain)
            removed.append(f"{binary} -t {table} {chain}")
    return removed


# --- node IP ---------------------------------------------------------------------------------

DUMMY_LINK = "cribkube0"
DUMMY_ADDR = "10.254.254.1"


def node_ip() -> tuple[str, bool]:
    """The host address the kubelet registers (the kubelet refuses loopback).

    The default route's source address where there is one; otherwise a dummy
    link made for the cluster. Returns (ip, made_dummy).
    """
    out = _run("ip", "-j", "route", "get", "1.1.1.1").stdout
    with contextlib.suppress(ValueError, IndexError, KeyError):
        src = json.loads(out)[0]["prefsrc"]
        if src and not src.startswith("127."):
            return src, False
    _run("ip", "link", "add", DUMMY_LINK, "type", "dummy", check=True)
    _run("ip", "addr", "add", f"{DUMMY_ADDR}/32", "dev", DUMMY_LINK, check=True)
    _run("ip", "link", "set", DUMMY_LINK, "up", check=True)
    return DUMMY_ADDR, True


def remove_dummy() -> None:
    _run("ip", "link", "del", DUMMY_LINK)


# --- cgroups ---------------------------------------------------------------------------------


def cgroup_hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy (v1 controllers, named ones and the unified one)."""
    roots = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            if fstype in ("cgroup", "cgroup2"):
                roots.append(Path(fields[4]))
    return roots


def make_cgroup_root(name: str) -> None:
    """The kubelet's --cgroup-root must exist in every hierarchy before it starts."""
    for root in cgroup_hierarchies():
        d = root / name
        d.mkdir(exist_ok=True)
        # A new v1 cpuset is empty and takes no tasks until cpus and mems are set.
        for key in ("cpuset.cpus", "cpuset.mems"):
            if (root / key).exists() and not (d / key).read_text().strip():
                (d / key).write_text((root / key).read_text())


def _trees(name: str) -> list[list[Path]]:
    """The cgroup `name` in each hierarchy that has it, as its directories deepest first."""
    trees = []
    for root in cgroup_hierarchies():
        top = root / name
        if top.is_dir():
            dirs = [Path(p) for p, _, _ in os.walk(top)]
            trees.append(sorted(dirs, key=lambda p: len(p.parts), reverse=True))
    return trees


def remove_empty_cgroup_root(name: str) -> list[str]:
    """Remove the tree bottom-up where it is empty; returns the cgroups that still hold processes."""
    busy = []
    for dirs in _trees(name):
        for d in dirs:
            try:
                d.rmdir()
            except OSError:
                busy.append(str(d))
    return busy


def remove_cgroup_root(name: str) -> list[str]:
    """Kill what is still inside, then remove the tree bottom-up; returns what had processes."""
    leftovers = []
    for dirs in _trees(name):
        for d in dirs:
            with contextlib.suppress(OSError):
                procs = (d / "cgroup.procs").read_text().split()
                if procs:
                    leftovers.append(f"{d}: {' '.join(procs)}")
                for pid in procs:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
        for d in dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    # EBUSY while killed processes are still exiting (bounded: 50 tries).
                    time.sleep(0.05)
    return leftovers
