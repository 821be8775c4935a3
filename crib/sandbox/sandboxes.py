"""Pod sandboxes: a network namespace wired by CNI plus a pause container, and their lifecycle.

RunPodSandbox reserves the pod's name, makes the netns, then runs CNI ADD and
starts the pause container side by side (both only need the netns). Any
failure undoes every step already taken, in reverse, before the error is
returned, so a failed pod leaves no netns, IP, process, mount or record.
Records are written at each state change, and a restarted cribd rebuilds the
in-memory view from them and from what runc and conmon report.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from crib import failpoints, first_use
from crib.background import Background
from crib.cni import network as cni
from crib.cni.config import NetworkConfigList, NetworkNotReady, load_network
from crib.config import Config
from crib.errors import AlreadyExists, CribError, FailedPrecondition, NotFound, Unavailable
from crib.image_service.image_store import ImageRecord
from crib.image_service.images import Images
from crib.log_setup import get_logger
from crib.proto.cri import api_pb2
from crib.runtime import lsm, selinux, userns
from crib.runtime.cgroup_stats import (
    CgroupDirs,
    CgroupStats,
    cgroup_dirs,
    cri_stats,
    net_dev_path,
    network_stats,
    process_count,
)
from crib.runtime.rootfs import MS_NODEV, MS_NOEXEC, MS_NOSUID, mount, unmount, unmount_all_under
from crib.runtime.runtime_env import RuntimeEnv, wait_for_exit
from crib.sandbox import netns, pod_config, pod_files
from crib.store import disk_record
from crib.store.index import Index, ListedState
from crib.store.state_store import StateStore

log = get_logger("crib.sandbox")

_KIND = "sandbox"
CREATING = "creating"
READY = "ready"
NOTREADY = "notready"
STOP_TIMEOUT_S = 10.0
SHM_SIZE = "size=65536k"
# containerd's: the pause process should be the last one the OOM killer picks.


@dataclass
class Sandbox(ListedState):
    id: str
    config_b64: str
    handler: str
    created_at: int
    state: str = NOTREADY
    netns: str = ""
    network: str = ""
    ips: list[str] = field(default_factory=list)
    pid: int = 0
    conmon_pid: int = 0
    image_id: str = ""
    chain_ids: list[str] = field(default_factory=list)
    # Set once StopPodSandbox has released the network: never again.
    network_released: bool = False
    # The pause's runtime state, cgroup and rootfs mount are gone (done when it ends, as
    # containerd deletes a sandbox's task when it exits); its files go at RemovePodSandbox.
    torn_down: bool = False
    # SELinux: the pause's labels, which the pod's containers start from ("": SELinux off).
    process_label: str = ""
    mount_label: str = ""
    _config: api_pb2.PodSandboxConfig | None = field(default=None, repr=False, compare=False)
    _exited: asyncio.Event | None = field(default=None, repr=False, compare=False)
    # (state, serialized list item): list replies reuse it while the state holds.
    _item: tuple[str, bytes] | None = field(default=None, repr=False, compare=False)
    # (what the status shows that can change, its containers' too; the reply's fields 1 and
    # 3, framed): PodSandboxStatus reuses it until one of those changes.
    _status: tuple[tuple[Any, ...], bytes] | None = field(default=None, repr=False, compare=False)
    # The pod cgroup's dirs (from cgroup_parent, fixed) and the stats' attributes (from the
    # config, which never changes): every stats poll needs them.
    _cgroup: CgroupDirs | None = field(default=None, repr=False, compare=False)
    _attributes: api_pb2.PodSandboxAttributes | None = field(default=None, repr=False, compare=False)
    # A StopPodSandbox has begun: the pause may be dying while it still looks alive, and
    # its exit is expected, not news.
    stop_requested: bool = field(default=False, repr=False, compare=False)

    @property
    def config(self) -> api_pb2.PodSandboxConfig:
        if self._config is None:
            self._config = api_pb2.PodSandboxConfig.FromString(base64.b64decode(self.config_b64))
        return self._config

    @property
    def exited(self) -> asyncio.Event:
        if self._exited is None:
            self._exited = asyncio.Event()
        return self._exited

    @property
    def namespace_options(self) -> api_pb2.NamespaceOption:
        return self.config.linux.security_context.namespace_options

    @property
    def host_network(self) -> bool:
        return self.namespace_options.network == api_pb2.NODE

    def record(self) -> dict[str, Any]:
        # Not asdict(): it deep-copies, and the runtime fields (events) do not copy.
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if not f.name.startswith("_") and f.name != "stop_requested"
        }

    @property
    def reservation(self) -> str:
        return reservation_key(self.config.metadata)


def reservation_key(meta: api_pb2.PodSandboxMetadata) -> str:
    return f"{meta.name}_{meta.namespace}_{meta.uid}_{meta.attempt}"


def pause_alive(pid: int, sandbox_id: str) -> bool:
    """True if `pid` still is this pod's pause process (pids get reused): its cgroup names the pod."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            cgroups = f.read()
        with open(f"/proc/{pid}/stat") as f:
            zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False
    return sandbox_id in cgroups and not zombie


