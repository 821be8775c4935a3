"""Container stats from cgroups (v1, v2, hybrid), /proc/<pid>/net/dev and writable-layer usage."""

from __future__ import annotations

import gc
import os
import secrets
import subprocess
import time
import weakref
from pathlib import Path

import pytest

from crib.runtime import cgroup_stats as cs
from crib.runtime.cgroup_stats import (
    CgroupDirs,
    _flat_keyed,
    _keyed,
    cgroup_dirs,
    cgroup_mode,
    cgroup_pids,
    expand_slice,
    net_dev_path,
    network_stats,
    parse_net_dev,
    process_count,
    read_stats,
    relative_cgroup_path,
)
from crib.runtime.kept_files import KeptFiles
from crib.runtime.oci_spec import cgroups_path

V1_UNLIMITED = "9223372036854771712"


def _mountinfo(root: Path, *, v1: tuple[str, ...] | list[str] = (), unified: str | None = None) -> str:
    """mountinfo lines like a host's, with every cgroup mount point under `root`."""
    lines = [
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
        f"31 22 0:28 / {root} rw,relatime - tmpfs tmpfs rw,mode=755",
    ]
    for i, opts in enumerate(v1):
        lines.append(f"{40 + i} 31 0:{40 + i} / {root / opts} rw,relatime shared:9 - cgroup cgroup rw,{opts}")
    lines.append(f"60 31 0:60 / {root / 'systemd'} rw,relatime - cgroup cgroup rw,xattr,name=systemd")
    if unified is not None:
        mp = root if unified == "" else root / unified
        lines.append(f"61 31 0:61 / {mp} rw,relatime - cgroup2 cgroup2 rw,nsdelegate")
    return "\n".join(lines) + "\n"


def _write(d: Path, files: dict[str, str]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)


V1_MEMORY_STAT = """cache 4096
rss 1000
inactive_file 4096
pgfault 7
pgmajfault 1
hierarchical_memory_limit 9223372036854771712
total_cache 409600
total_rss 2097152
total_inactive_file 1048576
total_active_file 8192
total_pgfault 1234
total_pgmajfault 5
"""

V2_MEMORY_STAT = """anon 3145728
file 2097152
inactive_anon 0
active_anon 3145728
inactive_file 1048576
active_file 1048576
pgfault 4321
pgmajfault 9
"""

PRESSURE = (
    "some avg10=0.03 avg60=1.90 avg300=7.41 total=332814589\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
)


# --- mode and directories ----------------------------------------------------------------------------


def test_mode_from_mountinfo(tmp_path: Path) -> None:
    assert cgroup_mode(_mountinfo(tmp_path, v1=["cpu,cpuacct", "memory", "pids"])) == "v1"
    assert cgroup_mode(_mountinfo(tmp_path, unified="")) == "v2"
    assert cgroup_mode(_mountinfo(tmp_path, v1=["memory"], unified="unified")) == "hybrid"
    # A named hierarchy alone (name=systemd) holds no controllers.
    assert cgroup_mode(_mountinfo(tmp_path, unified="unified")) == "v2"


def test_host_mode_is_detected_and_cached() -> None:
    assert cgroup_mode() in ("v1", "v2", "hybrid")
    hits = cs._host_mounts.cache_info().hits
    cgroup_mode()
    assert cs._host_mounts.cache_info().hits == hits + 1


def test_v1_co_mounted_controllers_share_a_directory(tmp_path: Path) -> None:
    info = _mountinfo(tmp_path, v1=["cpu,cpuacct", "memory", "pids", "cpuset", "blkio", "net_cls,net_prio"])
    dirs = cgroup_dirs("/kubepods/besteffort/pod123/abc", systemd=False, mountinfo=info)
    assert dirs.mode == "v1"
    assert dirs.unified is None
    rel = "kubepods/besteffort/pod123/abc"
    assert dirs.controller("cpu") == dirs.controller("cpuacct") == tmp_path / "cpu,cpuacct" / rel
    assert dirs.controller("memory") == tmp_path / "memory" / rel
    assert dirs.controller("net_prio") == tmp_path / "net_cls,net_prio" / rel
    assert set(dirs.controllers) == {
        "cpu",
        "cpuacct",
        "memory",
        "pids",
        "cpuset",
        "blkio",
        "net_cls",
        "net_prio",
    }
    assert dirs.controller("hugetlb") is None  # not mounted; name=systemd is never a controller


