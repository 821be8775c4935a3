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
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from crib import node_metrics

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
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)

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

    def items(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, data FROM records WHERE kind = ? ORDER BY id", (kind,)
            ).fetchall()
        return [(id, json.loads(data)) for id, data in rows]
