"""The runtime itself: Version (the kubelet's handshake), Status (RuntimeReady and NetworkReady
decide whether the node is Ready), RuntimeConfig (the cgroup driver) and UpdateRuntimeConfig
(the pod CIDR)."""

from __future__ import annotations

import json
import os

import grpc

from crib import __version__
from crib.cni.config import CONFIG_EXTENSIONS, NetworkNotReady, load_network
from crib.cni.pod_cidr import PodCIDRs
from crib.config import Config
from crib.proto.cri import api_pb2
from crib.runtime.dir_watch import DirWatch
from crib.runtime.runtime_handler import HandlerInfo, resolve_binary

RUNTIME_NAME = "crib"
# The kubelet-runtime API version string every CRI runtime answers.
KUBE_RUNTIME_API_VERSION = "0.1.0"
RUNTIME_API_VERSION = "v1"


def version_response() -> api_pb2.VersionResponse:
    return api_pb2.VersionResponse(
        version=KUBE_RUNTIME_API_VERSION,
        runtime_name=RUNTIME_NAME,
        runtime_version=__version__,
        runtime_api_version=RUNTIME_API_VERSION,
    )


# Never changes while cribd runs: serialized once.
_VERSION_REPLY = version_response().SerializeToString()

RUNTIME_READY = "RuntimeReady"
NETWORK_READY = "NetworkReady"


def status_inputs(config: Config, conmon: str | None) -> tuple[object, ...]:
    """What Status's conditions are computed from, read cheaply (a directory listing and a
    few stats): each CNI config file's name, inode, size and mtime; the bin dirs' mtimes (a
    plugin installed or removed changes them); the conmon binary's. The same inputs give
    the same answer, so a kubelet's every-few-seconds Status does not parse the CNI
    configs again."""
    files: list[tuple[str, int, int, int]] = []
    try:
        with os.scandir(config.cni.conf_dir) as entries:
            for entry in entries:
                if entry.name.endswith(CONFIG_EXTENSIONS):
                    try:
                        st = entry.stat()
                    except OSError:
                        continue
                    files.append((entry.name, st.st_ino, st.st_size, st.st_mtime_ns))
    except OSError as exc:
        files.append((f"error {exc.errno}", 0, 0, 0))
    dirs = []
    for d in config.cni.bin_dirs:
        try:
            dirs.append(os.stat(d).st_mtime_ns)
        except OSError:
            dirs.append(None)
    try:
        st = os.stat(conmon) if conmon else None
        conmon_key = (conmon, st.st_mode, st.st_mtime_ns) if st else None
    except OSError:
        conmon_key = None
    cni = config.cni
    return (cni.conf_dir, tuple(cni.bin_dirs), cni.network_name, sorted(files), tuple(dirs), conmon_key)


def status_dirs(config: Config, conmon: str | None) -> list[str]:
    """The directories whose changes can change Status's conditions: the CNI config dir and
    the directories its configs link into, the CNI bin dirs, and conmon's directory (its
    link's and its target's), or every dir conmon may yet appear in while it is missing."""
    dirs = [config.cni.conf_dir, *config.cni.bin_dirs]
    try:
        with os.scandir(config.cni.conf_dir) as entries:
            for entry in entries:
                if entry.name.endswith(CONFIG_EXTENSIONS) and entry.is_symlink():
                    dirs.append(os.path.dirname(os.path.realpath(entry.path)))
    except OSError:
        pass
    if conmon is not None:
        dirs += [os.path.dirname(conmon), os.path.dirname(os.path.realpath(conmon))]
    elif "/" in config.runtime.conmon:
        dirs.append(os.path.dirname(os.path.abspath(config.runtime.conmon)))
    else:
        dirs += [os.path.abspath(d or ".") for d in os.environ.get("PATH", os.defpath).split(os.pathsep)]
    return dirs


def _runtime_condition(config: Config, handlers: dict[str, HandlerInfo]) -> api_pb2.RuntimeCondition:
    name = config.runtime.default_handler
    default = handlers.get(name)
    if default is None or default.path is None:
        binary = config.runtime.handlers[name].binary
        return api_pb2.RuntimeCondition(
            type=RUNTIME_READY,
            status=False,
            reason="OCIRuntimeNotFound",
            message=f"the default runtime handler {name!r} needs {binary!r}, which is not installed",
        )
    if resolve_binary(config.runtime.conmon) is None:
        return api_pb2.RuntimeCondition(
            type=RUNTIME_READY,
            status=False,
            reason="ConmonNotFound",
            message=f"conmon {config.runtime.conmon!r} is not installed",
        )
    return api_pb2.RuntimeCondition(type=RUNTIME_READY, status=True)