def test_v2_and_hybrid_directories(tmp_path: Path) -> None:
    v2 = cgroup_dirs("/crib/abc", systemd=False, mountinfo=_mountinfo(tmp_path, unified=""))
    assert v2 == CgroupDirs(mode="v2", controllers={}, unified=tmp_path / "crib" / "abc")
    hybrid = cgroup_dirs(
        "/crib/abc", systemd=False, mountinfo=_mountinfo(tmp_path, v1=["memory", "cpu"], unified="unified")
    )
    assert hybrid.mode == "hybrid"
    assert hybrid.controller("memory") == tmp_path / "memory" / "crib" / "abc"
    assert hybrid.unified == tmp_path / "unified" / "crib" / "abc"


def test_mountinfo_escapes_and_bind_mounts(tmp_path: Path) -> None:
    info = (
        f"50 31 0:40 /sub {tmp_path}/bound rw - cgroup cgroup rw,memory\n"
        f"51 31 0:40 / {tmp_path}/with\\040space rw shared:3 master:1 - cgroup cgroup rw,memory\n"
        "garbage line\n"
    )
    dirs = cgroup_dirs("/x", systemd=False, mountinfo=info)
    assert dirs.controller("memory") == tmp_path / "with space" / "x"


def test_kubelet_cgroup_parents_become_runc_cgroups_paths() -> None:
    """The systemd driver's pod slice and the cgroupfs driver's pod dir, as the kubelet passes them."""
    cid = "c0ffee"
    systemd = cgroups_path("kubepods-burstable-pod1234.slice", cid, systemd=True)
    assert systemd == f"kubepods-burstable-pod1234.slice:crib:{cid}"
    assert relative_cgroup_path(systemd, systemd=True) == (
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/crib-{cid}.scope"
    )
    cgroupfs = cgroups_path("/kubepods/burstable/pod1234", cid, systemd=False)
    assert cgroupfs == f"/kubepods/burstable/pod1234/{cid}"
    assert relative_cgroup_path(cgroupfs, systemd=False) == cgroupfs
    # No parent (crictl, critest): crib's own.
    assert cgroups_path("", cid, systemd=False) == f"/crib/{cid}"


def test_systemd_paths() -> None:
    assert expand_slice("system.slice") == "/system.slice"
    assert expand_slice("-.slice") == "/"
    assert expand_slice("kubepods-besteffort-pod123.slice") == (
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod123.slice"
    )
    for bad in ("system", "a/b.slice", "a--b.slice", ".slice"):
        with pytest.raises(ValueError):
            expand_slice(bad)
    assert relative_cgroup_path("system.slice:crib:abc", systemd=True) == "/system.slice/crib-abc.scope"
    assert relative_cgroup_path(":crib:abc", systemd=True) == "/system.slice/crib-abc.scope"
    assert relative_cgroup_path("-.slice:crib:abc", systemd=True) == "/crib-abc.scope"
    assert relative_cgroup_path("kubepods-burstable.slice:crib:kubepods-burstable-pod1.slice", True) == (
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice"
    )
    with pytest.raises(ValueError):
        relative_cgroup_path("/crib/abc", systemd=True)
    assert relative_cgroup_path("/crib/abc/", systemd=False) == "/crib/abc"
    assert relative_cgroup_path("crib/abc", systemd=False) == "/crib/abc"


def test_systemd_directories_v1_and_v2(tmp_path: Path) -> None:
    v2 = cgroup_dirs("system.slice:crib:abc", systemd=True, mountinfo=_mountinfo(tmp_path, unified=""))
    assert v2.unified == tmp_path / "system.slice" / "crib-abc.scope"
    v1 = cgroup_dirs(
        "kubepods-besteffort.slice:crib:abc", systemd=True, mountinfo=_mountinfo(tmp_path, v1=["memory"])
    )
    assert v1.controller("memory") == (
        tmp_path / "memory" / "kubepods.slice" / "kubepods-besteffort.slice" / "crib-abc.scope"
    )


