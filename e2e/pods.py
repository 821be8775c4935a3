"""Helpers for e2e tests that run pods: configs, calls, and looking inside a pod's namespaces."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import uuid

import grpc

from crib.proto.cri import api_pb2
from crib.proto.crib.v1 import crib_pb2, crib_pb2_grpc
from e2e.harness.cribd import Cribd
from e2e.harness.wait import wait_until
from e2e.images import builder
from e2e.images.registry_client import RegistryClient

POD_TIMEOUT = 60


def pod_config(name: str = "", namespace: str = "e2e", **kw: object) -> api_pb2.PodSandboxConfig:
    name = name or f"pod-{uuid.uuid4().hex[:8]}"
    config = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name=name, namespace=namespace, uid=uuid.uuid4().hex, attempt=0),
        hostname=name,
        log_directory="",
        labels={"app": name, "suite": "e2e"},
        annotations={"crib.e2e/test": "yes"},
    )
    for key, value in kw.items():
        if key == "host_network":
            opts = config.linux.security_context.namespace_options
            opts.network = api_pb2.NODE if value else api_pb2.POD
        elif key == "port_mappings":
            config.port_mappings.extend(value)  # type: ignore[arg-type]
        elif key == "dns":
            config.dns_config.CopyFrom(value)  # type: ignore[arg-type]
        elif key == "sysctls":
            config.linux.sysctls.update(value)  # type: ignore[arg-type]
        else:
            raise TypeError(key)
    return config


def run_pod(daemon: Cribd, config: api_pb2.PodSandboxConfig, handler: str = "") -> str:
    r = daemon.runtime.RunPodSandbox(
        api_pb2.RunPodSandboxRequest(config=config, runtime_handler=handler), timeout=POD_TIMEOUT
    )
    return r.pod_sandbox_id


def stop_pod(daemon: Cribd, pod_id: str) -> None:
    daemon.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=POD_TIMEOUT)


def remove_pod(daemon: Cribd, pod_id: str) -> None:
    daemon.runtime.RemovePodSandbox(
        api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=POD_TIMEOUT
    )


def pod_status(daemon: Cribd, pod_id: str) -> tuple[api_pb2.PodSandboxStatus, dict]:
    r = daemon.runtime.PodSandboxStatus(
        api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True), timeout=10
    )
    return r.status, json.loads(r.info["info"])


def list_pods(daemon: Cribd, f: api_pb2.PodSandboxFilter | None = None) -> list[api_pb2.PodSandbox]:
    return list(daemon.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(filter=f), timeout=10).items)


def grpc_code(call: object) -> grpc.StatusCode:
    try:
        call()  # type: ignore[operator]
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def in_netns(netns: str, code: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run Python code inside a network namespace (nsenter), the test's own interpreter."""
    return subprocess.run(
        ["nsenter", f"--net={netns}", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_in_netns(netns: str, code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["nsenter", f"--net={netns}", sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


ECHO_SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {port})); s.listen(5)
print("listening", flush=True)
for _ in range({count}):
    c, _ = s.accept()
    data = c.recv(65536)
    c.sendall(b"echo:" + data)
    c.close()
"""

ECHO_CLIENT = """
import socket
c = socket.create_connection(("{host}", {port}), timeout=10)
c.sendall(b"{payload}")
print(c.recv(65536).decode())
"""


def echo_server(netns: str, port: int, count: int = 1) -> subprocess.Popen[str]:
    proc = start_in_netns(netns, ECHO_SERVER.format(port=port, count=count))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "listening", proc.stderr.read() if proc.stderr else line
    return proc


def ns_inode(path: str) -> int:
    return os.stat(path).st_ino


# --- containers -------------------------------------------------------------------------------


@functools.cache
def busybox_rootfs_tar() -> bytes:
    """The busybox root filesystem of e2e/images as a tar, built once per process."""
    return builder.tar_bytes(builder.busybox_rootfs())


def import_busybox(daemon: Cribd, name: str = "crib.e2e/busybox:1", **config: object) -> str:
    """Make a busybox image in cribd without a registry (CribService.ImportImage); returns its ID."""
    stub = crib_pb2_grpc.CribServiceStub(daemon.channel)
    data = busybox_rootfs_tar()
    chunk = 1 << 20
    first = crib_pb2.ImportImageRequest(name=name, config=crib_pb2.ImportConfig(**config), data=data[:chunk])
    rest = [crib_pb2.ImportImageRequest(data=data[i : i + chunk]) for i in range(chunk, len(data), chunk)]
    return stub.ImportImage(iter([first, *rest]), timeout=60).image.id


def push_and_pull(
    daemon: Cribd, registry_url: str, registry_host: str, repo: str, image: builder.BuiltImage
) -> tuple[str, str]:
    """Push `image` to the test registry as `repo:1`, pull it through PullImage as a node does.

    (the reference, the image_ref PullImage answered)."""
    with RegistryClient(registry_url) as client:
        client.push_image(repo, "1", image)
    ref = f"{registry_host}/{repo}:1"
    pulled = daemon.images.PullImage(
        api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=ref)), timeout=60
    ).image_ref
    return ref, pulled


def container_config(
    name: str,
    command: list[str],
    image: str = "crib.e2e/busybox:1",
    **kw: object,
) -> api_pb2.ContainerConfig:
    config = api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(name=name, attempt=0),
        image=api_pb2.ImageSpec(image=image),
        command=command,
        log_path=f"{name}/0.log",
        labels={"ctr": name},
    )
    for key, value in kw.items():
        if key == "env":
            config.envs.extend(api_pb2.KeyValue(key=k, value=v.encode()) for k, v in value.items())  # type: ignore[union-attr]
        elif key in ("args", "working_dir", "tty", "stdin", "stdin_once"):
            if key == "args":
                config.args.extend(value)  # type: ignore[arg-type]
            else:
                setattr(config, key, value)
        elif key == "security":
            config.linux.security_context.CopyFrom(value)  # type: ignore[arg-type]
        elif key == "resources":
            config.linux.resources.CopyFrom(value)  # type: ignore[arg-type]
        elif key == "mounts":
            config.mounts.extend(value)  # type: ignore[arg-type]
        else:
            raise TypeError(key)
    return config


def create_container(daemon: Cribd, pod_id: str, config: api_pb2.ContainerConfig) -> str:
    return daemon.runtime.CreateContainer(
        api_pb2.CreateContainerRequest(pod_sandbox_id=pod_id, config=config), timeout=POD_TIMEOUT
    ).container_id


def start_container(daemon: Cribd, container_id: str) -> None:
    daemon.runtime.StartContainer(
        api_pb2.StartContainerRequest(container_id=container_id), timeout=POD_TIMEOUT
    )


def run_container(daemon: Cribd, pod_id: str, config: api_pb2.ContainerConfig) -> str:
    container_id = create_container(daemon, pod_id, config)
    start_container(daemon, container_id)
    return container_id


def container_status(
    daemon: Cribd, container_id: str, verbose: bool = False
) -> api_pb2.ContainerStatusResponse:
    return daemon.runtime.ContainerStatus(
        api_pb2.ContainerStatusRequest(container_id=container_id, verbose=verbose), timeout=10
    )


def exec_sync(
    daemon: Cribd, container_id: str, cmd: list[str], timeout: int = 10
) -> api_pb2.ExecSyncResponse:
    return daemon.runtime.ExecSync(
        api_pb2.ExecSyncRequest(container_id=container_id, cmd=cmd, timeout=timeout), timeout=timeout + 30
    )


def wait_exited(daemon: Cribd, container_id: str, timeout: float = 20) -> api_pb2.ContainerStatus:
    wait_until(
        lambda: container_status(daemon, container_id).status.state == api_pb2.CONTAINER_EXITED,
        timeout=timeout,
    )
    return container_status(daemon, container_id).status
