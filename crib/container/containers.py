"""Workload containers: create, start, stop, remove, status, exec, stats, events, recovery.

A container lives under its own conmon, which outlives cribd; cribd learns of
its end through a pidfd on conmon and reads the exit code conmon wrote. Every
state change is recorded before it is reported, and a restarted cribd finds
each container's true state from its record, its conmon and its exit file.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crib import failpoints, first_use, tracing
from crib.background import Background
from crib.container import image_volumes
from crib.container.cdi_devices import CDIDevices
from crib.container.events import EventBus
from crib.errors import (
    AlreadyExists,
    CribError,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unimplemented,
)
from crib.image_service import reference
from crib.image_service.images import Images
from crib.log_setup import get_logger
from crib.proto.cri import api_pb2
from crib.runtime import conmon, lsm, userns
from crib.runtime.cgroup_stats import CgroupStats, cri_stats
from crib.runtime.oci_runtime import RuntimeCallFailed
from crib.runtime.runtime_env import RuntimeEnv, conmon_alive, wait_for_exit
from crib.sandbox import pod_files
from crib.sandbox.pod_config import check_userns, pod_userns
from crib.sandbox.sandboxes import READY, Sandbox, Sandboxes, pause_alive
from crib.store import disk_record
from crib.store.index import Index, ListedState
from crib.store.state_store import StateStore

if TYPE_CHECKING:
    from crib.container import container_spec, exec_sync

log = get_logger("crib.container")
# Imported at the first call that needs them (first_use): the spec's builder, with its mounts,
# user and securejoin modules (CreateContainer, UpdateContainerResources), and ExecSync's runner.
SPEC, EXEC_SYNC = "crib.container.container_spec", "crib.container.exec_sync"

_KIND = "container"
CREATED = "created"
RUNNING = "running"
EXITED = "exited"
UNKNOWN = "unknown"
# After SIGKILL, how long a container may take to be gone.
KILL_WAIT_S = 10.0
REOPEN_WAIT_S = 5.0


def image_name(spec: api_pb2.ImageSpec, repo_tags: list[str]) -> str:
    """The name a container's status gives its image, as containerd does: one of the image's tags,
    the one the pod asked for where it is one (the kubelet passes the image ID and, beside it,
    what the user wrote)."""
    for text in (spec.user_specified_image, spec.image):
        if text:
            with contextlib.suppress(InvalidArgument):
                tagged = reference.parse(text).tagged()
                if tagged in repo_tags:
                    return tagged
    return repo_tags[0] if repo_tags else ""


@dataclass
class Container(ListedState):
    id: str
    sandbox_id: str
    config_b64: str
    image_id: str
    image_ref: str
    chain_ids: list[str]
    handler: str
    created_at: int
    state: str = CREATED
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    pid: int = 0
    conmon_pid: int = 0
    log_path: str = ""
    stop_signal: int = int(signal.SIGTERM)
    uid: int = 0
    gid: int = 0
    groups: list[int] = field(default_factory=list)
    resources_b64: str = ""
    # The image's name ContainerStatus reports (the kubelet shows it as the container's image).
    image_name: str = ""
    # Images mounted as image volumes, and their layers: in use while the container exists.
    volume_image_ids: list[str] = field(default_factory=list)
    volume_chain_ids: list[str] = field(default_factory=list)
    # The runtime's state and the rootfs mount are gone (done when it ends, as containerd's
    # shim does); its files go at RemoveContainer.
    torn_down: bool = False
    _config: api_pb2.ContainerConfig | None = field(default=None, repr=False, compare=False)
    _exited: asyncio.Event | None = field(default=None, repr=False, compare=False)
    # (state, serialized list item): list replies reuse it while the state holds.
    _item: tuple[str, bytes] | None = field(default=None, repr=False, compare=False)
    # (what the status shows that can change, serialized ContainerStatus): ContainerStatus
    # and PodSandboxStatus reuse it until one of those fields changes.
    _status: tuple[tuple[Any, ...], bytes] | None = field(default=None, repr=False, compare=False)
    # The stats calls' ContainerAttributes, made once (from the config, which never changes).
    _attributes: api_pb2.ContainerAttributes | None = field(default=None, repr=False, compare=False)

    @property
    def config(self) -> api_pb2.ContainerConfig:
        if self._config is None:
            self._config = api_pb2.ContainerConfig.FromString(base64.b64decode(self.config_b64))
        return self._config

    @property
    def exited(self) -> asyncio.Event:
        if self._exited is None:
            self._exited = asyncio.Event()
        return self._exited

    @property
    def resources(self) -> api_pb2.LinuxContainerResources:
        if self.resources_b64:
            return api_pb2.LinuxContainerResources.FromString(base64.b64decode(self.resources_b64))
        return self.config.linux.resources

    def record(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}


# What the kernel says (through runc) when a cgroup file refuses the value written to it.
_KERNEL_REFUSED = (
    "invalid argument",
    "numerical result out of range",
    "value too large for defined data type",
)


def _reservation(config: api_pb2.ContainerConfig, pod: api_pb2.PodSandboxMetadata) -> str:
    return f"{config.metadata.name}_{pod.name}_{pod.namespace}_{pod.uid}_{config.metadata.attempt}"


def _wait_for_file(path: str, timeout: float) -> bool:
    """Blocking, bounded: conmon gives no signal when it has reopened its log."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def validate(config: api_pb2.ContainerConfig) -> None:
    name = config.metadata.name
    if not name:
        raise InvalidArgument("CreateContainer: metadata.name is empty")
    if "/" in name or "\0" in name or len(name) > 253:
        raise InvalidArgument(f"CreateContainer: metadata.name {name!r} is not a valid name")
    if not (config.image.image or config.image.image_ref):
        raise InvalidArgument("CreateContainer: image.image is empty")
    if config.log_path and (config.log_path.startswith("/") or ".." in Path(config.log_path).parts):
        raise InvalidArgument(
            f"CreateContainer: log_path {config.log_path!r} must be relative to the pod's log dir"
        )
    if config.tty and not config.stdin and config.stdin_once:
        raise InvalidArgument("CreateContainer: stdin_once needs stdin")
    sc = config.linux.security_context
    if sc.HasField("run_as_group") and not (sc.HasField("run_as_user") or sc.run_as_username):
        raise InvalidArgument("CreateContainer: run_as_group needs run_as_user or run_as_username")
    userns.parse(sc.namespace_options, "CreateContainer")


