"""Checkpointer factory and the thread-level operations the savers lack.

``open_checkpointer`` yields a LangGraph saver: ``memory`` (InMemorySaver, for tests) or
``sqlite`` (``ThreadedSqliteSaver``: langgraph-checkpoint-sqlite's ``SqliteSaver`` driven from a
worker thread, one hop per operation, on its own connection in WAL mode; see saver_sqlite.py).

The SQLite savers (langgraph-checkpoint-sqlite 3.x) implement neither ``acopy_thread`` nor
``adelete_for_runs``; ``copy_thread`` and ``delete_run_checkpoints`` do it in SQL on the saver's
own tables, and fall back to the saver's methods for other savers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver

from runtime.saver_sqlite import ThreadedSqliteSaver

Saver = BaseCheckpointSaver[Any]


@asynccontextmanager
async def open_checkpointer(kind: str, path: Path | None) -> AsyncIterator[Saver]:
    """Open the configured saver and close it on exit.

    Args:
        kind: ``"sqlite"`` or ``"memory"``.
        path: SQLite file (its folder is created); ignored for ``memory``.

    Raises:
        ValueError: unknown ``kind`` or missing ``path``.
    """
    if kind == "memory":
        yield InMemorySaver()
        return
    if kind != "sqlite" or path is None:
        raise ValueError(f"unknown checkpointer {kind!r} (or no path)")
    async with ThreadedSqliteSaver.open(path) as saver:
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
    await saver.adelete_for_runs([run_id])
    return 0


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
