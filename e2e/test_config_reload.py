"""SIGHUP reloads crib.toml: a new mirror takes the next pull, a bad file changes nothing,
and what needs a restart says so."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator

import grpc
import pytest

from crib.proto.cri import api_pb2
from e2e.harness.cribd import Cribd
from e2e.harness.registry import Registry
from e2e.harness.wait import wait_until
from e2e.images import builder
from e2e.images.registry_client import RegistryClient

# A registry name nothing resolves: every pull of it goes through the configured mirror.
MIRRORED = "mirrored.invalid"


@pytest.fixture
def second_registry() -> Iterator[Registry]:
    reg = Registry().start()
    yield reg
    reg.stop()


def _mirror_config(mirror: Registry) -> str:
    return f'[image.mirrors.{json.dumps(MIRRORED)}]\nendpoints = ["{mirror.url}"]\nmirrors_only = true\n'


def _events(daemon: Cribd, event: str) -> list[dict]:
    lines = daemon.log_path.read_text().splitlines()
    return [json.loads(line) for line in lines if f'"event": "{event}"' in line]


def _hup(daemon: Cribd, event: str) -> dict:
    """SIGHUP, then the reload's outcome event (config.reloaded or config.reload_failed)."""
    seen = len(_events(daemon, event))
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    wait_until(
        lambda: len(_events(daemon, event)) > seen,
        10,
        f"cribd to log {event}, with {daemon.config_path.read_text()!r}",
    )
    return _events(daemon, event)[-1]


def _pull(daemon: Cribd, name: str) -> str:
    image = api_pb2.ImageSpec(image=f"{MIRRORED}/{name}")
    return daemon.images.PullImage(api_pb2.PullImageRequest(image=image), timeout=60).image_ref


def test_sighup_switches_the_mirror_for_the_next_pull(
    cribd_factory: Callable[..., Cribd], registry: Registry, second_registry: Registry
) -> None:
    with RegistryClient(registry.url) as first, RegistryClient(second_registry.url) as second:
        first.push_image("e2e/only-first", "1", builder.busybox_image(working_dir="/first"))
        second.push_image("e2e/only-second", "1", builder.busybox_image(working_dir="/second"))
    daemon = cribd_factory(_mirror_config(registry)).start()
    assert _pull(daemon, "e2e/only-first:1")

    daemon.write_config(_mirror_config(second_registry))
    text = daemon.config_path.read_text()
    daemon.config_path.write_text(text.replace('log_level = "debug"', 'log_level = "info"'))
    reloaded = _hup(daemon, "config.reloaded")
    assert reloaded["applied"] == ["image.mirrors", "log_level"]
    assert _pull(daemon, "e2e/only-second:1")
    with pytest.raises(grpc.RpcError) as gone:
        _pull(daemon, "e2e/only-first:1")
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    # info now: the per-call debug events of quiet RPCs stop.
    before = len(_events(daemon, "rpc"))
    daemon.runtime.Version(api_pb2.VersionRequest(), timeout=10)
    assert len(_events(daemon, "rpc")) == before


def test_a_bad_file_keeps_the_running_config_and_fixed_keys_need_a_restart(
    cribd_factory: Callable[..., Cribd], registry: Registry
) -> None:
    with RegistryClient(registry.url) as client:
        client.push_image("e2e/reload-kept", "1", builder.busybox_image(working_dir="/kept"))
    daemon = cribd_factory(_mirror_config(registry)).start()
    good = daemon.config_path.read_text()

    daemon.config_path.write_text(good + "\n[image\nbroken")
    failed = _hup(daemon, "config.reload_failed")
    assert "crib.toml" in failed["error"] and failed["kept"] == "the running configuration"
    assert daemon.runtime.Version(api_pb2.VersionRequest(), timeout=10).runtime_name == "crib"
    assert _pull(daemon, "e2e/reload-kept:1")  # the old mirror still serves

    daemon.config_path.write_text(good + "\n[streaming]\nport = 10999\n")
    _hup(daemon, "config.reloaded")
    restart = _events(daemon, "config.reload_needs_restart")
    assert restart and restart[-1]["keys"] == ["streaming.port"]
