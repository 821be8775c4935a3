"""Linux security modules: AppArmor profiles for containers (SELinux labels: selinux.py).

The kubelet sends a profile only when the pod asks for one, and a pod that asks
must not start unconfined: where the host lacks AppArmor, or the named profile
is not loaded, CreateContainer is refused with the field's name. Where AppArmor
is on, crib loads its own `crib-default` profile (the rules of containerd's and
Docker's default) and applies it for RuntimeDefault and when no profile is
given, except to privileged containers, as containerd does.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crib.errors import FailedPrecondition, InvalidArgument
from crib.log_setup import get_logger
from crib.proto.cri import api_pb2

log = get_logger("crib.lsm")

DEFAULT_PROFILE = "crib-default"
APPARMOR_ENABLED = Path("/sys/module/apparmor/parameters/enabled")
APPARMOR_PROFILES = Path("/sys/kernel/security/apparmor/profiles")
PARSER_TIMEOUT_S = 30.0

# The rules of containerd's default profile (contrib/apparmor/template.go, shared with
# moby/profiles): everything a process normally needs, no mounts, no writes to the
# kernel's knobs under /proc and /sys.
_PROFILE = """abi <abi/3.0>,
#include <tunables/global>

profile {name} flags=(attach_disconnected,mediate_deleted) {{
  #include <abstractions/base>

  network,
  capability,
  file,
  umount,
  signal (receive) peer=unconfined,
  signal (receive) peer=runc,
  signal (receive) peer=crun,
  signal (send,receive) peer={name},

  deny @{{PROC}}/* w,
  deny @{{PROC}}/{{[^1-9],[^1-9][^0-9],[^1-9s][^0-9y][^0-9s],[^1-9][^0-9][^0-9][^0-9/]*}}/** w,
  deny @{{PROC}}/sys/[^k]** w,
  deny @{{PROC}}/sys/kernel/{{?,??,[^s][^h][^m]**}} w,
  deny @{{PROC}}/sysrq-trigger rwklx,
  deny @{{PROC}}/kcore rwklx,

  deny mount,

  deny /sys/[^f]*/** wklx,
  deny /sys/f[^s]*/** wklx,
  deny /sys/fs/[^c]*/** wklx,
  deny /sys/fs/c[^g]*/** wklx,
  deny /sys/fs/cg[^r]*/** wklx,
  deny /sys/firmware/** rwklx,
  deny /sys/devices/virtual/powercap/** rwklx,
  deny /sys/kernel/security/** rwklx,

  ptrace (trace,read,tracedby,readby) peer={name},
}}
"""


def default_profile_text(name: str = DEFAULT_PROFILE) -> str:
    return _PROFILE.format(name=name)


def apparmor_enabled(flag: Path = APPARMOR_ENABLED) -> bool:
    try:
        return flag.read_text().strip() == "Y"
    except OSError:
        return False


def loaded_profiles(listing: Path = APPARMOR_PROFILES) -> set[str]:
    """Names of the profiles the kernel has, from `<name> (<mode>)` lines."""
    try:
        text = listing.read_text()
    except OSError:
        return set()
    return {line.rsplit(" (", 1)[0] for line in text.splitlines() if line.strip()}


def _load_with_parser(text: str) -> None:
    # -K: do not cache on disk; -r: replace a profile of the same name.
    done = subprocess.run(
        ["apparmor_parser", "-Kr"], input=text.encode(), capture_output=True, timeout=PARSER_TIMEOUT_S
    )
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip()
        raise FailedPrecondition(f"apparmor_parser could not load {DEFAULT_PROFILE}: {why}")


@dataclass
class AppArmor:
    """The host's AppArmor, probed once; the default profile is loaded on first use."""

    enabled: bool
    profiles: Callable[[], set[str]] = loaded_profiles
    load: Callable[[str], None] = _load_with_parser

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._default_loaded = False

    @classmethod
    def probe(cls) -> AppArmor:
        return cls(enabled=apparmor_enabled())

    def _ensure_default(self) -> str:
        with self._lock:
            if not self._default_loaded:
                if DEFAULT_PROFILE not in self.profiles():
                    self.load(default_profile_text())
                    log.info("apparmor.default_loaded", profile=DEFAULT_PROFILE)
                self._default_loaded = True
        return DEFAULT_PROFILE

    def profile_for(self, sc: api_pb2.LinuxContainerSecurityContext) -> str:
        """The process's `apparmorProfile` ("" for unconfined); blocking (it may run apparmor_parser)."""
        kind, name = _requested(sc)
        if kind == "unconfined":
            return ""
        if kind == "localhost":
            self._check_loaded(name, "CreateContainer")
            return name
        # RuntimeDefault, or nothing asked: the default where AppArmor runs,
        # never for a privileged container.
        if not self.enabled or sc.privileged:
            return ""
        return self._ensure_default()

    def check_pod(self, profile: api_pb2.SecurityProfile) -> None:
        """RunPodSandbox: a Localhost profile the node cannot apply is refused before anything is made.

        The pause process itself runs unconfined, as in containerd; the pod's profile reaches
        the containers through their own security context, which the kubelet fills from it."""
        if profile.profile_type == api_pb2.SecurityProfile.Localhost:
            self._check_loaded(profile.localhost_ref.removeprefix("localhost/"), "RunPodSandbox")

    def _check_loaded(self, name: str, where: str) -> None:
        if not self.enabled:
            raise FailedPrecondition(
                f"{where}: apparmor profile localhost/{name} was requested, "
                "but AppArmor is not enabled on this node"
            )
        if name not in self.profiles():
            raise FailedPrecondition(f"{where}: apparmor profile {name!r} is not loaded")


def _requested(sc: api_pb2.LinuxContainerSecurityContext) -> tuple[str, str]:
    """("default" | "unconfined" | "localhost", profile name) from the field or its deprecated string."""
    if sc.HasField("apparmor"):
        kind = sc.apparmor.profile_type
        if kind == api_pb2.SecurityProfile.Unconfined:
            return "unconfined", ""
        if kind == api_pb2.SecurityProfile.Localhost:
            name = sc.apparmor.localhost_ref.removeprefix("localhost/")
            if not name:
                raise InvalidArgument("CreateContainer: apparmor.localhost_ref is empty")
            return "localhost", name
        return "default", ""
    legacy = sc.apparmor_profile
    if legacy in ("", "runtime/default"):
        return "default", ""
    if legacy == "unconfined":
        return "unconfined", ""
    if legacy.startswith("localhost/") and legacy != "localhost/":
        return "localhost", legacy.removeprefix("localhost/")
    raise InvalidArgument(f"CreateContainer: apparmor_profile {legacy!r} is not a valid profile")
