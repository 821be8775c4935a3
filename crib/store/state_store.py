"""The state store: where sandboxes, containers, images and settings are recorded.

Choice: SQLite in WAL mode, one file `<root>/state.db`, records as JSON keyed by
(kind, id). A transaction commits whole or not at all, so a cribd killed at any
instant leaves either the old or the new records, never a torn one (the test
suite kills a writer with SIGKILL mid-transaction to show it). WAL keeps
readers off the writer's back and a commit costs one append.

`synchronous=NORMAL`: in WAL mode a process crash loses nothing committed; a
power loss may drop the last commits but never corrupts the file. After a power
loss every container is gone anyway, and start-up reconciles the records with
what runc, conmon and the CNI cache report.

Lists are served from the domain's memory, not from here: the store is the
durable copy that a restarted cribd recovers from.

A damaged file (truncated, overwritten, not a database) is found at start-up
(`open_checked`): it is moved aside, never deleted, the rows it still yields are
carried into a new file, and `rebuilt` tells recovery that records may be missing,
so pods and containers are found again from the runtime's own files on disk.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Literal

from crib import node_metrics
from crib.log_setup import get_logger

log = get_logger("crib.store")

# How the file was found at start-up: intact, absent, or damaged (moved aside).
Found = Literal["intact", "missing", "damaged"]
# SQLite's companions of a database in WAL mode: they belong to that one file.
_COMPANIONS = ("-wal", "-shm")
# SQLITE_CORRUPT, SQLITE_NOTADB: what SQLite answers for a damaged file.
_DAMAGE_CODES = frozenset({11, 26})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL,
    id   TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
"""


class StateStore:
    """A small transactional key-value store over SQLite.

    One connection, guarded by a lock, so it may be called from the event loop
    (calls are sub-millisecond) or from worker threads.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE below).
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
        self._lock = threading.RLock()
        self._depth = 0
        # Set by open_checked: whether records may be missing (see the module doc).
        self.found: Found = "intact"
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)

    @property
    def rebuilt(self) -> bool:
        return self.found != "intact"

    @classmethod
    def open_checked(cls, path: Path) -> StateStore:
        """The daemon's way in: the file is checked whole before anything trusts it.

        Blocking, at start-up only: the check reads every page (a few MB at most)."""
        if not path.exists():
            # A WAL left without its database must not be replayed into a new, empty one.
            _move_aside(path, "missing")
            store = cls(path)
            store.found = "missing"
            return store
        problem = _problem(path)
        if problem is None:
            return cls(path)
        rows = _salvage(path)
        moved_to = _move_aside(path, "damaged")
        log.error(
            "state_store.damaged",
            file=str(path),
            problem=problem,
            moved_to=str(moved_to),
            salvaged_records=len(rows),
        )
        store = cls(path)
        store.found = "damaged"
        with store.transaction():
            for kind, id, data in rows:
                store.put(kind, id, data)
        return store

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[StateStore]:
        """Group writes: all of them land, or none do. Nests (inner is a no-op).

        Never await inside one: the lock is re-entrant per thread, so another
        coroutine on the loop thread would silently join the transaction.
        """
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self
            except BaseException:
                self._depth = 0
                self._db.execute("ROLLBACK")
                raise
            self._depth = 0
            with node_metrics.timed(node_metrics.STORE_WRITE_DURATION):
                self._db.execute("COMMIT")

    def put(self, kind: str, id: str, record: dict[str, Any]) -> None:
        data = json.dumps(record, separators=(",", ":"), sort_keys=True)
        with self._lock, node_metrics.timed(node_metrics.STORE_WRITE_DURATION):
            self._db.execute(
                "INSERT INTO records (kind, id, data) VALUES (?, ?, ?) "
                "ON CONFLICT (kind, id) DO UPDATE SET data = excluded.data",
                (kind, id, data),
            )

    def get(self, kind: str, id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT data FROM records WHERE kind = ? AND id = ?", (kind, id)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def delete(self, kind: str, id: str) -> bool:
        with self._lock, node_metrics.timed(node_metrics.STORE_WRITE_DURATION):
            cur = self._db.execute("DELETE FROM records WHERE kind = ? AND id = ?", (kind, id))
        return cur.rowcount > 0

    def forget(self, kind: str, id: str) -> None:
        """delete() for undo paths: its failure (a full disk) must not hide the error being
        undone. A record left behind is one start-up reconciles like a crash's."""
        try:
            self.delete(kind, id)
        except sqlite3.Error as exc:
            log.warning("state_store.delete_failed", kind=kind, id=id, error=str(exc))

    def items(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, data FROM records WHERE kind = ? ORDER BY id", (kind,)
            ).fetchall()
        return [(id, json.loads(data)) for id, data in rows]


def _problem(path: Path) -> str | None:
    """What is wrong with the database file, or None when it is whole."""
    if path.stat().st_size == 0:
        # SQLite takes an empty file for an empty database; crib never leaves one.
        return "the file is empty (0 bytes): truncated"
    db = sqlite3.connect(f"file:{path}?mode=rw", uri=True, isolation_level=None)
    try:
        checked = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
        if checked != ["ok"]:
            return "integrity check failed: " + "; ".join(str(c) for c in checked[:5])
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "records" not in tables:
            return "it has no records table"
        for kind, id, data in db.execute("SELECT kind, id, data FROM records"):
            if not isinstance(json.loads(data), dict):
                return f"record {kind}/{id} is not a JSON object"
    except sqlite3.Error as exc:
        # Only the file's own faults: a full disk or an I/O error says nothing about its
        # content, and moving a good store aside for one would lose it. Those stay errors.
        if (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF not in _DAMAGE_CODES:
            raise
        return f"{type(exc).__name__}: {exc}"
    except ValueError as exc:
        return f"a record is not JSON: {exc}"
    finally:
        db.close()
    return None


def _salvage(path: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """The rows a damaged file still yields, read-only, up to the first unreadable page."""
    rows: list[tuple[str, str, dict[str, Any]]] = []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error:
        return rows
    try:
        cursor = db.execute("SELECT kind, id, data FROM records")
        while (row := cursor.fetchone()) is not None:
            with suppress(ValueError, TypeError):
                record = json.loads(row[2])
                if isinstance(record, dict) and isinstance(row[0], str) and isinstance(row[1], str):
                    rows.append((row[0], row[1], record))
    except sqlite3.Error:
        pass  # what came before the damage is kept
    finally:
        db.close()
    return rows


def _move_aside(path: Path, why: str) -> Path:
    """Rename the file and its WAL companions to `<name>.<why>-<UTC time>`; never delete them."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.{why}-{stamp}")
    for suffix in ("", *_COMPANIONS):
        source = path.with_name(path.name + suffix)
        with suppress(FileNotFoundError):
            os.rename(source, target.with_name(target.name + suffix))
            if suffix:
                log.warning("state_store.companion_moved", file=str(source), moved_to=str(target) + suffix)
    return target
