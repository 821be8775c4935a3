"""Benchmark: crib's lifecycle calls beside runc, conmon and the CNI plugins doing the same work
(DESIGN.md §7, "raw runc + CNI for lifecycle calls").

Some §7 targets are ratios to containerd that crib misses (StartContainer, StopPodSandbox,
ExecSync). Whether crib adds time of its own, or the target lies below what runc, conmon and
the CNI plugins take on this machine, only a floor measured in the same sitting says. So one
cribd (set up as bench/pod_lifecycle.py does: local registry, busybox and pause, its bench
conflist) runs a template pod with a running busybox container, and every floor works from
copies of what crib made, with the binaries crib runs:

- StartContainer, whose work is conmon running `runc create`, then `runc start`:
  (a) `runc create` + `runc start` on a copy of the created container's bundle (its own ID,
      cgroup and state root; the rootfs and the pod's namespaces are the template's);
  (b) conmon with crib's exact arguments (read from the template's conmon's command line,
      its container's paths rewritten), its sync pipe read by crib's own reader, then
      `runc start`: what crib's StartContainer does, without the daemon.
  Beside crib's StartContainer of a freshly created container (CreateContainer untimed).
- ExecSync `true`, into the template container (warm): `runc exec <id> true`, and
  `runc exec -d --process <file> --pid-file <file> <id>` with piped stdout/stderr, the
  process waited for through a pidfd and the pipes read to EOF (what crib does, see
  crib/container/exec_sync.py). And the first exec into a fresh container: crib's first
  ExecSync into the container its StartContainer just started, beside a first `runc exec`
  into floor (a)'s container and a first `runc exec -d` into floor (b)'s.
- RunPodSandbox, which mounts the pod's shm, makes the netns, then runs CNI ADD beside the
  pause's start (its overlay rootfs, then `runc run --detach`): the same steps here, the
  tmpfs and netns made as crib makes them (its syscalls, in-process), the ADD of crib's
  network (the same conflist, plugins, order, env and stdin as crib's; no loopback plugin,
  crib brings `lo` up itself), the pause image's layers mounted by crib's mount_overlay and
  the pause's `runc run --detach` on a copy of the template pod's pause bundle joined to the
  floor's netns and shm. Timed as crib does it (the ADD and the pause in parallel threads)
  and one step after another (each part alone).
- StopPodSandbox, for a pod with no container: `runc kill --all <pause> KILL` and the
  pause's exit (pidfd), the CNI DEL (reverse order, ADD's result as prevResult), the netns
  unmounted and removed, the shm unmounted.

What the floors leave out, by design: crib's state writes (SQLite, the record files), its CNI
result cache (written with fsync before ADD returns), the pod's files (hosts, resolv.conf,
hostname), CreateContainer's own work (untimed here) and the gRPC round trip (~0.5 ms).
Each round measures every figure once, the floors and crib taking turns going first within
each group (StartContainer, ExecSync, the pod); the template pod stays for the whole run.
The floors' own pods and containers live in a temp dir of their own; whatever a failed run
leaves there (CNI attachments first, then runc state, conmons, mounts, cgroups) is removed.

    sudo .venv/bin/python bench/lifecycle_floor.py [--runs 15]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import report  # noqa: E402
from bench.daemon_idle import Daemon  # noqa: E402
from bench.pod_lifecycle import BUSYBOX, PAUSE, Client, helpers, start_crib, stop_daemons  # noqa: E402
from bench.report import Samples  # noqa: E402
from crib import config as crib_config  # noqa: E402
from crib.cni import network as cni  # noqa: E402
from crib.cni.config import NetworkConfigList, find_plugin, load_network  # noqa: E402
from crib.proto.cri import api_pb2  # noqa: E402
from crib.runtime import conmon, rootfs  # noqa: E402
from crib.runtime.rootfs import MS_NODEV, MS_NOEXEC, MS_NOSUID, mount, unmount  # noqa: E402
from crib.sandbox import netns  # noqa: E402
from crib.sandbox.sandboxes import SHM_SIZE  # noqa: E402
from e2e.harness.cleanup import clean_tree  # noqa: E402
from e2e.harness.registry import Registry  # noqa: E402
from e2e.images import builder  # noqa: E402
from e2e.images.builder import Entry, ImageRecipe, LayerSpec  # noqa: E402
from e2e.images.registry_client import RegistryClient  # noqa: E402

TIMEOUT_S = 60.0
EXIT_WAIT_S = 10.0

# (row of the table, crib's figure, the floor's figure): crib's call beside what it must do.
PAIRS = [
    ("StartContainer / runc create + start", "StartContainer", "runc create + start"),
    ("StartContainer / conmon (runc create) + runc start", "StartContainer", "conmon + runc start"),
    ("ExecSync true, warm / runc exec", "ExecSync true (warm)", "runc exec true (warm)"),
    ("ExecSync true, warm / runc exec -d --process", "ExecSync true (warm)", "runc exec -d (warm)"),
    ("first ExecSync / first runc exec", "ExecSync true (first)", "runc exec true (first, runc-started)"),
    ("first ExecSync / first runc exec -d", "ExecSync true (first)", "runc exec -d (first, conmon-started)"),
    (
        "RunPodSandbox / shm, netns, then CNI ADD ∥ (rootfs, pause run)",
        "RunPodSandbox",
        "RunPodSandbox's work, as crib does it",
    ),
    (
        "RunPodSandbox / the same one after another",
        "RunPodSandbox",
        "RunPodSandbox's work, one after another",
    ),
    ("StopPodSandbox / kill, CNI DEL, netns and shm unmounted", "StopPodSandbox", "StopPodSandbox's work"),
]
# The floors' parts, shown alone (no crib figure beside them).
PARTS = [
    "conmon until sync",
    "runc start (after conmon)",
    "shm mount",
    "netns create",
    "CNI ADD",
    "pause rootfs overlay mount",
    "pause runc run --detach",
    "runc kill --all + pause exit",
    "CNI DEL",
    "netns remove",
    "shm unmount",
]


# --- what the floors copy from crib (pure) ----------------------------------------------------------


def floor_spec(
    spec: dict[str, Any],
    bundle: Path,
    container_id: str,
    netns_path: str = "",
    root: Path | None = None,
    sources: dict[str, str] | None = None,
) -> dict[str, Any]:
    """crib's OCI spec for a floor container: the rootfs the original's bundle points at (as an
    absolute path, the copy lives elsewhere) or `root`, a cgroup of its own beside the
    original's (same parent, so the same hierarchy to create and remove), with `netns_path`
    the network namespace the floor made instead of the pod's, and the mounts whose source is
    a key of `sources` (the pod's shm) from its value instead."""
    out = copy.deepcopy(spec)
    original = Path(out["root"]["path"])
    out["root"]["path"] = str(root or (original if original.is_absolute() else bundle / original))
    for m in out.get("mounts", []):
        m["source"] = (sources or {}).get(m.get("source", ""), m.get("source", ""))
    linux = out.setdefault("linux", {})
    path = linux.get("cgroupsPath", "")
    if path.count(":") == 2:  # the systemd driver's slice:prefix:name
        slice_, prefix, _ = path.split(":")
        linux["cgroupsPath"] = f"{slice_}:{prefix}:{container_id}"
    elif path:
        linux["cgroupsPath"] = f"{path.rsplit('/', 1)[0]}/{container_id}"
    if netns_path:
        network = [ns for ns in linux.get("namespaces", []) if ns.get("type") == "network"]
        if not network:
            raise ValueError("the spec has no network namespace to point at the floor's")
        for ns in network:
            ns["path"] = netns_path
    return out


def floor_conmon_args(
    args: Sequence[str], replace: Sequence[tuple[str, str]], crib_paths: Sequence[str]
) -> list[str]:
    """conmon's arguments as crib gave them, with crib's container-specific strings replaced
    in order (`replace`: the longest first, e.g. its container dir before its ID). Any of
    `crib_paths` (crib's state dir, the original's ID) still left means an argument the floor
    would share with crib's container: refused, the floor must never touch crib's files."""
    out = []
    for arg in args:
        rewritten = arg
        for old, new in replace:
            rewritten = rewritten.replace(old, new)
        out.append(rewritten)
    left = [a for a in out if any(p in a for p in crib_paths)]
    if left:
        raise ValueError(f"conmon arguments still naming crib's container: {left}")
    return out


def cni_env(command: str, att: cni.Attachment, bin_dirs: list[str]) -> dict[str, str]:
    """The environment crib gives a CNI plugin (crib/cni/network.py)."""
    return {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": att.container_id,
        "CNI_NETNS": att.netns,
        "CNI_IFNAME": att.ifname,
        "CNI_ARGS": att.cni_args(),
        "CNI_PATH": ":".join(bin_dirs),
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    }


def overlay_lowers(mountinfo: str, target: str) -> list[Path]:
    """The lower layers (top first) of the overlay mounted at `target`, from mountinfo."""
    for line in mountinfo.splitlines():
        before, _, after = line.partition(" - ")
        fields, super_fields = before.split(), after.split()
        if len(fields) > 4 and fields[4] == target and super_fields[:1] == ["overlay"]:
            for option in super_fields[2].split(","):
                if option.startswith("lowerdir="):
                    return [Path(p) for p in option.removeprefix("lowerdir=").split(":")]
    raise ValueError(f"no overlay with lower layers mounted at {target}")


# --- the floors' processes -------------------------------------------------------------------------


def ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def wait_exit(pid: int, timeout: float = EXIT_WAIT_S) -> bool:
    """Bounded: the process has exited (pidfd readable), and is reaped when it is our child
    (this process is a subreaper, as cribd is, so detached containers and execs re-parent here)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return False
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PIDFD, fd, os.WEXITED)
        return True
    finally:
        os.close(fd)


def read_pid(path: Path) -> int:
    return int(path.read_text().strip())


@dataclass
class Floors:
    """The floors' own dir, laid out as a crib test dir is (runc's state under
    state/runtime/runc, conmons and netns below it) so that e2e's clean_tree finds all of it."""

    dir: Path
    runc: str
    crib_runc_root: Path
    net: NetworkConfigList
    bin_dirs: list[str]
    # Pod ID -> (its attachment, ADD's result) until its DEL: what a failure must release.
    attached: dict[str, tuple[cni.Attachment, dict[str, Any]]] = field(default_factory=dict)
    # Every floor container's cgroupsPath: runc deletes them, cleanup checks it did.
    cgroups: set[str] = field(default_factory=set)

    @property
    def runc_root(self) -> Path:
        return self.dir / "state" / "runtime" / "runc"

    def container_dir(self, container_id: str) -> Path:
        return self.dir / "containers" / container_id

    def run_runc(self, *args: str, root: Path | None = None) -> None:
        """runc with its output to /dev/null: a created container inherits runc's stdio, and a
        pipe would stay open as long as it runs. Errors go to a JSON log, read on failure."""
        log = self.dir / "runc.log"
        argv = [self.runc, f"--root={root or self.runc_root}", f"--log={log}", "--log-format=json", *args]
        code = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=TIMEOUT_S,
        ).returncode
        if code != 0:
            tail = log.read_text().splitlines()[-3:] if log.exists() else []
            raise RuntimeError(f"runc {args[0]} exited {code}: {tail}")

    def write_bundle(self, container_id: str, spec: dict[str, Any]) -> Path:
        bundle = self.container_dir(container_id) / "bundle"
        bundle.mkdir(parents=True, exist_ok=True)  # a pause's rootfs is mounted in it already
        self.cgroups.add(spec.get("linux", {}).get("cgroupsPath", ""))
        (bundle / "config.json").write_text(json.dumps(spec))
        return bundle

    def delete(self, container_id: str, init_pid: int = 0) -> None:
        self.run_runc("delete", "--force", container_id)
        if init_pid:
            wait_exit(init_pid)
        rootfs.unmount_all_under(self.container_dir(container_id))  # a pod's rootfs and shm
        shutil.rmtree(self.container_dir(container_id), ignore_errors=True)

    # --- CNI, as crib/cni/network.py runs it ----------------------------------------------------

    def attachment(self, pod_id: str, ns: Path) -> cni.Attachment:
        """The CNI_ARGS crib gives (the pod's names); no capability args, as crib has none for
        a pod without port mappings, DNS, bandwidth or a node pod CIDR."""
        return cni.Attachment(
            container_id=pod_id,
            netns=str(ns),
            args={
                "K8S_POD_NAMESPACE": "bench",
                "K8S_POD_NAME": f"floor-{pod_id[:8]}",
                "K8S_POD_INFRA_CONTAINER_ID": pod_id,
                "K8S_POD_UID": uuid.uuid4().hex,
            },
        )

    def _plugin(
        self, command: str, plugin: dict[str, Any], conf: dict[str, Any], att: cni.Attachment
    ) -> bytes:
        binary = find_plugin(plugin["type"], self.bin_dirs)
        if binary is None:
            raise RuntimeError(f"CNI plugin {plugin['type']} not found in {self.bin_dirs}")
        done = subprocess.run(
            [str(binary)],
            input=json.dumps(conf).encode(),
            env=cni_env(command, att, self.bin_dirs),
            capture_output=True,
            timeout=TIMEOUT_S,
        )
        if done.returncode != 0:
            raise RuntimeError(f"CNI {plugin['type']} {command}: {done.stdout!r} {done.stderr!r}")
        return done.stdout

    def cni_add(self, att: cni.Attachment) -> None:
        prev: dict[str, Any] | None = None
        # Recorded before the plugins run: a failure midway must still DEL what they took.
        self.attached[att.container_id] = (att, {})
        for plugin in self.net.plugins:
            out = self._plugin("ADD", plugin, cni.plugin_config(self.net, plugin, prev, att), att)
            if out.strip():
                prev = json.loads(out)
        self.attached[att.container_id] = (att, prev or {})

    def cni_del(self, pod_id: str) -> None:
        att, result = self.attached[pod_id]
        for plugin in reversed(self.net.plugins):
            self._plugin("DEL", plugin, cni.plugin_config(self.net, plugin, result or None, att), att)
        del self.attached[pod_id]

    def cleanup(self) -> None:
        """Whatever a failed run left: CNI attachments released (veths, IPs, iptables rules),
        then runc's containers, conmons, netns mounts and the dir (clean_tree)."""
        for pod_id in list(self.attached):
            try:
                self.cni_del(pod_id)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                print(f"cleanup: CNI DEL of floor pod {pod_id[:12]}: {exc}", file=sys.stderr)
        clean_tree(self.dir)
        for left in leftover_cgroups(self.cgroups):
            print(f"cleanup: removing floor cgroup {left} (runc left it)", file=sys.stderr)
            with contextlib.suppress(OSError):
                left.rmdir()