class PodContainers(Protocol):
    """What stopping and removing a pod needs of its containers (the container code has it)."""

    async def stop_all_in_pod(self, sandbox_id: str, timeout: float) -> None: ...

    async def remove_all_in_pod(self, sandbox_id: str) -> None: ...


class Sandboxes:
    def __init__(
        self,
        config: Config,
        env: RuntimeEnv,
        images: Images,
        store: StateStore,
        pod_cidrs: Callable[[], list[str]],
        apparmor: lsm.AppArmor,
        selinux_: selinux.SELinux | None = None,
    ) -> None:
        self.config = config
        self.apparmor = apparmor
        # Shared with the containers, which take their pod's labels.
        self.selinux = selinux_ or selinux.SELinux.probe()
        self.env = env
        self.images = images
        self.store = store
        # The node's pod CIDRs (UpdateRuntimeConfig), handed to CNI ADD as ipRanges.
        self.pod_cidrs = pod_cidrs
        self.dir = env.state / "sandboxes"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cni_cache = cni.CNICache(env.root / "cni" / "results")
        self.index: Index[Sandbox] = Index("pod sandbox")
        self._locks: dict[str, asyncio.Lock] = {}
        self._incomplete: list[str] = []
        self._background = Background()

    # --- queries ------------------------------------------------------------------------------

    def get(self, sandbox_id: str) -> Sandbox:
        sandbox = self.find(sandbox_id)
        if sandbox is None:
            raise NotFound(f"pod sandbox {sandbox_id!r} not found")
        return sandbox

    def find(self, sandbox_id: str) -> Sandbox | None:
        """By full ID or a unique ID prefix."""
        return self.index.find(sandbox_id)

    def list(self) -> list[Sandbox]:
        return list(self.index)

    def images_in_use(self) -> tuple[set[str], set[str]]:
        return {s.image_id for s in self.index}, {c for s in self.index for c in s.chain_ids}

    def _lock(self, sandbox_id: str) -> asyncio.Lock:
        return self._locks.setdefault(sandbox_id, asyncio.Lock())

    def _persist(self, sandbox: Sandbox) -> None:
        self.store.put(_KIND, sandbox.id, sandbox.record())

    def sandbox_dir(self, sandbox_id: str) -> Path:
        return self.dir / sandbox_id

    def netns_path(self, sandbox_id: str) -> Path:
        return self.sandbox_dir(sandbox_id) / "netns"

    def shm_path(self, sandbox_id: str) -> Path:
        return self.sandbox_dir(sandbox_id) / "shm"

    def userns_path(self, sandbox_id: str) -> Path:
        """Where a pod with its own user namespace keeps it pinned (until RemovePodSandbox)."""
        return self.sandbox_dir(sandbox_id) / "userns"

    def rootfs_userns(self, sandbox: Sandbox) -> tuple[Path, int, int] | None:
        """What prepare_rootfs needs to idmap a rootfs of this pod (None: the node's IDs)."""
        pod = pod_config.pod_userns(sandbox.config)
        return None if pod is None else (self.userns_path(sandbox.id), *pod.root())

    # --- the pause image ------------------------------------------------------------------------

    async def pause_image(self) -> ImageRecord:
        name = self.config.image.sandbox_image
        record = self.images.find(name)
        if record is not None:
            return record
        if self.config.image.build_sandbox_image:
            # Imported when the image is built, once a node's life: the tar writer and the
            # image loader stay out of an idle cribd's memory (issue 17).
            from crib.sandbox import pause_image  # noqa: PLC0415

            return await pause_image.build(self.images, name)
        return await self.images.pull(name)

    # --- RunPodSandbox --------------------------------------------------------------------------

    async def run(self, config: api_pb2.PodSandboxConfig, handler: str) -> str:
        pod_config.validate(config)
        self.apparmor.check_pod(config.linux.security_context.apparmor)
        runtime = self.env.runtime(handler)
        supported = self.env.handler_info(handler).user_namespaces
        userns.require_support(pod_config.pod_userns(config), supported, runtime.handler, "RunPodSandbox")
        key = reservation_key(config.metadata)
        if (holder := self.index.holder(key)) is not None:
            raise AlreadyExists(f"pod sandbox name {key!r} is reserved for {holder}; remove that pod first")
        labels = await asyncio.to_thread(
            self.selinux.pod_labels, config.linux.security_context.selinux_options, "RunPodSandbox"
        )
        sandbox_id = os.urandom(32).hex()  # secrets.token_hex(32), without its hmac and hashlib
        self.index.reserve(key, sandbox_id)
        sandbox = Sandbox(
            id=sandbox_id,
            config_b64=base64.b64encode(config.SerializeToString()).decode(),
            handler=runtime.handler,
            created_at=time.time_ns(),
            state=CREATING,
            process_label=labels.process if labels else "",
            mount_label=labels.mount if labels else "",
        )
        # An undo step may return a coroutine (work off the loop): unmounting a netns alone can
        # keep a thread 250 ms.
        undo: list[Callable[[], Any]] = [lambda: self.selinux.release(sandbox.process_label)]
        try:
            async with self._lock(sandbox_id):
                await self._run(sandbox, runtime, undo)
        except BaseException as exc:
            log.info("sandbox.run_failed", pod=sandbox_id, name=key, error=getattr(exc, "message", repr(exc)))
            for step in reversed(undo):
                try:
                    result = step()
                    if asyncio.iscoroutine(result):
                        await result
                except Exception as undo_exc:
                    log.warning("sandbox.undo_failed", pod=sandbox_id, error=repr(undo_exc))
            self.index.drop(sandbox_id)
            self.store.forget(_KIND, sandbox_id)
            self.index.release(key, sandbox_id)
            self._locks.pop(sandbox_id, None)
            raise
        log.info("sandbox.ready", pod=sandbox_id, name=key, ips=sandbox.ips, netns=sandbox.netns)
        return sandbox_id

    async def _run(self, sandbox: Sandbox, runtime: Any, undo: list[Callable[[], Any]]) -> None:
        config = sandbox.config
        image = await self.pause_image()
        sandbox.image_id = image.id
        sandbox.chain_ids = [layer.chain_id for layer in image.layers]
        host_network = sandbox.host_network
        host_ipc = sandbox.namespace_options.ipc == api_pb2.NODE
        net = None
        if not host_network:
            try:
                net = load_network(
                    self.config.cni.conf_dir, self.config.cni.bin_dirs, self.config.cni.network_name
                )
            except NetworkNotReady as exc:
                raise FailedPrecondition(f"the pod network is not ready: {exc}") from None
            sandbox.network = net.name
        hostname = pod_files.pod_hostname(config, host_network)
        resolv = pod_files.resolv_conf(config.dns_config)

        directory = self.sandbox_dir(sandbox.id)
        directory.mkdir(parents=True)
        undo.append(lambda: asyncio.to_thread(shutil.rmtree, directory, ignore_errors=True))
        # What a start-up that lost the state store needs to find the pod again (a small
        # file in the state dir, written on the loop like the pod's files below).
        disk_record.write(directory, sandbox.record())
        await failpoints.hit("sandbox.dir")
        # Recorded from the start: a crash midway leaves a record that
        # start-up finds and cleans up, never an untracked netns or process.
        self.index.add(sandbox.id, sandbox)
        self._persist(sandbox)

        pod_files.write(directory, "resolv.conf", resolv)
        pod_files.write(directory, "hostname", hostname + "\n")
        # Written once: it is bind-mounted (by inode) while the pause starts.
        # The kubelet mounts its own /etc/hosts into containers of non-host-network pods.
        pod_files.write(directory, "hosts", pod_files.hosts(host_network, hostname, []))
        own_userns = pod_config.pod_userns(config)
        if own_userns is not None:
            # Bound into every container unmapped: owned by the pod's root, they are root's inside.
            for name in ("resolv.conf", "hostname", "hosts"):
                os.chown(directory / name, *own_userns.root())
        if not host_ipc:
            shm = self.shm_path(sandbox.id)
            shm.mkdir()
            await asyncio.to_thread(
                mount, "shm", str(shm), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"mode=1777,{SHM_SIZE}"
            )
            undo.append(lambda: asyncio.to_thread(unmount, str(shm)))
        if sandbox.mount_label:
            # Bound into every container (containerd relabels them likewise).
            shared = [directory / n for n in ("resolv.conf", "hostname", "hosts")]
            shared += [] if host_ipc else [self.shm_path(sandbox.id)]
            for path in shared:
                await asyncio.to_thread(selinux.relabel, str(path), sandbox.mount_label, "RunPodSandbox")

        ns = None if host_network else self.netns_path(sandbox.id)
        if own_userns is not None:
            # The netns is made inside the user namespace, as containerd does, so that it owns it.
            pinned = self.userns_path(sandbox.id)
            await asyncio.to_thread(userns.pin, own_userns, pinned, ns)
            undo.append(lambda: asyncio.to_thread(userns.unpin, pinned))
        elif ns is not None:
            await asyncio.to_thread(netns.create, ns)
        if ns is not None:
            undo.append(lambda: asyncio.to_thread(netns.remove, ns))
            sandbox.netns = str(ns)
            await failpoints.hit("sandbox.netns")

        async def attach() -> None:
            if net is None:
                return
            att = self._attachment(sandbox)
            result = await cni.add(net, att, self.config.cni.bin_dirs, self.cni_cache)
            undo.append(lambda: cni.delete(net, att, self.config.cni.bin_dirs, self.cni_cache))
            sandbox.ips = cni.result_ips(result)
            await failpoints.hit("sandbox.cni_add")

        async def start_pause() -> None:
            await self._start_pause(sandbox, runtime, image, hostname, undo)

        results = await asyncio.gather(attach(), start_pause(), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        await failpoints.hit("sandbox.state_write")
        sandbox.state = READY
        self._persist(sandbox)

    def _attachment(self, sandbox: Sandbox) -> cni.Attachment:
        meta = sandbox.config.metadata
        return cni.Attachment(
            container_id=sandbox.id,
            netns=sandbox.netns or str(self.netns_path(sandbox.id)),
            args={
                "K8S_POD_NAMESPACE": meta.namespace,
                "K8S_POD_NAME": meta.name,
                "K8S_POD_INFRA_CONTAINER_ID": sandbox.id,
                "K8S_POD_UID": meta.uid,
            },
            capability_args=pod_config.capability_args(sandbox.config, self.pod_cidrs()),
        )

    async def _start_pause(
        self, sandbox: Sandbox, runtime: Any, image: ImageRecord, hostname: str, undo: list[Callable[[], Any]]
    ) -> None:
        env = self.env
        lowers = [self.images.layers.path(c) for c in reversed(sandbox.chain_ids)]
        undo.append(lambda: asyncio.to_thread(env.cleanup, sandbox.id))
        await asyncio.to_thread(
            env.prepare_rootfs, sandbox.id, lowers, self.rootfs_userns(sandbox), sandbox.mount_label
        )
        await failpoints.hit("sandbox.pause_rootfs")
        # The pause container's spec builder (with oci_spec and seccomp's profile) is imported
        # at the first RunPodSandbox (first_use): an idle cribd does without it (issue 17).
        pause_spec = await first_use.module("crib.sandbox.pause_spec")
        spec = pause_spec.build(
            pause_spec.PauseContext(
                sandbox_id=sandbox.id,
                config=sandbox.config,
                netns=sandbox.netns,
                files_dir=self.sandbox_dir(sandbox.id),
                shm=self.shm_path(sandbox.id),
                rootfs=env.rootfs(sandbox.id),
                systemd=env.systemd,
                userns=pod_config.pod_userns(sandbox.config),
                userns_path=self.userns_path(sandbox.id),
                process_label=sandbox.process_label,
                mount_label=sandbox.mount_label,
            ),
            image.config.get("config") or {},
            hostname,
        )
        await asyncio.to_thread(env.write_spec, sandbox.id, spec)
        # No conmon for the pause: it has no output to log and its exit code
        # does not matter; cribd (a subreaper) watches its pid directly. One
        # monitor per pod instead of two, and one runc call instead of two.
        paths = env.conmon_paths(sandbox.id)
        undo.append(lambda: runtime.delete(sandbox.id, force=True))
        sandbox.pid = await runtime.run_detached(
            sandbox.id, env.bundle(sandbox.id), paths.pidfile, paths.dir / "runc.log"
        )
        sandbox.conmon_pid = 0
        self._watch(sandbox)
        await failpoints.hit("sandbox.pause_run")

    def _watch(self, sandbox: Sandbox) -> None:
        def on_exit() -> None:
            sandbox.exited.set()
            self._forget_net_dev(sandbox)
            if sandbox.state == READY:
                if not sandbox.stop_requested:
                    code = self.env.exit_code(sandbox.id)
                    log.warning("sandbox.pause_exited", pod=sandbox.id, exit_code=code)
                sandbox.state = NOTREADY
                self._persist(sandbox)
            self._background.start(self._tear_down(sandbox))

        if not self.env.watcher.watch(sandbox.pid, on_exit):
            sandbox.exited.set()

    async def _tear_down(self, sandbox: Sandbox) -> None:
        """An ended pause's runtime state, cgroup and rootfs mount go now, after the call that
        stopped it has answered, so that RemovePodSandbox (the kubelet's garbage collection,
        later) has only files to set aside. Best effort: remove() redoes what is left."""
        if self.find(sandbox.id) is not sandbox:
            return  # removed meanwhile (or a failed RunPodSandbox's): no lock to make for it
        async with self._lock(sandbox.id):
            # Not while RunPodSandbox is still making it (its undo steps own a failed pod).
            if sandbox.torn_down or sandbox.state == CREATING or self.find(sandbox.id) is not sandbox:
                return
            try:
                await failpoints.hit("sandbox.teardown")
                await self.env.tear_down(sandbox.id, sandbox.handler)
            except (CribError, OSError) as exc:
                log.warning("sandbox.teardown_failed", pod=sandbox.id, error=str(exc))
                return
            sandbox.torn_down = True
            self._persist(sandbox)

    # --- StopPodSandbox -------------------------------------------------------------------------

    async def stop(self, sandbox_id: str, containers: PodContainers) -> None:
        sandbox = self.find(sandbox_id)
        if sandbox is None:
            return  # idempotent: nothing to stop
        sandbox.stop_requested = True
        async with self._lock(sandbox.id):
            # The CRI: containers still running here "must be forcibly terminated" (the
            # kubelet has stopped them gracefully before); containerd also uses 0.
            await containers.stop_all_in_pod(sandbox.id, 0)
            await self._stop_pause(sandbox)
            if sandbox.state == READY:
                sandbox.state = NOTREADY
                self._persist(sandbox)
            await self._release_network(sandbox)
            shm = self.shm_path(sandbox.id)
            await asyncio.to_thread(unmount, str(shm))
        log.info("sandbox.stopped", pod=sandbox.id)

    async def _stop_pause(self, sandbox: Sandbox) -> None:
        if sandbox.exited.is_set() or not pause_alive(sandbox.pid, sandbox.id):
            return
        runtime = self.env.runtime(sandbox.handler)
        with contextlib.suppress(NotFound):
            await runtime.kill(sandbox.id, "KILL", all_processes=True)
        if not await wait_for_exit(sandbox.exited, STOP_TIMEOUT_S):
            raise Unavailable(
                f"pod sandbox {sandbox.id}: the pause container did not exit within {STOP_TIMEOUT_S:g}s"
            )

    async def _release_network(self, sandbox: Sandbox) -> None:
        if sandbox.network_released:
            return
        if sandbox.network:
            net = None
            with contextlib.suppress(NetworkNotReady):
                net = load_network(self.config.cni.conf_dir, self.config.cni.bin_dirs, sandbox.network)
            att = self._attachment(sandbox)
            cached = self.cni_cache.load(sandbox.network, att)
            if net is None and cached is not None:
                # The conf file went away; the cached config still says what to undo.
                raw = cached["config"]
                net = NetworkConfigList(raw["name"], raw.get("cniVersion", ""), Path(""), raw["plugins"], raw)
            # DEL even with no cached result: a crash may have come between a plugin's ADD and
            # the cache write, and DEL of what was never added is a no-op for CNI plugins.
            if net is not None:
                try:
                    await failpoints.hit("sandbox.cni_del")
                    await cni.delete(net, att, self.config.cni.bin_dirs, self.cni_cache)
                except CribError as exc:
                    raise Unavailable(
                        f"pod sandbox {sandbox.id}: releasing its network failed: {exc.message}"
                    ) from None
        # The record may predate the netns (a crash right after it was made): its path is fixed.
        await asyncio.to_thread(netns.remove, Path(sandbox.netns or self.netns_path(sandbox.id)))
        sandbox.network_released = True
        # Released addresses may go to the next pod: a stopped pod reports none.
        sandbox.ips = []
        self._persist(sandbox)

    # --- RemovePodSandbox -----------------------------------------------------------------------

    async def remove(self, sandbox_id: str, containers: PodContainers) -> None:
        sandbox = self.find(sandbox_id)
        if sandbox is None:
            return  # idempotent
        await self.stop(sandbox.id, containers)
        async with self._lock(sandbox.id):
            await containers.remove_all_in_pod(sandbox.id)
            await failpoints.hit("sandbox.remove")
            if not sandbox.torn_down:
                await self.env.runtime(sandbox.handler).delete(sandbox.id, force=True)
            await asyncio.to_thread(self.env.discard, sandbox.id)
            if sandbox._cgroup is not None:  # the kubelet's to remove next: no file of it kept open
                self.env.stats_files.forget(sandbox._cgroup.directories())
            # A stats call that saw the pod ready as it stopped may have opened it since.
            self._forget_net_dev(sandbox)
            self.env.empty_trash_soon()
            await asyncio.to_thread(userns.unpin, self.userns_path(sandbox.id))
            self.selinux.release(sandbox.process_label)
            await asyncio.to_thread(shutil.rmtree, self.sandbox_dir(sandbox.id), True)
            self.store.delete(_KIND, sandbox.id)
            self.index.drop(sandbox.id)
            self.index.release(sandbox.reservation, sandbox.id)
        self._locks.pop(sandbox.id, None)
        await self.images.collect_garbage()
        log.info("sandbox.removed", pod=sandbox.id)

    # --- resources and stats ----------------------------------------------------------------------

    async def update_resources(self, sandbox_id: str, res: api_pb2.LinuxContainerResources) -> None:
        """Best effort, as the CRI says: apply what cgroupfs allows on the pod's own cgroup."""
        sandbox = self.get(sandbox_id)
        parent = sandbox.config.linux.cgroup_parent
        if not parent or self.env.systemd:
            log.info("sandbox.resources_not_applied", pod=sandbox.id, reason="no pod cgroup to write")
            return
        await asyncio.to_thread(pod_config.write_pod_cgroup, parent, res)

    def stats_now(
        self, sandbox: Sandbox, members: list[tuple[str, CgroupStats | None]]
    ) -> tuple[
        CgroupStats | None, list[CgroupStats | None], dict[str, tuple[int, int, int, int]], int | None
    ]:
        """(pod cgroup stats, per-container and pause stats, network counters, process count),
        given the pod's containers as (ID, the cgroup stats just read for them). Blocking.

        The per-container parts are read only for a pod without a cgroup of its own (the sum
        stands in for it); the kubelet always gives one, so a poll reads each cgroup once."""
        parent = sandbox.config.linux.cgroup_parent
        if parent and sandbox._cgroup is None:
            sandbox._cgroup = cgroup_dirs(parent, self.env.systemd)
        read = self.env.stats_files.read
        pod = cri_stats(sandbox._cgroup, read) if sandbox._cgroup is not None else None
        parts: list[CgroupStats | None] = []
        processes = 0
        for cid in [sandbox.id, *(m[0] for m in members)]:
            dirs = self.env.cgroup_dirs(cid)
            if dirs is None:
                continue
            processes += process_count(dirs, read) or 0
        if pod is None:
            pause = self.env.cgroup_dirs(sandbox.id)
            own = cri_stats(pause, read) if pause is not None else None
            parts = [own, *(m[1] for m in members)]
        network: dict[str, tuple[int, int, int, int]] = {}
        if sandbox.netns and sandbox.state == READY:
            # Kept open as the cgroup files are (an open costs twice the read); it stays on
            # the pod's netns, even if the PID were reused, until the pause ends.
            network = network_stats(sandbox.pid, read=read)
        return pod, parts, network, processes

    def _forget_net_dev(self, sandbox: Sandbox) -> None:
        """Close the pod's kept /proc/PID/net/dev: an open one holds its netns alive."""
        if sandbox.pid:
            self.env.stats_files.forget([net_dev_path(sandbox.pid).rpartition("/")[0]])

    # --- recovery -------------------------------------------------------------------------------

    async def recover(self) -> None:
        """Rebuild the view after a restart; sandboxes a crash left half-made are torn down."""
        for sandbox_id, raw in self.store.items(_KIND):
            sandbox = Sandbox(**raw)
            self.selinux.reserve(sandbox.process_label)
            self.index.add(sandbox_id, sandbox)
            self.index.reserve(sandbox.reservation, sandbox_id)
            alive = pause_alive(sandbox.pid, sandbox.id)
            if alive:
                self._watch(sandbox)
            else:
                sandbox.exited.set()
            if sandbox.state == READY and not alive:
                sandbox.state = NOTREADY
                self._persist(sandbox)
            elif sandbox.state == CREATING:
                sandbox.state = NOTREADY
                self._incomplete.append(sandbox_id)
        adopted = await asyncio.to_thread(self._adoptable) if self.store.rebuilt else []
        for sandbox in adopted:
            self._adopt(sandbox)
        for sandbox in self.index.by_id.values():
            if sandbox.exited.is_set() and not sandbox.torn_down and sandbox.id not in self._incomplete:
                self._background.start(self._tear_down(sandbox))
        incomplete = len(self._incomplete)
        log.info("sandbox.recovered", count=len(self.index), incomplete=incomplete, from_disk=len(adopted))

    def _adoptable(self) -> list[Sandbox]:
        """Pods on disk the (rebuilt) state store does not know, from their saved records. Blocking."""
        found = []
        for directory in sorted(self.dir.iterdir()):
            if directory.name in self.index.by_id:
                continue
            raw = disk_record.read(directory)
            try:
                sandbox = Sandbox(**raw) if raw is not None and raw.get("id") == directory.name else None
                if sandbox is not None:
                    sandbox.config  # noqa: B018 - parses: a record whose config does not is no pod
            except (TypeError, ValueError) as exc:
                log.warning("sandbox.record_unreadable", pod=directory.name, error=str(exc))
                sandbox = None
            if sandbox is None:
                log.warning("sandbox.unrecoverable", pod=directory.name, dir=str(directory))
                continue  # no record: remove_orphans takes its netns, mounts and processes
            sandbox.pid = disk_record.read_pid(self.env.conmon_paths(sandbox.id).pidfile)
            ns = self.netns_path(sandbox.id)
            sandbox.netns = str(ns) if ns.exists() else ""
            cached = None
            if sandbox.network and sandbox.netns:
                cached = self.cni_cache.load(sandbox.network, self._attachment(sandbox))
                sandbox.ips = cni.result_ips(cached.get("result") or {}) if cached else []
            # Ready only if everything RunPodSandbox makes is there; the kubelet replaces the rest.
            whole = sandbox.host_network or cached is not None
            sandbox.state = READY if whole and pause_alive(sandbox.pid, sandbox.id) else NOTREADY
            found.append(sandbox)
        return found

    def _adopt(self, sandbox: Sandbox) -> None:
        self.index.add(sandbox.id, sandbox)
        self.index.reserve(sandbox.reservation, sandbox.id)
        if pause_alive(sandbox.pid, sandbox.id):
            self._watch(sandbox)
        else:
            sandbox.exited.set()
        self._persist(sandbox)
        log.warning("sandbox.recovered_from_disk", pod=sandbox.id, state=sandbox.state, ips=sandbox.ips)

    async def remove_incomplete(self, containers: PodContainers) -> None:
        """Pods a crash left half-made: finish their RunPodSandbox's undo (once containers are known)."""
        for sandbox_id in self._incomplete:
            log.warning("sandbox.incomplete_removed", pod=sandbox_id)
            with contextlib.suppress(CribError, OSError):
                await self.remove(sandbox_id, containers)
        self._incomplete.clear()

    async def remove_orphans(self, known: set[str]) -> list[str]:
        """Sandbox dirs and CNI results of pods no record knows: a crash before the first record
        write, or between a plugin's ADD and the pod's. Their networks are released, dirs removed."""
        orphans = []
        for entry in self.cni_cache.entries():
            if entry.attachment.container_id not in known:
                with contextlib.suppress(CribError, OSError, KeyError, ValueError):
                    await cni.delete_cached(entry, self.config.cni.bin_dirs, self.cni_cache)
                orphans.append(entry.attachment.container_id)
        for directory in list(self.dir.iterdir()):
            if directory.name not in known:
                await asyncio.to_thread(unmount_all_under, directory)
                await asyncio.to_thread(shutil.rmtree, directory, True)
                orphans.append(directory.name)
        if orphans:
            log.warning("sandbox.orphans_removed", pods=sorted(set(orphans)))
        return orphans

    def to_status(self, sandbox: Sandbox) -> dict[str, Any]:
        """Verbose info for PodSandboxStatus."""
        return {
            "pid": sandbox.pid,
            "conmonPid": sandbox.conmon_pid,
            "netns": sandbox.netns,
            "network": sandbox.network,
            "runtimeHandler": sandbox.handler,
            "image": sandbox.image_id,
            "sandboxDir": str(self.sandbox_dir(sandbox.id)),
        }


__all__ = ["CREATING", "NOTREADY", "READY", "Sandbox", "Sandboxes"]
