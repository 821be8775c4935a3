"""Which sysctls a pod may set: those of a namespace of its own, as runc and the kubelet allow."""

from __future__ import annotations

from collections.abc import Mapping

from crib.errors import InvalidArgument
from crib.proto.cri import api_pb2

# The sysctls a namespace of the pod's own holds (runc refuses any other, as the kubelet does).
IPC_SYSCTLS = frozenset(
    {
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    }
)


def check_sysctls(sysctls: Mapping[str, str], opts: api_pb2.NamespaceOption) -> None:
    for key in sysctls:
        if key in IPC_SYSCTLS or key.startswith("fs.mqueue."):
            namespace, shared = "IPC", opts.ipc == api_pb2.NODE
        elif key.startswith("net.") or key == "kernel.domainname":
            namespace, shared = "network and UTS", opts.network == api_pb2.NODE
        else:
            raise InvalidArgument(
                f"RunPodSandbox: sysctl {key!r} is not namespaced: only kernel.shm*, kernel.msg*, "
                "kernel.sem, fs.mqueue.*, net.* and kernel.domainname can be set for a pod"
            )
        if shared:
            raise InvalidArgument(f"RunPodSandbox: sysctl {key!r} needs the pod's own {namespace} namespace")