# --- v1 ----------------------------------------------------------------------------------------------


def _v1_tree(tmp_path: Path, *, unified: str | None = None) -> CgroupDirs:
    dirs = cgroup_dirs(
        "/crib/abc",
        systemd=False,
        mountinfo=_mountinfo(tmp_path, v1=["cpu,cpuacct", "memory", "pids"], unified=unified),
    )
    _write(dirs.controller("cpuacct"), {"cpuacct.usage": "123456789\n", "cgroup.procs": "10\n11\n"})
    _write(
        dirs.controller("memory"),
        {
            "memory.usage_in_bytes": "5242880\n",
            "memory.stat": V1_MEMORY_STAT,
            "memory.limit_in_bytes": V1_UNLIMITED + "\n",
            "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        },
    )
    _write(dirs.controller("pids"), {"pids.current": "3\n", "cgroup.procs": "10\n11\n"})
    return dirs


def test_v1_stats(tmp_path: Path) -> None:
    dirs = _v1_tree(tmp_path)
    before = time.time_ns()
    s = read_stats(dirs)
    assert s is not None
    assert before <= s.timestamp_ns <= time.time_ns()
    assert s.cpu_usage_ns == 123456789
    assert s.memory_usage_bytes == 5242880
    assert s.memory_working_set_bytes == 5242880 - 1048576  # total_inactive_file, not inactive_file
    assert s.memory_rss_bytes == 2097152
    assert (s.memory_page_faults, s.memory_major_page_faults) == (1234, 5)
    assert s.memory_limit_bytes is None  # v1's "unlimited"
    assert s.oom_kills == 2
    assert s.pids == 3
    assert s.psi is None
    assert process_count(dirs) == 2


def test_v1_limit_and_working_set_floor(tmp_path: Path) -> None:
    dirs = _v1_tree(tmp_path)
    mem = dirs.controller("memory")
    (mem / "memory.limit_in_bytes").write_text("268435456\n")
    (mem / "memory.usage_in_bytes").write_text("4096\n")  # less than total_inactive_file
    s = read_stats(dirs)
    assert s is not None
    assert s.memory_limit_bytes == 268435456
    assert s.memory_working_set_bytes == 0


def test_v1_missing_files_are_none(tmp_path: Path) -> None:
    dirs = _v1_tree(tmp_path)
    mem = dirs.controller("memory")
    for name in ("memory.stat", "memory.oom_control", "memory.limit_in_bytes"):
        (mem / name).unlink()
    (dirs.controller("pids") / "pids.current").unlink()
    (dirs.controller("cpuacct") / "cpuacct.usage").write_text("garbage\n")
    s = read_stats(dirs)
    assert s is not None
    assert s.memory_usage_bytes == 5242880
    assert s.memory_working_set_bytes == 5242880  # no inactive_file known: the usage
    assert s.cpu_usage_ns is None
    assert s.memory_rss_bytes is s.memory_page_faults is s.memory_limit_bytes is s.oom_kills is None
    assert s.pids is None


def test_v1_controller_dir_missing_is_tolerated(tmp_path: Path) -> None:
    # The pids hierarchy is not mounted at all, and the memory directory is already gone.
    dirs = cgroup_dirs(
        "/crib/abc", systemd=False, mountinfo=_mountinfo(tmp_path, v1=["cpu,cpuacct", "memory"])
    )
    _write(dirs.controller("cpu"), {"cpuacct.usage": "42"})
    s = read_stats(dirs)
    assert s is not None
    assert (s.cpu_usage_ns, s.memory_usage_bytes, s.pids) == (42, None, None)


def test_hybrid_adds_psi_from_the_unified_hierarchy(tmp_path: Path) -> None:
    dirs = _v1_tree(tmp_path, unified="unified")
    _write(
        dirs.unified, {"cpu.pressure": PRESSURE, "io.pressure": "some avg10=1.50 avg60=0 avg300=0 total=7\n"}
    )
    s = read_stats(dirs)
    assert s is not None
    assert s.cpu_usage_ns == 123456789
    assert s.psi == {
        "cpu": {
            "some": {"avg10": 0.03, "avg60": 1.9, "avg300": 7.41, "total": 332814589},
            "full": {"avg10": 0.0, "avg60": 0.0, "avg300": 0.0, "total": 0},
        },
        "io": {"some": {"avg10": 1.5, "avg60": 0.0, "avg300": 0.0, "total": 7}},
    }
    # No unified directory (runc did not make one): no PSI, the rest as before.
    dirs.unified.joinpath("cpu.pressure").unlink()
    dirs.unified.joinpath("io.pressure").unlink()
    dirs.unified.rmdir()
    s = read_stats(dirs)
    assert s is not None
    assert s.psi is None
    assert s.memory_usage_bytes == 5242880


def _recording(read: cs.Reader, seen: list[str]) -> cs.Reader:
    def record(path: str) -> str | None:
        seen.append(path.rpartition("/")[2])
        return read(path)

    return record


def test_stats_calls_leave_the_task_count_unread(tmp_path: Path) -> None:
    """The CRI's stats carry no task count or OOM kills: cri_stats reads neither file (two a pod
    saved in every stats call), and the rest reads as before."""
    for dirs in (_v1_tree(tmp_path / "v1"), _v2_tree(tmp_path / "v2")):
        seen: list[str] = []
        full = read_stats(dirs, oom_kills=False)
        s = cs.cri_stats(dirs, _recording(cs.read_file, seen))
        assert s is not None and full is not None
        assert "pids.current" not in seen and "memory.stat" in seen
        assert not {"memory.oom_control", "memory.events"} & set(seen)
        assert s.pids is None and full.pids is not None
        assert (s.cpu_usage_ns, s.memory_working_set_bytes, s.psi) == (
            full.cpu_usage_ns,
            full.memory_working_set_bytes,
            full.psi,
        )
    # Without the task count, a v1 cgroup whose memory and cpuacct files are gone is gone.
    dirs = _v1_tree(tmp_path / "half")
    for controller, name in (("memory", "memory.usage_in_bytes"), ("cpuacct", "cpuacct.usage")):
        dirs.controller(controller).joinpath(name).unlink()
    assert read_stats(dirs, tasks=False) is None
    assert read_stats(dirs) is not None and read_stats(dirs).pids == 3  # type: ignore[union-attr]


def test_a_pressure_text_seen_before_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cs, "_PRESSURE_SEEN", {})
    monkeypatch.setattr(cs, "PRESSURE_SEEN_MAX", 3)
    first = cs.pressure_of(PRESSURE)
    assert first == cs.parse_pressure(PRESSURE)
    assert cs.pressure_of(PRESSURE) is first  # the same text: the value made before
    other = PRESSURE.replace("total=332814589", "total=332814590")
    assert cs.pressure_of(other) is not first and cs.pressure_of(other)["some"]["total"] == 332814590  # type: ignore[index]
    # Nothing to parse: nothing kept.
    assert cs.pressure_of(None) is None and cs.pressure_of("") is None and cs.pressure_of("garbage") is None
    assert len(cs._PRESSURE_SEEN) == 2
    # Bounded: a full memo starts again rather than growing with every total a busy node makes.
    for total in range(10):
        assert cs.pressure_of(f"some avg10=0.00 avg60=0.00 avg300=0.00 total={total}\n") is not None
        assert len(cs._PRESSURE_SEEN) <= 3
    again = cs.pressure_of(PRESSURE)
    assert again == first


