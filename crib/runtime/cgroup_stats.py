"""A container's resource usage read straight from its cgroup, and its pod's network
counters: what ContainerStats, PodSandboxStats and ListMetricDescriptors report (the
writable layer's size is layer_usage.py's).

Everything here blocks (crib calls it in a worker thread) and stays cheap: one
read per file, no subprocesses. Every reader takes the host's files as optional
parameters (mountinfo text, /proc root) so tests can point it at fake trees.

Where runc puts a cgroup (as runc's fs and systemd drivers compute it):

- cgroupfs: `linux.cgroupsPath` is absolute from each hierarchy's root, so the
  directory is `<mount point>/<path>` per v1 controller, or `<cgroup2 mount>/<path>`
  on v2 (and, on a hybrid host, also in the cgroup2 hierarchy at /sys/fs/cgroup/unified).
- systemd: `slice:prefix:name` is the unit `prefix-name.scope` (or `name` when it is a
  slice itself) inside the expanded slice, e.g. `kubepods-besteffort.slice` →
  `kubepods.slice/kubepods-besteffort.slice`; an empty slice is `system.slice`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from crib.runtime.kept_files import Reader, read_file
from crib.runtime.rootfs import unescape_mountinfo

MOUNTINFO = Path("/proc/self/mountinfo")
PROC = Path("/proc")

# The v1 controllers a cgroup mount's super options may name (anything else there,
# "rw", "name=systemd", "xattr", "release_agent=...", is not a controller).
V1_CONTROLLERS = frozenset(
    {
        "blkio",
        "cpu",
        "cpuacct",
        "cpuset",
        "devices",
        "freezer",
        "hugetlb",
        "memory",
        "misc",
        "net_cls",
        "net_prio",
        "perf_event",
        "pids",
        "rdma",
    }
)

# v1 reports "no limit" as PAGE_COUNTER_MAX pages (9223372036854771712 with 4 KiB
# pages, a little less with bigger pages); no machine has 4 EiB of memory.
_V1_UNLIMITED = 1 << 62

PSI_RESOURCES = ("cpu", "memory", "io")

# The v1 files a stats read reads, by controller: CgroupDirs.v1_files joins them once.
_V1_FILES = (
    ("memory", "memory.usage_in_bytes"),
    ("cpuacct", "cpuacct.usage"),
    ("pids", "pids.current"),
    ("memory", "memory.stat"),
    ("memory", "memory.limit_in_bytes"),
    ("memory", "memory.oom_control"),
)


def _joined(directory: Path | None, name: str) -> str | None:
    return None if directory is None else f"{os.fspath(directory)}/{name}"


# --- mounts ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CgroupMounts:
    v1: Mapping[str, Path] = field(default_factory=dict, hash=False)  # controller → mount point
    unified: Path | None = None  # the cgroup2 mount point, if any

    @property
    def mode(self) -> str:
        if self.v1:
            return "hybrid" if self.unified is not None else "v1"
        return "v2"


def _parse_mountinfo(text: str) -> _CgroupMounts:
    v1: dict[str, Path] = {}
    v1_root: dict[str, bool] = {}
    unified: Path | None = None
    for line in text.splitlines():
        # id parent major:minor root mount-point options [optional fields...] - fstype source super-options
        fields = line.split()
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < sep + 3:
            continue
        root, mount_point, fstype = (
            unescape_mountinfo(fields[3]),
            Path(unescape_mountinfo(fields[4])),
            fields[sep + 1],
        )
        if fstype == "cgroup2":
            if unified is None:
                unified = mount_point
        elif fstype == "cgroup":
            for opt in fields[sep + 3].split(","):
                if opt not in V1_CONTROLLERS:
                    continue
                # The same hierarchy may be mounted twice (bind mounts): prefer a mount of its root.
                if opt not in v1 or (root == "/" and not v1_root[opt]):
                    v1[opt] = mount_point
                    v1_root[opt] = root == "/"
    return _CgroupMounts(v1=v1, unified=unified)


@functools.cache
def _host_mounts() -> _CgroupMounts:
    try:
        text = MOUNTINFO.read_text()
    except OSError:
        text = ""
    return _parse_mountinfo(text)


def _mounts(mountinfo: str | None) -> _CgroupMounts:
    return _host_mounts() if mountinfo is None else _parse_mountinfo(mountinfo)


def cgroup_mode(mountinfo: str | None = None) -> str:
    """Which cgroups: "v1", "v2" or "hybrid" (v1 controllers plus cgroup2); cached for the host."""
    return _mounts(mountinfo).mode


# --- paths -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CgroupDirs:
    """The host directories of one cgroup.

    `controllers` maps each v1 controller to its directory (co-mounted controllers share one);
    `unified` is the cgroup2 directory: the whole cgroup on v2, on a hybrid host the cgroup's
    place in the cgroup2 hierarchy (read for PSI only).
    """

    mode: str
    controllers: Mapping[str, Path] = field(default_factory=dict, hash=False)
    unified: Path | None = None

    def controller(self, name: str) -> Path | None:
        return self.controllers.get(name)

    # The paths a stats read reads, joined once per cgroup (a record of a live container or
    # pod keeps its CgroupDirs): joining them at each read was a tenth of the Python work of
    # ListPodSandboxStats, which reads ~15 files a pod every 10 s.

    @functools.cached_property
    def v1_files(self) -> tuple[str | None, ...]:
        """_V1_FILES' paths in this cgroup, in that order; None where the controller is not mounted."""
        return tuple(_joined(self.controllers.get(c), name) for c, name in _V1_FILES)

    @functools.cached_property
    def psi_files(self) -> tuple[str, ...]:
        """cpu, memory and io.pressure in the cgroup2 directory; none without one."""
        if self.unified is None:
            return ()
        base = os.fspath(self.unified)
        return tuple(f"{base}/{resource}.pressure" for resource in PSI_RESOURCES)

    @functools.cached_property
    def procs_files(self) -> tuple[str, ...]:
        """Where the cgroup's cgroup.procs may be, the likeliest first."""
        if self.mode == "v2":
            found = [self.unified]
        else:
            found = [self.controllers.get(c) for c in ("pids", "memory", "cpuacct", "cpu")]
        return tuple(f"{os.fspath(d)}/cgroup.procs" for d in found if d is not None)

    def directories(self) -> list[str]:
        """Every directory of the cgroup, each once (co-mounted controllers share one)."""
        found = [*self.controllers.values(), *([self.unified] if self.unified is not None else [])]
        return list(dict.fromkeys(os.fspath(d) for d in found))


