"""Images loaded from archives (docker save, OCI layout) run as containers, not just list."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from crib.proto.cri import api_pb2
from e2e.harness.clients import CALL_TIMEOUT_S, client_env, cribctl_argv
from e2e.harness.cribd import Cribd
from e2e.images import archives, builder
from e2e.pods import container_config, exec_sync, pod_config, remove_pod, run_container, run_pod


@pytest.mark.parametrize("kind", ["docker-save", "oci-layout"])
def test_a_loaded_image_runs(net_cribd: Cribd, tmp_path: Path, kind: str) -> None:
    image = builder.busybox_image(
        fmt="docker" if kind == "docker-save" else "oci",
        compression="zstd" if kind == "oci-layout" else "gzip",
        env=["PATH=/bin", "FROM_ARCHIVE=" + kind],
    )
    archive, name = tmp_path / "image.tar", f"example.com/e2e/loaded-{kind}:1"
    if kind == "docker-save":
        archives.docker_save_tar([(image, [name])], archive)
    else:
        archives.oci_layout_tar([(image, name)], archive)
    r = subprocess.run(
        cribctl_argv(net_cribd, "load", "-i", str(archive)),
        capture_output=True, text=True, timeout=CALL_TIMEOUT_S, env=client_env(),
    )  # fmt: skip
    assert (r.returncode, r.stdout) == (0, f"Loaded image: {name}\n"), r.stderr

    pod_id = run_pod(net_cribd, pod_config(f"loaded-{kind}"))
    try:
        cid = run_container(
            net_cribd, pod_id, container_config("from-archive", ["sleep", "3600"], image=name)
        )
        status = net_cribd.runtime.ContainerStatus(
            api_pb2.ContainerStatusRequest(container_id=cid), timeout=10
        ).status
        assert status.state == api_pb2.CONTAINER_RUNNING
        assert status.image_id == image.config.digest
        # The image's own layer and config reach the process.
        out = exec_sync(net_cribd, cid, ["sh", "-c", 'cat /etc/crib-e2e; echo "$FROM_ARCHIVE"'])
        assert (out.exit_code, out.stdout) == (
            0,
            f"amd64 {'zstd' if kind == 'oci-layout' else 'gzip'}\n{kind}\n".encode(),
        )
    finally:
        remove_pod(net_cribd, pod_id)