def test_vanished_v1_cgroup_is_none(tmp_path: Path) -> None:
    dirs = cgroup_dirs(
        "/crib/gone", systemd=False, mountinfo=_mountinfo(tmp_path, v1=["cpu,cpuacct", "memory"])
    )
    assert read_stats(dirs) is None
    assert process_count(dirs) is None


# --- v2 ----------------------------------------------------------------------------------------------


def _v2_tree(tmp_path: Path) -> CgroupDirs:
    dirs = cgroup_dirs("system.slice:crib:abc", systemd=True, mountinfo=_mountinfo(tmp_path, unified=""))
    _write(
        dirs.unified,
        {
            "cpu.stat": "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 0\n",
            "memory.current": "8388608\n",
            "memory.stat": V2_MEMORY_STAT,
            "memory.max": "max\n",
            "memory.events": "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n",
            "pids.current": "2\n",
            "cgroup.procs": "100\n",
            "cpu.pressure": PRESSURE,
            "memory.pressure": PRESSURE,
            "io.pressure": PRESSURE,
        },
    )
    return dirs


def test_v2_stats(tmp_path: Path) -> None:
    dirs = _v2_tree(tmp_path)
    s = read_stats(dirs)
    assert s is not None
    assert s.cpu_usage_ns == 2_500_000
    assert s.memory_usage_bytes == 8388608
    assert s.memory_working_set_bytes == 8388608 - 1048576
    assert s.memory_rss_bytes == 3145728
    assert (s.memory_page_faults, s.memory_major_page_faults) == (4321, 9)
    assert s.memory_limit_bytes is None  # "max"
    assert s.oom_kills == 1
    assert s.pids == 2
    assert s.psi is not None
    assert set(s.psi) == {"cpu", "memory", "io"}
    assert s.psi["memory"]["some"]["avg300"] == 7.41
    assert process_count(dirs) == 1


