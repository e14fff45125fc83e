"""RunStore and ThreadStore on SQLite (aiosqlite): the durable truth about runs and threads.

Invariants:
1. At most one ``running`` run per thread, enforced by a partial unique index
   ``runs_one_running ON runs(thread_id) WHERE status = 'running'`` (design.md 4.1).
2. Status changes of a run are compare-and-set from ``pending``/``running``; a terminal status
   is never overwritten (design.md 4.3).
3. Admission (busy check + insert + thread ``busy``) and finalization (run status + thread
   status, values, interrupts) are each one transaction.
4. ``threads.status`` is ``busy`` while the thread has a pending or running run; otherwise it
   is ``rest_status``, the status the last finished run (or state update) left.

All writes go through one connection under one lock, in ``BEGIN IMMEDIATE`` transactions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import anyio
import orjson

from runtime.errors import BadRequest, ThreadBusy, ThreadExists, ThreadNotFound
from runtime.ids import now_iso
from runtime.store_filters import json_contains_sql, json_filters, thread_order
from runtime.types import (
    CancelAction,
    MultitaskStrategy,
    Run,
    RunStatus,
    Thread,
    ThreadOutcome,
    ThreadStatus,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS threads (
    thread_id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    state_updated_at TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'idle',
    rest_status TEXT NOT NULL DEFAULT 'idle',
    config TEXT NOT NULL DEFAULT '{}',
    "values" TEXT,
    interrupts TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS threads_created ON threads(created_at);
CREATE INDEX IF NOT EXISTS threads_updated ON threads(updated_at);
CREATE INDEX IF NOT EXISTS threads_status ON threads(status, created_at);
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL UNIQUE,
    thread_id TEXT NOT NULL,
    assistant_id TEXT NOT NULL,
    graph_id TEXT NOT NULL,
    status TEXT NOT NULL,
    metadata TEXT NOT NULL,
    kwargs TEXT NOT NULL,
    multitask_strategy TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    cancel_action TEXT,
    on_completion TEXT NOT NULL DEFAULT 'keep',
    not_before TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS runs_one_running ON runs(thread_id) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS runs_thread ON runs(thread_id, seq);
CREATE INDEX IF NOT EXISTS runs_active ON runs(status, seq) WHERE status IN ('pending', 'running');
"""

_RUN_COLS = (
    "run_id, thread_id, assistant_id, graph_id, status, metadata, kwargs, multitask_strategy, "
    "created_at, updated_at, attempt, cancel_action, on_completion, not_before"
)
_THREAD_COLS = (
    'thread_id, created_at, updated_at, state_updated_at, metadata, status, config, "values", '
    "interrupts, error"
)
_ACTIVE = "('pending', 'running')"


