"""Version: the kubelet's handshake; it requires runtime_api_version v1."""

from __future__ import annotations

from crib import __version__
from crib.proto.cri import api_pb2

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