def leftover_cgroups(paths: set[str], base: Path = Path("/sys/fs/cgroup")) -> list[Path]:
    """The dirs of these cgroupfs cgroupsPaths that still exist, in every v1 hierarchy and the
    unified one (the systemd driver's slice:prefix:name form is systemd's to remove)."""
    if (base / "cgroup.procs").exists():  # cgroup v2 alone
        hierarchies = [base]
    else:  # v1 (hybrid here): a hierarchy per controller, and the unified one
        hierarchies = [d for d in base.iterdir() if (d / "cgroup.procs").exists()]
    rel = [p.lstrip("/") for p in paths if p and p.count(":") != 2]
    return [h / r for h in hierarchies for r in rel if (h / r).is_dir()]


@dataclass
class Template:
    """crib's template pod and its running container, which the floors copy."""

    pod: str
    pod_config: api_pb2.PodSandboxConfig
    container: str
    pause_spec: dict[str, Any]
    pause_bundle: Path
    pause_lowers: list[Path]  # the pause image's layers, top first, as crib mounts them
    pause_shm: Path
    spec: dict[str, Any]
    bundle: Path
    conmon_args: list[str]
    state: Path  # crib's state dir


# --- StartContainer floors -------------------------------------------------------------------------


def start_runc(f: Floors, t: Template) -> tuple[str, int, float]:
    """(a): `runc create` + `runc start`; returns (ID, init pid, ms)."""
    cid = secrets.token_hex(32)
    bundle = f.write_bundle(cid, floor_spec(t.spec, t.bundle, cid))
    pid_file = f.container_dir(cid) / "pidfile"
    t0 = time.perf_counter()
    f.run_runc("create", f"--bundle={bundle}", f"--pid-file={pid_file}", cid)
    f.run_runc("start", cid)
    return cid, read_pid(pid_file), ms_since(t0)