def _j(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _uj(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def _run(row: Sequence[Any]) -> Run:
    return Run(
        run_id=row[0],
        thread_id=row[1],
        assistant_id=row[2],
        graph_id=row[3],
        status=RunStatus(row[4]),
        metadata=orjson.loads(row[5]),
        kwargs=orjson.loads(row[6]),
        multitask_strategy=MultitaskStrategy(row[7]),
        created_at=row[8],
        updated_at=row[9],
        attempt=row[10],
        cancel_action=CancelAction(row[11]) if row[11] else None,
        on_completion=row[12],
        not_before=row[13],
    )


def _thread(row: Sequence[Any]) -> Thread:
    return Thread(
        thread_id=row[0],
        created_at=row[1],
        updated_at=row[2],
        state_updated_at=row[3],
        metadata=orjson.loads(row[4]),
        status=ThreadStatus(row[5]),
        config=orjson.loads(row[6]),
        values=_uj(row[7]),
        interrupts=_uj(row[8]),
        error=_uj(row[9]),
    )


class SqliteStore:
    """RunStore + ThreadStore over one aiosqlite connection. Open with ``SqliteStore.open``."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._lock = anyio.Lock()

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path | str) -> AsyncIterator[SqliteStore]:
        """Open (and create) the store at ``path`` (``":memory:"`` for tests); closes on exit."""
        if isinstance(path, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(str(path), isolation_level=None)
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.execute("PRAGMA busy_timeout=5000")
            await conn.executescript(_SCHEMA)
            await conn.create_function("gw_json_contains", 3, json_contains_sql,
                                       deterministic=True)
            yield cls(conn)
        finally:
            await conn.close()

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction; rolls back on any exception (including cancellation)."""
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self._conn.execute("ROLLBACK")
                raise
            with anyio.CancelScope(shield=True):
                await self._conn.execute("COMMIT")

    async def _one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        async with self._lock:
            cur = await self._conn.execute(sql, args)
            return await cur.fetchone()

    async def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        async with self._lock:
            cur = await self._conn.execute(sql, args)
            return list(await cur.fetchall())

    # ---- threads -------------------------------------------------------------------------

    async def create_thread(
        self, thread_id: str, metadata: dict[str, Any], if_exists: str = "raise"
    ) -> Thread:
        """Insert an idle thread (``POST /threads``).

        Raises:
            ThreadExists: ``thread_id`` exists and ``if_exists`` is ``raise``
                (``do_nothing`` returns the existing thread unchanged).
        """
        now = now_iso()
        try:
            async with self._tx() as db:
                await db.execute(
                    "INSERT INTO threads (thread_id, created_at, updated_at, state_updated_at, "
                    "metadata) VALUES (?, ?, ?, ?, ?)",
                    (thread_id, now, now, now, _j(metadata)),
                )
        except sqlite3.IntegrityError:
            if if_exists == "do_nothing":
                return await self.get_thread(thread_id)
            raise ThreadExists(thread_id) from None
        return Thread(thread_id, now, now, now, metadata, ThreadStatus.IDLE)

    async def get_thread(self, thread_id: str) -> Thread:
        """The thread. Raises ThreadNotFound."""
        row = await self._one(
            f"SELECT {_THREAD_COLS} FROM threads WHERE thread_id = ?", (thread_id,)
        )
        if row is None:
            raise ThreadNotFound(thread_id)
        return _thread(row)

    async def patch_thread_metadata(self, thread_id: str, metadata: dict[str, Any]) -> Thread:
        """Shallow-merge ``metadata`` into the thread's (``PATCH /threads/{id}``)."""
        async with self._tx() as db:
            cur = await db.execute("SELECT metadata FROM threads WHERE thread_id = ?",
                                   (thread_id,))
            row = await cur.fetchone()
            if row is None:
                raise ThreadNotFound(thread_id)
            merged = {**orjson.loads(row[0]), **metadata}  # shallow: nested values replaced
            await db.execute(
                "UPDATE threads SET metadata = ?, updated_at = ? WHERE thread_id = ?",
                (_j(merged), now_iso(), thread_id),
            )
        return await self.get_thread(thread_id)

    async def set_thread_state(
        self, thread_id: str, values: dict[str, Any] | None, interrupts: dict[str, Any],
        rest_status: ThreadStatus, metadata: dict[str, Any] | None = None,
    ) -> None:
        """Mirror a state change made outside a run (``POST /threads/{id}/state``, copy)."""
        now = now_iso()
        async with self._tx() as db:
            busy = await self._has_active(db, thread_id)
            await db.execute(
                'UPDATE threads SET "values" = ?, interrupts = ?, rest_status = ?, status = ?, '
                "metadata = json_patch(metadata, ?), updated_at = ?, state_updated_at = ? "
                "WHERE thread_id = ?",
                (
                    _j(values), _j(interrupts), rest_status,
                    ThreadStatus.BUSY if busy else rest_status,
                    _j(metadata or {}), now, now, thread_id,
                ),
            )

    async def delete_thread(self, thread_id: str) -> list[Run]:
        """Delete the thread and its runs; returns the runs that were pending or running.

        Raises:
            ThreadNotFound: no such thread.
        """
        async with self._tx() as db:
            cur = await db.execute(
                f"SELECT {_RUN_COLS} FROM runs WHERE thread_id = ? AND status IN {_ACTIVE}",
                (thread_id,),
            )
            active = [_run(r) for r in await cur.fetchall()]
            cur = await db.execute("DELETE FROM threads WHERE thread_id = ?", (thread_id,))
            if cur.rowcount == 0:
                raise ThreadNotFound(thread_id)
            await db.execute("DELETE FROM runs WHERE thread_id = ?", (thread_id,))
        return active

    async def search_threads(
        self, *, ids: list[str] | None = None, metadata: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None, status: str | None = None,
        limit: int = 10, offset: int = 0, sort_by: str | None = None,
        sort_order: str | None = None,
    ) -> tuple[list[Thread], bool]:
        """Threads matching every filter (``POST /threads/search``).

        Returns:
            ``(threads, has_more)``; ``has_more`` says a row exists past ``offset + limit``.
        """
        where, args = self._thread_where(ids, metadata, values, status)
        order = thread_order(sort_by, sort_order)
        rows = await self._all(
            f"SELECT {_THREAD_COLS} FROM threads{where} ORDER BY {order} LIMIT ? OFFSET ?",
            [*args, limit + 1, offset],
        )
        return [_thread(r) for r in rows[:limit]], len(rows) > limit

    async def count_threads(
        self, *, metadata: dict[str, Any] | None = None, values: dict[str, Any] | None = None,
        status: str | None = None,
    ) -> int:
        """How many threads match (``POST /threads/count``)."""
        where, args = self._thread_where(None, metadata, values, status)
        row = await self._one(f"SELECT COUNT(*) FROM threads{where}", args)
        return int(row[0])

    @staticmethod
    def _thread_where(
        ids: list[str] | None, metadata: dict[str, Any] | None,
        values: dict[str, Any] | None, status: str | None,
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if ids:
            clauses.append(f"thread_id IN ({', '.join('?' * len(ids))})")
            args.extend(ids)
        if status:
            clauses.append("status = ?")
            args.append(status)
        for column, filters in (("metadata", metadata), ('"values"', values)):
            sql, more = json_filters(column, filters or {})
            clauses.extend(sql)
            args.extend(more)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args

    # ---- runs ----------------------------------------------------------------------------

    async def admit_run(
        self, run: Run, *, create_thread: bool, thread_metadata: dict[str, Any] | None = None,
        require_interrupted: bool = False,
    ) -> list[Run]:
        """Insert ``run`` as ``pending`` and mark its thread ``busy``, atomically.

        Args:
            run: the new run (status ``pending``).
            create_thread: create the thread if missing (``if_not_exists=create``, stateless).
            thread_metadata: metadata for a thread created here.

        Returns:
            The thread's runs that were already pending or running, oldest first.

        Raises:
            ThreadNotFound: missing thread and not ``create_thread``.
            ThreadBusy: ``multitask_strategy=reject`` and the thread has an active run.
            BadRequest: ``require_interrupted`` (a resume) and the thread is neither
                interrupted nor running a run that may end interrupted.
        """
        now = run.created_at
        async with self._tx() as db:
            cur = await db.execute("SELECT 1 FROM threads WHERE thread_id = ?", (run.thread_id,))
            if await cur.fetchone() is None:
                if not create_thread:
                    raise ThreadNotFound(run.thread_id, "Thread or assistant not found.")
                await db.execute(
                    "INSERT INTO threads (thread_id, created_at, updated_at, state_updated_at, "
                    "metadata) VALUES (?, ?, ?, ?, ?)",
                    (run.thread_id, now, now, now, _j(thread_metadata or {})),
                )
            cur = await db.execute(
                f"SELECT {_RUN_COLS} FROM runs WHERE thread_id = ? AND status IN {_ACTIVE} "
                "ORDER BY seq",
                (run.thread_id,),
            )
            active = [_run(r) for r in await cur.fetchall()]
            if active and run.multitask_strategy == MultitaskStrategy.REJECT:
                raise ThreadBusy(run.thread_id)
            if require_interrupted and not active:
                cur = await db.execute("SELECT rest_status FROM threads WHERE thread_id = ?",
                                       (run.thread_id,))
                row = await cur.fetchone()
                if row is None or row[0] != ThreadStatus.INTERRUPTED:
                    raise BadRequest(
                        f"Cannot resume thread {run.thread_id}: it is not interrupted "
                        f"(status {row[0] if row else 'idle'}); there is nothing to resume."
                    )
            await db.execute(
                f"INSERT INTO runs ({_RUN_COLS}) VALUES ({', '.join('?' * 14)})",
                (
                    run.run_id, run.thread_id, run.assistant_id, run.graph_id, run.status,
                    _j(run.metadata), _j(run.kwargs), run.multitask_strategy, run.created_at,
                    run.updated_at, run.attempt, run.cancel_action, run.on_completion,
                    run.not_before,
                ),
            )
            await db.execute(  # the thread belongs to the run's graph from now on
                "UPDATE threads SET status = 'busy', updated_at = ?, metadata = json_set("
                "metadata, '$.graph_id', ?, '$.assistant_id', ?) WHERE thread_id = ?",
                (now, run.graph_id, run.assistant_id, run.thread_id),
            )
        return active

    async def mark_running(self, run_id: str) -> Run | None:
        """CAS ``pending -> running``; None if the run is no longer pending (or the thread
        already has a running run: the partial unique index refuses it)."""
        try:
            async with self._tx() as db:
                cur = await db.execute(
                    "UPDATE runs SET status = 'running', updated_at = ? "
                    "WHERE run_id = ? AND status = 'pending'",
                    (now_iso(), run_id),
                )
                if cur.rowcount == 0:
                    return None
        except sqlite3.IntegrityError:
            return None
        return await self.get_run(run_id)

    async def finish_run(
        self, run_id: str, thread_id: str, status: RunStatus, outcome: ThreadOutcome | None
    ) -> bool:
        """Write a terminal status (CAS from pending/running) and the thread it leaves.

        Args:
            outcome: the thread's new values/interrupts/error and rest status; None to only
                recompute the thread status (e.g. a cancelled pending run).

        Returns:
            True if this call moved the run to ``status``.
        """
        now = now_iso()
        async with self._tx() as db:
            cur = await db.execute(
                f"UPDATE runs SET status = ?, updated_at = ? WHERE run_id = ? "
                f"AND status IN {_ACTIVE}",
                (status, now, run_id),
            )
            changed = cur.rowcount > 0
            if changed:  # a late finisher never touches the thread either
                await self._write_thread_after_run(db, thread_id, outcome, now)
        return changed

    async def _write_thread_after_run(
        self, db: aiosqlite.Connection, thread_id: str, outcome: ThreadOutcome | None, now: str
    ) -> None:
        busy = await self._has_active(db, thread_id)
        if outcome is None:
            await db.execute(
                "UPDATE threads SET status = CASE WHEN ? THEN 'busy' ELSE rest_status END, "
                "updated_at = ? WHERE thread_id = ?",
                (busy, now, thread_id),
            )
            return
        patch = {k: v for k, v in (("graph_id", outcome.graph_id),
                                   ("assistant_id", outcome.assistant_id)) if v}
        await db.execute(
            'UPDATE threads SET "values" = ?, interrupts = ?, error = ?, rest_status = ?, '
            "status = ?, metadata = json_patch(metadata, ?), updated_at = ?, "
            "state_updated_at = ? WHERE thread_id = ?",
            (
                _j(outcome.values), _j(outcome.interrupts), _j(outcome.error), outcome.status,
                ThreadStatus.BUSY if busy else outcome.status, _j(patch), now, now, thread_id,
            ),
        )

    @staticmethod
    async def _has_active(db: aiosqlite.Connection, thread_id: str) -> bool:
        cur = await db.execute(
            f"SELECT 1 FROM runs WHERE thread_id = ? AND status IN {_ACTIVE} LIMIT 1",
            (thread_id,),
        )
        return await cur.fetchone() is not None

    async def set_cancel_action(self, run_id: str, action: CancelAction) -> bool:
        """Record the durable cancel intent of an active run; False if it is not active."""
        async with self._tx() as db:
            cur = await db.execute(
                f"UPDATE runs SET cancel_action = ?, updated_at = ? WHERE run_id = ? "
                f"AND status IN {_ACTIVE}",
                (action, now_iso(), run_id),
            )
            return cur.rowcount > 0

    async def requeue_run(self, run_id: str, attempt: int | None = None) -> bool:
        """Put a ``running`` run back to ``pending`` (shutdown, recovery); optionally set its
        ``attempt``. False if the run was not running."""
        async with self._tx() as db:
            cur = await db.execute(
                "UPDATE runs SET status = 'pending', attempt = COALESCE(?, attempt), "
                "updated_at = ? WHERE run_id = ? AND status = 'running'",
                (attempt, now_iso(), run_id),
            )
            return cur.rowcount > 0

    async def get_run(self, run_id: str, thread_id: str | None = None) -> Run | None:
        """The run (optionally only if it belongs to ``thread_id``), or None."""
        if thread_id is None:
            row = await self._one(f"SELECT {_RUN_COLS} FROM runs WHERE run_id = ?", (run_id,))
        else:
            row = await self._one(
                f"SELECT {_RUN_COLS} FROM runs WHERE run_id = ? AND thread_id = ?",
                (run_id, thread_id),
            )
        return None if row is None else _run(row)

    async def list_runs(
        self, thread_id: str, *, status: str | None = None, limit: int = 10, offset: int = 0
    ) -> list[Run]:
        """A thread's runs, newest first (``GET /threads/{id}/runs``)."""
        sql = f"SELECT {_RUN_COLS} FROM runs WHERE thread_id = ?"
        args: list[Any] = [thread_id]
        if status:
            sql += " AND status = ?"
            args.append(status)
        rows = await self._all(sql + " ORDER BY seq DESC LIMIT ? OFFSET ?", [*args, limit, offset])
        return [_run(r) for r in rows]

    async def active_runs(self, thread_id: str | None = None) -> list[Run]:
        """Pending or running runs (of one thread, or all), in admission order."""
        if thread_id is None:
            rows = await self._all(
                f"SELECT {_RUN_COLS} FROM runs WHERE status IN {_ACTIVE} ORDER BY seq"
            )
        else:
            rows = await self._all(
                f"SELECT {_RUN_COLS} FROM runs WHERE thread_id = ? AND status IN {_ACTIVE} "
                "ORDER BY seq", (thread_id,)
            )
        return [_run(r) for r in rows]

    async def delete_run(
        self, run_id: str, thread_id: str, outcome: ThreadOutcome | None = None
    ) -> bool:
        """Delete a run record and recompute its thread (with ``outcome``: the state a
        rollback left), in one transaction; False if absent."""
        async with self._tx() as db:
            cur = await db.execute(
                "DELETE FROM runs WHERE run_id = ? AND thread_id = ?", (run_id, thread_id)
            )
            if cur.rowcount == 0:
                return False
            await self._write_thread_after_run(db, thread_id, outcome, now_iso())
        return True