def _network_condition(config: Config) -> tuple[api_pb2.RuntimeCondition, dict[str, str] | None]:
    # Read on every call: a few small files, and the kubelet asks every few
    # seconds, so a config dropped in by a CNI installer shows up at once.
    try:
        net = load_network(config.cni.conf_dir, config.cni.bin_dirs, config.cni.network_name)
    except NetworkNotReady as exc:
        condition = api_pb2.RuntimeCondition(
            type=NETWORK_READY, status=False, reason="NetworkPluginNotReady", message=str(exc)
        )
        return condition, None
    return api_pb2.RuntimeCondition(type=NETWORK_READY, status=True), {
        "name": net.name,
        "file": str(net.path),
    }


def _handler(name: str, info: HandlerInfo) -> api_pb2.RuntimeHandler:
    return api_pb2.RuntimeHandler(
        name=name,
        features=api_pb2.RuntimeHandlerFeatures(
            recursive_read_only_mounts=info.recursive_read_only_mounts,
            # Only where the OCI runtime and the kernel idmap mounts: elsewhere crib refuses
            # hostUsers: false, and saying yes would let the kubelet admit such pods.
            user_namespaces=info.user_namespaces,
        ),
    )


def status_response(
    config: Config, handlers: dict[str, HandlerInfo], verbose: bool, pod_cidrs: list[str] | None = None
) -> api_pb2.StatusResponse:
    network, cni = _network_condition(config)
    status = api_pb2.RuntimeStatus(conditions=[_runtime_condition(config, handlers), network])
    # The default handler is listed once more under the empty name, which is
    # what a pod without a RuntimeClass asks for.
    listed: list[api_pb2.RuntimeHandler] = []
    default = handlers.get(config.runtime.default_handler)
    if default is not None and default.path is not None:
        listed.append(_handler("", default))
    listed += [_handler(name, info) for name, info in sorted(handlers.items()) if info.path is not None]
    response = api_pb2.StatusResponse(
        status=status,
        runtime_handlers=listed,
        # Strict: the process gets only the groups the pod names, not the image's /etc/group ones.
        features=api_pb2.RuntimeFeatures(supplemental_groups_policy=True),
    )
    if verbose:
        response.info["config"] = config.to_json()
        response.info["cniconfig"] = json.dumps({**(cni or {}), "podCIDRs": pod_cidrs or []})
        # Not "runtimeHandlers": crictl info puts the CRI list under that key.
        response.info["ociRuntimes"] = json.dumps(
            {name: {"binary": h.binary, "path": h.path} for name, h in sorted(handlers.items())}
        )
    return response


def runtime_config_response(cgroup_driver: str) -> api_pb2.RuntimeConfigResponse:
    driver = api_pb2.SYSTEMD if cgroup_driver == "systemd" else api_pb2.CGROUPFS
    return api_pb2.RuntimeConfigResponse(linux=api_pb2.LinuxRuntimeConfiguration(cgroup_driver=driver))


class RuntimeStatusService:
    """Version, Status, RuntimeConfig and UpdateRuntimeConfig of RuntimeService."""

    def __init__(
        self, config: Config, handlers: dict[str, HandlerInfo], cgroup_driver: str, pod_cidrs: PodCIDRs
    ) -> None:
        self.config = config
        self.handlers = handlers
        self.cgroup_driver = cgroup_driver
        self.pod_cidrs = pod_cidrs
        self._conmon: str | None = None
        self._status_key: tuple[object, ...] | None = None
        self._status = b""
        self._watch = DirWatch()

    async def Version(self, request: api_pb2.VersionRequest, context: grpc.aio.ServicerContext) -> bytes:
        return _VERSION_REPLY

    async def Status(
        self, request: api_pb2.StatusRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.StatusResponse | bytes:
        if request.verbose:
            return status_response(self.config, self.handlers, True, self.pod_cidrs())
        return self._status_reply()

    def _status_reply(self) -> bytes:
        """The non-verbose reply, serialized, made again only when its inputs changed. The
        inputs are looked at only when an inotify watch on their directories saw something
        (one read of a descriptor otherwise); then, on the loop, a listing and a few stats,
        and after a real change a few small CNI files parsed."""
        if not self._watch.changed():
            return self._status
        if self._conmon is None or not os.access(self._conmon, os.X_OK):
            self._conmon = resolve_binary(self.config.runtime.conmon)
        # Armed before the inputs are read: a change made while they are read is seen next call.
        self._watch.watch(status_dirs(self.config, self._conmon))
        key = status_inputs(self.config, self._conmon)
        if key != self._status_key:
            reply = status_response(self.config, self.handlers, False).SerializeToString()
            self._status_key, self._status = key, reply
        return self._status

    def close(self) -> None:
        self._watch.close()

    async def RuntimeConfig(
        self, request: api_pb2.RuntimeConfigRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.RuntimeConfigResponse:
        return runtime_config_response(self.cgroup_driver)

    async def UpdateRuntimeConfig(
        self, request: api_pb2.UpdateRuntimeConfigRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.UpdateRuntimeConfigResponse:
        self.pod_cidrs.update(request.runtime_config.network_config.pod_cidr)
        return api_pb2.UpdateRuntimeConfigResponse()