def start_conmon(f: Floors, t: Template) -> tuple[str, int, dict[str, float]]:
    """(b): conmon with crib's arguments (it runs `runc create`), its sync pipe read by crib's
    reader, then `runc start`; returns (ID, conmon's pid, {figure: ms})."""
    cid = secrets.token_hex(32)
    cdir = f.container_dir(cid)
    f.write_bundle(cid, floor_spec(t.spec, t.bundle, cid))
    exits = f.dir / "exits"
    for d in (exits, cdir / "sock", cdir / "persist"):
        d.mkdir(parents=True, exist_ok=True)
    crib_dir = t.state / "containers" / t.container
    log_flag = next((a for a in t.conmon_args if a.startswith("k8s-file:")), "")
    replace = [
        (str(crib_dir), str(cdir)),
        (str(t.state / "exits"), str(exits)),
        (f"--root={f.crib_runc_root}", f"--root={f.runc_root}"),
        *([(log_flag, f"k8s-file:{cdir / 'ctr.log'}")] if log_flag else []),
        (t.container, cid),
    ]
    args = floor_conmon_args(t.conmon_args, replace, [str(t.state), t.container])
    t0 = time.perf_counter()
    data, stderr = conmon._spawn(args, TIMEOUT_S, str(cdir))
    pid = json.loads(data.splitlines()[0]).get("data", -1) if data.strip() else -1
    if not isinstance(pid, int) or pid <= 0:
        raise RuntimeError(f"conmon did not create the container: {data!r} {stderr}")
    conmon_pid = read_pid(cdir / "conmon.pid")
    t1 = time.perf_counter()
    f.run_runc("start", cid)
    t2 = time.perf_counter()
    return (
        cid,
        conmon_pid,
        {
            "conmon + runc start": (t2 - t0) * 1000,
            "conmon until sync": (t1 - t0) * 1000,
            "runc start (after conmon)": (t2 - t1) * 1000,
        },
    )


