"""RunStore and ThreadStore on PostgreSQL: the durable truth about runs and threads, shared by
every gateway process that points at one database (design.md 9).

Owns the ``threads`` and ``runs`` tables (schema and migration in
``runtime/store/postgres_migrations.py``, row mapping in ``runtime/store/postgres_schema.py``)
and a psycopg 3 ``AsyncConnectionPool``. Observable behaviour is the SQLite store's
(``runtime/store/sqlite.py`` documents each method; one contract suite,
tests/contract/test_store.py, runs against both).

Invariants:
1. At most one ``running`` run per thread, enforced by the partial unique index
   ``runs_one_running``: a second ``mark_running`` fails on it (a ``UniqueViolation``), which
   is how two starts of one thread are refused, across processes (design.md 4.1).
2. Status changes of a run are compare-and-set from ``pending``/``running``; a terminal status
   is never overwritten (design.md 4.3).
3. Every method is one transaction. Admission (busy check + insert + thread ``busy``) and
   finalization (run status + thread status, values, interrupts) are each one call of a
   PL/pgSQL function of the schema (``gw_admit_run_v1``, ``gw_finish_run_v1``,
   ``gw_delete_run_v1``: one round trip, postgres_functions.py); the other methods are one
   statement, or a short transaction of a few.
4. ``threads.status`` is ``busy`` while the thread has a pending or running run; otherwise it
   is ``rest_status``. Every transaction that reads a thread's active runs to decide its status
   or to admit a run first locks the thread row (``SELECT ... FOR UPDATE``), so concurrent
   admissions and finalizations of one thread are serialized (under READ COMMITTED each later
   statement sees what the previous lock holder committed), and a thread's ``seq`` order is
   its admission order. Locks are taken thread row first, then run rows: no deadlock between
   these operations.

Claims, leases and fencing for N processes (``RunClaims``) are ``PostgresClaims``
(postgres_claims.py), inherited here; SQLite has none (one process by construction).

Deliberate differences from the SQLite store:
1. JSON is ``jsonb`` (postgres_migrations.py, difference 1): key order and number spelling are not
   kept. A client's value holding U+0000 is refused with ``InvalidRequest`` (422 at
   admission, thread create and patch) where SQLite would store it; in the copy of a thread's
   state the store keeps (``values``, ``interrupts``, ``error``) U+0000 is written as U+FFFD,
   since the checkpointer keeps the exact state and a refusal would leave the thread unable to
   finish any later run.
2. Operations run concurrently on up to ``max_size`` pooled connections, not one at a time on
   one lane, and there is no group commit. A cancelled caller stops waiting; its transaction
   is rolled back unless its COMMIT had already been sent (callers that must know the outcome
   shield their call, as with SQLite).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from runtime.assistants.postgres import PostgresAssistantStore
from runtime.auth_filter import AuthFilter
from runtime.crons.postgres import PostgresCronStore
from runtime.errors import ThreadExists, ThreadNotFound
from runtime.ids import now_iso
from runtime.pg_session import configure_session
from runtime.store.filters import thread_order
from runtime.store.postgres_claims import PostgresClaims
from runtime.store.postgres_migrations import migrate
from runtime.store.postgres_schema import (
    ACTIVE,
    RUN_COLS,
    THREAD_COLS,
    admission_error,
    admit_checked,
    loads_json,
    merge_patch,
    outcome_args,
    run_from_row,
    thread_filters,
    thread_from_row,
    to_jsonb,
)
from runtime.types import CancelAction, Run, RunStatus, Thread, ThreadOutcome
from runtime.types import ThreadStatus as TS
from runtime.webhooks.outbox import PostgresOutbox

Conn = AsyncConnection[tuple[Any, ...]]


class PostgresStore(PostgresClaims):
    """RunStore + ThreadStore (+ RunClaims, postgres_claims.py) over a PostgreSQL connection
    pool. Open with ``PostgresStore.open``."""

    def __init__(self, pool: AsyncConnectionPool[Conn], *, notify: bool = False) -> None:
        self._pool = pool
        self._admit_fn = "gw_admit_run_notify_v1" if notify else "gw_admit_run_v1"

    @classmethod
    @asynccontextmanager
    async def open(
        cls, url: str, *, min_size: int = 1, max_size: int = 10, notify: bool = False
    ) -> AsyncIterator[PostgresStore]:
        """Connect to ``url`` (``postgresql://user@host:port/db``), create or migrate the
        schema (safe when several processes start at once: postgres_migrations.py invariant 2),
        and close the pool on exit.

        Args:
            notify: an admission of a due pending run also notifies ``RUNS_CHANNEL`` in its
                transaction (for claimers in other processes: postgres_claims.py invariant 6);
                off for the single-process gateway, whose scheduler is woken in memory.

        Raises:
            psycopg.OperationalError: the database is unreachable or refuses the connection
                (at once: the schema is migrated on a connection of its own, before the pool
                opens).
            RuntimeError: the database's schema is newer than this gateway's.
        """
        async with await AsyncConnection.connect(url, autocommit=True) as conn:
            await migrate(conn)
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            url, min_size=min_size, max_size=max_size, open=False,
            kwargs={"autocommit": True}, configure=_configure, name="gateway-store",
        )
        await pool.open(wait=True)
        try:
            yield cls(pool, notify=notify)
        finally:
            await pool.close()

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[Conn]:
        async with self._pool.connection() as conn, conn.transaction():
            yield conn

    async def _fetchall(self, sql: str, args: list[Any] | tuple[Any, ...]) -> list[Any]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(sql, args)
            return await cur.fetchall()

    # ---- threads -------------------------------------------------------------------------

    @property
    def crons(self) -> PostgresCronStore:
        """The CronStore on this store's pool (a cron's thread is a foreign key)."""
        return PostgresCronStore(self._pool)

    @property
    def webhooks(self) -> PostgresOutbox:
        """The webhook outbox on this store's pool."""
        return PostgresOutbox(self._pool)

    @property
    def assistants(self) -> PostgresAssistantStore:
        """The AssistantStore on this store's pool (an assistant's crons go with it)."""
        return PostgresAssistantStore(self._pool)

    async def create_thread(
        self, thread_id: str, metadata: dict[str, Any], if_exists: str = "raise"
    ) -> Thread:
        """Insert an idle thread (``POST /threads``).

        Raises:
            ThreadExists: ``thread_id`` exists and ``if_exists`` is ``raise``
                (``do_nothing`` returns the existing thread unchanged).
            InvalidRequest: ``metadata`` holds U+0000.
        """
        now = now_iso()
        inserted = await self._fetchall(
            "INSERT INTO threads (thread_id, created_at, updated_at, state_updated_at, metadata) "
            "VALUES (%s, %s, %s, %s, %s::jsonb) ON CONFLICT (thread_id) DO NOTHING RETURNING 1",
            (thread_id, now, now, now, to_jsonb(metadata, "metadata")),
        )
        if not inserted:
            if if_exists == "do_nothing":
                return await self.get_thread(thread_id)
            raise ThreadExists(thread_id)
        return Thread(thread_id, now, now, now, metadata, TS.IDLE)

    async def get_thread(self, thread_id: str) -> Thread:
        """The thread. Raises ThreadNotFound."""
        rows = await self._fetchall(
            f"SELECT {THREAD_COLS} FROM threads WHERE thread_id = %s", (thread_id,))
        if not rows:
            raise ThreadNotFound(thread_id)
        return thread_from_row(rows[0])

    async def patch_thread_metadata(self, thread_id: str, metadata: dict[str, Any]) -> Thread:
        """Shallow-merge ``metadata`` into the thread's (``PATCH /threads/{id}``; jsonb ``||``:
        nested values replaced, nulls kept).

        Raises:
            ThreadNotFound: no such thread.
            InvalidRequest: ``metadata`` holds U+0000.
        """
        rows = await self._fetchall(
            "UPDATE threads SET metadata = metadata || %s::jsonb, updated_at = %s "
            f"WHERE thread_id = %s RETURNING {THREAD_COLS}",
            (to_jsonb(metadata, "metadata"), now_iso(), thread_id),
        )
        if not rows:
            raise ThreadNotFound(thread_id)
        return thread_from_row(rows[0])

    async def set_thread_state(
        self, thread_id: str, values: dict[str, Any] | None, interrupts: dict[str, Any],
        rest_status: TS, metadata: dict[str, Any] | None = None,
    ) -> None:
        """Mirror a state change made outside a run (``POST /threads/{id}/state``, copy);
        ``metadata`` is applied as a JSON merge patch (SQLite's ``json_patch``). A missing
        thread is left missing."""
        now = now_iso()
        values_json = to_jsonb(values, "values", replace_nul=True)
        interrupts_json = to_jsonb(interrupts, "interrupts", replace_nul=True)
        async with self._tx() as conn:
            cur = await conn.execute(
                "SELECT metadata FROM threads WHERE thread_id = %s FOR UPDATE", (thread_id,))
            row = await cur.fetchone()
            if row is None:
                return
            busy = await _has_active(conn, thread_id)
            await conn.execute(
                'UPDATE threads SET "values" = %s::jsonb, interrupts = %s::jsonb, '
                "rest_status = %s, status = %s, metadata = %s::jsonb, updated_at = %s, "
                "state_updated_at = %s WHERE thread_id = %s",
                (values_json, interrupts_json, rest_status, TS.BUSY if busy else rest_status,
                 to_jsonb(merge_patch(row[0], metadata or {}), "metadata"), now, now,
                 thread_id),
            )

    async def delete_thread(self, thread_id: str) -> list[Run]:
        """Delete the thread and its runs; returns the runs that were pending or running.

        Raises:
            ThreadNotFound: no such thread.
        """
        async with self._tx() as conn:
            if not await _lock_thread(conn, thread_id):
                raise ThreadNotFound(thread_id)
            active = await _active_runs(conn, thread_id)
            await conn.execute("DELETE FROM threads WHERE thread_id = %s", (thread_id,))
        return active  # its runs went with it (ON DELETE CASCADE)

    async def search_threads(
        self, *, ids: list[str] | None = None, metadata: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None, status: str | None = None,
        limit: int = 10, offset: int = 0, sort_by: str | None = None,
        sort_order: str | None = None, auth: AuthFilter | None = None,
    ) -> tuple[list[Thread], bool]:
        """Threads matching every filter (``POST /threads/search``): ``metadata``/``values``
        by jsonb containment (``@>``, the reference's semantics).

        Returns:
            ``(threads, has_more)``; ``has_more`` says a row exists past ``offset + limit``.

        Raises:
            InvalidRequest: a filter out of bounds (``store.filters.check_filter``: the same
                422s as the SQLite store).
        """
        where, args = thread_filters(ids, metadata, values, status, auth)
        order = thread_order(sort_by, sort_order).replace("rowid", "seq")
        rows = await self._fetchall(
            f"SELECT {THREAD_COLS} FROM threads{where} ORDER BY {order} LIMIT %s OFFSET %s",
            [*args, limit + 1, offset],
        )
        return [thread_from_row(r) for r in rows[:limit]], len(rows) > limit

    async def count_threads(
        self, *, metadata: dict[str, Any] | None = None, values: dict[str, Any] | None = None,
        status: str | None = None, auth: AuthFilter | None = None,
    ) -> int:
        """How many threads match (``POST /threads/count``). Raises InvalidRequest as
        ``search_threads``."""
        where, args = thread_filters(None, metadata, values, status, auth)
        rows = await self._fetchall(f"SELECT count(*) FROM threads{where}", args)
        return int(rows[0][0])

    # ---- runs ----------------------------------------------------------------------------

    async def admit_run(
        self, run: Run, *, create_thread: bool, thread_metadata: dict[str, Any] | None = None,
        require_interrupted: bool = False, start_if_idle: bool = False,
        visible: AuthFilter | None = None,
    ) -> list[Run]:
        """Insert ``run`` as ``pending`` (``running`` with ``start_if_idle`` on an idle
        thread) and mark its thread ``busy``, atomically, under the thread row's lock.
        ``visible``: an authorization filter the thread must pass, checked in the admission's
        transaction (``admit_checked``).

        Returns:
            The thread's runs that were already pending or running, oldest first.

        Raises:
            ThreadNotFound: missing thread and not ``create_thread``.
            ThreadBusy: ``multitask_strategy=reject`` and the thread has an active run.
            BadRequest: ``require_interrupted`` and the thread is neither interrupted nor
                running a run that may end interrupted.
            InvalidRequest: the run's metadata or kwargs hold U+0000 (nothing stored).
        """
        meta, kwargs = to_jsonb(run.metadata, "metadata"), to_jsonb(run.kwargs, "kwargs")
        thread_meta = to_jsonb(thread_metadata or {}, "metadata")
        try:
            rows = await admit_checked(
                self._pool, run.thread_id, visible,
                f"SELECT {RUN_COLS} FROM {self._admit_fn}(%s, %s, %s, %s, %s, %s::jsonb, "
                "%s::jsonb, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s)",
                (
                    run.run_id, run.thread_id, run.assistant_id, run.graph_id, run.status,
                    meta, kwargs, run.multitask_strategy, run.created_at, run.updated_at,
                    run.attempt, run.cancel_action, run.on_completion, run.not_before,
                    create_thread, thread_meta, require_interrupted, start_if_idle,
                ),
            )
        except psycopg.Error as exc:
            raise admission_error(exc, run.thread_id) from None
        return [run_from_row(r) for r in rows]

    async def mark_running(self, run_id: str) -> Run | None:
        """CAS ``pending -> running``; the run as now stored, or None if it is no longer
        pending or its thread already has a running run (the partial unique index refuses
        it, also when the other start is still uncommitted in another process)."""
        try:
            rows = await self._fetchall(
                "UPDATE runs SET status = 'running', updated_at = %s "
                f"WHERE run_id = %s AND status = 'pending' RETURNING {RUN_COLS}",
                (now_iso(), run_id),
            )
        except psycopg.errors.UniqueViolation:
            return None
        return run_from_row(rows[0]) if rows else None

    async def finish_run(
        self, run_id: str, thread_id: str, status: RunStatus, outcome: ThreadOutcome | None
    ) -> bool:
        """Write a terminal status (CAS from pending/running) and the thread it leaves.

        Args:
            outcome: the thread's new values/interrupts/error and rest status; None to only
                recompute the thread status (e.g. a cancelled pending run).

        Returns:
            True if this call moved the run to ``status``.

        Raises:
            InvalidRequest: never for U+0000 in the outcome (written as U+FFFD).
        """
        rows = await self._fetchall(
            "SELECT gw_finish_run_v1(%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s::jsonb, %s, "
            "%s::jsonb)", (run_id, thread_id, status, now_iso(), *outcome_args(outcome)))
        return bool(rows[0][0])

    async def set_cancel_action(self, run_id: str, action: CancelAction) -> bool:
        """Record the durable cancel intent of an active run; False if it is not active. The
        first request's instant (DB clock) is kept in ``cancel_requested_at`` (the sweep's
        grace for a pending run whose canceller died: postgres_claims.py)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE runs SET cancel_action = %s, updated_at = %s, "
                "cancel_requested_at = COALESCE(cancel_requested_at, now()) "
                f"WHERE run_id = %s AND status IN {ACTIVE}", (action, now_iso(), run_id))
            return cur.rowcount > 0

    async def requeue_run(self, run_id: str, attempt: int | None = None) -> bool:
        """Put a ``running`` run back to ``pending`` (shutdown, recovery); optionally set its
        ``attempt``. False if the run was not running."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE runs SET status = 'pending', attempt = COALESCE(%s::integer, attempt), "
                "updated_at = %s WHERE run_id = %s AND status = 'running'",
                (attempt, now_iso(), run_id))
            return cur.rowcount > 0

    async def get_run(self, run_id: str, thread_id: str | None = None) -> Run | None:
        """The run (optionally only if it belongs to ``thread_id``), or None."""
        if thread_id is None:
            rows = await self._fetchall(
                f"SELECT {RUN_COLS} FROM runs WHERE run_id = %s", (run_id,))
        else:
            rows = await self._fetchall(
                f"SELECT {RUN_COLS} FROM runs WHERE run_id = %s AND thread_id = %s",
                (run_id, thread_id))
        return run_from_row(rows[0]) if rows else None

    async def list_runs(
        self, thread_id: str, *, status: str | None = None, limit: int = 10, offset: int = 0
    ) -> list[Run]:
        """A thread's runs, newest first (``GET /threads/{id}/runs``)."""
        sql = f"SELECT {RUN_COLS} FROM runs WHERE thread_id = %s"
        args: list[Any] = [thread_id]
        if status:
            sql += " AND status = %s"
            args.append(status)
        rows = await self._fetchall(sql + " ORDER BY seq DESC LIMIT %s OFFSET %s",
                                    [*args, limit, offset])
        return [run_from_row(r) for r in rows]

    async def active_runs(self, thread_id: str | None = None) -> list[Run]:
        """Pending or running runs (of one thread, or all), in admission order (per thread;
        across threads, in the order their inserts took a ``seq``)."""
        if thread_id is not None:
            async with self._pool.connection() as conn:
                return await _active_runs(conn, thread_id)
        rows = await self._fetchall(
            f"SELECT {RUN_COLS} FROM runs WHERE status IN {ACTIVE} ORDER BY seq", ())
        return [run_from_row(r) for r in rows]

    async def delete_run(
        self, run_id: str, thread_id: str, outcome: ThreadOutcome | None = None
    ) -> bool:
        """Delete a run record and recompute its thread (with ``outcome``: the state a
        rollback left), in one transaction; False if absent."""
        rows = await self._fetchall(
            "SELECT gw_delete_run_v1(%s, %s, %s, %s, %s::jsonb, %s::jsonb, %s::jsonb, %s, "
            "%s::jsonb)", (run_id, thread_id, now_iso(), *outcome_args(outcome)))
        return bool(rows[0][0])


# ---- schema and statements shared by several operations --------------------------------------

async def _configure(conn: Conn) -> None:
    set_json_loads(loads_json, conn)
    await configure_session(conn)


async def _lock_thread(conn: Conn, thread_id: str) -> str | None:
    """Lock the thread row (module invariant 4); its ``rest_status``, or None if missing."""
    cur = await conn.execute(
        "SELECT rest_status FROM threads WHERE thread_id = %s FOR UPDATE", (thread_id,))
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def _active_runs(conn: Conn, thread_id: str) -> list[Run]:
    cur = await conn.execute(
        f"SELECT {RUN_COLS} FROM runs WHERE thread_id = %s AND status IN {ACTIVE} "
        "ORDER BY seq", (thread_id,))
    return [run_from_row(r) for r in await cur.fetchall()]


async def _has_active(conn: Conn, thread_id: str) -> bool:
    cur = await conn.execute(
        f"SELECT 1 FROM runs WHERE thread_id = %s AND status IN {ACTIVE} LIMIT 1", (thread_id,))
    return await cur.fetchone() is not None
