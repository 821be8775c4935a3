"""What a SIGHUP applies, keeps, and reports as needing a restart."""

from __future__ import annotations

import dataclasses

import pytest

from crib import config as cfg
from crib.config import Config, ConfigError, RegistryMirror
from crib.cri_server import config_reload
from crib.cri_server.config_reload import ConfigReloader, changed_keys


class FakeImages:
    def __init__(self) -> None:
        self.sections: list[cfg.ImageSection] = []

    def reconfigure(self, section: cfg.ImageSection) -> None:
        self.sections.append(section)


def _reloader(current: Config, load: object) -> tuple[ConfigReloader, FakeImages, list[list[str]]]:
    images, families = FakeImages(), []
    reloader = ConfigReloader(current, load, images, families.append)  # type: ignore[arg-type]
    return reloader, images, families


def test_changed_keys_are_dotted_leaves() -> None:
    old = Config()
    new = dataclasses.replace(old, log_level="debug")
    new.image = dataclasses.replace(old.image, mirrors={"docker.io": RegistryMirror(["https://m"])})
    new.streaming = dataclasses.replace(old.streaming, port=10010)
    assert changed_keys(old, new) == ["image.mirrors", "log_level", "streaming.port"]
    assert changed_keys(old, Config()) == []


def test_reload_applies_images_stats_and_level_and_reports_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    levels: list[str] = []
    monkeypatch.setattr(config_reload, "set_level", levels.append)
    current = Config()
    new = Config(log_level="debug", root="/elsewhere")
    new.image.pinned_images = ["example.com/app*"]
    new.stats.included_pod_metrics = ["cpu"]
    reloader, images, families = _reloader(current, lambda: new)
    assert reloader.reload() == ["image.pinned_images", "log_level", "stats.included_pod_metrics"]
    assert images.sections == [new.image] and current.image is new.image
    assert families == [["cpu"]] and levels == ["debug"]
    # Fixed for the daemon's life: not applied.
    assert current.root == "/var/lib/crib"


def test_a_file_that_does_not_load_changes_nothing() -> None:
    current = Config()

    def broken() -> Config:
        raise ConfigError("image.pinned_images[0]", "bad")

    reloader, images, families = _reloader(current, broken)
    before = dataclasses.asdict(current)
    assert reloader.reload() == []
    assert dataclasses.asdict(current) == before and images.sections == [] and families == []
