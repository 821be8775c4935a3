"""cribd: the CRI daemon's start-up, socket, signals and shutdown.

Exit codes: 0 after SIGTERM/SIGINT, 1 when it cannot start (socket in use,
directories unusable), 2 for a configuration it refuses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import fcntl
import os
import signal
import socket
import sqlite3
import ssl
import stat
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from crib import __version__, node_metrics, tracing
from crib import config as config_mod
from crib.cni.pod_cidr import PodCIDRs
from crib.config import Config, ConfigError
from crib.container.containers import Containers
from crib.cri_server.config_reload import ConfigReloader
from crib.cri_server.container import ContainerService
from crib.cri_server.crib_service import CribService
from crib.cri_server.events import EventService, container_event
from crib.cri_server.image import ImageService
from crib.cri_server.metrics import MetricsService
from crib.cri_server.rpc import generic_handler
from crib.cri_server.runtime import RuntimeStatusService
from crib.cri_server.sandbox import SandboxService
from crib.cri_server.streaming import StreamingService, backend
from crib.errors import CribError
from crib.image_service.images import Images
from crib.log_setup import configure as configure_logging
from crib.log_setup import get_logger
from crib.proto.crib.v1 import crib_pb2
from crib.runtime import cgroup_driver, conmon, lsm, runtime_handler, selinux
from crib.runtime.runtime_env import RuntimeEnv, conmon_alive
from crib.sandbox.sandboxes import Sandboxes
from crib.store.state_store import StateStore
from crib.streaming.server import StreamingServer

log = get_logger("crib.daemon")

# In-flight calls get this long to finish after SIGTERM/SIGINT.
SHUTDOWN_GRACE_S = 10.0
# The kubelet's client limit; list replies must stay under it.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class StartupError(Exception):
    """cribd cannot start; the message says why, for the operator."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="cribd", description="crib: a CRI-only container runtime daemon")
    p.add_argument("--config", type=Path, help=f"TOML config file (default {config_mod.DEFAULT_CONFIG_PATH})")
    p.add_argument("--listen", help="CRI socket path or unix:// URL (default <state>/crib.sock)")
    p.add_argument("--root", help="persistent state directory (default /var/lib/crib)")
    p.add_argument("--state", help="runtime state directory (default /run/crib)")
    p.add_argument("--log-level", choices=config_mod.LOG_LEVELS)
    p.add_argument("--log-format", choices=config_mod.LOG_FORMATS)
    p.add_argument("--print-config", action="store_true", help="print the effective config as TOML and exit")
    p.add_argument("--version", action="version", version=f"cribd {__version__}")
    return p.parse_args(argv)


def load_config(args: argparse.Namespace) -> Config:
    config = config_mod.load(args.config)
    return config_mod.apply_overrides(
        config,
        listen=args.listen,
        root=args.root,
        state=args.state,
        log_level=args.log_level,
        log_format=args.log_format,
    )