class Containers:
    def __init__(
        self,
        env: RuntimeEnv,
        images: Images,
        sandboxes: Sandboxes,
        store: StateStore,
        conmon_binary: str,
        make_event: Callable[[Containers, Container, int], Any],
        apparmor: lsm.AppArmor,
        cdi_spec_dirs: Sequence[Path],
    ) -> None:
        self.env = env
        self.apparmor = apparmor
        self.cdi = CDIDevices(cdi_spec_dirs)
        self.images = images
        self.sandboxes = sandboxes
        self.store = store
        self.conmon_binary = conmon_binary
        self.index: Index[Container] = Index("container", group=lambda c: c.sandbox_id)
        self.events = EventBus()
        # Builds the CRI event for a container: the CRI server's, which owns the proto views.
        self.make_event = make_event
        self._locks: dict[str, asyncio.Lock] = {}
        # Tear-downs of ended containers and trash emptying run after the call that caused them.
        self._background = Background()

    # --- queries ------------------------------------------------------------------------------

    def find(self, container_id: str) -> Container | None:
        """By full ID or a unique ID prefix."""
        return self.index.find(container_id)

    def get(self, container_id: str) -> Container:
        container = self.find(container_id)
        if container is None:
            raise NotFound(f"container {container_id!r} not found")
        return container

    def list(self) -> list[Container]:
        return list(self.index)

    def in_pod(self, sandbox_id: str) -> list[Container]:
        return self.index.grouped(sandbox_id)

    def images_in_use(self) -> tuple[set[str], set[str]]:
        images = {c.image_id for c in self.index} | self.volume_images()
        layers = {ch for c in self.index for ch in (*c.chain_ids, *c.volume_chain_ids)}
        return images, layers

    def volume_images(self) -> set[str]:
        """Images some container mounts as an image volume."""
        return {i for c in self.index for i in c.volume_image_ids}

    def _lock(self, container_id: str) -> asyncio.Lock:
        return self._locks.setdefault(container_id, asyncio.Lock())

    def _persist(self, container: Container) -> None:
        self.store.put(_KIND, container.id, container.record())

    def _publish(self, container: Container, event_type: int) -> None:
        self.events.publish(lambda: self.make_event(self, container, event_type))

    # --- create ---------------------------------------------------------------------------------

    def _pod_context(self, sandbox: Sandbox, spec_builder: Any) -> container_spec.PodContext:
        config = sandbox.config
        host_network = sandbox.host_network
        host_ipc = config.linux.security_context.namespace_options.ipc == api_pb2.NODE
        return spec_builder.PodContext(
            sandbox_id=sandbox.id,
            pause_pid=sandbox.pid,
            netns=sandbox.netns,
            config=config,
            hostname=pod_files.pod_hostname(config, host_network),
            files_dir=self.sandboxes.sandbox_dir(sandbox.id),
            shm=None if host_ipc else self.sandboxes.shm_path(sandbox.id),
            cgroup_parent=config.linux.cgroup_parent,
            userns=pod_userns(config),
            idmapped_mounts=self.env.handler_info(sandbox.handler).user_namespaces,
        )

    async def create(self, sandbox_id: str, config: api_pb2.ContainerConfig) -> str:
        validate(config)
        sandbox = self.sandboxes.get(sandbox_id)
        if sandbox.state != READY:
            raise FailedPrecondition(f"pod sandbox {sandbox.id} is not ready")
        image = self.images.find(config.image.image or config.image.image_ref)
        if image is None:
            raise NotFound(f"image {config.image.image or config.image.image_ref!r} not found: pull it first")
        own_userns = check_userns(config, sandbox.config)
        supported = self.env.handler_info(sandbox.handler).user_namespaces
        userns.require_support(own_userns, supported, sandbox.handler, "CreateContainer")
        labels = await asyncio.to_thread(
            self.sandboxes.selinux.container_labels,
            config.linux.security_context.selinux_options,
            sandbox.process_label,
            "CreateContainer",
        )
        volumes = image_volumes.resolve(self.images, config)
        key = _reservation(config, sandbox.config.metadata)
        if (holder := self.index.holder(key)) is not None:
            raise AlreadyExists(
                f"container name {key!r} is reserved for {holder}; remove that container first"
            )
        target_pid = 0
        opts = config.linux.security_context.namespace_options
        if opts.pid == api_pb2.TARGET:
            target = self.find(opts.target_id)
            target_pid = target.pid if target is not None and target.state == RUNNING else 0
        runtime = self.env.runtime(sandbox.handler)
        container_id = os.urandom(32).hex()  # secrets.token_hex(32), without its hmac and hashlib
        self.index.reserve(key, container_id)
        log_path = ""
        if sandbox.config.log_directory and config.log_path:
            log_path = os.path.join(sandbox.config.log_directory, config.log_path)
        container = Container(
            id=container_id,
            sandbox_id=sandbox.id,
            config_b64=base64.b64encode(config.SerializeToString()).decode(),
            image_id=image.id,
            image_ref=image.repo_digests[0] if image.repo_digests else image.id,
            image_name=image_name(config.image, image.repo_tags),
            chain_ids=[layer.chain_id for layer in image.layers],
            handler=runtime.handler,
            created_at=time.time_ns(),
            log_path=log_path,
            volume_image_ids=[v.image.id for v in volumes],
            volume_chain_ids=[layer.chain_id for v in volumes for layer in v.image.layers],
        )
        try:
            async with self._lock(container_id):
                lowers = [self.images.layers.path(c) for c in reversed(container.chain_ids)]
                rootfs = await asyncio.to_thread(
                    self.env.prepare_rootfs,
                    container_id,
                    lowers,
                    self.sandboxes.rootfs_userns(sandbox),
                    labels.mount if labels else "",
                )
                await failpoints.hit("container.rootfs")
                mounted = await asyncio.to_thread(
                    image_volumes.mount_all,
                    self.images,
                    volumes,
                    self.env.image_volume_dir(container_id),
                )
                spec_builder = await first_use.module(SPEC)
                built = await asyncio.to_thread(
                    spec_builder.build,
                    container_id,
                    config,
                    image,
                    self._pod_context(sandbox, spec_builder),
                    rootfs,
                    self.env.systemd,
                    target_pid,
                    self.apparmor,
                    mounted,
                    labels,
                )
                await self.cdi.apply(config, built.spec)
                container.stop_signal = built.stop_signal
                container.uid, container.gid = built.user.uid, built.user.gid
                container.groups = list(built.user.additional_gids)
                # With the spec, what a start-up that lost the state store needs to find the
                # container again.
                await asyncio.to_thread(self._write_bundle, container, built.spec)
                await failpoints.hit("container.spec")
                if log_path:
                    await asyncio.to_thread(os.makedirs, os.path.dirname(log_path), 0o755, True)
                # The runtime creates it (under conmon) at StartContainer, as
                # containerd does: CreateContainer is the bundle, ready to go.
                self.index.add(container_id, container)
                self._persist(container)
        except BaseException as exc:
            log.info(
                "container.create_failed", container=container_id, error=getattr(exc, "message", repr(exc))
            )
            with contextlib.suppress(Exception):
                await runtime.delete(container_id, force=True)
            await asyncio.to_thread(self.env.cleanup, container_id)
            self.index.drop(container_id)
            self.store.forget(_KIND, container_id)
            self.index.release(key, container_id)
            self._locks.pop(container_id, None)
            raise
        log.info("container.created", container=container_id, pod=sandbox.id, name=config.metadata.name)
        self._publish(container, api_pb2.CONTAINER_CREATED_EVENT)
        return container_id

    def _write_bundle(self, container: Container, spec: dict[str, Any]) -> None:
        self.env.write_spec(container.id, spec)
        disk_record.write(self.env.conmon_paths(container.id).dir, container.record())

    # --- exits ----------------------------------------------------------------------------------

    def _watch(self, container: Container) -> None:
        if not self.env.watcher.watch(container.conmon_pid, lambda: self._exited(container)):
            self._exited(container)

    def _exited(self, container: Container) -> None:
        """conmon is gone: the container ended (or was never started)."""
        container.exited.set()
        if container.state == EXITED:
            return
        code = self.env.exit_code(container.id)
        exit_file = self.env.exit_dir / container.id
        if code is None:
            if container.state == CREATED and not container.started_at:
                # conmon died before the container ever ran.
                container.state = UNKNOWN
                container.message = "the container's monitor (conmon) exited before the container started"
                self._persist(container)
                return
            code = 255
            container.message = "the container's monitor (conmon) exited without an exit code"
        container.exit_code = code
        try:
            container.finished_at = exit_file.stat().st_mtime_ns
        except OSError:
            container.finished_at = time.time_ns()
        if self.env.oom_killed(container.id, code):
            container.reason = "OOMKilled"
        else:
            container.reason = "Completed" if code == 0 else "Error"
        container.state = EXITED
        self._persist(container)
        log.info("container.exited", container=container.id, exit_code=code, reason=container.reason)
        self._publish(container, api_pb2.CONTAINER_STOPPED_EVENT)
        self._background.start(self._tear_down(container))

    async def _tear_down(self, container: Container) -> None:
        """An ended container's runtime state, cgroup and rootfs mount go now, so that
        RemoveContainer has only its files to set aside. Best effort: remove() redoes it."""
        async with self._lock(container.id):
            await self._tear_down_locked(container)

    async def _tear_down_locked(self, container: Container) -> None:
        if container.torn_down or self.find(container.id) is not container or not container.exited.is_set():
            return
        try:
            await self.env.tear_down(container.id, container.handler)
        except (CribError, OSError) as exc:
            log.warning("container.teardown_failed", container=container.id, error=str(exc))
            return
        container.torn_down = True
        self._persist(container)

    # --- start / stop / remove ------------------------------------------------------------------

    async def start(self, container_id: str) -> None:
        container = self.get(container_id)
        async with self._lock(container.id):
            if container.state != CREATED:
                raise FailedPrecondition(f"container {container.id} is {container.state}, not created")
            sandbox = self.sandboxes.find(container.sandbox_id)
            if sandbox is None or sandbox.state != READY:
                raise FailedPrecondition(f"the pod sandbox of container {container.id} is not ready")
            runtime = self.env.runtime(container.handler)
            try:
                if container.conmon_pid == 0:
                    await self._create_under_conmon(container, sandbox, runtime)
                # else a start cut short (cribd killed) after conmon had it created, its conmon
                # alive (else it would be exited): `start` finishes it.
                await failpoints.hit("container.conmon")
                container.started_at = time.time_ns()
                await runtime.start(container.id)
            except CribError as exc:
                # As containerd: the container did not run; it is exited with the reason.
                with contextlib.suppress(Exception):
                    await runtime.delete(container.id, force=True)
                container.state = EXITED
                container.exit_code = 128
                container.reason = "StartError"
                container.message = exc.message
                container.finished_at = time.time_ns()
                container.exited.set()
                self._persist(container)
                self._publish(container, api_pb2.CONTAINER_STOPPED_EVENT)
                stopping = sandbox.state != READY or sandbox.stop_requested
                if stopping or not pause_alive(sandbox.pid, sandbox.id):
                    # StopPodSandbox won the race: its pause (whose namespaces the container
                    # joins) went while the runtime created it (killed, it can still look
                    # alive for a moment: hence the flag). The pod's state, not crib's.
                    raise FailedPrecondition(
                        f"the pod sandbox of container {container.id} stopped while it started: {exc.message}"
                    ) from None
                raise
            # It may have run and ended already; its exit was then recorded.
            if not container.exited.is_set():
                container.state = RUNNING
            self._persist(container)
        log.info("container.started", container=container.id)
        self._publish(container, api_pb2.CONTAINER_STARTED_EVENT)

    async def _create_under_conmon(self, container: Container, sandbox: Sandbox, runtime: Any) -> None:
        config, meta = container.config, sandbox.config.metadata
        created = await conmon.create(
            runtime,
            container.id,
            f"k8s_{config.metadata.name}_{meta.name}_{meta.namespace}_{meta.uid}_{config.metadata.attempt}",
            self.env.bundle(container.id),
            self.env.conmon_paths(container.id),
            log_path=container.log_path,
            conmon_binary=self.conmon_binary,
            terminal=config.tty,
            stdin=config.stdin,
            stdin_once=config.stdin_once,
            systemd_cgroup=self.env.systemd,
        )
        container.pid, container.conmon_pid = created.pid, created.conmon_pid
        self._persist(container)
        self._watch(container)

    async def stop(self, container_id: str, timeout: float) -> None:
        container = self.find(container_id)
        if container is None:
            return  # idempotent
        async with self._lock(container.id):
            await self._stop(container, timeout)
            # Here rather than after the reply: StopContainer has time to spare, and the
            # kubelet's RemoveContainer that follows then has only files to set aside.
            await self._tear_down_locked(container)

    async def _stop(self, container: Container, timeout: float) -> None:
        if container.exited.is_set() or container.state not in (RUNNING, CREATED, UNKNOWN):
            return
        if container.conmon_pid == 0:
            return  # created, never started: nothing runs
        await failpoints.hit("container.stop")
        runtime = self.env.runtime(container.handler)
        if container.state == RUNNING and timeout > 0:
            with contextlib.suppress(NotFound):
                await runtime.kill(container.id, container.stop_signal)
            if await wait_for_exit(container.exited, timeout):
                return
        with contextlib.suppress(NotFound):
            await runtime.kill(container.id, "KILL", all_processes=True)
        if not await wait_for_exit(container.exited, KILL_WAIT_S):
            raise DeadlineExceeded(f"container {container.id} did not die within {KILL_WAIT_S:g}s of SIGKILL")

    async def remove(self, container_id: str) -> None:
        container = self.find(container_id)
        if container is None:
            return  # idempotent
        async with self._lock(container.id):
            await self._stop(container, 0)
            await failpoints.hit("container.remove")
            await self._tear_down_locked(container)
            if not container.torn_down:
                await self.env.runtime(container.handler).delete(container.id, force=True)
            await asyncio.to_thread(self.env.discard, container.id)
            self.store.delete(_KIND, container.id)
            self.index.drop(container.id)
            self.index.release_all(container.id)
        self._locks.pop(container.id, None)
        log.info("container.removed", container=container.id)
        self._publish(container, api_pb2.CONTAINER_DELETED_EVENT)
        self.env.empty_trash_soon()
        await self.images.collect_garbage()

    async def stop_all_in_pod(self, sandbox_id: str, timeout: float) -> None:
        await asyncio.gather(*(self.stop(c.id, timeout) for c in self.in_pod(sandbox_id)))

    async def remove_all_in_pod(self, sandbox_id: str) -> None:
        for container in self.in_pod(sandbox_id):
            await self.remove(container.id)

    # --- resources, logs, exec, stats ------------------------------------------------------------

    async def update_resources(self, container_id: str, res: api_pb2.LinuxContainerResources) -> None:
        container = self.get(container_id)
        async with self._lock(container.id):
            if container.state in (RUNNING, CREATED) and not container.exited.is_set():
                runtime = self.env.runtime(container.handler)
                try:
                    spec_builder = await first_use.module(SPEC)
                    await runtime.update(container.id, spec_builder.resources(res))
                except RuntimeCallFailed as exc:
                    # The kernel refused a value (EINVAL; ERANGE: CPUs it lacks; EOVERFLOW: a CPU or
                    # node number past any it parses): the request is at fault.
                    if any(why in exc.stderr for why in _KERNEL_REFUSED):
                        raise InvalidArgument(f"UpdateContainerResources: {exc.message}") from None
                    # A memory limit below what the container already uses: its state, not the request.
                    if "unable to set memory limit" in exc.stderr:
                        raise FailedPrecondition(f"UpdateContainerResources: {exc.message}") from None
                    raise
            container.resources_b64 = base64.b64encode(res.SerializeToString()).decode()
            self._persist(container)
            try:
                await asyncio.to_thread(self._record_resources, container)
            except OSError as exc:
                # Applied and in the store; only a start-up that loses the store would miss it.
                log.warning("container.record_not_updated", container=container.id, error=str(exc))

    def _record_resources(self, container: Container) -> None:
        """The saved record takes the new resources, so a start-up that rebuilds the state
        store reports (and keeps) what the kubelet last set, not what it first asked for. Blocking."""
        directory = self.env.conmon_paths(container.id).dir
        raw = disk_record.read(directory)
        if raw is not None:
            raw["resources_b64"] = container.resources_b64
            disk_record.write(directory, raw)

    async def reopen_log(self, container_id: str) -> None:
        container = self.get(container_id)
        if container.state != RUNNING or container.exited.is_set():
            raise FailedPrecondition(f"container {container.id} is not running")
        ctl = self.env.bundle(container.id) / "ctl"

        def send() -> None:
            # conmon's control fifo: "<type> <height> <width>\n", type 2 reopens the log.
            fd = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                os.write(fd, b"2 0 0\n")
            finally:
                os.close(fd)

        try:
            await asyncio.to_thread(send)
        except OSError as exc:
            raise FailedPrecondition(
                f"container {container.id}: cannot reach its conmon: {exc.strerror}"
            ) from None
        # conmon reopens asynchronously; the kubelet (and critest) expect the
        # new file to exist when the call returns. A bounded wait on it:
        if container.log_path and not await asyncio.to_thread(
            _wait_for_file, container.log_path, REOPEN_WAIT_S
        ):
            raise FailedPrecondition(f"container {container.id}: conmon did not reopen {container.log_path}")

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: float) -> exec_sync.ExecResult:
        container = self.get(container_id)
        if not cmd:
            raise InvalidArgument("ExecSync: cmd is empty")
        if container.state != RUNNING or container.exited.is_set():
            raise FailedPrecondition(f"container {container.id} is not running")
        process = await self.exec_process(container, cmd)
        process["terminal"] = False
        runtime = self.env.runtime(container.handler)
        work_dir = self.env.state / "exec"
        work_dir.mkdir(exist_ok=True)
        attributes = {"crib.runtime_handler": runtime.handler, "crib.container_id": container.id}
        with tracing.span(f"{runtime.handler} exec", **attributes):
            runner = await first_use.module(EXEC_SYNC)
            return await runner.exec_sync(runtime, container.id, process, timeout, work_dir)

    async def exec_process(self, container: Container, cmd: list[str]) -> dict[str, Any]:
        """The OCI process of an exec: the container's own (user, env, cwd, caps), running `cmd`."""
        spec = await asyncio.to_thread(self.env.read_spec, container.id)
        if spec is None:
            raise FailedPrecondition(f"container {container.id} has no spec on disk")
        process = dict(spec["process"])
        process["args"] = list(cmd)
        return process

    def stats_now(self, container: Container) -> tuple[CgroupStats | None, tuple[int, int]]:
        """The cgroup's usage (while the container runs) and the writable layer's size. Blocking."""
        dirs = self.env.cgroup_dirs(container.id) if container.state == RUNNING else None
        stats = cri_stats(dirs, self.env.stats_files.read) if dirs else None
        return stats, self.env.layer_usage.usage(self.env.upper_dir(container.id))

    async def checkpoint(self, container_id: str, location: str, timeout: float) -> None:
        # Imported at the first checkpoint, a rare call: its tar writer stays out of an idle
        # cribd's memory (issue 17).
        from crib.container import checkpoint  # noqa: PLC0415

        container = self.get(container_id)
        target = checkpoint.validate_location(location)
        probe = await checkpoint.criu_probe()
        if not probe.usable:
            raise Unimplemented(probe.reason)
        async with self._lock(container.id):
            if container.state != RUNNING or container.exited.is_set():
                raise FailedPrecondition(f"container {container.id} is not running")
            spec = await asyncio.to_thread(self.env.read_spec, container.id)
            if spec is None:
                raise FailedPrecondition(f"container {container.id} has no spec on disk")
            config = container.config
            metadata = {
                "id": container.id,
                "name": config.metadata.name,
                "attempt": config.metadata.attempt,
                "podSandboxId": container.sandbox_id,
                "rootfsImage": config.image.image,
                "rootfsImageRef": container.image_ref,
                "rootfsImageName": container.image_id,
                "ociRuntime": container.handler,
                "createdTime": container.created_at,
                "logPath": container.log_path,
            }
            await checkpoint.checkpoint(
                self.env.runtime(container.handler),
                container.id,
                metadata,
                spec,
                self.env.layer_dir(container.id) / "upper",
                target,
                self.env.state,
                timeout,
            )
        log.info("container.checkpointed", container=container.id, location=str(target))

    # --- recovery -------------------------------------------------------------------------------

    async def recover(self) -> None:
        for container_id, raw in self.store.items(_KIND):
            container = Container(**raw)
            self.index.add(container_id, container)
            sandbox = self.sandboxes.find(container.sandbox_id)
            if sandbox is not None:
                self.index.reserve(_reservation(container.config, sandbox.config.metadata), container_id)
            if container.state == EXITED:
                container.exited.set()
                if not container.torn_down:
                    self._background.start(self._tear_down(container))
                continue
            if container.state == CREATED and container.conmon_pid == 0:
                continue  # never started: nothing to find
            if conmon_alive(container.conmon_pid, container.id):
                self._watch(container)
            else:
                # Ended while cribd was away: its exit file says how.
                self._exited(container)
        adopted = await asyncio.to_thread(self._adoptable) if self.store.rebuilt else []
        for container in adopted:
            await self._settle_created(container)
            self._adopt(container)
        log.info("container.recovered", count=len(self.index), from_disk=len(adopted))

    def _adoptable(self) -> list[Container]:
        """Containers on disk the (rebuilt) state store does not know, from their saved records
        and conmon's files. Blocking."""
        found = []
        parent = self.env.state / "containers"
        for directory in sorted(parent.iterdir()) if parent.is_dir() else []:
            cid = directory.name
            if cid in self.index.by_id or self.sandboxes.find(cid) is not None:
                continue  # known, or a pod's pause
            raw = disk_record.read(directory)
            try:
                container = Container(**raw) if raw is not None and raw.get("id") == cid else None
                if container is not None:
                    container.config  # noqa: B018 - parses: a record whose config does not is none
            except (TypeError, ValueError) as exc:
                log.warning("container.record_unreadable", container=cid, error=str(exc))
                container = None
            if container is None or self.sandboxes.find(container.sandbox_id) is None:
                # remove_orphans takes its process, mounts and files.
                log.warning("container.unrecoverable", container=cid, dir=str(directory))
                continue
            paths = self.env.conmon_paths(cid)
            container.conmon_pid = disk_record.read_pid(paths.conmon_pidfile)
            container.pid = disk_record.read_pid(paths.pidfile)
            if container.conmon_pid:
                # Started: conmon wrote its pidfile as the container was created, just before it ran.
                container.state = RUNNING
                with contextlib.suppress(OSError):
                    container.started_at = paths.conmon_pidfile.stat().st_mtime_ns
            found.append(container)
        return found

    async def _settle_created(self, container: Container) -> None:
        """conmon's pidfile says the container was created, not that it was started: one cribd
        was killed between CreateContainer and StartContainer leaves a container that must come
        back CREATED (and startable). The runtime knows which."""
        if container.state != RUNNING or not conmon_alive(container.conmon_pid, container.id):
            return
        try:
            state = await self.env.runtime(container.handler).state(container.id)
        except CribError as exc:
            log.warning("container.runtime_state_unknown", container=container.id, error=exc.message)
            return
        if state is not None and state.get("status") == "created":
            container.state = CREATED
            container.started_at = 0

    def _adopt(self, container: Container) -> None:
        self.index.add(container.id, container)
        sandbox = self.sandboxes.get(container.sandbox_id)
        self.index.reserve(_reservation(container.config, sandbox.config.metadata), container.id)
        self._persist(container)
        if container.conmon_pid:
            if conmon_alive(container.conmon_pid, container.id):
                self._watch(container)
            else:
                self._exited(container)  # its exit file (or its absence) says how it ended
        log.warning(
            "container.recovered_from_disk",
            container=container.id,
            pod=container.sandbox_id,
            state=container.state,
            exit_code=container.exit_code,
        )


__all__ = ["CREATED", "EXITED", "RUNNING", "UNKNOWN", "Container", "Containers", "CribError"]
