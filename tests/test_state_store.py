"""The state store: records, transactions, and what a SIGKILL leaves behind."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crib.store.state_store import StateStore

ROWS = 40

# A writer that rewrites every row of kind "sandbox" to generation g in one
# transaction, forever. With "pause" it stops halfway through a transaction
# and says so, then waits to be killed.
WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from crib.store.state_store import StateStore

    store = StateStore(Path(sys.argv[1]))
    pause = sys.argv[2] == "pause"
    gen = (store.get("meta", "gen") or {"gen": 0})["gen"]
    print("ready", flush=True)
    while True:
        gen += 1
        with store.transaction():
            for i in range(ROWS):
                store.put("sandbox", f"pod-{i:03d}", {"gen": gen, "blob": str(gen) * 500})
                if pause and i == ROWS // 2:
                    print("mid", flush=True)
                    sys.stdin.read()
            store.put("meta", "gen", {"gen": gen})
        if pause:
            break
    """
).replace("ROWS", str(ROWS))


def _generations(path: Path) -> set[int]:
    store = StateStore(path)
    try:
        rows = store.items("sandbox")
        meta = store.get("meta", "gen")
    finally:
        store.close()
    gens = set()
    for _, record in rows:
        assert record["blob"] == str(record["gen"]) * 500, "a record is torn"
        gens.add(record["gen"])
    if rows:
        assert len(rows) == ROWS, f"{len(rows)} of {ROWS} rows: a transaction landed in part"
        assert meta is not None and {meta["gen"]} == gens
    return gens


def _writer(path: Path, mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_put_get_delete_items(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    store.put("container", "b", {"state": "created"})
    store.put("container", "a", {"state": "running"})
    store.put("sandbox", "a", {"state": "ready"})
    store.put("container", "a", {"state": "exited", "exit_code": 1})
    assert store.get("container", "a") == {"state": "exited", "exit_code": 1}
    assert store.get("container", "zz") is None
    assert [k for k, _ in store.items("container")] == ["a", "b"]
    assert store.delete("container", "b") is True
    assert store.delete("container", "b") is False
    assert store.items("container") == [("a", {"state": "exited", "exit_code": 1})]
    store.close()
    assert (tmp_path / "state.db").stat().st_mode & 0o777 == 0o600
    reopened = StateStore(tmp_path / "state.db")
    assert reopened.get("sandbox", "a") == {"state": "ready"}
    reopened.close()


def test_a_failed_transaction_changes_nothing(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    store.put("sandbox", "p", {"v": 1})
    with pytest.raises(RuntimeError), store.transaction():
        store.put("sandbox", "p", {"v": 2})
        store.put("sandbox", "q", {"v": 2})
        with store.transaction():  # nested: joins the outer one
            store.delete("sandbox", "p")
        raise RuntimeError("boom")
    assert store.items("sandbox") == [("p", {"v": 1})]
    with store.transaction():
        store.put("sandbox", "q", {"v": 3})
    assert store.get("sandbox", "q") == {"v": 3}
    store.close()


def test_sigkill_mid_transaction_leaves_the_old_records(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first = _writer(path, "pause")
    assert first.stdout is not None
    assert first.stdout.readline().strip() == "mid"
    first.stdin.close()  # finishes generation 1
    assert first.wait(10) == 0
    assert _generations(path) == {1}

    second = _writer(path, "pause")
    assert second.stdout is not None
    assert second.stdout.readline().strip() == "mid"  # half of generation 2 written
    second.send_signal(signal.SIGKILL)
    second.wait(10)
    assert _generations(path) == {1}


def test_sigkill_at_random_moments_never_tears_a_record(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    rng = random.Random(1234)
    seen: set[int] = set()
    for _ in range(12):
        proc = _writer(path, "loop")
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(rng.uniform(0.005, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        gens = _generations(path)
        assert len(gens) <= 1
        seen |= gens
    # The writers made progress across kills (each resumes from the last commit).
    assert max(seen) > 1


def _filled(path: Path, rows: int = 200) -> None:
    store = StateStore(path)
    with store.transaction():
        for i in range(rows):
            store.put("container", f"c{i:04}", {"id": i, "pad": "x" * 400})
    store.close()


def test_an_intact_store_opens_as_it_is(tmp_path: Path) -> None:
    _filled(tmp_path / "state.db")
    store = StateStore.open_checked(tmp_path / "state.db")
    assert store.found == "intact" and not store.rebuilt and len(store.items("container")) == 200
    assert sorted(p.name for p in tmp_path.iterdir() if ".db." in p.name) == []


@pytest.mark.parametrize("damage", ["truncated", "empty", "header", "row"])
def test_a_damaged_store_is_moved_aside_and_a_whole_one_made(tmp_path: Path, damage: str) -> None:
    db = tmp_path / "state.db"
    _filled(db)
    if damage == "truncated":
        os.truncate(db, db.stat().st_size // 2)
    elif damage == "empty":
        os.truncate(db, 0)
    elif damage == "header":
        data = bytearray(db.read_bytes())
        data[:100] = b"\xff" * 100
        db.write_bytes(bytes(data))
    else:
        raw = sqlite3.connect(db)
        raw.execute("UPDATE records SET data = '{not json' WHERE id = 'c0007'")
        raw.commit()
        raw.close()
    before = db.read_bytes()
    store = StateStore.open_checked(db)
    assert store.found == "damaged" and store.rebuilt
    [aside] = [p for p in tmp_path.glob("state.db.damaged-*") if not p.name.endswith(("-wal", "-shm"))]
    assert aside.read_bytes() == before
    # The new file is whole and takes writes; a row-level fault keeps every other row.
    store.put("sandbox", "s", {"ok": True})
    assert store.get("sandbox", "s") == {"ok": True}
    if damage == "row":
        assert len(store.items("container")) == 199 and store.get("container", "c0007") is None
    store.close()
    assert StateStore.open_checked(db).found == "intact"


def test_a_missing_store_is_made_and_a_wal_left_without_it_moved_aside(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    (tmp_path / "state.db-wal").write_bytes(b"stale")
    store = StateStore.open_checked(db)
    assert store.found == "missing" and store.rebuilt and store.items("container") == []
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith("-wal") and "missing" in p.name]