def expand_slice(slice_name: str) -> str:
    """systemd's slice nesting, as runc's ExpandSlice: "a-b.slice" → "/a.slice/a-b.slice"."""
    suffix = ".slice"
    if not slice_name.endswith(suffix) or len(slice_name) <= len(suffix) or "/" in slice_name:
        raise ValueError(f"invalid systemd slice {slice_name!r}")
    stem = slice_name[: -len(suffix)]
    if stem == "-":
        return "/"
    path, prefix = "", ""
    for component in stem.split("-"):
        if not component:
            raise ValueError(f"invalid systemd slice {slice_name!r}")
        path += f"/{prefix}{component}{suffix}"
        prefix += f"{component}-"
    return path


def relative_cgroup_path(cgroups_path: str, systemd: bool) -> str:
    """The cgroup's path from a hierarchy's root, always starting with "/"."""
    if not systemd:
        # runc joins a relative path to its own cgroup; crib always passes absolute ones.
        return "/" + cgroups_path.strip("/")
    parts = cgroups_path.split(":")
    if len(parts) != 3 or not parts[2]:
        raise ValueError(f"systemd cgroupsPath must be slice:prefix:name, got {cgroups_path!r}")
    slice_name, prefix, name = parts
    unit = name if name.endswith(".slice") else f"{prefix}-{name}.scope"
    return expand_slice(slice_name or "system.slice").rstrip("/") + "/" + unit


def cgroup_dirs(cgroups_path: str, systemd: bool, mountinfo: str | None = None) -> CgroupDirs:
    """The directories of the cgroup runc made from `linux.cgroupsPath` (whether they exist or not)."""
    # Not cached by path: every container and pod has paths of its own, and a cache of them
    # kept the dirs of every removed one (~7 MB over 1000 pods, found by the churn). The
    # host's mounts are cached (_host_mounts); the joins below cost microseconds, and
    # RuntimeEnv keeps a live container's dirs while it exists.
    mounts = _mounts(mountinfo)
    rel = relative_cgroup_path(cgroups_path, systemd).lstrip("/")
    controllers = {name: mount / rel for name, mount in mounts.v1.items()}
    unified = mounts.unified / rel if mounts.unified is not None else None
    return CgroupDirs(mode=mounts.mode, controllers=controllers, unified=unified)


