"""RunPodSandbox's checks of a pod config, before anything is made for the pod."""

from __future__ import annotations

import pytest

from crib.errors import InvalidArgument
from crib.proto.cri import api_pb2
from crib.sandbox.pod_config import validate


def _config(sysctls: dict[str, str], **namespaces: int) -> api_pb2.PodSandboxConfig:
    config = api_pb2.PodSandboxConfig(metadata=api_pb2.PodSandboxMetadata(name="p", namespace="ns", uid="u"))
    config.linux.sysctls.update(sysctls)
    for kind, mode in namespaces.items():
        setattr(config.linux.security_context.namespace_options, kind, mode)
    return config


def test_namespaced_sysctls_pass() -> None:
    validate(_config({"net.ipv4.ip_forward": "1", "kernel.shmmax": "1", "fs.mqueue.msg_max": "1"}))
    validate(_config({"kernel.domainname": "x", "kernel.msgmax": "1"}))


def test_a_sysctl_of_no_pod_namespace_is_invalid_argument() -> None:
    # Found by e2e/test_fuzz_rpc.py: runc refused "k3" at the pause's start, which became INTERNAL.
    for key in ("k3", "kernel.pid_max", "vm.swappiness", "kernel.hostname"):
        with pytest.raises(InvalidArgument, match="is not namespaced"):
            validate(_config({key: "1"}))


def test_a_sysctl_of_a_namespace_the_pod_shares_with_the_node_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="own network and UTS namespace"):
        validate(_config({"net.ipv4.ip_forward": "1"}, network=api_pb2.NODE))
    with pytest.raises(InvalidArgument, match="own IPC namespace"):
        validate(_config({"kernel.shmmax": "1"}, ipc=api_pb2.NODE))


def test_a_name_that_would_break_the_cni_args_is_invalid_argument() -> None:
    # Found by e2e/test_fuzz_rpc.py: namespace ";" made the bridge plugin refuse CNI_ARGS
    # ("ARGS: invalid pair"), which became INTERNAL after the netns was made.
    for field_name in ("name", "namespace", "uid"):
        for bad in (";", "a=b", "x;K8S_POD_NAME=y"):
            config = _config({})
            setattr(config.metadata, field_name, bad)
            with pytest.raises(InvalidArgument, match=f"metadata.{field_name} .* is not a valid name"):
                validate(config)
