"""cribctl version and info against a real cribd, with crictl's endpoint rules.

Where a crictl binary is available ($CRICTL or `crictl` on PATH), its output is
compared byte for byte; it is never built or shipped by this project.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from e2e.harness.cribd import REPO_ROOT, Cribd


def cribctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("CONTAINER_RUNTIME_ENDPOINT", "CRI_CONFIG_FILE")}
    base["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [sys.executable, "-m", "crib.cribctl.main", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**base, **(env or {})},
    )


def test_version_prints_crictl_fields(cribd: Cribd) -> None:
    r = cribctl("-r", f"unix://{cribd.socket}", "version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "Version:  0.1.0",
        "RuntimeName:  crib",
        "RuntimeVersion:  0.1.0",
        "RuntimeApiVersion:  v1",
    ]


def test_info_json_and_yaml(cribd: Cribd) -> None:
    env = {"CONTAINER_RUNTIME_ENDPOINT": f"unix://{cribd.socket}"}
    r = cribctl("info", env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    conditions = {c["type"]: c for c in doc["status"]["conditions"]}
    assert conditions["RuntimeReady"]["status"] is True
    assert conditions["NetworkReady"] == {
        "type": "NetworkReady",
        "status": False,
        "reason": "NetworkPluginNotReady",
        "message": conditions["NetworkReady"]["message"],
    }
    assert doc["config"]["root"] == str(cribd.root)
    assert {"name": "runc", "features": {"recursive_read_only_mounts": True}} in doc["runtimeHandlers"]
    as_yaml = cribctl("info", "-o", "yaml", env=env)
    assert yaml.safe_load(as_yaml.stdout) == doc
    quiet = json.loads(cribctl("info", "-q", env=env).stdout)
    assert "config" not in quiet and quiet["status"] == doc["status"]


def test_endpoint_from_crictl_yaml(cribd: Cribd, tmp_path: Path) -> None:
    cfg = tmp_path / "crictl.yaml"
    cfg.write_text(f"runtime-endpoint: unix://{cribd.socket}\ntimeout: 5\n")
    r = cribctl("version", env={"CRI_CONFIG_FILE": str(cfg)})
    assert r.returncode == 0, r.stderr
    assert "RuntimeName:  crib" in r.stdout
    # The flag beats the file.
    r = cribctl("--config", str(cfg), "-r", f"unix://{tmp_path}/nothing.sock", "version")
    assert r.returncode == 1
    assert "rpc error: code = Unavailable" in r.stderr


def test_bad_client_config_is_reported(tmp_path: Path) -> None:
    cfg = tmp_path / "crictl.yaml"
    cfg.write_text("runtime-endpoint: unix:///x.sock\nfrobnicate: true\n")
    r = cribctl("--config", str(cfg), "version")
    assert r.returncode == 1
    assert "'frobnicate' is not valid" in r.stderr


def _crictl() -> str | None:
    return os.environ.get("CRICTL") or shutil.which("crictl")


@pytest.mark.skipif(_crictl() is None, reason="no crictl binary ($CRICTL or PATH) to compare against")
@pytest.mark.parametrize("args", [["version"], ["info"], ["info", "-o", "yaml"], ["info", "-q"]])
def test_output_is_byte_for_byte_crictls(cribd: Cribd, args: list[str]) -> None:
    endpoint = ["-r", f"unix://{cribd.socket}"]
    ours = cribctl(*endpoint, *args)
    theirs = subprocess.run(
        [_crictl(), "--config", "/dev/null", *endpoint, *args], capture_output=True, text=True, timeout=30
    )
    assert theirs.returncode == 0, theirs.stderr
    assert ours.stdout == theirs.stdout
