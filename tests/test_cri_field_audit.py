"""Every field of every CRI request is handled, refused with a reason, or does not apply.

A field crib accepts and ignores is a silent lie to the kubelet (a `hostUsers: false`
pod running as the host's root). So each field of each request message of api.proto,
nested messages included, is listed below in exactly one table:

- HANDLED: the module that applies it; the test checks that module reads the field.
- REFUSED: crib answers INVALID_ARGUMENT or FAILED_PRECONDITION naming the field when a
  request sets it (the module named raises); the README lists each one with its reason.
- NOT_APPLICABLE: fields with nothing to do on a Linux node running crib, with why.

REFUSED_WHERE_UNSUPPORTED names HANDLED fields that are refused where the node or the
runtime handler lacks the feature (user namespaces without idmapped mounts, SELinux labels
without SELinux); the README lists them too.

A new field in a future api.proto fails the first test until someone decides.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

from google.protobuf.descriptor import Descriptor

from crib.proto.cri import api_pb2

ROOT = Path(__file__).resolve().parent.parent
CRIB = ROOT / "crib"

WINDOWS = "Windows only: crib runs Linux containers and ignores it, as containerd does on Linux"
NO_NRI = "for NRI plugins in containerd and CRI-O; crib has no plugin interface to pass it to"
ONE_IMAGE_STORE = (
    "selects a per-handler snapshotter in containerd; crib keeps one image store for all handlers"
)

HANDLED: dict[str, str] = {
    "AttachRequest.container_id": "cri_server/streaming.py",
    "AttachRequest.stderr": "cri_server/streaming.py",
    "AttachRequest.stdin": "cri_server/streaming.py",
    "AttachRequest.stdout": "cri_server/streaming.py",
    "AttachRequest.tty": "cri_server/streaming.py",
    "AuthConfig.auth": "cri_server/image.py",
    "AuthConfig.identity_token": "cri_server/image.py",
    "AuthConfig.password": "cri_server/image.py",
    "AuthConfig.registry_token": "cri_server/image.py",
    "AuthConfig.server_address": "cri_server/image.py",
    "AuthConfig.username": "cri_server/image.py",
    "CDIDevice.name": "container/cdi.py",
    "Capability.add_ambient_capabilities": "container/container_spec.py",
    "Capability.add_capabilities": "container/container_spec.py",
    "Capability.drop_capabilities": "container/container_spec.py",
    "CheckpointContainerRequest.container_id": "cri_server/container.py",
    "CheckpointContainerRequest.location": "cri_server/container.py",
    "CheckpointContainerRequest.timeout": "cri_server/container.py",
    "ContainerConfig.CDI_devices": "container/cdi_devices.py",
    "ContainerConfig.annotations": "cri_server/container.py",
    "ContainerConfig.args": "container/container_spec.py",
    "ContainerConfig.command": "container/container_spec.py",
    "ContainerConfig.devices": "container/container_spec.py",
    "ContainerConfig.envs": "container/container_spec.py",
    "ContainerConfig.image": "container/containers.py",
    "ContainerConfig.labels": "cri_server/container.py",
    "ContainerConfig.linux": "container/container_spec.py",
    "ContainerConfig.log_path": "container/containers.py",
    "ContainerConfig.metadata": "container/containers.py",
    "ContainerConfig.mounts": "container/mounts.py",
    "ContainerConfig.stdin": "container/containers.py",
    "ContainerConfig.stdin_once": "container/containers.py",
    "ContainerConfig.stop_signal": "container/container_spec.py",
    "ContainerConfig.tty": "container/container_spec.py",
    "ContainerConfig.working_dir": "container/container_spec.py",
    "ContainerFilter.id": "cri_server/container.py",
    "ContainerFilter.label_selector": "cri_server/container.py",
    "ContainerFilter.pod_sandbox_id": "cri_server/container.py",
    "ContainerFilter.state": "cri_server/container.py",
    "ContainerMetadata.attempt": "container/containers.py",
    "ContainerMetadata.name": "container/containers.py",
    "ContainerStateValue.state": "cri_server/container.py",
    "ContainerStatsFilter.id": "cri_server/container.py",
    "ContainerStatsFilter.label_selector": "cri_server/container.py",
    "ContainerStatsFilter.pod_sandbox_id": "cri_server/container.py",
    "ContainerStatsRequest.container_id": "cri_server/container.py",
    "ContainerStatusRequest.container_id": "cri_server/container.py",
    "ContainerStatusRequest.verbose": "cri_server/container.py",
    "CreateContainerRequest.config": "cri_server/container.py",
    "CreateContainerRequest.pod_sandbox_id": "cri_server/container.py",
    "DNSConfig.options": "sandbox/pod_files.py",
    "DNSConfig.searches": "sandbox/pod_files.py",
    "DNSConfig.servers": "sandbox/pod_files.py",
    "Device.container_path": "container/container_spec.py",
    "Device.host_path": "container/container_spec.py",
    "Device.permissions": "container/container_spec.py",
    "ExecRequest.cmd": "cri_server/streaming.py",
    "ExecRequest.container_id": "cri_server/streaming.py",
    "ExecRequest.stderr": "cri_server/streaming.py",
    "ExecRequest.stdin": "cri_server/streaming.py",
    "ExecRequest.stdout": "cri_server/streaming.py",
    "ExecRequest.tty": "cri_server/streaming.py",
    "ExecSyncRequest.cmd": "cri_server/container.py",
    "ExecSyncRequest.container_id": "cri_server/container.py",
    "ExecSyncRequest.timeout": "cri_server/container.py",
    "HugepageLimit.limit": "container/container_spec.py",
    "HugepageLimit.page_size": "container/container_spec.py",
    "ImageFilter.image": "cri_server/image.py",
    "ImageSpec.image": "cri_server/image.py",
    "ImageSpec.image_ref": "cri_server/image.py",
    "ImageSpec.user_specified_image": "container/containers.py",
    "ImageStatusRequest.image": "cri_server/image.py",
    "ImageStatusRequest.verbose": "cri_server/image.py",
    "Int64Value.value": "container/container_spec.py",
    "KeyValue.key": "container/container_spec.py",
    "KeyValue.value": "container/container_spec.py",
    "LinuxContainerConfig.resources": "container/container_spec.py",
    "LinuxContainerConfig.security_context": "container/container_spec.py",
    "LinuxContainerResources.cpu_period": "container/container_spec.py",
    "LinuxContainerResources.cpu_quota": "container/container_spec.py",
    "LinuxContainerResources.cpu_shares": "container/container_spec.py",
    "LinuxContainerResources.cpuset_cpus": "container/container_spec.py",
    "LinuxContainerResources.cpuset_mems": "container/container_spec.py",
    "LinuxContainerResources.hugepage_limits": "container/container_spec.py",
    "LinuxContainerResources.memory_limit_in_bytes": "container/container_spec.py",
    "LinuxContainerResources.memory_swap_limit_in_bytes": "container/container_spec.py",
    "LinuxContainerResources.oom_score_adj": "container/container_spec.py",
    "LinuxContainerResources.unified": "container/container_spec.py",
    "LinuxContainerSecurityContext.apparmor": "runtime/lsm.py",
    "LinuxContainerSecurityContext.apparmor_profile": "runtime/lsm.py",
    "LinuxContainerSecurityContext.capabilities": "container/container_spec.py",
    "LinuxContainerSecurityContext.masked_paths": "container/container_spec.py",
    "LinuxContainerSecurityContext.namespace_options": "container/container_spec.py",
    "LinuxContainerSecurityContext.no_new_privs": "container/container_spec.py",
    "LinuxContainerSecurityContext.privileged": "container/container_spec.py",
    "LinuxContainerSecurityContext.readonly_paths": "container/container_spec.py",
    "LinuxContainerSecurityContext.readonly_rootfs": "container/container_spec.py",
    "LinuxContainerSecurityContext.run_as_group": "container/container_spec.py",
    "LinuxContainerSecurityContext.run_as_user": "container/container_spec.py",
    "LinuxContainerSecurityContext.run_as_username": "container/container_spec.py",
    "LinuxContainerSecurityContext.seccomp": "container/container_spec.py",
    "LinuxContainerSecurityContext.seccomp_profile_path": "container/container_spec.py",
    "LinuxContainerSecurityContext.supplemental_groups": "container/container_spec.py",
    "LinuxContainerSecurityContext.supplemental_groups_policy": "container/container_spec.py",
    "LinuxPodSandboxConfig.cgroup_parent": "sandbox/sandboxes.py",
    "LinuxPodSandboxConfig.security_context": "sandbox/pause_spec.py",
    "LinuxPodSandboxConfig.sysctls": "sandbox/pause_spec.py",
    "LinuxSandboxSecurityContext.apparmor": "sandbox/sandboxes.py",
    "LinuxSandboxSecurityContext.namespace_options": "sandbox/pause_spec.py",
    "LinuxSandboxSecurityContext.privileged": "sandbox/pause_spec.py",
    "LinuxSandboxSecurityContext.run_as_group": "sandbox/pause_spec.py",
    "LinuxSandboxSecurityContext.run_as_user": "sandbox/pause_spec.py",
    "LinuxSandboxSecurityContext.seccomp": "sandbox/pause_spec.py",
    "LinuxSandboxSecurityContext.seccomp_profile_path": "sandbox/pause_spec.py",
    "LinuxSandboxSecurityContext.supplemental_groups": "sandbox/pause_spec.py",
    "ListContainerStatsRequest.filter": "cri_server/container.py",
    "ListContainersRequest.filter": "cri_server/container.py",
    "ListImagesRequest.filter": "cri_server/image.py",
    "ListPodSandboxRequest.filter": "cri_server/sandbox.py",
    "ListPodSandboxStatsRequest.filter": "cri_server/sandbox.py",
    "Mount.container_path": "container/mounts.py",
    "Mount.host_path": "container/mounts.py",
    "Mount.image": "container/image_volumes.py",
    "Mount.image_sub_path": "container/mounts.py",
    "Mount.propagation": "container/mounts.py",
    "Mount.readonly": "container/mounts.py",
    "Mount.recursive_read_only": "container/mounts.py",
    "NamespaceOption.ipc": "sandbox/pause_spec.py",
    "NamespaceOption.network": "sandbox/pause_spec.py",
    "NamespaceOption.pid": "container/container_spec.py",
    "NamespaceOption.target_id": "container/containers.py",
    "NetworkConfig.pod_cidr": "cri_server/runtime.py",
    "PodSandboxConfig.annotations": "sandbox/pod_config.py",
    "PodSandboxConfig.dns_config": "sandbox/sandboxes.py",
    "PodSandboxConfig.hostname": "sandbox/pod_files.py",
    "PodSandboxConfig.labels": "cri_server/sandbox.py",
    "PodSandboxConfig.linux": "sandbox/sandboxes.py",
    "PodSandboxConfig.log_directory": "sandbox/pod_config.py",
    "PodSandboxConfig.metadata": "sandbox/sandboxes.py",
    "PodSandboxConfig.port_mappings": "sandbox/pod_config.py",
    "PodSandboxFilter.id": "cri_server/sandbox.py",
    "PodSandboxFilter.label_selector": "cri_server/sandbox.py",
    "PodSandboxFilter.state": "cri_server/sandbox.py",
    "PodSandboxMetadata.attempt": "sandbox/sandboxes.py",
    "PodSandboxMetadata.name": "sandbox/sandboxes.py",
    "PodSandboxMetadata.namespace": "sandbox/sandboxes.py",
    "PodSandboxMetadata.uid": "sandbox/sandboxes.py",
    "PodSandboxStateValue.state": "cri_server/sandbox.py",
    "PodSandboxStatsFilter.id": "cri_server/sandbox.py",
    "PodSandboxStatsFilter.label_selector": "cri_server/sandbox.py",
    "PodSandboxStatsRequest.pod_sandbox_id": "cri_server/sandbox.py",
    "PodSandboxStatusRequest.pod_sandbox_id": "cri_server/sandbox.py",
    "PodSandboxStatusRequest.verbose": "cri_server/sandbox.py",
    "PortForwardRequest.pod_sandbox_id": "cri_server/streaming.py",
    "PortForwardRequest.port": "cri_server/streaming.py",
    "PortMapping.container_port": "sandbox/pod_config.py",
    "PortMapping.host_ip": "sandbox/pod_config.py",
    "PortMapping.host_port": "sandbox/pod_config.py",
    "PortMapping.protocol": "sandbox/pod_config.py",
    "PullImageRequest.auth": "cri_server/image.py",
    "PullImageRequest.image": "cri_server/image.py",
    "RemoveContainerRequest.container_id": "cri_server/container.py",
    "RemoveImageRequest.image": "cri_server/image.py",
    "RemovePodSandboxRequest.pod_sandbox_id": "cri_server/sandbox.py",
    "ReopenContainerLogRequest.container_id": "cri_server/container.py",
    "RunPodSandboxRequest.config": "cri_server/sandbox.py",
    "RunPodSandboxRequest.runtime_handler": "cri_server/sandbox.py",
    "RuntimeConfig.network_config": "cri_server/runtime.py",
    "SecurityProfile.localhost_ref": "runtime/lsm.py",
    "SecurityProfile.profile_type": "runtime/oci_spec.py",
    "StartContainerRequest.container_id": "cri_server/container.py",
    "StatusRequest.verbose": "cri_server/runtime.py",
    "StopContainerRequest.container_id": "cri_server/container.py",
    "StopContainerRequest.timeout": "cri_server/container.py",
    "StopPodSandboxRequest.pod_sandbox_id": "cri_server/sandbox.py",
    "StreamContainerStatsRequest.filter": "cri_server/container.py",
    "StreamContainersRequest.filter": "cri_server/container.py",
    "StreamImagesRequest.filter": "cri_server/image.py",
    "StreamPodSandboxStatsRequest.filter": "cri_server/sandbox.py",
    "StreamPodSandboxesRequest.filter": "cri_server/sandbox.py",
    "UpdateContainerResourcesRequest.container_id": "cri_server/container.py",
    "UpdateContainerResourcesRequest.linux": "cri_server/container.py",
    "UpdatePodSandboxResourcesRequest.pod_sandbox_id": "cri_server/sandbox.py",
    "UpdatePodSandboxResourcesRequest.resources": "cri_server/sandbox.py",
    "UpdateRuntimeConfigRequest.runtime_config": "cri_server/runtime.py",
    "NamespaceOption.userns_options": "runtime/userns.py",
    "UserNamespace.mode": "runtime/userns.py",
    "UserNamespace.uids": "runtime/userns.py",
    "UserNamespace.gids": "runtime/userns.py",
    "IDMapping.container_id": "runtime/userns.py",
    "IDMapping.host_id": "runtime/userns.py",
    "IDMapping.length": "runtime/userns.py",
    "Mount.uidMappings": "container/mounts.py",
    "Mount.gidMappings": "container/mounts.py",
    "LinuxSandboxSecurityContext.selinux_options": "sandbox/sandboxes.py",
    "LinuxContainerSecurityContext.selinux_options": "container/containers.py",
    "SELinuxOption.user": "runtime/selinux.py",
    "SELinuxOption.role": "runtime/selinux.py",
    "SELinuxOption.type": "runtime/selinux.py",
    "SELinuxOption.level": "runtime/selinux.py",
    # Where SELinux is off there is nothing to relabel, and the kubelet sets it on every
    # managed volume: it is applied where SELinux is on, never refused.
    "Mount.selinux_relabel": "container/mounts.py",
}

# Handled where the runtime handler can, refused (FAILED_PRECONDITION naming the field) where
# it cannot: field → (the module that refuses it, the field it reads to do so, why).
REFUSED_WHERE_UNSUPPORTED: dict[str, tuple[str, str, str]] = {
    "NamespaceOption.userns_options": (
        "runtime/userns.py",
        "userns_options",
        "a user namespace (hostUsers: false) needs idmapped mounts from the OCI runtime (runc >= 1.2) "
        "and Linux >= 5.19; handlers without them do not advertise user_namespaces",
    ),
    "Mount.uidMappings": ("container/mounts.py", "uidMappings", "the OCI runtime must idmap the mount"),
    "Mount.gidMappings": ("container/mounts.py", "gidMappings", "the OCI runtime must idmap the mount"),
    "LinuxSandboxSecurityContext.selinux_options": (
        "sandbox/sandboxes.py",
        "selinux_options",
        "a label needs SELinux on the node; without it the pod would run unlabelled",
    ),
    "LinuxContainerSecurityContext.selinux_options": (
        "container/containers.py",
        "selinux_options",
        "a label needs SELinux on the node; without it the container would run unlabelled",
    ),
}

# field → (the module that refuses it, the field it reads to do so, why); none today.
REFUSED: dict[str, tuple[str, str, str]] = {}

NOT_APPLICABLE: dict[str, str] = {
    "VersionRequest.version": "the kubelet's CRI version; crib answers for runtime.v1, as containerd does",
    "PodSandboxConfig.windows": WINDOWS,
    "ContainerConfig.windows": WINDOWS,
    "UpdateContainerResourcesRequest.windows": WINDOWS,
    "WindowsPodSandboxConfig.security_context": WINDOWS,
    "WindowsSandboxSecurityContext.run_as_username": WINDOWS,
    "WindowsSandboxSecurityContext.credential_spec": WINDOWS,
    "WindowsSandboxSecurityContext.host_process": WINDOWS,
    "WindowsSandboxSecurityContext.namespace_options": WINDOWS,
    "WindowsNamespaceOption.network": WINDOWS,
    "WindowsContainerConfig.resources": WINDOWS,
    "WindowsContainerConfig.security_context": WINDOWS,
    "WindowsContainerResources.cpu_shares": WINDOWS,
    "WindowsContainerResources.cpu_count": WINDOWS,
    "WindowsContainerResources.cpu_maximum": WINDOWS,
    "WindowsContainerResources.memory_limit_in_bytes": WINDOWS,
    "WindowsContainerResources.rootfs_size_in_bytes": WINDOWS,
    "WindowsContainerResources.affinity_cpus": WINDOWS,
    "WindowsCpuGroupAffinity.cpu_mask": WINDOWS,
    "WindowsCpuGroupAffinity.cpu_group": WINDOWS,
    "WindowsContainerSecurityContext.run_as_username": WINDOWS,
    "WindowsContainerSecurityContext.credential_spec": WINDOWS,
    "WindowsContainerSecurityContext.host_process": WINDOWS,
    "LinuxPodSandboxConfig.overhead": "informational: the kubelet sizes the pod cgroup (resources) "
    "with the overhead already in it; " + NO_NRI,
    "UpdatePodSandboxResourcesRequest.overhead": "informational, as in RunPodSandbox; " + NO_NRI,
    "UpdateContainerResourcesRequest.annotations": NO_NRI,
    "ImageSpec.annotations": ONE_IMAGE_STORE,
    "ImageSpec.runtime_handler": ONE_IMAGE_STORE,
    "PullImageRequest.sandbox_config": ONE_IMAGE_STORE,
    "CreateContainerRequest.sandbox_config": "crib uses the pod config recorded at RunPodSandbox, "
    "which the kubelet sends again unchanged",
    "LinuxPodSandboxConfig.resources": "the kubelet writes the pod cgroup (cgroup_parent) itself; "
    "containerd passes these only to NRI and to VM sandboxes (UpdatePodSandboxResources does write them)",
    "LinuxSandboxSecurityContext.readonly_rootfs": "the pause container's rootfs is always read-only",
    "LinuxSandboxSecurityContext.supplemental_groups_policy": "the pause process gets exactly the pod's "
    "supplemental_groups (Strict either way); each container's own security context carries the policy",
}


def request_fields() -> list[str]:
    seen: set[str] = set()
    out: list[str] = []

    def walk(message: Descriptor) -> None:
        if message.full_name in seen:
            return
        seen.add(message.full_name)
        for f in message.fields:
            out.append(f"{message.name}.{f.name}")
            if f.message_type is not None and not f.message_type.GetOptions().map_entry:
                walk(f.message_type)

    for service in api_pb2.DESCRIPTOR.services_by_name.values():
        for method in service.methods:
            walk(method.input_type)
    return out


@cache
def fields_read_by(module: str) -> frozenset[str]:
    """Attribute names the module reads, and field names it passes to HasField/WhichOneof."""
    tree = ast.parse((CRIB / module).read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("HasField", "WhichOneof")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(str(node.args[0].value))
    return frozenset(names)


def test_every_request_field_is_decided_once() -> None:
    fields = request_fields()
    tables = [set(HANDLED), set(REFUSED), set(NOT_APPLICABLE)]
    undecided = [f for f in fields if not any(f in t for t in tables)]
    assert not undecided, f"request fields nobody decided on (handle, refuse or explain): {undecided}"
    twice = [f for f in fields if sum(f in t for t in tables) > 1]
    assert not twice, f"fields in more than one table: {twice}"
    stale = sorted(set().union(*tables) - set(fields))
    assert not stale, f"table entries for fields api.proto does not have: {stale}"


def test_each_handled_or_refused_field_is_read_where_the_table_says() -> None:
    wrong = []
    read = [(name, module, name.split(".", 1)[1]) for name, module in HANDLED.items()]
    read += [(name, module, field) for name, (module, field, _) in REFUSED.items()]
    read += [(name, module, field) for name, (module, field, _) in REFUSED_WHERE_UNSUPPORTED.items()]
    for name, module, field_name in read:
        if field_name not in fields_read_by(module):
            wrong.append(f"{name}: crib/{module} never reads .{field_name}")
    assert not wrong, "\n".join(wrong)


def test_every_reason_is_given() -> None:
    assert all(reason.strip() for _, _, reason in REFUSED.values())
    assert all(reason.strip() for reason in NOT_APPLICABLE.values())


def test_the_readme_lists_each_refused_field() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## What works today", 1)[1].split("\n## ", 1)[0]
    refused = [*REFUSED, *REFUSED_WHERE_UNSUPPORTED]
    missing = [name for name in refused if not re.search(rf"`{re.escape(name)}`", section)]
    assert not missing, f"refused fields the README's 'What works today' does not list: {missing}"


def test_fields_refused_where_unsupported_are_handled_elsewhere() -> None:
    assert set(REFUSED_WHERE_UNSUPPORTED) <= set(HANDLED)
    assert all(reason.strip() for _, _, reason in REFUSED_WHERE_UNSUPPORTED.values())
