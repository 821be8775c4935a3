"""crib's RuntimeDefault seccomp profile, and Localhost profiles.

RuntimeDefault is containerd's default profile (`contrib/seccomp/seccomp_default.go`,
itself moby's default with containerd's specifics), kept as data in
`seccomp_default.json` next to this module; its "origin" names the commit it was
taken from. Everything not allowed answers EPERM (SCMP_ACT_ERRNO with no errno, as
containerd sends it; runc and crun then use EPERM); io_uring_* and socket(2) for
AF_ALG and AF_VSOCK are among the refused. Beyond the plain allow-list,
rules carry moby-style conditions, evaluated as containerd does when it builds a
container's profile:

- `includes.caps`: every listed capability is held (CAP_SYS_ADMIN opens mounts,
  namespaces and unfiltered clone/clone3, CAP_SYS_PTRACE opens kcmp, …);
- `excludes.caps`: none is held (the namespace-free clone filter and clone3's
  ENOSYS apply only without CAP_SYS_ADMIN);
- `includes.arches` / `excludes.arches`: the host's architecture, as a Go GOARCH
  name, is / is not listed;
- `includes.minKernel`: the host kernel is at least that version (ptrace and
  process_vm_* from 4.8, as containerd).

The host's architecture also picks the profile's `architectures` (archMap).
"""

from __future__ import annotations

import copy
import json
import os
import platform
import re
from functools import cache
from pathlib import Path
from typing import Any

from crib.errors import InvalidArgument

_DEFAULT_PROFILE = Path(__file__).with_name("seccomp_default.json")

# platform.machine() → the Go GOARCH name the profile's conditions use.
_GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "i386": "386",
    "i486": "386",
    "i586": "386",
    "i686": "386",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv6l": "arm",
    "armv7l": "arm",
    "armv8l": "arm",
    "ppc64le": "ppc64le",
    "s390": "s390",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "loongarch64": "loong64",
    "mips64": "mips64",
}

# The keys of a rule that belong in the OCI runtime spec (the rest are conditions, comments).
_OCI_RULE_KEYS = ("names", "action", "args", "errnoRet")


@cache
def _profile() -> dict[str, Any]:
    """The default profile's data, read once."""
    return json.loads(_DEFAULT_PROFILE.read_text())


def host_arch() -> str:
    """The running machine's architecture as a Go GOARCH name."""
    machine = platform.machine().lower()
    return _GOARCH.get(machine, machine)


@cache
def host_kernel() -> tuple[int, int] | None:
    """The running kernel's version and major revision; None when unreadable."""
    return parse_kernel(os.uname().release)


def parse_kernel(release: str) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", release)
    return (int(match[1]), int(match[2])) if match else None


def _at_least(kernel: tuple[int, int] | None, minimum: str) -> bool:
    # Like containerd, a kernel version that cannot be read is not "at least" anything.
    wanted = parse_kernel(minimum)
    return kernel is not None and wanted is not None and kernel >= wanted


def _applies(rule: dict[str, Any], capabilities: set[str], arch: str, kernel: tuple[int, int] | None) -> bool:
    includes = rule.get("includes", {})
    excludes = rule.get("excludes", {})
    if not all(cap in capabilities for cap in includes.get("caps", [])):
        return False
    if "arches" in includes and arch not in includes["arches"]:
        return False
    if "minKernel" in includes and not _at_least(kernel, includes["minKernel"]):
        return False
    if any(cap in capabilities for cap in excludes.get("caps", [])):
        return False
    if arch in excludes.get("arches", []):
        return False
    return not ("minKernel" in excludes and _at_least(kernel, excludes["minKernel"]))


def build(capabilities: set[str], arch: str, kernel: tuple[int, int] | None) -> dict[str, Any]:
    """The default profile for a container holding `capabilities` on an `arch` (GOARCH) host
    running `kernel`: the rules whose conditions hold, as an OCI `linux.seccomp` section."""
    data = _profile()
    section: dict[str, Any] = {"defaultAction": data["defaultAction"]}
    if "defaultErrnoRet" in data:
        section["defaultErrnoRet"] = data["defaultErrnoRet"]
    section["architectures"] = list(data["archMap"].get(arch, []))
    section["syscalls"] = [
        copy.deepcopy({key: rule[key] for key in _OCI_RULE_KEYS if key in rule})
        for rule in data["syscalls"]
        if _applies(rule, capabilities, arch, kernel)
    ]
    return section


def runtime_default(capabilities: set[str]) -> dict[str, Any]:
    """The RuntimeDefault `linux.seccomp` section for a container holding `capabilities`."""
    return build(capabilities, host_arch(), host_kernel())


def localhost(path: str) -> dict[str, Any]:
    """A profile from a file on the node (OCI runtime-spec `linux.seccomp` JSON)."""
    if not path.startswith("/"):
        raise InvalidArgument(f"seccomp localhost profile {path!r} must be an absolute path")
    try:
        profile = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InvalidArgument(f"seccomp profile {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"seccomp profile {path} is not readable JSON: {exc}") from None
    if not isinstance(profile, dict) or "defaultAction" not in profile:
        raise InvalidArgument(f"seccomp profile {path} has no defaultAction")
    return profile