# --- ExecSync floors ---------------------------------------------------------------------------------


def exec_plain(f: Floors, root: Path, cid: str) -> float:
    """`runc exec <id> true`: runc waits for the process and copies its stdio."""
    t0 = time.perf_counter()
    done = subprocess.run(
        [f.runc, f"--root={root}", "exec", cid, "true"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=TIMEOUT_S,
    )
    ms = ms_since(t0)
    if done.returncode != 0:
        raise RuntimeError(f"runc exec exited {done.returncode}: {done.stderr!r}")
    return ms


def exec_detached(f: Floors, root: Path, cid: str, process_file: Path) -> float:
    """`runc exec -d --process --pid-file` as crib runs it: stdout and stderr are pipes the
    process inherits; runc returns once it started it; the process (re-parented here) is
    waited for through a pidfd and the pipes read until they close."""
    pid_file = f.dir / f"exec-{secrets.token_hex(4)}.pid"
    t0 = time.perf_counter()
    runc = subprocess.Popen(
        [
            f.runc,
            f"--root={root}",
            "exec",
            "--detach",
            "--process",
            str(process_file),
            "--pid-file",
            str(pid_file),
            cid,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        code = runc.wait(TIMEOUT_S)
        pid = read_pid(pid_file) if code == 0 else 0
        _, err = runc.communicate(timeout=TIMEOUT_S)  # EOF once the process has exited
        if pid and not wait_exit(pid):
            raise RuntimeError(f"exec'd process {pid} did not exit")
    finally:
        if runc.poll() is None:
            runc.kill()
            runc.wait()
        pid_file.unlink(missing_ok=True)
    ms = ms_since(t0)
    if code != 0:
        raise RuntimeError(f"runc exec -d exited {code}: {err!r}")
    return ms


# --- RunPodSandbox and StopPodSandbox floors ------------------------------------------------------


@dataclass
class FloorPod:
    """A floor pod's files in a dir of its own: the netns, shm and rootfs mounts and the bundle."""

    id: str
    dir: Path
    pause_pid: int = 0

    @property
    def netns(self) -> Path:
        return self.dir / "netns"

    @property
    def shm(self) -> Path:
        return self.dir / "shm"

    @property
    def rootfs(self) -> Path:
        return self.dir / "bundle" / "rootfs"


def new_pod(f: Floors) -> FloorPod:
    pod_id = secrets.token_hex(32)
    return FloorPod(pod_id, f.container_dir(pod_id))


def _shm(pod: FloorPod) -> None:
    """The pod's /dev/shm, a tmpfs mounted as crib mounts it."""
    pod.shm.mkdir(parents=True)
    mount("shm", str(pod.shm), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"mode=1777,{SHM_SIZE}")


def _pause(f: Floors, t: Template, pod: FloorPod) -> float:
    """The pause as crib starts it: an overlay rootfs of the pause image's layers (crib's
    mount_overlay, the syscall), then `runc run --detach` with runc's stdio /dev/null, in the
    floor's netns and with the floor's shm. Returns the overlay mount's ms."""
    t0 = time.perf_counter()
    rootfs.mount_overlay(t.pause_lowers, pod.dir / "upper", pod.dir / "work", pod.rootfs)
    overlay = ms_since(t0)
    spec = floor_spec(
        t.pause_spec, t.pause_bundle, pod.id, str(pod.netns), pod.rootfs, {str(t.pause_shm): str(pod.shm)}
    )
    bundle = f.write_bundle(pod.id, spec)
    pid_file = pod.dir / "pidfile"
    f.run_runc("run", "--detach", f"--bundle={bundle}", f"--pid-file={pid_file}", pod.id)
    pod.pause_pid = read_pid(pid_file)
    return overlay


def run_pod_sequential(f: Floors, t: Template) -> tuple[FloorPod, dict[str, float]]:
    """RunPodSandbox's work one step after another, each timed alone."""
    pod = new_pod(f)
    t0 = time.perf_counter()
    _shm(pod)
    t1 = time.perf_counter()
    netns.create(pod.netns)
    t2 = time.perf_counter()
    f.cni_add(f.attachment(pod.id, pod.netns))
    t3 = time.perf_counter()
    overlay = _pause(f, t, pod)
    t4 = time.perf_counter()
    return pod, {
        "shm mount": (t1 - t0) * 1000,
        "netns create": (t2 - t1) * 1000,
        "CNI ADD": (t3 - t2) * 1000,
        "pause rootfs overlay mount": overlay,
        "pause runc run --detach": (t4 - t3) * 1000 - overlay,
        "RunPodSandbox's work, one after another": (t4 - t0) * 1000,
    }


def run_pod_parallel(f: Floors, t: Template) -> tuple[FloorPod, float]:
    """As crib: shm and netns, then CNI ADD beside the pause's rootfs and `runc run` (both need
    only the netns)."""
    pod = new_pod(f)
    errors: list[BaseException] = []

    def pause() -> None:
        try:
            _pause(f, t, pod)
        except BaseException as exc:
            errors.append(exc)

    t0 = time.perf_counter()
    _shm(pod)
    netns.create(pod.netns)
    thread = threading.Thread(target=pause)
    thread.start()
    try:
        f.cni_add(f.attachment(pod.id, pod.netns))
    finally:
        thread.join(TIMEOUT_S * 2)
    ms = ms_since(t0)
    if errors:
        raise errors[0]
    return pod, ms


def stop_pod(f: Floors, pod: FloorPod) -> dict[str, float]:
    """As crib's StopPodSandbox of a pod with no container: kill the pause and see it exit,
    CNI DEL, the netns unmounted and removed, the shm unmounted. The pause's runc state and
    rootfs go after, untimed (crib removes them in RemovePodSandbox)."""
    t0 = time.perf_counter()
    f.run_runc("kill", "--all", pod.id, "KILL")
    if not wait_exit(pod.pause_pid):
        raise RuntimeError(f"floor pause {pod.pause_pid} did not exit")
    t1 = time.perf_counter()
    f.cni_del(pod.id)
    t2 = time.perf_counter()
    netns.remove(pod.netns)
    t3 = time.perf_counter()
    unmount(str(pod.shm))
    t4 = time.perf_counter()
    f.delete(pod.id)
    return {
        "runc kill --all + pause exit": (t1 - t0) * 1000,
        "CNI DEL": (t2 - t1) * 1000,
        "netns remove": (t3 - t2) * 1000,
        "shm unmount": (t4 - t3) * 1000,
        "StopPodSandbox's work": (t4 - t0) * 1000,
    }


# --- crib's side ---------------------------------------------------------------------------------------


class CribCalls:
    def __init__(self, client: Client, template: Template, image: str) -> None:
        self.c = client
        self.t = template
        self.image = image
        self.attempt = 0

    def create(self) -> str:
        self.attempt += 1
        ctr = api_pb2.ContainerConfig(
            metadata=api_pb2.ContainerMetadata(name="sleeper", attempt=self.attempt),
            image=api_pb2.ImageSpec(image=self.image),
            command=["/bin/sleep", "100000"],
            log_path=f"sleeper-{self.attempt}.log",
        )
        req = api_pb2.CreateContainerRequest(
            pod_sandbox_id=self.t.pod, config=ctr, sandbox_config=self.t.pod_config
        )
        return self.c.rt.CreateContainer(req, timeout=120).container_id

    def exec_true(self, cid: str) -> float:
        t0 = time.perf_counter()
        reply = self.c.rt.ExecSync(
            api_pb2.ExecSyncRequest(container_id=cid, cmd=["true"], timeout=10), timeout=30
        )
        ms = ms_since(t0)
        if reply.exit_code != 0:
            raise RuntimeError(f"crib's ExecSync true exited {reply.exit_code}: {reply.stderr!r}")
        return ms

    def start_and_first_exec(self) -> dict[str, float]:
        cid = self.create()
        try:
            t0 = time.perf_counter()
            self.c.start(cid)
            start = ms_since(t0)
            first = self.exec_true(cid)
        finally:
            self.c.rt.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=0), timeout=60)
            self.c.rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid), timeout=60)
        return {"StartContainer": start, "ExecSync true (first)": first}

    def pod(self) -> dict[str, float]:
        cfg = self.c.pod_config()
        t0 = time.perf_counter()
        pod = self.c.runp(cfg)
        t1 = time.perf_counter()
        try:
            self.c.stopp(pod)
            t2 = time.perf_counter()
        finally:
            self.c.rmp(pod)
        return {"RunPodSandbox": (t1 - t0) * 1000, "StopPodSandbox": (t2 - t1) * 1000}