# --- reading -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CgroupStats:
    timestamp_ns: int
    cpu_usage_ns: int | None = None  # cumulative
    memory_usage_bytes: int | None = None
    memory_working_set_bytes: int | None = None  # usage - inactive_file, floored at 0 (the kubelet's)
    memory_rss_bytes: int | None = None
    memory_page_faults: int | None = None
    memory_major_page_faults: int | None = None
    memory_limit_bytes: int | None = None  # None when unlimited
    oom_kills: int | None = None
    pids: int | None = None  # pids.current: tasks (threads included)
    # {"cpu"|"memory"|"io": {"some"|"full": {"avg10", "avg60", "avg300": float, "total": int (µs)}}}
    psi: Mapping[str, Mapping[str, Mapping[str, float | int]]] | None = field(default=None, hash=False)


def _read(path: Path | str | None) -> str | None:
    return None if path is None else read_file(os.fspath(path))


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)  # int() takes the newline (and any blanks) around the number
    except ValueError:
        return None


def _flat_keyed(text: str | None) -> dict[str, int]:
    """Flat keyed files of "key value" lines: memory.stat, cpu.stat, memory.events, memory.oom_control."""
    if not text:
        return {}
    words = text.split()
    # The kernel writes two words a line: pair them up at once (memory.stat has ~40 lines
    # and is read for every container of every stats call); anything else goes line by line.
    if len(words) == 2 * text.count("\n") + (0 if text.endswith("\n") else 2):
        try:
            return {k: int(v) for k, v in zip(words[::2], words[1::2], strict=True)}
        except ValueError:
            pass
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            with contextlib.suppress(ValueError):
                out[parts[0]] = int(parts[1])
    return out


_PSI_LINE = re.compile(r"^(some|full) avg10=(\S+) avg60=(\S+) avg300=(\S+) total=(\d+)$", re.M)


def parse_pressure(text: str | None) -> dict[str, dict[str, float | int]] | None:
    """A PSI file: "some avg10=0.00 avg60=0.00 avg300=0.00 total=0" (and a "full" line).

    One regular expression over the file: a stats call reads 3 of these a cgroup, and
    splitting them word by word was 7% of ListPodSandboxStats at 100 pods."""
    out: dict[str, dict[str, float | int]] = {}
    for kind, avg10, avg60, avg300, total in _PSI_LINE.findall(text or ""):
        try:
            out[kind] = {
                "avg10": float(avg10),
                "avg60": float(avg60),
                "avg300": float(avg300),
                "total": int(total),
            }
        except ValueError:
            continue
    return out or None


# Parsed PSI files by their text: an idle cgroup's file reads the same from call to call, and
# idle cgroups share theirs, while parsing one took 5.7 µs, six a pod in every stats call. The
# parsed values are shared, to be read and never changed; a full memo starts again (a busy
# node's totals all move, and a memo of each would only grow).
_PRESSURE_SEEN: dict[str, dict[str, dict[str, float | int]]] = {}
PRESSURE_SEEN_MAX = 1024


def pressure_of(text: str | None) -> dict[str, dict[str, float | int]] | None:
    """parse_pressure's result for this text, the one made before when there was one."""
    if not text:
        return None
    parsed = _PRESSURE_SEEN.get(text)
    if parsed is None:
        parsed = parse_pressure(text)
        if parsed is None:
            return None
        if len(_PRESSURE_SEEN) >= PRESSURE_SEEN_MAX:
            _PRESSURE_SEEN.clear()
        _PRESSURE_SEEN[text] = parsed
    return parsed


def _psi(files: tuple[str, ...], read: Reader) -> dict[str, dict[str, dict[str, float | int]]] | None:
    """The pressure files (CgroupDirs.psi_files) parsed, by resource."""
    if not files:
        return None
    cpu = pressure_of(read(files[0]))
    if cpu is None:
        # No cpu.pressure: the cgroup is gone or PSI is off; the others cannot be there.
        return None
    out = {"cpu": cpu}
    for resource, path in zip(PSI_RESOURCES[1:], files[1:], strict=True):
        pressure = pressure_of(read(path))
        if pressure is not None:
            out[resource] = pressure
    return out


def _working_set(usage: int | None, inactive_file: int | None) -> int | None:
    if usage is None:
        return None
    return max(usage - (inactive_file or 0), 0)


def _line_value(text: str, probe: str) -> int | None:
    """The number on the line of a flat keyed file that `probe` ("\\nkey ") starts, found
    without splitting the file; None when there is no such line."""
    at = text.find(probe)
    if at < 0:
        if not text.startswith(probe[1:]):
            return None
        at = -1  # the first line, which no newline starts
    start = at + len(probe)
    end = text.find("\n", start)
    try:
        return int(text[start:end] if end >= 0 else text[start:])
    except ValueError:
        return None


