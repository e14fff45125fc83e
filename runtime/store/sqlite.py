"""RunStore and ThreadStore on SQLite: the durable truth about runs and threads.

Invariants:
1. At most one ``running`` run per thread, enforced by a partial unique index
   ``runs_one_running ON runs(thread_id) WHERE status = 'running'`` (design.md 4.1).
2. Status changes of a run are compare-and-set from ``pending``/``running``; a terminal status
   is never overwritten (design.md 4.3).
3. Admission (busy check + insert + thread ``busy``) and finalization (run status + thread
   status, values, interrupts) are each one transaction.
4. ``threads.status`` is ``busy`` while the thread has a pending or running run; otherwise it
   is ``rest_status``, the status the last finished run (or state update) left.

Every operation is one synchronous function run as one transaction (writes: ``BEGIN
IMMEDIATE``) in one hop to a worker thread (``runtime/sqlite_db.py``); the schema and the row
mapping live in ``runtime/store/sqlite_schema.py``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson

from runtime.assistants.sqlite import ASSISTANT_SCHEMA, SqliteAssistantStore
from runtime.auth_filter import AuthFilter
from runtime.crons.sqlite import CRON_SCHEMA, SqliteCronStore
from runtime.errors import BadRequest, ThreadBusy, ThreadExists, ThreadNotFound
from runtime.ids import now_iso
from runtime.sqlite_db import SqliteDb
from runtime.store.filters import json_contains_sql, thread_filters, thread_order
from runtime.store.sqlite_schema import (
    ACTIVE,
    RUN_COLS,
    SCHEMA,
    THREAD_COLS,
    run_from_row,
    thread_from_row,
    to_json,
)
from runtime.types import CancelAction, MultitaskStrategy, Run, RunStatus, Thread, ThreadOutcome
from runtime.types import ThreadStatus as TS
from runtime.webhooks.outbox import WEBHOOK_SCHEMA_SQLITE, SqliteOutbox

Db = sqlite3.Connection


class SqliteStore:
    """RunStore + ThreadStore over one SQLite connection. Open with ``SqliteStore.open``."""

    def __init__(self, db: SqliteDb) -> None:
        self._db = db

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path | str) -> AsyncIterator[SqliteStore]:
        """Open (and create) the store at ``path`` (``":memory:"`` for tests); closes on exit."""
        functions = {"gw_json_contains": (3, json_contains_sql)}
        schema = SCHEMA + CRON_SCHEMA + WEBHOOK_SCHEMA_SQLITE + ASSISTANT_SCHEMA
        async with SqliteDb.open(path, schema, functions) as db:
            yield cls(db)

    @property
    def crons(self) -> SqliteCronStore:
        """The CronStore on this store's database (a cron changes with its thread)."""
        return SqliteCronStore(self._db)

    @property
    def webhooks(self) -> SqliteOutbox:
        """The webhook outbox on this store's database."""
        return SqliteOutbox(self._db)

    @property
    def assistants(self) -> SqliteAssistantStore:
        """The AssistantStore on this store's database (an assistant's crons go with it)."""
        return SqliteAssistantStore(self._db)

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

        def op(db: Db) -> None:
            db.execute(
                "INSERT INTO threads (thread_id, created_at, updated_at, state_updated_at, "
                "metadata) VALUES (?, ?, ?, ?, ?)",
                (thread_id, now, now, now, to_json(metadata)),
            )

        try:
            await self._db.write(op)
        except sqlite3.IntegrityError:
            if if_exists == "do_nothing":
                return await self.get_thread(thread_id)
            raise ThreadExists(thread_id) from None
        return Thread(thread_id, now, now, now, metadata, TS.IDLE)

    async def get_thread(self, thread_id: str) -> Thread:
        """The thread. Raises ThreadNotFound."""
        row = await self._db.read(lambda db: _fetch_thread(db, thread_id))
        if row is None:
            raise ThreadNotFound(thread_id)
        return row

    async def patch_thread_metadata(self, thread_id: str, metadata: dict[str, Any]) -> Thread:
        """Shallow-merge ``metadata`` into the thread's (``PATCH /threads/{id}``).

        Raises:
            ThreadNotFound: no such thread.
        """
        def op(db: Db) -> Thread | None:
            row = db.execute("SELECT metadata FROM threads WHERE thread_id = ?",
                             (thread_id,)).fetchone()
            if row is None:
                return None
            merged = {**orjson.loads(row[0]), **metadata}  # shallow: nested values replaced
            db.execute("UPDATE threads SET metadata = ?, updated_at = ? WHERE thread_id = ?",
                       (to_json(merged), now_iso(), thread_id))
            return _fetch_thread(db, thread_id)

        thread = await self._db.write(op)
        if thread is None:
            raise ThreadNotFound(thread_id)
        return thread

    async def set_thread_state(
        self, thread_id: str, values: dict[str, Any] | None, interrupts: dict[str, Any],
        rest_status: TS, metadata: dict[str, Any] | None = None,
    ) -> None:
        """Mirror a state change made outside a run (``POST /threads/{id}/state``, copy)."""
        now = now_iso()

        def op(db: Db) -> None:
            busy = _has_active(db, thread_id)
            db.execute(
                'UPDATE threads SET "values" = ?, interrupts = ?, rest_status = ?, status = ?, '
                "metadata = json_patch(metadata, ?), updated_at = ?, state_updated_at = ? "
                "WHERE thread_id = ?",
                (to_json(values), to_json(interrupts), rest_status,
                 TS.BUSY if busy else rest_status, to_json(metadata or {}), now, now, thread_id),
            )

        await self._db.write(op)

    async def delete_thread(self, thread_id: str) -> list[Run]:
        """Delete the thread and its runs; returns the runs that were pending or running.

        Raises:
            ThreadNotFound: no such thread.
        """
        def op(db: Db) -> list[Run] | None:
            active = _active_runs(db, thread_id)
            if db.execute("DELETE FROM threads WHERE thread_id = ?", (thread_id,)).rowcount == 0:
                return None
            db.execute("DELETE FROM runs WHERE thread_id = ?", (thread_id,))
            return active

        active = await self._db.write(op)
        if active is None:
            raise ThreadNotFound(thread_id)
        return active

    async def search_threads(
        self, *, ids: list[str] | None = None, metadata: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None, status: str | None = None,
        limit: int = 10, offset: int = 0, sort_by: str | None = None,
        sort_order: str | None = None, auth: AuthFilter | None = None,
    ) -> tuple[list[Thread], bool]:
        """Threads matching every filter (``POST /threads/search``). Scalar metadata filters
        are index lookups in ``thread_meta``.

        Returns:
            ``(threads, has_more)``; ``has_more`` says a row exists past ``offset + limit``.

        Raises:
            InvalidRequest: a filter with too many keys or an integer SQLite cannot bind
                (``store_filters.check_filter``).
        """
        where, args = thread_filters(ids, metadata, values, status, auth)
        sql = (f"SELECT {THREAD_COLS} FROM threads{where} "
               f"ORDER BY {thread_order(sort_by, sort_order)} LIMIT ? OFFSET ?")
        rows = await self._db.read(lambda db: db.execute(sql, [*args, limit + 1, offset])
                                   .fetchall())
        return [thread_from_row(r) for r in rows[:limit]], len(rows) > limit

    async def count_threads(
        self, *, metadata: dict[str, Any] | None = None, values: dict[str, Any] | None = None,
        status: str | None = None, auth: AuthFilter | None = None,
    ) -> int:
        """How many threads match (``POST /threads/count``). Raises InvalidRequest as
        ``search_threads``."""
        where, args = thread_filters(None, metadata, values, status, auth)
        row = await self._db.read(
            lambda db: db.execute(f"SELECT COUNT(*) FROM threads{where}", args).fetchone())
        return int(row[0])

    # ---- runs ----------------------------------------------------------------------------

    async def admit_run(
        self, run: Run, *, create_thread: bool, thread_metadata: dict[str, Any] | None = None,
        require_interrupted: bool = False, start_if_idle: bool = False,
        visible: AuthFilter | None = None,
    ) -> list[Run]:
        """Insert ``run`` as ``pending`` and mark its thread ``busy``, atomically.

        Args:
            run: the new run (status ``pending``).
            create_thread: create the thread if missing (``if_not_exists=create``, stateless).
            thread_metadata: metadata for a thread created here.
            require_interrupted: the run resumes an interrupt (``command.resume``).
            start_if_idle: insert it ``running`` straight away when the thread has no pending
                or running run (the caller has reserved a slot): admission and start in one
                transaction.
            visible: an authorization filter the thread's metadata must pass, checked in the
                admission's transaction (a thread another user created meanwhile is refused
                as a missing one).

        Returns:
            The thread's runs that were already pending or running, oldest first. Empty with
            ``start_if_idle`` means the run was stored ``running``.

        Raises:
            ThreadNotFound: missing thread and not ``create_thread``.
            ThreadBusy: ``multitask_strategy=reject`` and the thread has an active run.
            BadRequest: ``require_interrupted`` and the thread is neither interrupted nor
                running a run that may end interrupted.
        """
        now = run.created_at

        def op(db: Db) -> list[Run]:
            row = db.execute("SELECT rest_status, metadata FROM threads WHERE thread_id = ?",
                             (run.thread_id,)).fetchone()
            if visible is not None and not visible.matches(
                    orjson.loads(row[1]) if row is not None else thread_metadata):
                raise ThreadNotFound(run.thread_id, "Thread or assistant not found.")
            if row is None:
                if not create_thread:
                    raise ThreadNotFound(run.thread_id, "Thread or assistant not found.")
                db.execute(
                    "INSERT INTO threads (thread_id, created_at, updated_at, state_updated_at, "
                    "metadata) VALUES (?, ?, ?, ?, ?)",
                    (run.thread_id, now, now, now, to_json(thread_metadata or {})),
                )
            active = _active_runs(db, run.thread_id)
            if active and run.multitask_strategy == MultitaskStrategy.REJECT:
                raise ThreadBusy(run.thread_id)
            if require_interrupted and not active and (row is None or row[0] != TS.INTERRUPTED):
                raise BadRequest(
                    f"Cannot resume thread {run.thread_id}: it is not interrupted "
                    f"(status {row[0] if row else 'idle'}); there is nothing to resume."
                )
            status = RunStatus.RUNNING if start_if_idle and not active else run.status
            db.execute(
                f"INSERT INTO runs ({RUN_COLS}) VALUES ({', '.join('?' * 14)})",
                (
                    run.run_id, run.thread_id, run.assistant_id, run.graph_id, status,
                    to_json(run.metadata), to_json(run.kwargs), run.multitask_strategy,
                    run.created_at, run.updated_at, run.attempt, run.cancel_action,
                    run.on_completion, run.not_before,
                ),
            )
            db.execute(  # the thread belongs to the run's graph from now on
                "UPDATE threads SET status = 'busy', updated_at = ?, metadata = json_set("
                "metadata, '$.graph_id', ?, '$.assistant_id', ?) WHERE thread_id = ?",
                (now, run.graph_id, run.assistant_id, run.thread_id),
            )
            return active

        return await self._db.write(op)

    async def mark_running(self, run_id: str) -> Run | None:
        """CAS ``pending -> running``; the run as now stored, or None if it is no longer
        pending (or its thread already has a running run: the partial unique index refuses
        it)."""
        def op(db: Db) -> Run | None:
            try:
                cur = db.execute("UPDATE runs SET status = 'running', updated_at = ? "
                                 "WHERE run_id = ? AND status = 'pending'", (now_iso(), run_id))
            except sqlite3.IntegrityError:
                return None
            return _fetch_run(db, run_id, None) if cur.rowcount else None

        return await self._db.write(op)

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

        def op(db: Db) -> bool:
            cur = db.execute(f"UPDATE runs SET status = ?, updated_at = ? WHERE run_id = ? "
                             f"AND status IN {ACTIVE}", (status, now, run_id))
            if cur.rowcount == 0:  # a late finisher never touches the thread either
                return False
            _write_thread_after_run(db, thread_id, outcome, now)
            return True

        return await self._db.write(op)

    async def set_cancel_action(self, run_id: str, action: CancelAction) -> bool:
        """Record the durable cancel intent of an active run; False if it is not active."""
        def op(db: Db) -> bool:
            cur = db.execute(f"UPDATE runs SET cancel_action = ?, updated_at = ? "
                             f"WHERE run_id = ? AND status IN {ACTIVE}",
                             (action, now_iso(), run_id))
            return cur.rowcount > 0

        return await self._db.write(op)

    async def requeue_run(self, run_id: str, attempt: int | None = None) -> bool:
        """Put a ``running`` run back to ``pending`` (shutdown, recovery); optionally set its
        ``attempt``. False if the run was not running."""
        def op(db: Db) -> bool:
            cur = db.execute("UPDATE runs SET status = 'pending', attempt = COALESCE(?, attempt),"
                             " updated_at = ? WHERE run_id = ? AND status = 'running'",
                             (attempt, now_iso(), run_id))
            return cur.rowcount > 0

        return await self._db.write(op)

    async def get_run(self, run_id: str, thread_id: str | None = None) -> Run | None:
        """The run (optionally only if it belongs to ``thread_id``), or None."""
        return await self._db.read(lambda db: _fetch_run(db, run_id, thread_id))

    async def list_runs(
        self, thread_id: str, *, status: str | None = None, limit: int = 10, offset: int = 0
    ) -> list[Run]:
        """A thread's runs, newest first (``GET /threads/{id}/runs``)."""
        sql = f"SELECT {RUN_COLS} FROM runs WHERE thread_id = ?"
        args: list[Any] = [thread_id]
        if status:
            sql += " AND status = ?"
            args.append(status)
        sql += " ORDER BY seq DESC LIMIT ? OFFSET ?"
        rows = await self._db.read(lambda db: db.execute(sql, [*args, limit, offset]).fetchall())
        return [run_from_row(r) for r in rows]

    async def active_runs(self, thread_id: str | None = None) -> list[Run]:
        """Pending or running runs (of one thread, or all), in admission order."""
        if thread_id is not None:
            return await self._db.read(lambda db: _active_runs(db, thread_id))
        rows = await self._db.read(lambda db: db.execute(
            f"SELECT {RUN_COLS} FROM runs WHERE status IN {ACTIVE} ORDER BY seq").fetchall())
        return [run_from_row(r) for r in rows]

    async def delete_run(
        self, run_id: str, thread_id: str, outcome: ThreadOutcome | None = None
    ) -> bool:
        """Delete a run record and recompute its thread (with ``outcome``: the state a
        rollback left), in one transaction; False if absent."""
        def op(db: Db) -> bool:
            cur = db.execute("DELETE FROM runs WHERE run_id = ? AND thread_id = ?",
                             (run_id, thread_id))
            if cur.rowcount == 0:
                return False
            _write_thread_after_run(db, thread_id, outcome, now_iso())
            return True

        return await self._db.write(op)


