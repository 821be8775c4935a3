"""structlog set-up for cribd: JSON lines on stderr by default, one event per RPC."""

from __future__ import annotations

import logging
import sys
import weakref
from typing import Any, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _leading_keys(_logger: object, _name: str, event: dict) -> dict:
    """Put time, level and event first: a JSON line reads left to right."""
    head = {k: event.pop(k) for k in ("timestamp", "level", "event") if k in event}
    head.update(event)
    return head


# Every logger handed out, so a new level reaches the ones that cached their first binding.
_loggers: weakref.WeakSet[Any] = weakref.WeakSet()
_current: dict[str, Any] = {}


def configure(
    level: str = "info", fmt: str = "json", stream: TextIO | None = None, cache: bool = True
) -> None:
    """Configure structlog once per process (tests pass cache=False to reconfigure).

    The filtering bound logger drops below-level events before any processor
    runs, so the per-RPC debug events of PLEG polling cost almost nothing.
    """
    _current.update(fmt=fmt, stream=stream, cache=cache, level=_LEVELS[level])
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


def set_level(level: str) -> None:
    """A new level for every logger (a SIGHUP reload): reconfigure, then drop the bound
    loggers the proxies cached, so each builds its next one with the new filter."""
    configure(level, _current.get("fmt", "json"), _current.get("stream"), _current.get("cache", True))
    for proxy in list(_loggers):
        proxy.__dict__.pop("bind", None)


def enabled(level: str) -> bool:
    """Whether events at `level` are written: callers skip building what would be dropped."""
    return _LEVELS[level] >= _current.get("level", logging.INFO)


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    # A lazy proxy: modules may create loggers at import, before configure().
    proxy = structlog.get_logger(component=name)
    _loggers.add(proxy)
    return proxy
