"""Checkpointer factory and the thread-level operations the savers lack.

``open_checkpointer`` yields a LangGraph saver: ``memory`` (InMemorySaver, for tests),
``sqlite`` (``ThreadedSqliteSaver``: langgraph-checkpoint-sqlite's ``SqliteSaver`` driven from a
worker thread, one hop per operation, on its own connection in WAL mode; see saver_sqlite.py) or
``postgres`` (langgraph-checkpoint-postgres's ``AsyncPostgresSaver`` on a psycopg-pool pool; its
``setup()`` migrations run under an advisory lock, so processes that start together are safe).

Neither the SQLite savers (langgraph-checkpoint-sqlite 3.x) nor ``AsyncPostgresSaver``
(langgraph-checkpoint-postgres 3.x) implement ``acopy_thread`` or ``adelete_for_runs``;
``copy_thread`` and ``delete_run_checkpoints`` do it in SQL on the saver's own tables, and
fall back to the saver's methods for other savers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import psycopg
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from runtime.pg_session import configure_session
from runtime.saver_sqlite import ThreadedSqliteSaver

Saver = BaseCheckpointSaver[Any]

_SETUP_LOCK = 0x6C67636B70  # pg_advisory_lock key serialising AsyncPostgresSaver.setup()


@asynccontextmanager
async def open_checkpointer(
    kind: str, path: Path | None, database_url: str | None = None, pool_max_size: int = 10,
) -> AsyncIterator[Saver]:
    """Open the configured saver and close it on exit.

    Args:
        kind: ``"sqlite"``, ``"postgres"`` or ``"memory"``.
        path: SQLite file (its folder is created); for ``sqlite`` only.
        database_url: ``postgresql://...``; for ``postgres`` only.
        pool_max_size: connections of the ``postgres`` saver's pool.

    Raises:
        ValueError: unknown ``kind``, or its ``path``/``database_url`` missing.
        psycopg.OperationalError: PostgreSQL unreachable.
    """
    if kind == "memory":
        yield InMemorySaver()
        return
    if kind == "postgres" and database_url:
        async with _postgres_saver(database_url, pool_max_size) as saver:
            yield saver
        return
    if kind != "sqlite" or path is None:
        raise ValueError(f"unknown checkpointer {kind!r} (or no path / database_url)")
    async with ThreadedSqliteSaver.open(path) as saver:
        yield saver


@asynccontextmanager
async def _postgres_saver(url: str, max_size: int) -> AsyncIterator[AsyncPostgresSaver]:
    # the saver needs autocommit and dict rows; no prepared statements (pgbouncer-safe)
    kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": 0,
                              "row_factory": dict_row}
    async with AsyncConnectionPool(url, min_size=1, max_size=max_size, kwargs=kwargs,
                                   configure=configure_session, open=False) as pool:
        saver = AsyncPostgresSaver(pool)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as lock:
            # A session lock, polled: setup() runs CREATE INDEX CONCURRENTLY, which waits for
            # every open snapshot, and a session blocked in pg_advisory_lock() holds one (a
            # deadlock PostgreSQL does not detect).
            while True:
                cur = await lock.execute("SELECT pg_try_advisory_lock(%s)", (_SETUP_LOCK,))
                if ((await cur.fetchone()) or (False,))[0]:
                    break
                await anyio.sleep(0.05)
            try:
                await saver.setup()
            finally:
                await lock.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK,))
        yield saver


def _unwrap(saver: Saver) -> Saver:
    inner = getattr(saver, "inner", None)  # TrackingSaver
    return inner if isinstance(inner, BaseCheckpointSaver) else saver


async def copy_thread(saver: Saver, source_thread_id: str, target_thread_id: str) -> None:
    """Copy every checkpoint and pending write of a thread to a new thread id."""
    saver = _unwrap(saver)
    if isinstance(saver, ThreadedSqliteSaver):
        def copy(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, "
                "parent_checkpoint_id, type, checkpoint, metadata) SELECT ?, checkpoint_ns, "
                "checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata "
                "FROM checkpoints WHERE thread_id = ?",
                (target_thread_id, source_thread_id),
            )
            conn.execute(
                "INSERT INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path,"
                " idx, channel, type, value) SELECT ?, checkpoint_ns, checkpoint_id, task_id, "
                "task_path, idx, channel, type, value FROM writes WHERE thread_id = ?",
                (target_thread_id, source_thread_id),
            )

        await saver.call(copy)
        return
    if isinstance(saver, AsyncPostgresSaver):
        await _pg_copy_thread(saver, source_thread_id, target_thread_id)
        return
    await saver.acopy_thread(source_thread_id, target_thread_id)


async def delete_run_checkpoints(saver: Saver, thread_id: str, run_id: str) -> int:
    """Delete the checkpoints (and their writes) a run produced; returns how many.

    A run's checkpoints carry ``metadata.run_id`` (LangGraph copies ``configurable.run_id``
    into checkpoint metadata). Used by ``rollback``.
    """
    saver = _unwrap(saver)
    if isinstance(saver, InMemorySaver):
        return _delete_run_in_memory(saver, thread_id, run_id)
    if isinstance(saver, ThreadedSqliteSaver):
        where = "thread_id = ? AND json_extract(CAST(metadata AS TEXT), '$.run_id') = ?"

        def delete(conn: sqlite3.Connection) -> int:
            rows = conn.execute(
                f"SELECT checkpoint_ns, checkpoint_id FROM checkpoints WHERE {where}",
                (thread_id, run_id),
            ).fetchall()
            conn.executemany(
                "DELETE FROM writes WHERE thread_id = ? AND checkpoint_ns = ? "
                "AND checkpoint_id = ?",
                [(thread_id, ns, cid) for ns, cid in rows],
            )
            conn.execute(f"DELETE FROM checkpoints WHERE {where}", (thread_id, run_id))
            return len(rows)

        return await saver.call(delete)
    if isinstance(saver, AsyncPostgresSaver):
        return await _pg_delete_run(saver, thread_id, run_id)
    await saver.adelete_for_runs([run_id])
    return 0


@asynccontextmanager
async def _pg_transaction(
    saver: AsyncPostgresSaver,
) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
    """One transaction on a connection of the saver's pool (or its one connection)."""
    conn = saver.conn
    if isinstance(conn, AsyncConnectionPool):
        async with conn.connection() as pooled, pooled.transaction():
            yield pooled
    else:
        async with conn.transaction():
            yield conn


