"""SQLite-specific tests of the RunStore/ThreadStore (runtime/store/sqlite.py, sqlite_schema.py,
filters.py): the ``thread_meta`` metadata index, the migration of older files, and the cost of
finding a thread's active runs in VM steps.

The behaviour every store shares (admission, the status machine, search, errors, concurrency)
is the contract suite's: tests/contract/test_store.py runs it against SQLite and PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runtime.ids import uuid7
from runtime.store.sqlite import SqliteStore

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


async def search_ids(store: SqliteStore, **kw: Any) -> list[str]:
    threads, _ = await store.search_threads(limit=100, sort_order="asc", **kw)
    return [t.thread_id for t in threads]


# ---- the metadata index (thread_meta) -----------------------------------------------------------


async def test_metadata_search_is_an_index_lookup(tmp_path: Path) -> None:
    """The search by a scalar metadata value reads ``thread_meta_kv``, not every thread."""
    import sqlite3

    from runtime.store.filters import thread_filters
    from runtime.store.sqlite_schema import SCHEMA, THREAD_COLS

    db = sqlite3.connect(tmp_path / "plan.sqlite")
    db.executescript(SCHEMA)
    where, args = thread_filters(None, {"user_id": "user-7"}, None, None)
    plan = db.execute(f"EXPLAIN QUERY PLAN SELECT {THREAD_COLS} FROM threads{where} "
                      "ORDER BY created_at DESC LIMIT 11", args).fetchall()
    db.close()
    assert any("thread_meta_kv" in str(step[-1]) for step in plan), plan


async def test_metadata_index_is_built_for_a_store_written_before_it(tmp_path: Path) -> None:
    """A database from before ``thread_meta`` (user_version 0) gets its metadata indexed once
    when opened."""
    import sqlite3

    path = tmp_path / "old.sqlite"
    async with SqliteStore.open(path) as s:
        await s.create_thread("o1", {"user": "ann"})
        await s.create_thread("o2", {"user": "bob"})
    db = sqlite3.connect(path)  # make it look like the older schema
    db.executescript("DROP TRIGGER threads_meta_insert; DROP TRIGGER threads_meta_update; "
                     "DROP TRIGGER threads_meta_delete; DROP TABLE thread_meta; "
                     "PRAGMA user_version = 0;")
    db.close()
    async with SqliteStore.open(path) as s:
        assert await search_ids(s, metadata={"user": "bob"}) == ["o2"]
        await s.create_thread("o3", {"user": "bob"})
        assert await search_ids(s, metadata={"user": "bob"}) == ["o2", "o3"]
    async with SqliteStore.open(path) as s:  # a second open indexes nothing twice
        assert await search_ids(s, metadata={"user": "bob"}) == ["o2", "o3"]


def _steps(db: Any, fn: Any) -> int:
    """SQLite VM steps (in units of 100) that ``fn()`` costs on ``db``."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    db.set_progress_handler(count, 100)
    try:
        fn()
    finally:
        db.set_progress_handler(None, 0)
    return steps


async def test_a_threads_active_runs_are_found_without_walking_its_finished_runs(
    tmp_path: Path,
) -> None:
    """Admission and finalization ask for a thread's pending/running runs: their cost must not
    grow with the thread's finished runs (it did, linearly: 3.4 -> 5.6 ms of CPU per run after
    1,400 runs per thread in the benchmark)."""
    import sqlite3

    from runtime.store.sqlite import _active_runs, _has_active
    from runtime.store.sqlite_schema import SCHEMA

    db = sqlite3.connect(tmp_path / "plan.sqlite")
    db.executescript(SCHEMA)

    def add_runs(n: int, status: str) -> None:
        db.executemany(
            "INSERT INTO runs (run_id, thread_id, assistant_id, graph_id, status, metadata, "
            "kwargs, multitask_strategy, created_at, updated_at) "
            "VALUES (?, 't', 'a', 'g', ?, '{}', '{}', 'enqueue', '', '')",
            [(uuid7(), status) for _ in range(n)])

    add_runs(1, "pending")
    add_runs(10, "success")
    few = _steps(db, lambda: (_active_runs(db, "t"), _has_active(db, "t")))
    add_runs(20_000, "success")
    many = _steps(db, lambda: (_active_runs(db, "t"), _has_active(db, "t")))
    assert len(_active_runs(db, "t")) == 1 and _has_active(db, "t")
    db.close()
    assert many <= few + 2, (few, many)