# ---- statements shared by several operations (run inside the worker thread) ----------------

def _fetch_thread(db: Db, thread_id: str) -> Thread | None:
    row = db.execute(f"SELECT {THREAD_COLS} FROM threads WHERE thread_id = ?",
                     (thread_id,)).fetchone()
    return None if row is None else thread_from_row(row)


def _fetch_run(db: Db, run_id: str, thread_id: str | None) -> Run | None:
    if thread_id is None:
        row = db.execute(f"SELECT {RUN_COLS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    else:
        row = db.execute(f"SELECT {RUN_COLS} FROM runs WHERE run_id = ? AND thread_id = ?",
                         (run_id, thread_id)).fetchone()
    return None if row is None else run_from_row(row)


def _active_runs(db: Db, thread_id: str) -> list[Run]:
    rows = db.execute(f"SELECT {RUN_COLS} FROM runs WHERE thread_id = ? AND status IN {ACTIVE} "
                      "ORDER BY seq", (thread_id,)).fetchall()
    return [run_from_row(r) for r in rows]


def _has_active(db: Db, thread_id: str) -> bool:
    return db.execute(f"SELECT 1 FROM runs WHERE thread_id = ? AND status IN {ACTIVE} LIMIT 1",
                      (thread_id,)).fetchone() is not None


def _write_thread_after_run(
    db: Db, thread_id: str, outcome: ThreadOutcome | None, now: str
) -> None:
    busy = _has_active(db, thread_id)
    if outcome is None:
        db.execute("UPDATE threads SET status = CASE WHEN ? THEN 'busy' ELSE rest_status END, "
                   "updated_at = ? WHERE thread_id = ?", (busy, now, thread_id))
        return
    patch = {k: v for k, v in (("graph_id", outcome.graph_id),
                               ("assistant_id", outcome.assistant_id)) if v}
    db.execute(
        'UPDATE threads SET "values" = ?, interrupts = ?, error = ?, rest_status = ?, '
        "status = ?, metadata = json_patch(metadata, ?), updated_at = ?, "
        "state_updated_at = ? WHERE thread_id = ?",
        (outcome.values_json.decode() if outcome.values_json is not None
         else to_json(outcome.values), to_json(outcome.interrupts), to_json(outcome.error),
         outcome.status, TS.BUSY if busy else outcome.status, to_json(patch), now, now,
         thread_id),
    )