def _keyed(text: str | None, keys: Iterable[str]) -> dict[str, int]:
    """Only the named lines of a flat keyed file: memory.stat has 40 to 60 lines, and a stats
    call that parsed them all for the 4 it uses spent 9% of its time there."""
    out: dict[str, int] = {}
    if not text:
        return out
    for key in keys:
        value = _line_value(text, f"\n{key} ")
        if value is not None:
            out[key] = value
    return out
    for key in keys:
        probe = key + " "
        at = text.find(probe)
        while at > 0 and text[at - 1] != "\n":  # "rss " inside "total_rss ": not a line of its own
            at = text.find(probe, at + 1)
        if at < 0:
            continue
        start = at + len(probe)
        end = text.find("\n", start)
        try:  # noqa: SIM105 (contextlib.suppress costs a microsecond a key here)
            out[key] = int(text[start:end] if end >= 0 else text[start:])
        except ValueError:
            pass
    return out


# memory.stat's keys read. v1's total_* count the descendants too (a pod's cgroup has some);
# the plain ones are looked for only where a kernel has no total_* line.
_V1_MEMORY_KEYS = ("inactive_file", "rss", "pgfault", "pgmajfault")
_V1_MEMORY_PROBES = tuple((f"\ntotal_{key} ", f"\n{key} ") for key in _V1_MEMORY_KEYS)
_V2_MEMORY_KEYS = ("inactive_file", "anon", "pgfault", "pgmajfault")


def _v1_memory_stat(text: str | None) -> list[int | None]:
    """[inactive_file, rss, pgfault, pgmajfault] of a v1 memory.stat, None where unknown."""
    if not text:
        return [None] * len(_V1_MEMORY_PROBES)
    out = []
    for total, plain in _V1_MEMORY_PROBES:
        value = _line_value(text, total)
        out.append(value if value is not None else _line_value(text, plain))
    return out


def _v1_stats(dirs: CgroupDirs, oom_kills: bool, tasks: bool, read: Reader) -> CgroupStats | None:
    usage_file, cpu_file, pids_file, stat_file, limit_file, oom_file = dirs.v1_files
    now = time.time_ns()
    # No directory checks first: a file that cannot be read is an unknown field, and a
    # cgroup whose every file is unreadable is gone.
    usage = _int(read(usage_file)) if usage_file else None
    cpu_usage = _int(read(cpu_file)) if cpu_file else None
    current = _int(read(pids_file)) if tasks and pids_file else None
    if usage is None and cpu_usage is None and current is None:
        return None
    inactive_file, rss, faults, major_faults = _v1_memory_stat(read(stat_file) if stat_file else None)
    limit = _int(read(limit_file)) if limit_file else None
    oom = _flat_keyed(read(oom_file) if oom_file else None).get("oom_kill") if oom_kills else None
    return CgroupStats(
        timestamp_ns=now,
        cpu_usage_ns=cpu_usage,
        memory_usage_bytes=usage,
        memory_working_set_bytes=_working_set(usage, inactive_file),
        memory_rss_bytes=rss,
        memory_page_faults=faults,
        memory_major_page_faults=major_faults,
        memory_limit_bytes=None if limit is None or limit >= _V1_UNLIMITED else limit,
        oom_kills=oom,
        pids=current,
        psi=_psi(dirs.psi_files, read),
    )


def _v2_stats(dirs: CgroupDirs, oom_kills: bool, tasks: bool, read: Reader) -> CgroupStats | None:
    directory = dirs.unified
    if directory is None or not directory.is_dir():
        return None
    now = time.time_ns()
    base = os.fspath(directory)
    cpu = _flat_keyed(read(f"{base}/cpu.stat"))
    usage = _int(read(f"{base}/memory.current"))
    mstat = _keyed(read(f"{base}/memory.stat"), _V2_MEMORY_KEYS)
    events = _flat_keyed(read(f"{base}/memory.events")) if oom_kills else {}
    usage_usec = cpu.get("usage_usec")
    return CgroupStats(
        timestamp_ns=now,
        cpu_usage_ns=usage_usec * 1000 if usage_usec is not None else None,
        memory_usage_bytes=usage,
        memory_working_set_bytes=_working_set(usage, mstat.get("inactive_file")),
        memory_rss_bytes=mstat.get("anon"),
        memory_page_faults=mstat.get("pgfault"),
        memory_major_page_faults=mstat.get("pgmajfault"),
        memory_limit_bytes=_int(read(f"{base}/memory.max")),  # "max" → None
        oom_kills=events.get("oom_kill"),
        pids=_int(read(f"{base}/pids.current")) if tasks else None,
        psi=_psi(dirs.psi_files, read),
    )


