"""Sample CRI objects and log bytes that several cribctl test modules share."""

from __future__ import annotations

from crib.proto.cri import api_pb2

ID_A = "78c311b9216670672fd8792e2744e9390571378244d36dc2c3331ce786e40340"
ID_B = "a052041bafa1731ab4f1c9fbe0b11606a680e802540a2a4cec5a506cadd43282"
ID_C = "467f5007964787b8c25f44de218245dbefd50001fdb555a0af6fc3f5ec958b62"
POD = "3a596a4dd8e68edc23612fea348f82edb37866bea6d6c23224a80db23ec80cb2"
IMAGE_ID = "sha256:85ff7cf95cd2e97b98f5f7c8ed03b698018d4e6323541af8511ca22877c814cc"
CREATED = 1795848226106651483  # 2026-11-28T06:43:46.106651483Z
SECOND = 10**9


T0 = "2026-11-28T06:43:48.000000001Z"
T1 = "2026-11-28T07:43:49.5+01:00"
T2 = "2026-11-28T06:43:50.000000003Z"
LOG = (
    f"{T0} stdout F line0\n"
    f"{T0} stderr F err0\n"
    f"{T1} stdout P par\n"
    f"{T1} stdout P t\n"
    f"{T1} stdout F line1\n"
    f"{T2} stderr F err2\n"
    f"{T2} stdout F line2\n"
).encode()


def sample_container(
    cid: str, name: str, state: int, created: int, image: str = "crib.e2e/busybox:1", **labels: str
) -> api_pb2.Container:
    return api_pb2.Container(
        id=cid,
        pod_sandbox_id=POD,
        metadata=api_pb2.ContainerMetadata(name=name, attempt=1 if name == "b" else 0),
        image=api_pb2.ImageSpec(image=image, user_specified_image=image),
        image_ref=IMAGE_ID,
        image_id=IMAGE_ID,
        state=state,
        created_at=created,
        labels=labels,
    )


def sample_stats(
    cid: str, name: str, cpu: int, ts: int, mem: int, disk: int = 8192, inodes: int = 4
) -> api_pb2.ContainerStats:
    s = api_pb2.ContainerStats(
        attributes=api_pb2.ContainerAttributes(id=cid, metadata=api_pb2.ContainerMetadata(name=name))
    )
    if cpu:
        s.cpu.timestamp = ts
        s.cpu.usage_core_nano_seconds.value = cpu
    if mem:
        s.memory.working_set_bytes.value = mem
    s.writable_layer.used_bytes.value = disk
    s.writable_layer.inodes_used.value = inodes
    return s


# A pod config with every field crictl runp reads, and what it decodes to.
FULL_YAML = """
metadata:
  name: web
  namespace: e2e
  uid: u-1
  attempt: 2
hostname: web-host
log_directory: /var/log/pods/web
dns_config:
  servers: [10.96.0.10]
  searches: [svc.cluster.local]
  options: [ndots:5]
port_mappings:
- protocol: 1
  container_port: 53
  host_port: 5353
  host_ip: 127.0.0.1
labels:
  app: web
  replicas: 3        # a number for a string: made a string
  canary: yes        # YAML 1.1: a boolean, then "true"
annotations:
  ratio: 1.5e6
linux:
  cgroup_parent: /kubepods
  sysctls: {net.ipv4.ip_unprivileged_port_start: "0"}
  security_context:
    namespace_options: {network: 0, pid: 1, ipc: 2}
    run_as_user: {value: 1000}
    supplemental_groups: [1, 2]
"""

FULL_CONFIG = api_pb2.PodSandboxConfig(
    metadata=api_pb2.PodSandboxMetadata(name="web", namespace="e2e", uid="u-1", attempt=2),
    hostname="web-host",
    log_directory="/var/log/pods/web",
    dns_config=api_pb2.DNSConfig(servers=["10.96.0.10"], searches=["svc.cluster.local"], options=["ndots:5"]),
    port_mappings=[
        api_pb2.PortMapping(protocol=api_pb2.UDP, container_port=53, host_port=5353, host_ip="127.0.0.1")
    ],
    labels={"app": "web", "replicas": "3", "canary": "true"},
    annotations={"ratio": "1.5e+06"},
    linux=api_pb2.LinuxPodSandboxConfig(
        cgroup_parent="/kubepods",
        sysctls={"net.ipv4.ip_unprivileged_port_start": "0"},
        security_context=api_pb2.LinuxSandboxSecurityContext(
            namespace_options=api_pb2.NamespaceOption(
                network=api_pb2.POD, pid=api_pb2.CONTAINER, ipc=api_pb2.NODE
            ),
            run_as_user=api_pb2.Int64Value(value=1000),
            supplemental_groups=[1, 2],
        ),
    ),
)
