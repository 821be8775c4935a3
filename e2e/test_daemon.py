"""cribd over its real socket: the whole CRI surface, config, start-up and shutdown."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import time
import tomllib
from collections.abc import Callable

import grpc
import pytest

from crib.proto.cri import api_pb2
from e2e.harness.cribd import Cribd
from e2e.harness.wait import wait_until

# RPC → the code an empty request gets (validation errors for calls that need arguments).
IMPLEMENTED = {
    "Version": grpc.StatusCode.OK,
    "Status": grpc.StatusCode.OK,
    "RuntimeConfig": grpc.StatusCode.OK,
    "UpdateRuntimeConfig": grpc.StatusCode.OK,
    "RunPodSandbox": grpc.StatusCode.INVALID_ARGUMENT,
    "StopPodSandbox": grpc.StatusCode.INVALID_ARGUMENT,
    "RemovePodSandbox": grpc.StatusCode.INVALID_ARGUMENT,
    "PodSandboxStatus": grpc.StatusCode.INVALID_ARGUMENT,
    "ListPodSandbox": grpc.StatusCode.OK,
    "StreamPodSandboxes": grpc.StatusCode.OK,
    "UpdatePodSandboxResources": grpc.StatusCode.INVALID_ARGUMENT,
    "PodSandboxStats": grpc.StatusCode.INVALID_ARGUMENT,
    "ListPodSandboxStats": grpc.StatusCode.OK,
    "StreamPodSandboxStats": grpc.StatusCode.OK,
    "PullImage": grpc.StatusCode.INVALID_ARGUMENT,
    "ImageStatus": grpc.StatusCode.OK,
    "ListImages": grpc.StatusCode.OK,
    "StreamImages": grpc.StatusCode.OK,
    "RemoveImage": grpc.StatusCode.INVALID_ARGUMENT,
    "ImageFsInfo": grpc.StatusCode.OK,
    "CreateContainer": grpc.StatusCode.INVALID_ARGUMENT,
    "StartContainer": grpc.StatusCode.INVALID_ARGUMENT,
    "StopContainer": grpc.StatusCode.INVALID_ARGUMENT,
    "RemoveContainer": grpc.StatusCode.INVALID_ARGUMENT,
    "ContainerStatus": grpc.StatusCode.INVALID_ARGUMENT,
    "ListContainers": grpc.StatusCode.OK,
    "StreamContainers": grpc.StatusCode.OK,
    "UpdateContainerResources": grpc.StatusCode.INVALID_ARGUMENT,
    "ReopenContainerLog": grpc.StatusCode.INVALID_ARGUMENT,
    "ExecSync": grpc.StatusCode.INVALID_ARGUMENT,
    "Exec": grpc.StatusCode.INVALID_ARGUMENT,
    "Attach": grpc.StatusCode.INVALID_ARGUMENT,
    "PortForward": grpc.StatusCode.INVALID_ARGUMENT,
    "ContainerStats": grpc.StatusCode.INVALID_ARGUMENT,
    "ListContainerStats": grpc.StatusCode.OK,
    "StreamContainerStats": grpc.StatusCode.OK,
    "ListMetricDescriptors": grpc.StatusCode.OK,
    "ListPodSandboxMetrics": grpc.StatusCode.OK,
    "StreamPodSandboxMetrics": grpc.StatusCode.OK,
    # An event stream never ends by itself: the call's deadline ends it.
    "GetContainerEvents": grpc.StatusCode.DEADLINE_EXCEEDED,
    "CheckpointContainer": grpc.StatusCode.INVALID_ARGUMENT,
}
# Answered with UNIMPLEMENTED and a reason other than "not implemented yet".
UNIMPLEMENTED_WITH_REASON: dict[str, str] = {}
CNI_BIN = "/usr/lib/cni"


def _call_empty(daemon: Cribd, service: str, method: api_pb2.DESCRIPTOR) -> grpc.StatusCode:
    request_cls = getattr(api_pb2, method.input_type.name)
    response_cls = getattr(api_pb2, method.output_type.name)
    path = f"/runtime.v1.{service}/{method.name}"
    timeout = 1 if method.name == "GetContainerEvents" else 10
    try:
        if method.server_streaming:
            call = daemon.channel.unary_stream(path, request_cls.SerializeToString, response_cls.FromString)
            for _ in call(request_cls(), timeout=timeout):
                pass
        else:
            call = daemon.channel.unary_unary(path, request_cls.SerializeToString, response_cls.FromString)
            call(request_cls(), timeout=10)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            if method.name in UNIMPLEMENTED_WITH_REASON:
                assert UNIMPLEMENTED_WITH_REASON[method.name] in exc.details()
            else:
                assert exc.details() == f"{service}.{method.name} is not implemented by crib yet"
        return exc.code()
    return grpc.StatusCode.OK


def test_every_rpc_answers_or_is_unimplemented(cribd: Cribd) -> None:
    codes: dict[str, grpc.StatusCode] = {}
    for service in ("RuntimeService", "ImageService"):
        for method in api_pb2.DESCRIPTOR.services_by_name[service].methods:
            codes[method.name] = _call_empty(cribd, service, method)
    assert len(codes) == 41
    assert grpc.StatusCode.UNKNOWN not in codes.values()
    for name, code in IMPLEMENTED.items():
        assert codes[name] == code, name
    unimplemented = {n for n, c in codes.items() if c == grpc.StatusCode.UNIMPLEMENTED}
    assert unimplemented - set(UNIMPLEMENTED_WITH_REASON) == set(codes) - set(IMPLEMENTED)

    # One log event per call, with its latency and outcome (the harness copies
    # cribd's stderr to the log file in a thread: wait for the last lines).
    def rpc_events_now() -> list[dict]:
        events = [json.loads(line) for line in cribd.log_text().splitlines() if line.startswith("{")]
        return [e for e in events if e.get("event") == "rpc"]

    wait_until(lambda: len(rpc_events_now()) >= len(codes))
    rpc_events = rpc_events_now()
    assert sorted(e["method"] for e in rpc_events) == sorted(codes)
    for e in rpc_events:
        # The client's deadline ends the event stream: cribd sees it cancelled.
        expected = "CANCELLED" if e["method"] == "GetContainerEvents" else codes[e["method"]].name
        assert e["code"] == expected
        assert e["duration_ms"] >= 0 and e["timestamp"] and e["level"]


def test_version(cribd: Cribd) -> None:
    r = cribd.runtime.Version(api_pb2.VersionRequest(version="v1"), timeout=5)
    assert (r.runtime_name, r.runtime_api_version, r.version) == ("crib", "v1", "0.1.0")
    assert r.runtime_version


def _conditions(daemon: Cribd) -> dict[str, api_pb2.RuntimeCondition]:
    r = daemon.runtime.Status(api_pb2.StatusRequest(), timeout=5)
    return {c.type: c for c in r.status.conditions}


def test_network_becomes_ready_when_a_cni_config_appears(cribd: Cribd) -> None:
    cond = _conditions(cribd)
    assert cond["RuntimeReady"].status is True
    assert cond["NetworkReady"].status is False
    assert cond["NetworkReady"].reason == "NetworkPluginNotReady"
    cribd.cni_conf_dir.mkdir()
    conflist = {
        "cniVersion": "1.0.0",
        "name": "crib-e2e",
        "plugins": [
            {"type": "bridge", "bridge": "crib0", "ipam": {"type": "host-local"}},
            {"type": "portmap"},
        ],
    }
    (cribd.cni_conf_dir / "10-crib.conflist").write_text(json.dumps(conflist))
    cond = _conditions(cribd)
    assert cond["NetworkReady"].status is True, cond["NetworkReady"].message
    # cribd learns of changes from an inotify watch, not by reading on every call: each change
    # below is made after a few calls answered from the reply made before, and must show at once.
    conf = cribd.cni_conf_dir / "10-crib.conflist"
    broken = {**conflist, "plugins": [{"type": "no-such-plugin"}]}
    steps: list[tuple[str, Callable[[], object], bool]] = [
        ("edited in place", lambda: conf.write_text(json.dumps(broken)), False),
        ("mended", lambda: conf.write_text(json.dumps(conflist)), True),
        ("removed", conf.unlink, False),
        ("the dir removed", cribd.cni_conf_dir.rmdir, False),
        ("the dir made again", cribd.cni_conf_dir.mkdir, False),
        ("written again", lambda: conf.write_text(json.dumps(conflist)), True),
    ]
    for what, change, ready in steps:
        for _ in range(3):
            _conditions(cribd)
        change()
        assert _conditions(cribd)["NetworkReady"].status is ready, what


def test_status_verbose_and_handlers(cribd: Cribd) -> None:
    r = cribd.runtime.Status(api_pb2.StatusRequest(verbose=True), timeout=5)
    config = json.loads(r.info["config"])
    assert config["root"] == str(cribd.root)
    assert config["listen"] == str(cribd.socket)
    names = [h.name for h in r.runtime_handlers]
    assert names[0] == "" and "runc" in names
    runc = next(h for h in r.runtime_handlers if h.name == "runc")
    assert (
        runc.features.recursive_read_only_mounts is True
    )  # runc 1.1 lists rro; the kernel has mount_setattr


def test_runtime_config_is_cgroupfs_here(cribd: Cribd) -> None:
    r = cribd.runtime.RuntimeConfig(api_pb2.RuntimeConfigRequest(), timeout=5)
    assert r.linux.cgroup_driver == api_pb2.CGROUPFS


def test_pod_cidr_is_kept_across_restarts(cribd: Cribd) -> None:
    req = api_pb2.UpdateRuntimeConfigRequest(
        runtime_config=api_pb2.RuntimeConfig(network_config=api_pb2.NetworkConfig(pod_cidr="10.88.0.0/16"))
    )
    cribd.runtime.UpdateRuntimeConfig(req, timeout=5)
    bad = api_pb2.UpdateRuntimeConfigRequest(
        runtime_config=api_pb2.RuntimeConfig(network_config=api_pb2.NetworkConfig(pod_cidr="10.88.0.0/99"))
    )
    with pytest.raises(grpc.RpcError) as info:
        cribd.runtime.UpdateRuntimeConfig(bad, timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a CIDR" in info.value.details()
    assert cribd.stop() == 0
    cribd.start()
    r = cribd.runtime.Status(api_pb2.StatusRequest(verbose=True), timeout=5)
    assert json.loads(r.info["cniconfig"])["podCIDRs"] == ["10.88.0.0/16"]


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ("bogus_key = 1", "bogus_key"),
        ("[image]\nmax_concurrent_downloads = 'many'", "image.max_concurrent_downloads"),
        ("[runtime]\ncgroup_driver = 'cgroupv3'", "runtime.cgroup_driver"),
        ("[streaming]\nport = 99999", "streaming.port"),
    ],
)
def test_broken_config_exits_naming_the_key(
    cribd_factory: Callable[..., Cribd], config: str, key: str
) -> None:
    daemon = cribd_factory(config)
    result = daemon.run()
    assert result.returncode == 2
    assert key in result.stderr
    assert not daemon.socket.exists()


def test_print_config_shows_the_effective_config(cribd_factory: Callable[..., Cribd]) -> None:
    daemon = cribd_factory("[image]\nmax_concurrent_downloads = 7")
    result = daemon.run("--print-config", "--log-level", "warning")
    assert result.returncode == 0, result.stderr
    effective = tomllib.loads(result.stdout)
    assert effective["image"]["max_concurrent_downloads"] == 7
    assert effective["log_level"] == "warning"
    assert effective["listen"] == str(daemon.socket)


def test_a_second_cribd_on_the_same_socket_is_refused(
    cribd: Cribd, cribd_factory: Callable[..., Cribd]
) -> None:
    second = cribd_factory()
    second.config_path.write_text(cribd.config_path.read_text())
    result = second.run()
    assert result.returncode == 1
    assert "already serving" in result.stderr and str(cribd.socket) in result.stderr
    # The first one is untouched and still serving.
    assert cribd.runtime.Version(api_pb2.VersionRequest(), timeout=5).runtime_name == "crib"


def test_socket_is_root_only_and_removed_on_sigterm(cribd: Cribd) -> None:
    st = cribd.socket.stat()
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    started = time.monotonic()
    assert cribd.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 10
    assert not cribd.socket.exists()
    assert '"cribd.stopped"' in cribd.log_text()


def test_sigint_also_exits_zero(cribd: Cribd) -> None:
    assert cribd.stop(signal.SIGINT) == 0


def test_after_sigkill_a_new_cribd_takes_over_the_stale_socket(cribd: Cribd) -> None:
    assert cribd.stop(signal.SIGKILL) == -signal.SIGKILL
    assert cribd.socket.exists()  # left behind by the killed daemon
    cribd.start()
    assert cribd.runtime.Version(api_pb2.VersionRequest(), timeout=5).runtime_name == "crib"


def test_a_foreign_socket_or_file_is_not_taken_over(cribd_factory: Callable[..., Cribd]) -> None:
    daemon = cribd_factory()
    daemon.state.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(str(daemon.socket))
        other.listen(1)
        result = daemon.run()
        assert result.returncode == 1
        assert "served by another process" in result.stderr
    os.unlink(daemon.socket)
    daemon.socket.write_text("not a socket")
    result = daemon.run()
    assert result.returncode == 1
    assert "not a socket" in result.stderr
    assert daemon.socket.read_text() == "not a socket"