def read_stats(
    dirs: CgroupDirs, oom_kills: bool = True, read: Reader = read_file, tasks: bool = True
) -> CgroupStats | None:
    """The cgroup's usage now; None when the cgroup is gone, None fields for files that are missing.

    oom_kills=False leaves the OOM kill count out (None), tasks=False the task count (pids):
    the CRI's stats carry neither (a pod's process count is its cgroup.procs lines), and a
    stats call saves a file per cgroup for each. `read` reads a file by path (a KeptFiles'
    read keeps the files open for the next call)."""
    if dirs.mode == "v2":
        return _v2_stats(dirs, oom_kills, tasks, read)
    return _v1_stats(dirs, oom_kills, tasks, read)


def cri_stats(dirs: CgroupDirs, read: Reader) -> CgroupStats | None:
    """read_stats for a CRI stats call: no OOM kill or task count, which its messages do not carry."""
    return read_stats(dirs, oom_kills=False, read=read, tasks=False)


def _procs_text(dirs: CgroupDirs, read: Reader) -> str | None:
    for path in dirs.procs_files:
        text = read(path)
        if text is not None:
            return text
    return None


def cgroup_pids(dirs: CgroupDirs, read: Reader = read_file) -> list[int] | None:
    """The processes (thread group leaders) in the cgroup; None when it is gone."""
    text = _procs_text(dirs, read)
    return None if text is None else sorted({int(p) for p in text.split() if p.isdigit()})


def process_count(dirs: CgroupDirs, read: Reader = read_file) -> int | None:
    """Processes (not threads, unlike pids.current) in the cgroup: the lines of its cgroup.procs
    (v1 may list one twice), counted without making numbers of them (every stats call counts
    two cgroups a pod)."""
    text = _procs_text(dirs, read)
    return None if text is None else len(set(text.split()))


# --- network -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InterfaceCounters:
    rx_bytes: int
    rx_packets: int
    rx_errors: int
    rx_dropped: int
    tx_bytes: int
    tx_packets: int
    tx_errors: int
    tx_dropped: int


def _interface_lines(text: str) -> Iterator[tuple[str, list[str]]]:
    """/proc/net/dev's interface lines as (name, counters as words), without "lo" (cAdvisor
    leaves it out too) and without the headers or a short line."""
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        name = name.strip()
        if not sep or not name or "|" in line or name == "lo":
            continue
        values = rest.split()
        if len(values) >= 16:
            yield name, values


def parse_net_dev(text: str) -> dict[str, InterfaceCounters]:
    """/proc/net/dev → every counter per interface, without "lo"."""
    out: dict[str, InterfaceCounters] = {}
    for name, values in _interface_lines(text):
        try:
            n = [int(v) for v in values[:16]]
        except ValueError:
            continue
        # Receive: bytes packets errs drop fifo frame compressed multicast; transmit: the same 8.
        out[name] = InterfaceCounters(
            rx_bytes=n[0],
            rx_packets=n[1],
            rx_errors=n[2],
            rx_dropped=n[3],
            tx_bytes=n[8],
            tx_packets=n[9],
            tx_errors=n[10],
            tx_dropped=n[11],
        )
    return out


def network_counters(pid: int, proc: Path = PROC) -> dict[str, InterfaceCounters]:
    """The interfaces of the netns `pid` lives in (a pod's pause process); {} when it is gone."""
    text = _read(proc / str(pid) / "net" / "dev")
    return parse_net_dev(text) if text else {}


def net_dev_path(pid: int, proc: Path | str = PROC) -> str:
    return f"{os.fspath(proc)}/{pid}/net/dev"


def network_stats(
    pid: int, proc: Path | str = PROC, read: Reader = read_file
) -> dict[str, tuple[int, int, int, int]]:
    """{interface: (rx_bytes, rx_errors, tx_bytes, tx_errors)} of the netns `pid` lives in, without
    "lo"; {} when gone.

    The four counters a pod's stats carry, taken from the line as it is split: every stats
    call reads this for every pod, and parse_net_dev's sixteen counters an interface cost
    more than the read. `read` may keep the file open (KeptFiles): the open file stays on the
    netns it was opened in, so its owner forgets it when the pod's pause ends."""
    text = read(net_dev_path(pid, proc))
    out: dict[str, tuple[int, int, int, int]] = {}
    for name, values in _interface_lines(text or ""):
        try:
            # Receive: bytes packets errs ...; transmit, from the ninth: bytes packets errs ...
            out[name] = (int(values[0]), int(values[2]), int(values[8]), int(values[10]))
        except ValueError:
            continue
    return out