async def _pg_copy_thread(saver: AsyncPostgresSaver, source: str, target: str) -> None:
    async with _pg_transaction(saver) as conn:
        await conn.execute(
            "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, "
            "parent_checkpoint_id, type, checkpoint, metadata) SELECT %s, checkpoint_ns, "
            "checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata "
            "FROM checkpoints WHERE thread_id = %s", (target, source))
        await conn.execute(
            "INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, "
            "blob) SELECT %s, checkpoint_ns, channel, version, type, blob "
            "FROM checkpoint_blobs WHERE thread_id = %s", (target, source))
        await conn.execute(
            "INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, "
            "idx, channel, type, blob, task_path) SELECT %s, checkpoint_ns, checkpoint_id, "
            "task_id, idx, channel, type, blob, task_path "
            "FROM checkpoint_writes WHERE thread_id = %s", (target, source))


async def _pg_delete_run(saver: AsyncPostgresSaver, thread_id: str, run_id: str) -> int:
    """The checkpoints of ``run_id`` and their writes. Channel blobs are keyed by version and
    may be shared with the checkpoints that stay, so they are left (unreferenced ones are
    harmless and go with the thread)."""
    async with _pg_transaction(saver) as conn:
        cur = await conn.execute(
            "DELETE FROM checkpoints WHERE thread_id = %s AND metadata->>'run_id' = %s "
            "RETURNING checkpoint_ns, checkpoint_id", (thread_id, run_id))
        rows = await cur.fetchall()
        for row in rows:
            await conn.execute(
                "DELETE FROM checkpoint_writes WHERE thread_id = %s AND checkpoint_ns = %s "
                "AND checkpoint_id = %s",
                (thread_id, row["checkpoint_ns"], row["checkpoint_id"]))
        return len(rows)


def _delete_run_in_memory(saver: InMemorySaver, thread_id: str, run_id: str) -> int:
    deleted = 0
    for ns, checkpoints in list(saver.storage.get(thread_id, {}).items()):
        for checkpoint_id, (_, metadata, _) in list(checkpoints.items()):
            if saver.serde.loads_typed(metadata).get("run_id") != run_id:
                continue
            del checkpoints[checkpoint_id]
            saver.writes.pop((thread_id, ns, checkpoint_id), None)
            deleted += 1
    return deleted