# --- the rounds -------------------------------------------------------------------------------------------


def daemon_path(pid: int) -> str:
    """The PATH a process runs with (cribd's: what crib's children search)."""
    for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        if entry.startswith(b"PATH="):
            return entry[5:].decode()
    return os.defpath


def push_images(registry: Registry) -> None:
    """busybox and the pause (catatonit) as pod_lifecycle pushes them; crib alone runs here
    (its start_daemons would start containerd too)."""
    with RegistryClient(registry.url) as reg:
        reg.push_image("bench/busybox", "1", builder.busybox_image())
        catatonit = Entry("catatonit", data=Path("/usr/bin/catatonit").read_bytes(), mode=0o755)
        pause = ImageRecipe([LayerSpec([catatonit], "gzip")], entrypoint=["/catatonit", "-P"], cmd=None)
        reg.push_image("bench/pause", "1", builder.build_image(pause))


def make_template(d: Daemon, client: Client, image: str) -> Template:
    cfg = client.pod_config()
    pod = client.runp(cfg)
    cid = client.create(pod, cfg, image)
    client.start(cid)
    state = d.dir / "state"
    bundle, pause_bundle = state / "containers" / cid / "bundle", state / "containers" / pod / "bundle"
    pause_spec = json.loads((pause_bundle / "config.json").read_text())
    pause_root = floor_spec(pause_spec, pause_bundle, pod)["root"]["path"]
    conmons = [p for p in helpers(d) if cid.encode() in Path(f"/proc/{p}/cmdline").read_bytes()]
    if len(conmons) != 1:
        raise RuntimeError(f"expected one conmon for {cid}, found {conmons}")
    args = Path(f"/proc/{conmons[0]}/cmdline").read_bytes().decode().split("\0")[:-1]
    # Started by name: conmon is found on PATH as crib finds it.
    args[0] = shutil.which(args[0]) or args[0]
    return Template(
        pod=pod,
        pod_config=cfg,
        container=cid,
        pause_spec=pause_spec,
        pause_bundle=pause_bundle,
        pause_lowers=overlay_lowers(Path("/proc/self/mountinfo").read_text(), pause_root),
        pause_shm=state / "sandboxes" / pod / "shm",
        spec=json.loads((bundle / "config.json").read_text()),
        bundle=bundle,
        conmon_args=args,
        state=state,
    )