def test_v2_limit_missing_files_and_vanishing(tmp_path: Path) -> None:
    dirs = _v2_tree(tmp_path)
    (dirs.unified / "memory.max").write_text("536870912\n")
    for name in (
        "memory.stat",
        "memory.events",
        "pids.current",
        "cpu.stat",
        "io.pressure",
        "memory.pressure",
    ):
        (dirs.unified / name).unlink()
    (dirs.unified / "cpu.pressure").write_text("")  # PSI switched off reads as nothing
    s = read_stats(dirs)
    assert s is not None
    assert s.memory_limit_bytes == 536870912
    assert s.memory_working_set_bytes == s.memory_usage_bytes == 8388608
    assert s.cpu_usage_ns is s.memory_rss_bytes is s.oom_kills is s.pids is s.psi is None
    for child in dirs.unified.iterdir():
        child.unlink()
    dirs.unified.rmdir()
    assert read_stats(dirs) is None
    assert process_count(dirs) is None


# --- network -----------------------------------------------------------------------------------------

# The shape of a real /proc/<pid>/net/dev (header lines, right-aligned names, a name glued to its
# first number once the counter is wide enough).
NET_DEV = "\n".join(
    [
        "Inter-|   Receive                                                |  Transmit",
        " face |bytes    packets errs drop fifo frame compressed multicast|"
        "bytes    packets errs drop fifo colls carrier compressed",
        "    lo: 7219476337  252319    0    0    0     0          0         0 "
        "7219476337  252319    0    0    0     0       0          0",
        "  ifb0:       0       0    0    0    0     0          0         0 "
        "       0       0    0    0    0     0       0          0",
        "  eth0: 372013334    9107    3    0    0     0          0         0 "
        "  545824    5556    4    0    0     0       0          0",
        "veth1:12345678901  100    1    0    0     0          0         0 "
        "98765   10    2    0    0     0       0          0",
        "",
    ]
)


def test_parse_net_dev() -> None:
    counts = {
        name: (n.rx_bytes, n.rx_errors, n.tx_bytes, n.tx_errors) for name, n in parse_net_dev(NET_DEV).items()
    }
    assert counts == {
        "ifb0": (0, 0, 0, 0),
        "eth0": (372013334, 3, 545824, 4),
        "veth1": (12345678901, 1, 98765, 2),
    }
    assert parse_net_dev("") == {}


def test_network_stats_of_a_process(tmp_path: Path) -> None:
    _write(tmp_path / "42" / "net", {"dev": NET_DEV})
    assert network_stats(42, proc=tmp_path)["eth0"] == (372013334, 3, 545824, 4)
    assert network_stats(43, proc=tmp_path) == {}  # gone
    real = network_stats(os.getpid())
    assert "lo" not in real
    assert all(len(v) == 4 and all(isinstance(n, int) for n in v) for v in real.values())


