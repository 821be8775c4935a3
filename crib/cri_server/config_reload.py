"""SIGHUP: read the config file again and apply what can change under running pods.

Reloaded: the [image] section (mirrors, insecure registries, auth file, registry host
dirs, signature policy, pinned images, sandbox image; pulls in flight finish with the
settings they began with), the log level, and [stats] (the metric families). The rest
(socket, dirs, runtime handlers, CNI, streaming, the metrics address, tracing, the log format)
is fixed for the daemon's life: a change there is logged as needing a restart and not
applied. A file that does not load keeps the running configuration, and says why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from crib.config import Config, ConfigError
from crib.image_service.images import Images
from crib.log_setup import get_logger, set_level

log = get_logger("crib.config")

RELOADABLE = ("image", "log_level", "stats")


def _flat(value: Any, prefix: str) -> dict[str, Any]:
    if dataclasses.is_dataclass(value):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            out.update(_flat(getattr(value, f.name), f"{prefix}.{f.name}" if prefix else f.name))
        return out
    return {prefix: value}


def changed_keys(old: Config, new: Config) -> list[str]:
    """Dotted keys whose values differ (a table such as a mirror map counts as one key)."""
    before, after = _flat(old, ""), _flat(new, "")
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


class ConfigReloader:
    def __init__(
        self,
        config: Config,
        load: Callable[[], Config],
        images: Images,
        set_families: Callable[[list[str]], None],
    ) -> None:
        # The daemon's Config object: sections are swapped in it, so every holder sees them.
        self.config = config
        self.load = load
        self.images = images
        self.set_families = set_families

    def reload(self) -> list[str]:
        """Apply the file as it is now; the keys applied (none when it does not load)."""
        try:
            new = self.load()
        except ConfigError as exc:
            log.error("config.reload_failed", error=str(exc), kept="the running configuration")
            return []
        changed = changed_keys(self.config, new)
        fixed = [k for k in changed if k.split(".", 1)[0] not in RELOADABLE]
        if fixed:
            log.warning("config.reload_needs_restart", keys=fixed)
        applied = [k for k in changed if k not in fixed]
        if new.image != self.config.image:
            self.images.reconfigure(new.image)
            self.config.image = new.image
        if new.stats != self.config.stats:
            self.set_families(new.stats.included_pod_metrics)
            self.config.stats = new.stats
        if new.log_level != self.config.log_level:
            set_level(new.log_level)
            self.config.log_level = new.log_level
        log.info("config.reloaded", applied=applied)
        return applied
