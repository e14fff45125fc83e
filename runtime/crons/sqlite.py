"""SqliteCronStore: the CronStore on the SQLite store's database (``gateway.sqlite``), so a
cron and its thread change in one transaction. Its tables are part of the store's schema
(runtime/store/sqlite_schema.py ``CRON_SCHEMA``); a trigger deletes a thread's crons with the
thread (runtime/crons/protocol.py invariant 1). One process per data dir: ``claim_due`` needs
no row locks, its write transaction is exclusive.

Crons are few (a schedule per agent, not per request): searches filter ``metadata`` and sort in
Python over the rows the indexed columns select.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import orjson

from runtime.crons.protocol import Advance
from runtime.crons.schedule import stored
from runtime.crons.types import CRON_COLS, Cron, CronFire
from runtime.crons.util import CronQueries, select_where, thread_detail
from runtime.errors import CronNotFound, ThreadNotFound
from runtime.sqlite_db import SqliteDb

Db = sqlite3.Connection
MAX_FIRES_KEPT = 100


def cron_from_row(row: Sequence[Any]) -> Cron:
    """The ``Cron`` of a ``crons`` row (CRON_COLS order)."""
    return Cron(row[0], row[1], row[2], row[3], row[4], row[5], row[6], orjson.loads(row[7]),
                row[8], orjson.loads(row[9]), row[10], bool(row[11]), row[12], row[13])


def _row_args(cron: Cron) -> tuple[Any, ...]:
    return (cron.cron_id, cron.assistant_id, cron.thread_id, cron.user_id, cron.end_time,
            cron.schedule, cron.timezone, orjson.dumps(cron.payload).decode(),
            cron.next_run_date, orjson.dumps(cron.metadata).decode(), cron.on_run_completed,
            int(cron.enabled), cron.created_at, cron.updated_at)


class SqliteCronStore(CronQueries):
    """CronStore over a ``SqliteDb`` that holds the store's schema."""

    def __init__(self, db: SqliteDb) -> None:
        self._db = db

    async def create_cron(self, cron: Cron) -> Cron:
        """Insert ``cron``. Raises ThreadNotFound for a missing thread."""
        def op(db: Db) -> bool:
            if cron.thread_id is not None and db.execute(
                    "SELECT 1 FROM threads WHERE thread_id = ?", (cron.thread_id,)
            ).fetchone() is None:
                return False
            db.execute(f"INSERT INTO crons ({CRON_COLS}) VALUES "
                       "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _row_args(cron))
            return True

        if not await self._db.write(op):
            assert cron.thread_id is not None
            raise ThreadNotFound(cron.thread_id, thread_detail(cron.thread_id))
        return cron

    async def get_cron(self, cron_id: str) -> Cron:
        """The cron. Raises CronNotFound."""
        row = await self._db.read(lambda db: db.execute(
            f"SELECT {CRON_COLS} FROM crons WHERE cron_id = ?", (cron_id,)).fetchone())
        if row is None:
            raise CronNotFound(cron_id)
        return cron_from_row(row)

    async def update_cron(self, cron_id: str, apply: Callable[[Cron], Cron]) -> Cron:
        """Replace the cron with ``apply(cron)`` atomically. Raises CronNotFound."""
        def op(db: Db) -> Cron | None:
            row = db.execute(f"SELECT {CRON_COLS} FROM crons WHERE cron_id = ?",
                             (cron_id,)).fetchone()
            if row is None:
                return None
            new = apply(cron_from_row(row))
            db.execute("DELETE FROM crons WHERE cron_id = ?", (cron_id,))
            db.execute(f"INSERT INTO crons ({CRON_COLS}) VALUES "
                       "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _row_args(new))
            return new

        new = await self._db.write(op)
        if new is None:
            raise CronNotFound(cron_id, f"Cron '{cron_id}' not found")
        return new

    async def delete_cron(self, cron_id: str) -> bool:
        """Delete the cron and its fires; False if there was none."""
        def op(db: Db) -> bool:
            db.execute("DELETE FROM cron_fires WHERE cron_id = ?", (cron_id,))
            return db.execute("DELETE FROM crons WHERE cron_id = ?", (cron_id,)).rowcount > 0

        return await self._db.write(op)

    async def _select(self, assistant_id: str | None, thread_id: str | None,
                      enabled: bool | None) -> list[Cron]:
        where, args = select_where(assistant_id, thread_id, enabled, "?")
        rows = await self._db.read(lambda db: db.execute(
            f"SELECT {CRON_COLS} FROM crons{where}", args).fetchall())
        return [cron_from_row(r) for r in rows]

    async def claim_due(self, now: datetime, limit: int, advance: Advance
                        ) -> list[tuple[Cron, str]]:
        """Due crons with their next tick advanced, in one transaction."""
        now_text = stored(now)

        def op(db: Db) -> list[tuple[Cron, str]]:
            rows = db.execute(
                f"SELECT {CRON_COLS} FROM crons WHERE enabled = 1 AND next_run_date <= ? "
                "AND (end_time IS NULL OR end_time > ?) ORDER BY next_run_date LIMIT ?",
                (now_text, now_text, limit)).fetchall()
            out = []
            for row in rows:
                cron = cron_from_row(row)
                next_run, still_enabled = advance(cron, now)
                db.execute("UPDATE crons SET next_run_date = ?, enabled = ? WHERE cron_id = ?",
                           (next_run, int(still_enabled), cron.cron_id))
                assert cron.next_run_date is not None
                out.append((cron, cron.next_run_date))
            return out

        return await self._db.write(op)

    async def active_runs(self, cron_id: str) -> int:
        """The cron's pending or running runs (its id is in their ``configurable``)."""
        row = await self._db.read(lambda db: db.execute(
            "SELECT count(*) FROM runs WHERE status IN ('pending', 'running') "
            "AND json_extract(kwargs, '$.config.configurable.cron_id') = ?",
            (cron_id,)).fetchone())
        return int(row[0])

    async def requeue_tick(self, cron_id: str, tick: str) -> None:
        """``tick`` due again, if the cron is still enabled."""
        await self._db.write(lambda db: db.execute(
            "UPDATE crons SET next_run_date = ? WHERE cron_id = ? AND enabled = 1",
            (tick, cron_id)))

    async def record_fire(self, fire: CronFire) -> None:
        """Keep the fire (the newest MAX_FIRES_KEPT per cron)."""
        def op(db: Db) -> None:
            if db.execute("SELECT 1 FROM crons WHERE cron_id = ?",
                          (fire.cron_id,)).fetchone() is None:
                return  # deleted meanwhile
            db.execute("INSERT INTO cron_fires (cron_id, scheduled_for, fired_at, outcome, "
                       "run_id, thread_id, error) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (fire.cron_id, fire.scheduled_for, fire.fired_at, fire.outcome,
                        fire.run_id, fire.thread_id, fire.error))
            db.execute("DELETE FROM cron_fires WHERE cron_id = ? AND seq NOT IN (SELECT seq "
                       "FROM cron_fires WHERE cron_id = ? ORDER BY seq DESC LIMIT ?)",
                       (fire.cron_id, fire.cron_id, MAX_FIRES_KEPT))

        await self._db.write(op)

    async def list_fires(self, cron_id: str, limit: int = 100) -> list[CronFire]:
        """The cron's fires, newest first."""
        rows = await self._db.read(lambda db: db.execute(
            "SELECT cron_id, scheduled_for, fired_at, outcome, run_id, thread_id, error "
            "FROM cron_fires WHERE cron_id = ? ORDER BY seq DESC LIMIT ?",
            (cron_id, limit)).fetchall())
        return [CronFire(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]



CRON_SCHEMA = """
CREATE TABLE IF NOT EXISTS crons (
    cron_id TEXT PRIMARY KEY,
    assistant_id TEXT NOT NULL,
    thread_id TEXT,
    user_id TEXT NOT NULL DEFAULT '',
    end_time TEXT,
    schedule TEXT NOT NULL,
    timezone TEXT,
    payload TEXT NOT NULL,
    next_run_date TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    on_run_completed TEXT,
    enabled INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS crons_due ON crons(next_run_date) WHERE enabled = 1;
CREATE INDEX IF NOT EXISTS crons_thread ON crons(thread_id);
CREATE TABLE IF NOT EXISTS cron_fires (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    cron_id TEXT NOT NULL,
    scheduled_for TEXT NOT NULL,
    fired_at TEXT NOT NULL,
    outcome TEXT NOT NULL,
    run_id TEXT,
    thread_id TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS cron_fires_cron ON cron_fires(cron_id, seq);
CREATE TRIGGER IF NOT EXISTS threads_crons_delete AFTER DELETE ON threads BEGIN
    DELETE FROM cron_fires WHERE cron_id IN (SELECT cron_id FROM crons
                                             WHERE thread_id = OLD.thread_id);
    DELETE FROM crons WHERE thread_id = OLD.thread_id;
END;
"""
"""The cron tables, appended to the store's schema (idempotent statements)."""
