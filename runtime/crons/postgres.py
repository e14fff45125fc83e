"""PostgresCronStore: the CronStore on the PostgreSQL store's pool. Its tables come with the
store's schema (migration 4, ``CRON_MIGRATION``: new tables only, safe for a rolling deploy);
``ON DELETE CASCADE`` deletes a thread's crons with the thread (protocol.py invariant 1).

``claim_due`` locks the due rows ``FOR UPDATE SKIP LOCKED`` and advances them in the same
transaction, so N gateway processes hand each tick to exactly one of them (invariant 2): a row
another scheduler holds is skipped, and once it commits the row is no longer due.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from runtime.crons.protocol import Advance
from runtime.crons.schedule import stored
from runtime.crons.types import CRON_COLS, Cron, CronFire
from runtime.crons.util import CronQueries, select_where, thread_detail
from runtime.errors import CronNotFound, InvalidRequest, ThreadNotFound

Conn = AsyncConnection[tuple[Any, ...]]
MAX_FIRES_KEPT = 100
_INSERT = (f"INSERT INTO crons ({CRON_COLS}) VALUES "
           "(%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s::jsonb, %s, %s, %s, %s)")


def cron_from_row(row: Sequence[Any]) -> Cron:
    """The ``Cron`` of a ``crons`` row (CRON_COLS order; jsonb already decoded)."""
    return Cron(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8],
                row[9], row[10], bool(row[11]), row[12], row[13])


def _row_args(cron: Cron) -> tuple[Any, ...]:
    try:
        payload = orjson.dumps(cron.payload).decode()
        metadata = orjson.dumps(cron.metadata).decode()
    except TypeError as exc:  # pragma: no cover - bodies are JSON already
        raise InvalidRequest(str(exc)) from None
    if "\\u0000" in payload or "\\u0000" in metadata:
        raise InvalidRequest("payload: PostgreSQL cannot store the character U+0000 (\\u0000)")
    return (cron.cron_id, cron.assistant_id, cron.thread_id, cron.user_id, cron.end_time,
            cron.schedule, cron.timezone, payload, cron.next_run_date, metadata,
            cron.on_run_completed, cron.enabled, cron.created_at, cron.updated_at)


class PostgresCronStore(CronQueries):
    """CronStore over the PostgreSQL store's pool."""

    def __init__(self, pool: AsyncConnectionPool[Conn]) -> None:
        self._pool = pool

    async def create_cron(self, cron: Cron) -> Cron:
        """Insert ``cron``. Raises ThreadNotFound for a missing thread (the foreign key)."""
        args = _row_args(cron)
        try:
            async with self._pool.connection() as conn:
                await conn.execute(_INSERT, args)
        except psycopg.errors.ForeignKeyViolation:
            assert cron.thread_id is not None
            raise ThreadNotFound(cron.thread_id, thread_detail(cron.thread_id)) from None
        return cron

    async def get_cron(self, cron_id: str) -> Cron:
        """The cron. Raises CronNotFound."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(f"SELECT {CRON_COLS} FROM crons WHERE cron_id = %s",
                                     (cron_id,))
            row = await cur.fetchone()
        if row is None:
            raise CronNotFound(cron_id)
        return cron_from_row(row)

    async def update_cron(self, cron_id: str, apply: Callable[[Cron], Cron]) -> Cron:
        """Replace the cron with ``apply(cron)`` under its row lock. Raises CronNotFound."""
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"SELECT {CRON_COLS} FROM crons WHERE cron_id = %s FOR UPDATE", (cron_id,))
            row = await cur.fetchone()
            if row is None:
                raise CronNotFound(cron_id, f"Cron '{cron_id}' not found")
            new = apply(cron_from_row(row))
            args = _row_args(new)
            await conn.execute(
                "UPDATE crons SET end_time = %s, schedule = %s, timezone = %s, "
                "payload = %s::jsonb, next_run_date = %s, metadata = %s::jsonb, "
                "on_run_completed = %s, enabled = %s, updated_at = %s WHERE cron_id = %s",
                (*args[4:12], args[13], cron_id))
        return new

    async def delete_cron(self, cron_id: str) -> bool:
        """Delete the cron (its fires cascade); False if there was none."""
        async with self._pool.connection() as conn:
            cur = await conn.execute("DELETE FROM crons WHERE cron_id = %s", (cron_id,))
            return cur.rowcount > 0

    async def _select(self, assistant_id: str | None, thread_id: str | None,
                      enabled: bool | None) -> list[Cron]:
        where, args = select_where(assistant_id, thread_id, enabled, "%s")
        async with self._pool.connection() as conn:
            cur = await conn.execute(f"SELECT {CRON_COLS} FROM crons{where}", args)
            return [cron_from_row(r) for r in await cur.fetchall()]

    async def claim_due(self, now: datetime, limit: int, advance: Advance
                        ) -> list[tuple[Cron, str]]:
        """Due crons, locked ``SKIP LOCKED`` and advanced in one transaction."""
        now_text = stored(now)
        out: list[tuple[Cron, str]] = []
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"SELECT {CRON_COLS} FROM crons WHERE enabled AND next_run_date <= %s "
                "AND (end_time IS NULL OR end_time > %s) ORDER BY next_run_date LIMIT %s "
                "FOR UPDATE SKIP LOCKED", (now_text, now_text, limit))
            for row in await cur.fetchall():
                cron = cron_from_row(row)
                next_run, still_enabled = advance(cron, now)
                await conn.execute(
                    "UPDATE crons SET next_run_date = %s, enabled = %s WHERE cron_id = %s",
                    (next_run, still_enabled, cron.cron_id))
                assert cron.next_run_date is not None
                out.append((cron, cron.next_run_date))
        return out

    async def active_runs(self, cron_id: str) -> int:
        """The cron's pending or running runs (its id is in their ``configurable``)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM runs WHERE status IN ('pending', 'running') "
                "AND kwargs->'config'->'configurable'->>'cron_id' = %s", (cron_id,))
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def requeue_tick(self, cron_id: str, tick: str) -> None:
        """``tick`` due again, if the cron is still enabled."""
        async with self._pool.connection() as conn:
            await conn.execute("UPDATE crons SET next_run_date = %s WHERE cron_id = %s "
                               "AND enabled", (tick, cron_id))

    async def record_fire(self, fire: CronFire) -> None:
        """Keep the fire (the newest MAX_FIRES_KEPT per cron); nothing if the cron is gone."""
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO cron_fires (cron_id, scheduled_for, fired_at, outcome, run_id, "
                "thread_id, error) SELECT %s, %s, %s, %s, %s, %s, %s "
                "WHERE EXISTS (SELECT 1 FROM crons WHERE cron_id = %s)",
                (fire.cron_id, fire.scheduled_for, fire.fired_at, fire.outcome, fire.run_id,
                 fire.thread_id, fire.error, fire.cron_id))
            await conn.execute(
                "DELETE FROM cron_fires WHERE cron_id = %s AND seq < (SELECT min(seq) FROM "
                "(SELECT seq FROM cron_fires WHERE cron_id = %s ORDER BY seq DESC LIMIT %s) s)",
                (fire.cron_id, fire.cron_id, MAX_FIRES_KEPT))

    async def list_fires(self, cron_id: str, limit: int = 100) -> list[CronFire]:
        """The cron's fires, newest first."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT cron_id, scheduled_for, fired_at, outcome, run_id, thread_id, error "
                "FROM cron_fires WHERE cron_id = %s ORDER BY seq DESC LIMIT %s",
                (cron_id, limit))
            rows = await cur.fetchall()
        return [CronFire(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]



CRON_MIGRATION = """
CREATE TABLE IF NOT EXISTS crons (
    cron_id text COLLATE "C" PRIMARY KEY,
    assistant_id text NOT NULL,
    thread_id text COLLATE "C" REFERENCES threads(thread_id) ON DELETE CASCADE,
    user_id text NOT NULL DEFAULT '',
    end_time text COLLATE "C",
    schedule text NOT NULL,
    timezone text,
    payload jsonb NOT NULL,
    next_run_date text COLLATE "C",
    metadata jsonb NOT NULL DEFAULT '{}',
    on_run_completed text,
    enabled boolean NOT NULL DEFAULT true,
    created_at text NOT NULL,
    updated_at text NOT NULL
);
CREATE INDEX IF NOT EXISTS crons_due ON crons(next_run_date) WHERE enabled;
CREATE INDEX IF NOT EXISTS crons_thread ON crons(thread_id);
CREATE TABLE IF NOT EXISTS cron_fires (
    seq bigserial PRIMARY KEY,
    cron_id text COLLATE "C" NOT NULL REFERENCES crons(cron_id) ON DELETE CASCADE,
    scheduled_for text NOT NULL,
    fired_at text NOT NULL,
    outcome text NOT NULL,
    run_id text,
    thread_id text,
    error text
);
CREATE INDEX IF NOT EXISTS cron_fires_cron ON cron_fires(cron_id, seq);
"""
"""Migration 4: the cron tables (times as stored text: ``schedule.stored``, so text order is
time order)."""
