"""Unit tests of SqliteDb (runtime/sqlite_db.py): writes queued together share one commit
(group commit), each stays atomic on its own, and a batch SQLite rolled back is reported as
failed to every caller, never as written."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from runtime.sqlite_db import SqliteDb
from tests.runtime.lanes import hold_lane

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]

SCHEMA = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY);"


def _committed(path: Path) -> list[str]:
    """The keys another connection sees: only committed rows."""
    with sqlite3.connect(str(path)) as other:
        return [r[0] for r in other.execute("SELECT k FROM t ORDER BY k")]


def _insert(*keys: str, then_raise: BaseException | None = None) -> Callable[[Any], None]:
    def op(conn: sqlite3.Connection) -> None:
        for k in keys:
            conn.execute("INSERT INTO t (k) VALUES (?)", (k,))
        if then_raise is not None:
            raise then_raise
    return op


async def _as_one_batch(db: SqliteDb, calls: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run ``calls`` queued behind a read that holds the lane, so they form one batch; returns
    each call's result or exception, in order."""
    results: list[Any] = [None] * len(calls)

    async def one(i: int) -> None:
        try:
            results[i] = await calls[i]()
        except Exception as exc:
            results[i] = exc

    async with anyio.create_task_group() as tg:
        release = await hold_lane(tg, db.read)
        for i in range(len(calls)):
            tg.start_soon(one, i)
            await anyio.sleep(0.01)  # queued in this order
        release.set()
    return results


async def test_a_returned_write_is_committed(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    async with SqliteDb.open(path, SCHEMA) as db:
        await db.write(_insert("a"))
        assert _committed(path) == ["a"]


async def test_a_failed_write_undoes_only_its_own_rows_in_a_batch(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    async with SqliteDb.open(path, SCHEMA) as db:
        results = await _as_one_batch(db, [
            lambda: db.write(_insert("a")),
            lambda: db.write(_insert("b", then_raise=ValueError("no"))),
            lambda: db.write(_insert("c", "a")),  # IntegrityError on its second row
            lambda: db.write(_insert("d")),
            lambda: db.read(lambda conn: conn.execute("SELECT COUNT(*) FROM t").fetchone()[0]),
        ])
        assert results[0] is None and results[3] is None
        assert isinstance(results[1], ValueError)
        assert isinstance(results[2], sqlite3.IntegrityError)
        assert results[4] == 2  # a read in the batch sees the batch's writes: a, d
        assert _committed(path) == ["a", "d"]


async def test_a_batch_sqlite_rolled_back_fails_every_call(tmp_path: Path) -> None:
    """A statement error after which SQLite rolls back the whole transaction (as on a full
    disk): the batch's earlier write did not land, so its caller must not be told it did,
    and the batch's later writes must not run."""
    path = tmp_path / "db.sqlite"

    def disk_full(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (k) VALUES ('x')")
        conn.execute("ROLLBACK")  # what SQLite does itself on SQLITE_FULL
        raise sqlite3.OperationalError("database or disk is full")

    async with SqliteDb.open(path, SCHEMA) as db:
        results = await _as_one_batch(db, [
            lambda: db.write(_insert("a")),
            lambda: db.write(disk_full),
            lambda: db.write(_insert("b")),
        ])
        assert all(isinstance(r, sqlite3.OperationalError) for r in results), results
        assert _committed(path) == []
        await db.write(_insert("c"))  # the next batch starts afresh
        assert _committed(path) == ["c"]
