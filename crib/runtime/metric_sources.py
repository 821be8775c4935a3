"""The counters behind ListPodSandboxMetrics, read from a container's cgroup and its pod's netns.

cgroup_stats.py reads what ContainerStats and PodSandboxStats carry; the cAdvisor-style
metrics want more of the same files (throttling, page cache, swap, fail counts, the limits
the cgroup enforces) and per-process counts (threads, file descriptors, sockets). This
module reads those, with the same rules: everything blocks (call it from a worker thread),
one read per file, no subprocesses, a missing file is an unknown value (None), and every
reader takes its roots as parameters so tests can point it at fake trees.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from crib.runtime.cgroup_stats import (
    PROC,
    CgroupDirs,
    _flat_keyed,
    _int,
    _read,
)

# cgroup v1 reports "no limit" as PAGE_COUNTER_MAX pages or as a huge byte count;
# nothing real is this big, and cAdvisor reports such limits as 0.
_UNLIMITED = 1 << 62

# cpuacct.stat counts in USER_HZ ticks.
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CgroupMetrics:
    """One cgroup's counters; None where the kernel does not report the value."""

    cpu_usage_ns: int | None = None
    cpu_user_ns: int | None = None
    cpu_system_ns: int | None = None
    cfs_periods: int | None = None
    cfs_throttled_periods: int | None = None
    cfs_throttled_ns: int | None = None
    memory_usage: int | None = None
    memory_max_usage: int | None = None
    memory_working_set: int | None = None
    memory_cache: int | None = None
    memory_rss: int | None = None
    memory_mapped_file: int | None = None
    memory_kernel: int | None = None
    memory_swap: int | None = None
    memory_failcnt: int | None = None
    pgfault: int | None = None
    pgmajfault: int | None = None
    oom_kills: int | None = None
    threads: int | None = None
    threads_max: int | None = None  # 0: no limit
    # What the cgroup enforces (container_spec_*); None when there is no such limit.
    cpu_period_us: int | None = None
    cpu_quota_us: int | None = None
    cpu_shares: int | None = None
    memory_limit: int | None = None  # 0: no limit (cAdvisor's convention)
    memory_reservation: int | None = None  # 0: none
    memory_swap_limit: int | None = None  # 0: no limit


def _limit(value: int | None) -> int | None:
    """A byte limit as cAdvisor reports it: 0 for "unlimited"."""
    if value is None:
        return None
    return 0 if value >= _UNLIMITED else value


def _v2_max(text: str | None) -> int | None:
    """A v2 limit file: a number, or "max" (no limit) as 0."""
    if text is None:
        return None
    text = text.strip()
    return 0 if text == "max" else _int(text)


def _ticks_ns(ticks: int | None) -> int | None:
    return None if ticks is None else ticks * 1_000_000_000 // _CLK_TCK


def _working_set(usage: int | None, inactive_file: int | None) -> int | None:
    if usage is None:
        return None
    return max(usage - (inactive_file or 0), 0)


def _is_dir(path: Path | None) -> bool:
    return path is not None and path.is_dir()


def _v1_metrics(dirs: CgroupDirs) -> CgroupMetrics | None:
    cpu, cpuacct = dirs.controller("cpu"), dirs.controller("cpuacct")
    memory, pids = dirs.controller("memory"), dirs.controller("pids")
    if not any(_is_dir(d) for d in (cpu, cpuacct, memory, pids)):
        return None

    def read(directory: Path | None, name: str) -> str | None:
        return _read(directory / name) if directory is not None else None

    acct = _flat_keyed(read(cpuacct, "cpuacct.stat"))
    throttling = _flat_keyed(read(cpu, "cpu.stat"))
    mstat = _flat_keyed(read(memory, "memory.stat"))

    def total(key: str) -> int | None:
        # total_* include descendants (hierarchical accounting), as cAdvisor reads them.
        return mstat.get(f"total_{key}", mstat.get(key))

    usage = _int(read(memory, "memory.usage_in_bytes"))
    memsw = _int(read(memory, "memory.memsw.usage_in_bytes"))
    quota = _int(read(cpu, "cpu.cfs_quota_us"))
    pids_max = read(pids, "pids.max")
    throttled_time = throttling.get("throttled_time")
    return CgroupMetrics(
        cpu_usage_ns=_int(read(cpuacct, "cpuacct.usage")),
        cpu_user_ns=_ticks_ns(acct.get("user")),
        cpu_system_ns=_ticks_ns(acct.get("system")),
        cfs_periods=throttling.get("nr_periods"),
        cfs_throttled_periods=throttling.get("nr_throttled"),
        cfs_throttled_ns=throttled_time,
        memory_usage=usage,
        memory_max_usage=_int(read(memory, "memory.max_usage_in_bytes")),
        memory_working_set=_working_set(usage, total("inactive_file")),
        memory_cache=total("cache"),
        memory_rss=total("rss"),
        memory_mapped_file=total("mapped_file"),
        memory_kernel=_int(read(memory, "memory.kmem.usage_in_bytes")),
        # memsw counts memory plus swap; without swap accounting the file is missing.
        memory_swap=max(memsw - usage, 0) if memsw is not None and usage is not None else None,
        memory_failcnt=_int(read(memory, "memory.failcnt")),
        pgfault=total("pgfault"),
        pgmajfault=total("pgmajfault"),
        oom_kills=_flat_keyed(read(memory, "memory.oom_control")).get("oom_kill"),
        threads=_int(read(pids, "pids.current")),
        threads_max=_v2_max(pids_max),
        cpu_period_us=_int(read(cpu, "cpu.cfs_period_us")),
        # -1 is "no quota".
        cpu_quota_us=quota if quota is not None and quota > 0 else None,
        cpu_shares=_int(read(cpu, "cpu.shares")),
        memory_limit=_limit(_int(read(memory, "memory.limit_in_bytes"))),
        memory_reservation=_limit(_int(read(memory, "memory.soft_limit_in_bytes"))),
        memory_swap_limit=_limit(_int(read(memory, "memory.memsw.limit_in_bytes"))),
    )


