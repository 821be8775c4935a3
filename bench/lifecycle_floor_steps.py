"""The floors of bench/lifecycle_floor.py: crib's runc, conmon and CNI work done again, without
crib, on copies of what crib made (its template pod's bundles, conmon's arguments, its CNI
network), each step timed. What each floor is and why: bench/lifecycle_floor.py."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import secrets
import select
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crib.cni import network as cni
from crib.cni.config import NetworkConfigList, find_plugin
from crib.container.exec_sync import detached_exec_args
from crib.proto.cri import api_pb2
from crib.runtime import conmon, rootfs
from crib.runtime.oci_runtime import OCIRuntime
from crib.runtime.rootfs import MS_NODEV, MS_NOEXEC, MS_NOSUID, mount, unmount
from crib.sandbox import netns
from crib.sandbox.sandboxes import SHM_SIZE
from e2e.harness.cleanup import clean_tree

TIMEOUT_S = 60.0
EXIT_WAIT_S = 10.0

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
            env=cni.plugin_env(command, att, self.bin_dirs),
            capture_output=True,
            timeout=TIMEOUT_S,
        )
        if done.returncode != 0:
            raise RuntimeError(f"CNI {plugin['type']} {command}: {done.stdout!r} {done.stderr!r}")
        return done.stdout

    def cni_add(self, att: cni.Attachment) -> dict[str, float]:
        """Each plugin's ADD in order, each given the previous result; returns each one's ms."""
        prev: dict[str, Any] | None = None
        took = {}
        # Recorded before the plugins run: a failure midway must still DEL what they took.
        self.attached[att.container_id] = (att, {})
        for plugin in self.net.plugins:
            t0 = time.perf_counter()
            out = self._plugin("ADD", plugin, cni.plugin_config(self.net, plugin, prev, att), att)
            took[f"CNI ADD: {plugin['type']}"] = ms_since(t0)
            if out.strip():
                prev = json.loads(out)
        self.attached[att.container_id] = (att, prev or {})
        return took

    def cni_del(self, pod_id: str) -> dict[str, float]:
        """Each plugin's DEL in reverse order, with ADD's result; returns each one's ms."""
        att, result = self.attached[pod_id]
        took = {}
        for plugin in reversed(self.net.plugins):
            t0 = time.perf_counter()
            self._plugin("DEL", plugin, cni.plugin_config(self.net, plugin, result or None, att), att)
            took[f"CNI DEL: {plugin['type']}"] = ms_since(t0)
        del self.attached[pod_id]
        return took

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
        detached_exec_args(OCIRuntime("runc", f.runc, root), cid, process_file, pid_file),
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
    """RunPodSandbox's work one step after another, each timed alone; and from those parts
    what it would take with the ADD and the pause overlapped perfectly (computed: the parallel
    run measured below can lose more than the shorter branch when the two collide)."""
    pod = new_pod(f)
    t0 = time.perf_counter()
    _shm(pod)
    t1 = time.perf_counter()
    netns.create(pod.netns)
    t2 = time.perf_counter()
    plugins = f.cni_add(f.attachment(pod.id, pod.netns))
    t3 = time.perf_counter()
    overlay = _pause(f, t, pod)
    t4 = time.perf_counter()
    return pod, {
        **plugins,
        "shm mount": (t1 - t0) * 1000,
        "netns create": (t2 - t1) * 1000,
        "CNI ADD": (t3 - t2) * 1000,
        "pause rootfs overlay mount": overlay,
        "pause runc run --detach": (t4 - t3) * 1000 - overlay,
        "RunPodSandbox's work, one after another": (t4 - t0) * 1000,
        "RunPodSandbox's work, overlapped perfectly": (t2 - t0 + max(t3 - t2, t4 - t3)) * 1000,
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


# pod_lifecycle.py's "10 pods in parallel, until all run".
BURST = 10


@dataclass
class Burst:
    """What a burst started, for its teardown (after a failure too): pods, and containers
    as (ID, conmon's pid)."""

    pods: list[FloorPod] = field(default_factory=list)
    containers: list[tuple[str, int]] = field(default_factory=list)


def in_parallel(one: Callable[[], None], timeout_s: float) -> float:
    """`one` in each of BURST threads at once; the ms until all are done. The first failure is
    raised once every thread has ended (or a thread still running after `timeout_s`)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            one()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(BURST)]
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout_s)
    ms = ms_since(t0)
    if errors:
        raise errors[0]
    if any(thread.is_alive() for thread in threads):
        raise RuntimeError(f"a burst thread did not finish in {timeout_s:.0f} s")
    return ms


def run_burst(f: Floors, t: Template, burst: Burst) -> float:
    """pod_lifecycle's parallel start as floors: in each of BURST threads a pod as crib runs
    it (run_pod_parallel), then a container as floor (b) starts one (conmon, `runc start`)."""

    def one() -> None:
        pod, _ = run_pod_parallel(f, t)
        burst.pods.append(pod)
        cid, conmon_pid, _ = start_conmon(f, t)
        burst.containers.append((cid, conmon_pid))

    return in_parallel(one, TIMEOUT_S * 3)


def teardown_burst(f: Floors, burst: Burst) -> None:
    """The burst's containers deleted (their conmons seen to exit), then its pods stopped as
    stop_pod does; untimed. What a failure leaves besides goes with Floors.cleanup."""
    for cid, conmon_pid in burst.containers:
        f.delete(cid)
        if not wait_exit(conmon_pid):
            raise RuntimeError(f"floor conmon {conmon_pid} did not exit")
        (f.dir / "exits" / cid).unlink(missing_ok=True)  # written by conmon as it ends
    for pod in burst.pods:
        stop_pod(f, pod)


def stop_pod(f: Floors, pod: FloorPod) -> dict[str, float]:
    """As crib's StopPodSandbox of a pod with no container: kill the pause and see it exit,
    CNI DEL, the netns unmounted and removed, the shm unmounted. The pause's runc state and
    rootfs go after, untimed (crib removes them in RemovePodSandbox)."""
    t0 = time.perf_counter()
    f.run_runc("kill", "--all", pod.id, "KILL")
    if not wait_exit(pod.pause_pid):
        raise RuntimeError(f"floor pause {pod.pause_pid} did not exit")
    t1 = time.perf_counter()
    plugins = f.cni_del(pod.id)
    t2 = time.perf_counter()
    netns.remove(pod.netns)
    t3 = time.perf_counter()
    unmount(str(pod.shm))
    t4 = time.perf_counter()
    f.delete(pod.id)
    return {
        **plugins,
        "runc kill --all + pause exit": (t1 - t0) * 1000,
        "CNI DEL": (t2 - t1) * 1000,
        "netns remove": (t3 - t2) * 1000,
        "shm unmount": (t4 - t3) * 1000,
        "StopPodSandbox's work": (t4 - t0) * 1000,
    }
