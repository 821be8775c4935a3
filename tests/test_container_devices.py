"""CreateContainer's devices: a host path that cannot be looked up is the request's fault."""

from __future__ import annotations

import pytest

from crib.container.container_spec import devices
from crib.errors import InvalidArgument
from crib.proto.cri import api_pb2


def _config(host_path: str) -> api_pb2.ContainerConfig:
    return api_pb2.ContainerConfig(devices=[api_pb2.Device(host_path=host_path, container_path="/dev/x")])


def test_a_real_device_becomes_a_spec_device_and_a_cgroup_rule() -> None:
    specs, rules = devices(_config("/dev/null"), privileged=False)
    assert [(s["path"], s["type"], s["major"], s["minor"]) for s in specs] == [("/dev/x", "c", 1, 3)]
    assert rules == [{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]


@pytest.mark.parametrize(
    ("host_path", "why"),
    [
        # Found by e2e/test_fuzz_rpc.py: a 4100-character path answered INTERNAL (ENAMETOOLONG).
        ("/x" * 2100, "File name too long"),
        ("/dev/null/x", "Not a directory"),
        ("/dev/a\x00b", "embedded null byte"),
    ],
)
def test_a_host_path_that_cannot_be_looked_up_is_invalid_argument(host_path: str, why: str) -> None:
    with pytest.raises(InvalidArgument, match=rf"cannot be looked up \({why}\)"):
        devices(_config(host_path), privileged=False)


def test_a_missing_device_and_a_plain_file_are_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="does not exist"):
        devices(_config("/dev/crib-no-such-device"), privileged=False)
    with pytest.raises(InvalidArgument, match="is not a device node"):
        devices(_config("/etc/passwd"), privileged=False)