def test_network_stats_through_kept_files(tmp_path: Path) -> None:
    # A pod's counters file is kept open between stats calls; each read shows the file as it
    # is now, and forgetting the pid's net dir closes it.
    dev = tmp_path / "42" / "net" / "dev"
    _write(dev.parent, {"dev": NET_DEV})
    kept = KeptFiles()
    assert network_stats(42, proc=tmp_path, read=kept.read)["eth0"] == (372013334, 3, 545824, 4)
    assert len(kept) == 1
    with dev.open("r+") as f:  # the same file, new counters: as the kernel makes it afresh
        f.write(NET_DEV.replace("372013334", "372013999"))
    assert network_stats(42, proc=tmp_path, read=kept.read)["eth0"] == (372013999, 3, 545824, 4)
    assert len(kept) == 1
    kept.forget([net_dev_path(42, tmp_path).rpartition("/")[0]])
    assert len(kept) == 0


def test_process_count_counts_a_pid_listed_twice_once(tmp_path: Path) -> None:
    dirs = _v1_tree(tmp_path)
    pids = dirs.controller("pids")
    assert pids is not None
    (pids / "cgroup.procs").write_text("7\n9\n7\n")  # v1 does not promise a list without repeats
    assert process_count(dirs) == 2
    assert cgroup_pids(dirs) == [7, 9]


# --- a real cgroup on this host ----------------------------------------------------------------------


def test_real_v1_cgroup() -> None:
    if cgroup_mode() not in ("v1", "hybrid"):
        pytest.skip(f"host cgroups are {cgroup_mode()}, this test needs v1 controllers")
    name = f"crib-test-{secrets.token_hex(6)}"
    dirs = cgroup_dirs(f"/{name}", systemd=False)
    wanted = [dirs.controller(c) for c in ("memory", "cpu", "cpuacct", "pids")]
    if any(d is None for d in wanted):
        pytest.skip(f"not every v1 controller is mounted: {sorted(dirs.controllers)}")
    made: list[Path] = []
    child: subprocess.Popen[bytes] | None = None
    try:
        for d in dict.fromkeys(wanted):  # co-mounted controllers share a directory
            try:
                d.mkdir()
            except OSError as e:
                pytest.skip(f"cannot create a v1 cgroup at {d}: {e}")
            made.append(d)
        (dirs.controller("memory") / "memory.limit_in_bytes").write_text("536870912")
        # The shell is moved first, then execs sleep: v1 does not move earlier memory charges along.
        child = subprocess.Popen(["sh", "-c", "read _; exec sleep 60"], stdin=subprocess.PIPE)
        for d in made:
            (d / "cgroup.procs").write_text(str(child.pid))
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.close()
        deadline = time.monotonic() + 10
        while True:
            s = read_stats(dirs)
            assert s is not None
            exe = os.readlink(f"/proc/{child.pid}/exe")
            if (s.memory_usage_bytes or 0) > 0 and exe.endswith("sleep"):
                break
            assert time.monotonic() < deadline, f"no memory charged: {s}"
            time.sleep(0.05)
        s = read_stats(dirs)
        assert s is not None
        assert s.memory_usage_bytes is not None and s.memory_usage_bytes > 0
        assert (
            s.memory_working_set_bytes is not None and 0 <= s.memory_working_set_bytes <= s.memory_usage_bytes
        )
        assert s.cpu_usage_ns is not None and s.cpu_usage_ns >= 0
        assert s.pids == 1
        assert process_count(dirs) == 1
        assert s.memory_limit_bytes == 536870912
        assert s.oom_kills in (0, None)
        # memory.stat counters are flushed lazily by the kernel: present, but maybe still 0.
        assert s.memory_page_faults is not None and s.memory_page_faults >= 0
    finally:
        if child is not None:
            child.kill()
            child.wait()
        for d in reversed(made):
            for _ in range(50):  # the killed task may take a moment to leave the cgroup
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
    assert read_stats(dirs) is None