def weight_to_shares(weight: int) -> int:
    """cgroup v2 cpu.weight back to v1 shares: the inverse of runc's shares→weight mapping."""
    return 2 + ((weight - 1) * 262142) // 9999


def _v2_metrics(directory: Path) -> CgroupMetrics | None:
    if not directory.is_dir():
        return None

    def read(name: str) -> str | None:
        return _read(directory / name)

    cpu = _flat_keyed(read("cpu.stat"))
    mstat = _flat_keyed(read("memory.stat"))
    events = _flat_keyed(read("memory.events"))
    usage = _int(read("memory.current"))

    def usec_ns(key: str) -> int | None:
        value = cpu.get(key)
        return value * 1000 if value is not None else None

    quota: int | None = None
    period: int | None = None
    cpu_max = (read("cpu.max") or "").split()
    if len(cpu_max) == 2:
        period = _int(cpu_max[1])
        quota = None if cpu_max[0] == "max" else _int(cpu_max[0])
    weight = _int(read("cpu.weight"))
    kernel = mstat.get("kernel")
    if kernel is None and "kernel_stack" in mstat:
        # Kernels before 5.18 have no "kernel" line: its main parts.
        kernel = mstat.get("kernel_stack", 0) + mstat.get("slab", 0) + mstat.get("sock", 0)
    return CgroupMetrics(
        cpu_usage_ns=usec_ns("usage_usec"),
        cpu_user_ns=usec_ns("user_usec"),
        cpu_system_ns=usec_ns("system_usec"),
        cfs_periods=cpu.get("nr_periods"),
        cfs_throttled_periods=cpu.get("nr_throttled"),
        cfs_throttled_ns=usec_ns("throttled_usec"),
        memory_usage=usage,
        memory_max_usage=_int(read("memory.peak")),  # 5.19+
        memory_working_set=_working_set(usage, mstat.get("inactive_file")),
        memory_cache=mstat.get("file"),
        memory_rss=mstat.get("anon"),
        memory_mapped_file=mstat.get("file_mapped"),
        memory_kernel=kernel,
        memory_swap=_int(read("memory.swap.current")),
        # "max": times usage hit memory.max, what v1's failcnt counts.
        memory_failcnt=events.get("max"),
        pgfault=mstat.get("pgfault"),
        pgmajfault=mstat.get("pgmajfault"),
        oom_kills=events.get("oom_kill"),
        threads=_int(read("pids.current")),
        threads_max=_v2_max(read("pids.max")),
        cpu_period_us=period,
        cpu_quota_us=quota,
        cpu_shares=weight_to_shares(weight) if weight is not None else None,
        memory_limit=_v2_max(read("memory.max")),
        # runc writes the OCI memory reservation to memory.low.
        memory_reservation=_v2_max(read("memory.low")),
        memory_swap_limit=_v2_max(read("memory.swap.max")),
    )


def read_metrics(dirs: CgroupDirs) -> CgroupMetrics | None:
    """The cgroup's counters now; None when the cgroup is gone."""
    if dirs.mode == "v2":
        return _v2_metrics(dirs.unified) if dirs.unified is not None else None
    return _v1_metrics(dirs)


# --- processes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessCounts:
    processes: int
    file_descriptors: int
    sockets: int


def process_counts(pids: list[int], proc: Path = PROC) -> ProcessCounts:
    """Open descriptors and sockets of these processes, as cAdvisor counts them from /proc/<pid>/fd."""
    fds = sockets = 0
    for pid in pids:
        fd_dir = proc / str(pid) / "fd"
        try:
            entries = os.listdir(fd_dir)
        except OSError:
            continue  # exited meanwhile
        fds += len(entries)
        for entry in entries:
            try:
                if os.readlink(fd_dir / entry).startswith("socket:"):
                    sockets += 1
            except OSError:
                continue
    return ProcessCounts(processes=len(pids), file_descriptors=fds, sockets=sockets)


# --- disk --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilesystemCounters:
    capacity_bytes: int
    inodes_total: int
    inodes_free: int
    # What cAdvisor's `device` label holds: the mount source of the file system ("/dev/vda").
    device: str = ""


def mount_source(dev: int, mountinfo: str | None = None) -> str:
    """The source of the mount whose device number is `dev`, from mountinfo ("" if none)."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return ""
    want = f"{os.major(dev)}:{os.minor(dev)}"
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[2] == want and " - " in line:
            after = line.split(" - ", 1)[1].split()
            if len(after) >= 2:
                return after[1]
    return ""


def filesystem_counters(path: Path) -> FilesystemCounters | None:
    """The file system holding `path` (a writable layer): its size, inodes and device."""
    try:
        st = os.statvfs(path)
        info = os.stat(path)
        if not stat.S_ISDIR(info.st_mode):
            return None
    except OSError:
        return None
    return FilesystemCounters(
        capacity_bytes=st.f_blocks * st.f_frsize,
        inodes_total=st.f_files,
        inodes_free=st.f_ffree,
        device=mount_source(info.st_dev),
    )
