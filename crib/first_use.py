"""Modules only some calls need, imported at the first of them (issue 17).

An idle cribd, most of a node's life, does without the code of its rarer calls: each
such module is imported by the first call that needs it, in a worker thread (an import
reads files and runs module code, which is no work for the event loop), and is then a
dict lookup away for every later call, which runs as fast as when it was imported at
start-up. tests/test_idle_imports.py lists the modules start-up must not import.
"""

from __future__ import annotations

import asyncio
import importlib
from types import ModuleType

# Set only once an import has finished: another thread's import in progress is never seen.
_imported: dict[str, ModuleType] = {}


async def module(name: str) -> ModuleType:
    """`name`, imported off the event loop the first time it is asked for."""
    found = _imported.get(name)
    if found is None:
        found = _imported[name] = await asyncio.to_thread(importlib.import_module, name)
    return found