def one_round(f: Floors, t: Template, crib: CribCalls, process_file: Path, run: int) -> Samples:
    """Every figure once; within each group the floors and crib take turns going first."""
    samples: Samples = {"floor": {}, "crib": {}}

    def floor(figures: dict[str, float]) -> None:
        for k, v in figures.items():
            report.add(samples, "floor", k, v)

    def by_crib(figures: dict[str, float]) -> None:
        for k, v in figures.items():
            report.add(samples, "crib", k, v)

    def floor_a() -> None:
        cid, init, ms = start_runc(f, t)
        try:
            first = exec_plain(f, f.runc_root, cid)
        finally:
            f.delete(cid, init)
        floor({"runc create + start": ms, "runc exec true (first, runc-started)": first})

    def floor_b() -> None:
        cid, conmon_pid, figures = start_conmon(f, t)
        try:
            figures["runc exec -d (first, conmon-started)"] = exec_detached(f, f.runc_root, cid, process_file)
        finally:
            f.delete(cid)
            if not wait_exit(conmon_pid):
                raise RuntimeError(f"floor conmon {conmon_pid} did not exit")
            # Written by conmon as it ends.
            (f.dir / "exits" / cid).unlink(missing_ok=True)
        floor(figures)

    def floor_pods() -> None:
        pod, figures = run_pod_sequential(f, t)
        floor(figures)
        floor(stop_pod(f, pod))
        pod, ms = run_pod_parallel(f, t)
        floor({"RunPodSandbox's work, as crib does it": ms})
        stop_pod(f, pod)

    groups: list[list[Callable[[], None]]] = [
        [floor_a, floor_b, lambda: by_crib(crib.start_and_first_exec())],
        [
            lambda: floor({"runc exec true (warm)": exec_plain(f, f.crib_runc_root, t.container)}),
            lambda: floor(
                {"runc exec -d (warm)": exec_detached(f, f.crib_runc_root, t.container, process_file)}
            ),
            lambda: by_crib({"ExecSync true (warm)": crib.exec_true(t.container)}),
        ],
        [floor_pods, lambda: by_crib(crib.pod())],
    ]
    for group in groups:
        for step in report.in_turn(group, run):
            step()
    return samples


