"""Status, RuntimeConfig and UpdateRuntimeConfig, below the gRPC layer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from crib import config as cfg
from crib.cni.pod_cidr import PodCIDRs, parse_pod_cidr
from crib.cri_server import runtime
from crib.cri_server.runtime import RuntimeStatusService, runtime_config_response, status_response
from crib.errors import InvalidArgument
from crib.proto.cri import api_pb2
from crib.runtime.runtime_handler import HandlerInfo
from crib.store.state_store import StateStore

HANDLERS = {
    "runc": HandlerInfo("runc", "runc", "/usr/sbin/runc", recursive_read_only_mounts=True),
    "crun": HandlerInfo("crun", "crun", "/usr/bin/crun"),
    "kata": HandlerInfo("kata", "kata-runtime", None),
}


def _config(tmp_path: Path, **runtime: str) -> cfg.Config:
    bins = tmp_path / "bin"
    bins.mkdir(exist_ok=True)
    conmon = bins / "conmon"
    conmon.write_text("#!/bin/sh\n")
    conmon.chmod(0o755)
    c = cfg.Config(cni=cfg.CNISection(bin_dirs=[str(bins)], conf_dir=str(tmp_path / "net.d")))
    c.runtime.conmon = runtime.get("conmon", str(conmon))
    c.runtime.handlers["kata"] = cfg.RuntimeHandler("kata-runtime")
    c.runtime.default_handler = runtime.get("default", "runc")
    return cfg.apply_overrides(c)


def _conditions(r: api_pb2.StatusResponse) -> dict[str, api_pb2.RuntimeCondition]:
    return {c.type: c for c in r.status.conditions}


def test_ready_runtime_without_cni_config(tmp_path: Path) -> None:
    r = status_response(_config(tmp_path), HANDLERS, verbose=False)
    cond = _conditions(r)
    assert cond["RuntimeReady"].status is True
    assert cond["NetworkReady"].status is False
    assert cond["NetworkReady"].reason == "NetworkPluginNotReady"
    assert "cni config uninitialized" in cond["NetworkReady"].message
    # Default handler under "", then each installed handler; kata is not installed.
    assert [(h.name, h.features.recursive_read_only_mounts) for h in r.runtime_handlers] == [
        ("", True),
        ("crun", False),
        ("runc", True),
    ]
    assert not r.info


def test_network_ready_with_a_usable_conflist(tmp_path: Path) -> None:
    c = _config(tmp_path)
    for plugin in ("bridge", "host-local"):
        p = Path(c.cni.bin_dirs[0]) / plugin
        p.write_text("#!/bin/sh\n")
        p.chmod(0o755)
    (tmp_path / "net.d").mkdir()
    conflist = {
        "cniVersion": "1.0.0",
        "name": "crib",
        "plugins": [{"type": "bridge"}, {"type": "host-local"}],
    }
    (tmp_path / "net.d" / "10-crib.conflist").write_text(json.dumps(conflist))
    r = status_response(c, HANDLERS, verbose=True, pod_cidrs=["10.88.0.0/16"])
    assert _conditions(r)["NetworkReady"].status is True
    assert json.loads(r.info["config"])["root"] == "/var/lib/crib"
    assert json.loads(r.info["cniconfig"]) == {
        "name": "crib",
        "file": str(tmp_path / "net.d" / "10-crib.conflist"),
        "podCIDRs": ["10.88.0.0/16"],
    }


def test_runtime_not_ready_without_its_binaries(tmp_path: Path) -> None:
    r = status_response(_config(tmp_path, default="kata"), HANDLERS, verbose=False)
    cond = _conditions(r)["RuntimeReady"]
    assert (cond.status, cond.reason) == (False, "OCIRuntimeNotFound")
    assert "kata-runtime" in cond.message
    r = status_response(_config(tmp_path, conmon="/nonexistent/conmon"), HANDLERS, verbose=False)
    cond = _conditions(r)["RuntimeReady"]
    assert (cond.status, cond.reason) == (False, "ConmonNotFound")


def test_runtime_config_reports_the_driver() -> None:
    assert runtime_config_response("cgroupfs").linux.cgroup_driver == api_pb2.CGROUPFS
    assert runtime_config_response("systemd").linux.cgroup_driver == api_pb2.SYSTEMD


def test_pod_cidr_is_validated_and_kept(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.db")
    cidrs = PodCIDRs(store)
    assert cidrs() == []
    cidrs.update("")
    assert cidrs() == []
    cidrs.update("10.244.1.0/24,fd00::/64")
    assert cidrs() == ["10.244.1.0/24", "fd00::/64"]
    with pytest.raises(InvalidArgument, match="not a CIDR"):
        cidrs.update("10.244.1.0/33")
    assert cidrs() == ["10.244.1.0/24", "fd00::/64"]
    # Kept across a restart.
    assert PodCIDRs(store)() == ["10.244.1.0/24", "fd00::/64"]
    assert parse_pod_cidr("10.1.2.3/8") == ["10.0.0.0/8"]
    store.close()


def _status(service: RuntimeStatusService) -> api_pb2.StatusResponse:
    return api_pb2.StatusResponse.FromString(service._status_reply())


def test_status_is_made_again_exactly_when_its_inputs_change(tmp_path: Path) -> None:
    c = _config(tmp_path)
    bins = Path(c.cni.bin_dirs[0])
    store = StateStore(tmp_path / "s.db")
    service = RuntimeStatusService(c, HANDLERS, "cgroupfs", PodCIDRs(store))
    first = service._status_reply()
    assert _conditions(_status(service))["NetworkReady"].status is False
    assert service._status_reply() is first  # nothing changed: the reply made before
    # A CNI installer drops its config in, then its plugin: each shows at the next call.
    net_d = tmp_path / "net.d"
    net_d.mkdir()
    conflist = {"cniVersion": "1.0.0", "name": "crib", "plugins": [{"type": "bridge"}]}
    (net_d / "10-crib.conflist").write_text(json.dumps(conflist))
    cond = _conditions(_status(service))["NetworkReady"]
    assert cond.status is False and "bridge" in cond.message
    plugin = bins / "bridge"
    plugin.write_text("#!/bin/sh\n")
    plugin.chmod(0o755)
    assert _conditions(_status(service))["NetworkReady"].status is True
    # An edit in place (same name, same dir) is seen too.
    conflist["plugins"] = [{"type": "missing-plugin"}]
    (net_d / "10-crib.conflist").write_text(json.dumps(conflist) + " ")
    assert _conditions(_status(service))["NetworkReady"].status is False
    # conmon going away makes the runtime not ready.
    Path(c.runtime.conmon).unlink()
    cond = _conditions(_status(service))["RuntimeReady"]
    assert (cond.status, cond.reason) == (False, "ConmonNotFound")
    store.close()


def test_status_reads_its_inputs_only_after_a_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = []
    real = runtime.status_inputs
    monkeypatch.setattr(runtime, "status_inputs", lambda *a: reads.append(1) or real(*a))
    c = _config(tmp_path)
    store = StateStore(tmp_path / "s.db")
    service = RuntimeStatusService(c, HANDLERS, "cgroupfs", PodCIDRs(store))
    try:
        for _ in range(50):
            assert _conditions(_status(service))["NetworkReady"].status is False
        assert len(reads) == 1
        net_d = tmp_path / "net.d"
        net_d.mkdir()
        (net_d / "10-crib.conflist").write_text(
            '{"cniVersion": "1.0.0", "name": "crib", "plugins": [{"type": "bridge"}]}'
        )
        plugin = Path(c.cni.bin_dirs[0]) / "bridge"
        plugin.write_text("#!/bin/sh\n")
        os.chmod(plugin, 0o755)
        assert _conditions(_status(service))["NetworkReady"].status is True
        for _ in range(50):
            _status(service)
        assert len(reads) == 2
    finally:
        service.close()
        store.close()