class SocketLock:
    """Only one cribd per socket: an flock on `<socket>.lock`, held for the daemon's life.

    The kernel drops the lock when the process dies, so a crashed cribd never
    blocks its successor, and the stale socket it left is then safe to remove.
    """

    def __init__(self, socket_path: Path) -> None:
        self.path = socket_path.with_name(socket_path.name + ".lock")
        self.fd = -1

    def acquire(self, socket_path: Path) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StartupError(
                    f"another cribd (pid {holder}) is already serving {socket_path}; stop it first"
                ) from None
            raise StartupError(f"cannot lock {self.path}: {exc.strerror}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _socket_is_live(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(path))
        except OSError:
            return False
        return True


def prepare_socket_path(path: Path) -> None:
    """Remove a stale socket; refuse one that something still serves."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise StartupError(f"{path} exists and is not a socket; refusing to replace it")
    if _socket_is_live(path):
        raise StartupError(f"{path} is served by another process; refusing to take it over")
    path.unlink()


def prepare_dirs(config: Config) -> None:
    for d in (config.root, config.state):
        try:
            os.makedirs(d, mode=0o711, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"cannot create {d}: {exc.strerror}") from None
    try:
        config.socket_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"cannot create {config.socket_path.parent}: {exc.strerror}") from None


def _tls_context(config: Config) -> ssl.SSLContext | None:
    if not config.streaming.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.streaming.tls_cert, config.streaming.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"streaming TLS: cannot load {config.streaming.tls_cert}: {exc}") from None
    return context


async def _open_store(path: Path) -> StateStore:
    """The state store, checked; what keeps it from opening (a full disk) stops the start, clearly."""
    try:
        return await asyncio.to_thread(StateStore.open_checked, path)
    except sqlite3.Error as exc:
        st = os.statvfs(path.parent)
        hint = " (its file system is full: free space, then start cribd again)" if st.f_bavail == 0 else ""
        raise StartupError(f"cannot open the state store {path}: {exc}{hint}") from None


def _runtime_dirs(config: Config) -> int:
    """How many pod and container dirs are on disk: with no state store, something was lost."""
    dirs = (Path(config.state) / "sandboxes", Path(config.state) / "containers")
    return sum(len(os.listdir(d)) for d in dirs if d.is_dir())


def _state_counts(sandboxes: Sandboxes, containers: Containers) -> dict[str, Any]:
    """For the scrape thread: the indexes iterate over snapshots, so no lock is needed."""
    listed = containers.list()
    return {
        "pods": Counter(s.state for s in sandboxes.list()),
        "containers": Counter(c.state for c in listed),
        "conmons": sum(1 for c in listed if conmon_alive(c.conmon_pid, c.id)),
    }


def _start_metrics(address: str) -> node_metrics.MetricsServer | None:
    """The /metrics endpoint if configured; a port in use is logged and cribd goes on without it."""
    if not address:
        return None
    metrics_server = node_metrics.MetricsServer(address)
    try:
        metrics_server.start()
    except OSError as exc:
        log.error("metrics.listen_failed", key="metrics.address", address=address, error=str(exc))
        return None
    log.info("metrics.serving", url=f"http://{address.rpartition(':')[0]}:{metrics_server.port}/metrics")
    return metrics_server


async def serve(config: Config, load: Callable[[], Config] | None = None) -> int:
    """Run cribd; `load` reads the configuration again (SIGHUP), default: the one given."""
    prepare_dirs(config)
    sock = config.socket_path
    lock = SocketLock(sock)
    lock.acquire(sock)
    store: StateStore | None = None
    images: Images | None = None
    env: RuntimeEnv | None = None
    streaming: StreamingServer | None = None
    metrics_server: node_metrics.MetricsServer | None = None
    server: grpc.aio.Server | None = None
    status_service: RuntimeStatusService | None = None
    bound = False
    try:
        prepare_socket_path(sock)
        # Before recovery, whose runtime calls are traced too.
        tracing.setup(config.tracing)
        store = await _open_store(Path(config.root) / "state.db")
        if store.found == "missing" and (on_disk := _runtime_dirs(config)):
            log.warning(
                "state_store.missing",
                file=str(store.path),
                dirs_on_disk=on_disk,
                action="recovering pods and containers from the runtime's files",
            )

        # The graph, bottom up: images, the runtime environment, pods, containers. Images ask
        # pods and containers what they use (for GC and removal) only once those exist.
        def images_in_use() -> tuple[set[str], set[str]]:
            a_images, a_layers = sandboxes.images_in_use()
            b_images, b_layers = containers.images_in_use()
            return a_images | b_images, a_layers | b_layers

        def images_in_volumes() -> set[str]:
            return containers.volume_images()

        images = Images(
            config.image,
            Path(config.root),
            store,
            in_use=images_in_use,
            in_volumes=images_in_volumes,
        )
        driver, warning = cgroup_driver.effective_driver(config.runtime.cgroup_driver)
        if warning:
            log.warning("cgroup_driver.fallback", reason=warning)
        handlers = await runtime_handler.probe_all(
            {name: h.binary for name, h in config.runtime.handlers.items()}
        )
        # conmons of containers this cribd starts re-parent to it, and it reaps them.
        conmon.become_subreaper()
        env = RuntimeEnv(
            root=Path(config.root),
            state=Path(config.state),
            conmon_binary=config.runtime.conmon,
            cgroup_driver=driver,
            handlers=handlers,
            default_handler=config.runtime.default_handler,
        )
        pod_cidrs = PodCIDRs(store)
        apparmor = lsm.AppArmor.probe()
        sandboxes = Sandboxes(config, env, images, store, pod_cidrs, apparmor, selinux.SELinux.probe())
        containers = Containers(
            env,
            images,
            sandboxes,
            store,
            config.runtime.conmon,
            make_event=container_event,
            apparmor=apparmor,
            cdi_spec_dirs=[Path(d) for d in config.runtime.cdi_spec_dirs],
        )
        # One trace for the runtime calls of recovery, rather than one trace per call.
        with tracing.span("cribd.recover"):
            await sandboxes.recover()
            await containers.recover()
            await sandboxes.remove_incomplete(containers)
            # What a crash left with no record at all: no pod or container will ever claim it.
            known = {s.id for s in sandboxes.list()} | {c.id for c in containers.list()}
            for handler, orphan in await asyncio.to_thread(env.runtime_orphans, known):
                log.warning("container.orphan_killed", container=orphan, handler=handler)
                with contextlib.suppress(CribError):
                    await env.runtime(handler).delete(orphan, force=True)
            await sandboxes.remove_orphans(known)
            if orphans := await asyncio.to_thread(env.remove_orphans, known):
                log.warning("container.orphans_removed", containers=orphans)
            if store.rebuilt:
                # Layer records may have gone with the store: the layers still in use are
                # taken back, the others removed.
                await images.adopt_layers()
        streaming = StreamingServer(
            config.streaming.address,
            config.streaming.port,
            backend(containers, sandboxes),
            idle_timeout=config.streaming.idle_timeout,
            creation_timeout=config.streaming.creation_timeout,
            tls=_tls_context(config),
        )
        await streaming.start()
        node_metrics.register(node_metrics.StateCollector(lambda: _state_counts(sandboxes, containers)))
        metrics_server = _start_metrics(config.metrics.address)
        # Everything that runs is known now: what no image or container names
        # is a leftover of a crash.
        await images.collect_garbage()

        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ]
        )
        # RuntimeService is served by one object per CRI concept.
        container_service = ContainerService(containers)
        metrics_service = MetricsService(sandboxes, containers, config.stats.included_pod_metrics)
        status_service = RuntimeStatusService(config, handlers, driver, pod_cidrs)
        runtime_service = [
            status_service,
            SandboxService(sandboxes, containers, container_service),
            container_service,
            EventService(containers),
            StreamingService(containers, sandboxes, streaming),
            metrics_service,
        ]
        server.add_generic_rpc_handlers(
            (
                generic_handler("RuntimeService", *runtime_service),
                generic_handler("ImageService", ImageService(images)),
                generic_handler("CribService", CribService(images), module=crib_pb2),
            )
        )
        # The socket is root-only (0660) from the moment it exists.
        old_umask = os.umask(0o117)
        try:
            server.add_insecure_port(f"unix://{sock}")
            bound = True
            await server.start()
        finally:
            os.umask(old_umask)
        os.chmod(sock, 0o660)

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda s=sig: (log.info("cribd.signal", signal=s.name), stop.set()))

        def set_families(families: list[str]) -> None:
            metrics_service.families = families

        reloader = ConfigReloader(config, load or (lambda: config), images, set_families)
        loop.add_signal_handler(
            signal.SIGHUP, lambda: (log.info("cribd.signal", signal="SIGHUP"), reloader.reload())
        )
        log.info(
            "cribd.started",
            version=__version__,
            pid=os.getpid(),
            socket=str(sock),
            root=config.root,
            state=config.state,
            cgroup_driver=driver,
            handlers=sorted(n for n, h in handlers.items() if h.path),
        )
        await stop.wait()
        # Stop accepting calls; in-flight ones get the grace period. Containers
        # are never touched: they live on under their own conmon.
        await server.stop(SHUTDOWN_GRACE_S)
        server = None
        log.info("cribd.stopped")
        return 0
    finally:
        if server is not None:
            await server.stop(None)
        if metrics_server is not None:
            metrics_server.stop()
        if streaming is not None:
            await streaming.close()
        if env is not None:
            env.watcher.close()
        if status_service is not None:
            status_service.close()
        if images is not None:
            await images.close()
        if store is not None:
            store.close()
        if bound:
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()
        # Last, once no call is in flight: the spans queued for the collector go out (bounded).
        tracing.shutdown()
        lock.release()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args)
    except ConfigError as exc:
        print(f"cribd: invalid configuration: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        sys.stdout.write(config_mod.to_toml(config))
        return 0
    configure_logging(config.log_level, config.log_format)
    try:
        return asyncio.run(serve(config, lambda: load_config(args)))
    except StartupError as exc:
        log.error("cribd.start_failed", error=str(exc))
        print(f"cribd: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
