"""structlog set-up for cribd: JSON lines on stderr by default, one event per RPC."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _leading_keys(_logger: object, _name: str, event: dict) -> dict:
    """Put time, level and event first: a JSON line reads left to right."""
    head = {k: event.pop(k) for k in ("timestamp", "level", "event") if k in event}
    head.update(event)
    return head


def configure(
    level: str = "info", fmt: str = "json", stream: TextIO | None = None, cache: bool = True
) -> None:
    """Configure structlog once per process (tests pass cache=False to reconfigure).

    The filtering bound logger drops below-level events before any processor
    runs, so the per-RPC debug events of PLEG polling cost almost nothing.
    """
    renderer: structlog.typing.Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _leading_keys,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=cache,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    # A lazy proxy: modules may create loggers at import, before configure().
    return structlog.get_logger(component=name)
