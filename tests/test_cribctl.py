"""cribctl: crictl's endpoint precedence and output formats."""

from __future__ import annotations

from pathlib import Path

import pytest

from crib.cribctl import endpoint
from crib.cribctl.endpoint import ClientConfigError, parse_go_duration, resolve
from crib.cribctl.info_cmds import info_document
from crib.cribctl.output import go_json_indent, go_struct_json, go_yaml
from crib.proto.cri import api_pb2

pytestmark = pytest.mark.usefixtures("no_crictl_config")


def _resolve(**kw: object) -> endpoint.Endpoints:
    args = {
        "runtime_endpoint": None,
        "image_endpoint": None,
        "timeout": None,
        "debug": None,
        "config_path": None,
    }
    args.update(kw)
    return resolve(**args)  # type: ignore[arg-type]


def test_defaults() -> None:
    ep = _resolve()
    assert ep == endpoint.Endpoints("unix:///run/crib/crib.sock", "unix:///run/crib/crib.sock", 2.0, False)


def test_config_file_then_flags(tmp_path: Path) -> None:
    f = tmp_path / "crictl.yaml"
    f.write_text("runtime-endpoint: unix:///cfg.sock\ntimeout: 7\ndebug: true\npull-image-on-create: false\n")
    ep = _resolve(config_path=str(f))
    assert (ep.runtime, ep.image, ep.timeout, ep.debug) == ("unix:///cfg.sock", "unix:///cfg.sock", 7.0, True)
    ep = _resolve(config_path=str(f), runtime_endpoint="unix:///flag.sock", timeout="500ms", debug=False)
    assert (ep.runtime, ep.image, ep.timeout, ep.debug) == (
        "unix:///flag.sock",
        "unix:///flag.sock",
        0.5,
        False,
    )
    f.write_text("runtime-endpoint: unix:///r.sock\nimage-endpoint: unix:///i.sock\n")
    ep = _resolve(config_path=str(f))
    assert (ep.runtime, ep.image) == ("unix:///r.sock", "unix:///i.sock")
    ep = _resolve(config_path=str(f), image_endpoint="unix:///flag-i.sock")
    assert (ep.runtime, ep.image) == ("unix:///r.sock", "unix:///flag-i.sock")


def test_default_config_file_is_used_and_ignored_when_broken(tmp_path: Path) -> None:
    endpoint.DEFAULT_CONFIG_PATH.write_text("runtime-endpoint: unix:///default.sock\n")
    assert _resolve().runtime == "unix:///default.sock"
    endpoint.DEFAULT_CONFIG_PATH.write_text("runtime-endpoint: unix:///default.sock\nbogus: 1\n")
    assert _resolve().runtime == "unix:///run/crib/crib.sock"


def test_explicit_broken_config_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "crictl.yaml"
    f.write_text("bogus: 1\n")
    with pytest.raises(ClientConfigError, match="'bogus' is not valid"):
        _resolve(config_path=str(f))
    f.write_text("timeout: soon\n")
    with pytest.raises(ClientConfigError, match="timeout"):
        _resolve(config_path=str(f))
    with pytest.raises(ClientConfigError):
        _resolve(config_path=str(tmp_path / "missing.yaml"))


def test_timeout_flag_zero_means_default() -> None:
    assert _resolve(timeout="0s").timeout == 2.0
    assert _resolve(timeout="1m30s").timeout == 90.0
    with pytest.raises(ClientConfigError, match="--timeout"):
        _resolve(timeout="ten")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2s", 2.0), ("1.5s", 1.5), ("250ms", 0.25), ("1h", 3600.0), ("3", 3.0), ("1m1s", 61.0)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "1x", "1s2", "-"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_duration(text)


def test_grpc_target() -> None:
    assert endpoint.grpc_target("unix:///run/crib/crib.sock") == "unix:///run/crib/crib.sock"
    assert endpoint.grpc_target("/run/crib/crib.sock") == "unix:///run/crib/crib.sock"
    with pytest.raises(ClientConfigError, match="only unix sockets"):
        endpoint.grpc_target("tcp://127.0.0.1:1234")


def test_go_struct_json_omits_zero_values_but_keeps_set_messages() -> None:
    h = api_pb2.RuntimeHandler(name="", features=api_pb2.RuntimeHandlerFeatures())
    assert go_struct_json(h) == {"features": {}}
    h = api_pb2.RuntimeHandler(name="runc", features=api_pb2.RuntimeHandlerFeatures(user_namespaces=True))
    assert go_struct_json(h) == {"name": "runc", "features": {"user_namespaces": True}}
    assert go_struct_json(api_pb2.RuntimeHandler()) == {}


def test_info_document_matches_crictl_layout() -> None:
    r = api_pb2.StatusResponse(
        status=api_pb2.RuntimeStatus(conditions=[api_pb2.RuntimeCondition(type="RuntimeReady", status=True)]),
        runtime_handlers=[api_pb2.RuntimeHandler(name="runc")],
        info={"config": '{"a": 1.0, "b": "<x>"}', "plain": '"quoted"'},
    )
    doc = info_document(r)
    assert doc["status"] == {
        "conditions": [{"type": "RuntimeReady", "status": True, "reason": "", "message": ""}]
    }
    assert doc["runtimeHandlers"] == [{"name": "runc"}]
    assert "features" not in doc
    assert doc["plain"] == "quoted"
    text = go_json_indent(doc)
    assert '"a": 1,' in text and '"\\u003cx\\u003e"' in text
    assert 'message: ""' in go_yaml(doc)