def test_flat_keyed_files_pair_up_and_odd_lines_are_skipped() -> None:
    assert _flat_keyed("cache 4096\nrss 8192\ntotal_rss 8192\n") == {
        "cache": 4096,
        "rss": 8192,
        "total_rss": 8192,
    }
    assert _flat_keyed("oom_kill_disable 0\noom_kill 3") == {"oom_kill_disable": 0, "oom_kill": 3}
    # Lines that are not "key integer" are left out, the others kept, as line by line.
    assert _flat_keyed("a 1\nb x\nc 3\n") == {"a": 1, "c": 3}
    assert _flat_keyed("a 1 2\nb\nc 3\n") == {"c": 3}
    assert _flat_keyed("a 1\n\nc 3\n") == {"a": 1, "c": 3}
    assert _flat_keyed("") == _flat_keyed(None) == {}


def test_only_the_keys_asked_for_are_read_whole_lines_only() -> None:
    text = "rss_huge 1\ntotal_rss 8192\nrss 4096\nmapped_file x\npgfault 7"
    assert _keyed(text, ("rss", "total_rss", "pgfault", "mapped_file", "swap")) == {
        "rss": 4096,
        "total_rss": 8192,
        "pgfault": 7,
    }
    assert _keyed("total_rss 5\n", ("rss",)) == {}
    assert _keyed("", ("rss",)) == _keyed(None, ("rss",)) == {}


def test_v1_memory_stat_lines_found_whole_totals_first() -> None:
    text = "cache 1\nrss 4096\nrss_huge 9\npgfault 7\npgmajfault 2\ninactive_file 3\ntotal_rss 8192\n"
    # total_rss where there is one; the plain line where there is no total_ line; "rss_huge"
    # is not "rss"; the first line has no newline before it.
    assert cs._v1_memory_stat(text) == [3, 8192, 7, 2]
    assert cs._v1_memory_stat("pgfault 5") == [None, None, 5, None]
    assert cs._v1_memory_stat("rss x\ntotal_pgfault 1\n") == [None, None, 1, None]
    assert cs._v1_memory_stat("") == cs._v1_memory_stat(None) == [None] * 4


def test_a_cgroups_stats_files_are_joined_once(tmp_path: Path) -> None:
    dirs = cgroup_dirs(
        "/crib/abc", systemd=False, mountinfo=_mountinfo(tmp_path, v1=["cpu,cpuacct", "memory"])
    )
    files = dirs.v1_files
    assert dirs.v1_files is files  # made at the first read, kept with the dirs
    assert files[0] == f"{dirs.controller('memory')}/memory.usage_in_bytes"
    assert files[2] is None  # no pids hierarchy: pids.current is not looked for
    assert dirs.psi_files == ()  # no cgroup2 mount
    assert dirs.procs_files == (
        f"{dirs.controller('memory')}/cgroup.procs",
        f"{dirs.controller('cpuacct')}/cgroup.procs",
        f"{dirs.controller('cpu')}/cgroup.procs",
    )
    v2 = CgroupDirs("v2", {}, Path("/cg/a"))
    assert v2.psi_files == ("/cg/a/cpu.pressure", "/cg/a/memory.pressure", "/cg/a/io.pressure")
    assert v2.procs_files == ("/cg/a/cgroup.procs",)


def test_a_cgroups_directories_are_each_named_once() -> None:
    dirs = CgroupDirs(
        "hybrid",
        {
            "cpu": Path("/cg/cpu,cpuacct/a"),
            "cpuacct": Path("/cg/cpu,cpuacct/a"),
            "memory": Path("/cg/memory/a"),
        },
        Path("/cg/unified/a"),
    )
    assert dirs.directories() == ["/cg/cpu,cpuacct/a", "/cg/memory/a", "/cg/unified/a"]
    assert CgroupDirs("v2", {}, Path("/cg/a")).directories() == ["/cg/a"]


def test_a_removed_containers_cgroup_dirs_are_not_kept() -> None:
    # Each container and pod has cgroup paths of its own: once the caller drops their dirs
    # nothing may hold them (a cache by path grew by every removed pod; found by the churn).
    dirs = cgroup_dirs("/crib/0123456789abcdef", False)
    ref = weakref.ref(dirs)
    del dirs
    gc.collect()
    assert ref() is None
