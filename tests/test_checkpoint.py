"""CheckpointContainer's archive and its failure modes, with fake runc and criu binaries.

CRIU itself cannot run on every node (this CI's VM kernel among them), so the
OCI runtime is faked here at its command line: what crib does around it (the
archive's layout, atomic appearance, cleanup on failure and timeout, the CRIU
probe) is what these tests pin down. e2e/test_container.py covers the real one.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from crib.container import checkpoint
from crib.errors import DeadlineExceeded, Internal, InvalidArgument
from crib.runtime.oci_runtime import OCIRuntime

# Writes a CRIU-like image into --image-path, as `runc checkpoint` does.
FAKE_RUNC = """#!/bin/sh
echo "$@" > "{log}"
for arg in "$@"; do
  case "$arg" in --image-path=*) dir="${{arg#--image-path=}}";; esac
done
{body}
"""


def fake_runtime(tmp_path: Path, body: str) -> tuple[OCIRuntime, Path]:
    log = tmp_path / "argv"
    script = tmp_path / "fake-runc"
    script.write_text(FAKE_RUNC.format(log=log, body=body))
    script.chmod(0o755)
    return OCIRuntime("runc", str(script), tmp_path / "root"), log


def make_upper(tmp_path: Path) -> Path:
    upper = tmp_path / "upper"
    (upper / "var" / "data").mkdir(parents=True)
    (upper / "var" / "data" / "written").write_text("by the container")
    return upper


async def test_archive_holds_criu_images_metadata_spec_and_rootfs_diff(tmp_path: Path) -> None:
    runtime, argv = fake_runtime(tmp_path, 'echo criu > "$dir/inventory.img"')
    work, location = tmp_path / "state", tmp_path / "out" / "cp.tar"
    work.mkdir()
    location.parent.mkdir()
    spec = {"ociVersion": "1.0.2", "process": {"args": ["sleep", "100"]}}
    await checkpoint.checkpoint(
        runtime, "c" * 64, {"id": "c" * 64, "name": "app"}, spec, make_upper(tmp_path), location, work
    )

    args = argv.read_text().split()
    assert args[1] == "checkpoint" and "--leave-running" in args and args[-1] == "c" * 64
    with tarfile.open(location) as archive:
        names = archive.getnames()
        assert {
            "checkpoint",
            "checkpoint/inventory.img",
            "config.dump",
            "spec.dump",
            "rootfs-diff.tar",
        } <= set(names)
        config = json.load(archive.extractfile("config.dump"))  # type: ignore[arg-type]
        assert config["id"] == "c" * 64 and config["name"] == "app" and config["checkpointedAt"]
        assert json.load(archive.extractfile("spec.dump")) == spec  # type: ignore[arg-type]
        diff = archive.extractfile("rootfs-diff.tar")
        assert diff is not None
        with tarfile.open(fileobj=diff) as rootfs:
            member = rootfs.extractfile("var/data/written")
            assert member is not None and member.read() == b"by the container"
    # Nothing of the work is left: only the archive remains.
    assert list(work.iterdir()) == []
    assert list(location.parent.iterdir()) == [location]


async def test_failed_runc_leaves_nothing_and_says_why(tmp_path: Path) -> None:
    runtime, _ = fake_runtime(
        tmp_path,
        'echo "time=x level=error msg=\\"criu failed: type NOTIFY errno 0\\"" >&2\nexit 1',
    )
    work, out = tmp_path / "state", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    with pytest.raises(Internal) as err:
        await checkpoint.checkpoint(runtime, "d" * 64, {}, {}, make_upper(tmp_path), out / "cp.tar", work)
    assert "criu failed" in err.value.message and "d" * 64 in err.value.message
    assert list(work.iterdir()) == [] and list(out.iterdir()) == []


async def test_a_hung_checkpoint_is_cut_at_the_timeout(tmp_path: Path) -> None:
    runtime, _ = fake_runtime(tmp_path, "exec sleep 30")
    work, out = tmp_path / "state", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    with pytest.raises(DeadlineExceeded):
        await checkpoint.checkpoint(
            runtime, "e" * 64, {}, {}, make_upper(tmp_path), out / "cp.tar", work, timeout=0.5
        )
    assert list(work.iterdir()) == [] and list(out.iterdir()) == []


def test_location_must_be_an_absolute_file_path_in_an_existing_dir(tmp_path: Path) -> None:
    for bad, why in (
        ("", "empty"),
        ("cp.tar", "absolute"),
        (str(tmp_path / "missing" / "cp.tar"), "does not exist"),
        (str(tmp_path / ".." / "cp.tar"), "absolute"),
        (str(tmp_path), "directory"),
    ):
        with pytest.raises(InvalidArgument) as err:
            checkpoint.validate_location(bad)
        assert why in err.value.message
    assert checkpoint.validate_location(str(tmp_path / "cp.tar")) == tmp_path / "cp.tar"


def test_a_location_too_long_for_the_file_system_is_invalid_argument() -> None:
    # Found by e2e/test_fuzz_rpc.py: the ENAMETOOLONG of the check became INTERNAL.
    with pytest.raises(InvalidArgument, match="too long"):
        checkpoint.validate_location("/x" * 3000 + "/cp.tar")


async def test_criu_probe_reports_the_first_error_of_criu_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    criu = bin_dir / "criu-fake-broken"
    criu.write_text(
        "#!/bin/sh\necho 'Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds'\n"
        "echo 'Error (criu/crtools.c:260): Could not initialize kernel features detection.'\nexit 1\n"
    )
    criu.chmod(0o755)
    good = bin_dir / "criu-fake-good"
    good.write_text("#!/bin/sh\necho 'Looks good.'\n")
    good.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")

    broken = await checkpoint.criu_probe("criu-fake-broken")
    assert not broken.usable and "Unexpected rt vDSO area bounds" in broken.reason
    assert "kernel features" not in broken.reason
    assert (await checkpoint.criu_probe("criu-fake-good")).usable
    missing = await checkpoint.criu_probe("criu-fake-absent")
    assert not missing.usable and "not installed" in missing.reason