def table_samples(raw: Samples) -> Samples:
    """The table's rows: each crib call beside each of its floors, then the floors' parts."""
    out: Samples = {"floor": {}, "crib": {}}
    for row, crib_figure, floor_figure in PAIRS:
        out["floor"][row] = raw["floor"].get(floor_figure, [])
        out["crib"][row] = raw["crib"].get(crib_figure, [])
    for part in PARTS:
        out["floor"][f"(part) {part}"] = raw["floor"].get(part, [])
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=15)
    args = p.parse_args()
    runc = shutil.which("runc")
    if runc is None:
        print("runc is not installed", file=sys.stderr)
        return 1
    # Detached containers, conmons and exec'd processes re-parent here, as they do to cribd,
    # and are reaped through pidfds.
    conmon.become_subreaper()

    registry = Registry().start()
    daemons: list[Daemon] = []
    floors: Floors | None = None
    try:
        image = f"{registry.host}/{BUSYBOX}"
        push_images(registry)
        daemons.append(start_crib(registry))
        d = daemons[0]
        # The floors' runc, conmon and plugins look their helpers (iptables…) up on cribd's PATH.
        os.environ["PATH"] = daemon_path(d.proc.pid)
        client = Client(d)
        client.pull(image)
        client.pull(f"{registry.host}/{PAUSE}")
        template = make_template(d, client, image)
        cfg = crib_config.load(d.dir / "crib.toml")
        floors = Floors(
            Path(tempfile.mkdtemp(prefix="crib-lfloor-")),
            runc,
            template.state / "runtime" / "runc",
            load_network(cfg.cni.conf_dir, cfg.cni.bin_dirs, cfg.cni.network_name),
            cfg.cni.bin_dirs,
        )
        floors.runc_root.mkdir(parents=True)
        # The exec's process as crib builds it: the container's own, running `true`.
        process_file = floors.dir / "process.json"
        process_file.write_text(json.dumps({**template.spec["process"], "args": ["true"], "terminal": False}))
        crib = CribCalls(client, template, image)

        one_round(floors, template, crib, process_file, 0)  # warm-up, not counted
        raw: Samples = {"floor": {}, "crib": {}}
        for run in range(args.runs):
            for name, figures in one_round(floors, template, crib, process_file, run).items():
                for figure, values in figures.items():
                    for v in values:
                        report.add(raw, name, figure, v)
        rows = table_samples(raw)
        print(
            report.table(rows, "figure (ms): crib's call / its floor", ratio_of=[("crib", "floor")]),
            flush=True,
        )
        ratios = {k: round(v, 3) for k, v in report.ratios(rows, "crib", "floor").items()}
        path = report.save_raw(
            "lifecycle_floor", raw, runs=args.runs, pairs=PAIRS, ratios={"crib/floor": ratios}
        )
        print(f"raw samples: {path}")
    finally:
        if floors is not None:
            floors.cleanup()
        stop_daemons(daemons)
        registry.stop()
        reap_orphans()
    return 0


def reap_orphans(wait_s: float = 2.0) -> list[int]:
    """Reap what re-parented here and a failed run left (a killed floor pause, a conmon
    orphaned by cribd's end): as a subreaper, this process is their parent, and left to PID 1
    they would linger as zombies. Called once the daemons and registry are reaped, so every
    child left is such an orphan. Bounded."""
    reaped = []
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            res = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            break  # no children at all
        if res is None:
            time.sleep(0.05)  # a killed child not yet exited
            continue
        reaped.append(res.si_pid)
    return reaped


if __name__ == "__main__":
    sys.exit(main())
