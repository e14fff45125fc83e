"""The webhook outbox: deliveries waiting to be sent, in the store's database, so a pending
delivery survives a restart (and, on PostgreSQL, is sent by whichever process claims it).

A delivery is written once its run's terminal status is stored; the sender
(runtime/webhooks/sender.py) claims due deliveries (each claim pushes ``next_attempt_at`` a
lease ahead and counts an attempt, in one statement: a delivery is attempted by one process at
a time), then deletes it when it is done or given up, or moves ``next_attempt_at`` to the
retry time. Tables: ``WEBHOOK_SCHEMA_SQLITE`` (in the SQLite store's schema) and
``WEBHOOK_MIGRATION`` (PostgreSQL migration 5, a new table only).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from runtime.crons.schedule import stored
from runtime.sqlite_db import SqliteDb

Conn = AsyncConnection[tuple[Any, ...]]
_COLS = "delivery_id, run_id, thread_id, url, body, attempts, next_attempt_at, created_at"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook delivery.

    Attributes:
        body: the JSON object sent, without ``webhook_sent_at`` (added at each attempt).
        attempts: attempts started so far (the claim that returned it included).
    """

    delivery_id: str
    run_id: str
    thread_id: str
    url: str
    body: str
    attempts: int
    next_attempt_at: str
    created_at: str


class WebhookOutbox(Protocol):
    """Pending webhook deliveries (SQLite or PostgreSQL)."""

    async def enqueue(self, delivery: Delivery) -> None:
        """Add a delivery (due at its ``next_attempt_at``)."""

    async def claim(self, now: datetime, limit: int, lease_s: float) -> list[Delivery]:
        """Take up to ``limit`` due deliveries for ``lease_s`` seconds, counting an attempt."""

    async def done(self, delivery_id: str) -> None:
        """Forget a delivery (sent, or given up)."""

    async def retry_at(self, delivery_id: str, when: datetime) -> None:
        """Make the delivery due again at ``when``."""


def _delivery(row: Any) -> Delivery:
    return Delivery(row[0], row[1], row[2], row[3], row[4], int(row[5]), row[6], row[7])


class SqliteOutbox:
    """The outbox in the SQLite store's database."""

    def __init__(self, db: SqliteDb) -> None:
        self._db = db

    async def enqueue(self, delivery: Delivery) -> None:
        """Add ``delivery``."""
        await self._db.write(lambda db: db.execute(
            f"INSERT INTO webhook_deliveries ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (delivery.delivery_id, delivery.run_id, delivery.thread_id, delivery.url,
             delivery.body, delivery.attempts, delivery.next_attempt_at, delivery.created_at)))

    async def claim(self, now: datetime, limit: int, lease_s: float) -> list[Delivery]:
        """Due deliveries, leased and counted in one transaction."""
        now_text, lease = stored(now), stored(now + timedelta(seconds=lease_s))

        def op(db: sqlite3.Connection) -> list[Delivery]:
            rows = db.execute(
                f"SELECT {_COLS} FROM webhook_deliveries WHERE next_attempt_at <= ? "
                "ORDER BY next_attempt_at LIMIT ?", (now_text, limit)).fetchall()
            out = []
            for row in rows:
                db.execute("UPDATE webhook_deliveries SET attempts = attempts + 1, "
                           "next_attempt_at = ? WHERE delivery_id = ?", (lease, row[0]))
                out.append(_delivery((*row[:5], row[5] + 1, lease, row[7])))
            return out

        return await self._db.write(op)

    async def done(self, delivery_id: str) -> None:
        """Delete the delivery."""
        await self._db.write(lambda db: db.execute(
            "DELETE FROM webhook_deliveries WHERE delivery_id = ?", (delivery_id,)))

    async def retry_at(self, delivery_id: str, when: datetime) -> None:
        """Due again at ``when``."""
        await self._db.write(lambda db: db.execute(
            "UPDATE webhook_deliveries SET next_attempt_at = ? WHERE delivery_id = ?",
            (stored(when), delivery_id)))


class PostgresOutbox:
    """The outbox in the PostgreSQL store's database (claims ``FOR UPDATE SKIP LOCKED``)."""

    def __init__(self, pool: AsyncConnectionPool[Conn]) -> None:
        self._pool = pool

    async def enqueue(self, delivery: Delivery) -> None:
        """Add ``delivery``."""
        async with self._pool.connection() as conn:
            await conn.execute(
                f"INSERT INTO webhook_deliveries ({_COLS}) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s)",
                (delivery.delivery_id, delivery.run_id, delivery.thread_id, delivery.url,
                 delivery.body, delivery.attempts, delivery.next_attempt_at,
                 delivery.created_at))

    async def claim(self, now: datetime, limit: int, lease_s: float) -> list[Delivery]:
        """Due deliveries, leased and counted in one statement."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE webhook_deliveries AS d SET attempts = d.attempts + 1, "
                "next_attempt_at = %s FROM (SELECT delivery_id FROM webhook_deliveries "
                "WHERE next_attempt_at <= %s ORDER BY next_attempt_at LIMIT %s "
                "FOR UPDATE SKIP LOCKED) AS due WHERE d.delivery_id = due.delivery_id "
                f"RETURNING {', '.join('d.' + c.strip() for c in _COLS.split(','))}",
                (stored(now + timedelta(seconds=lease_s)), stored(now), limit))
            return [_delivery(r) for r in await cur.fetchall()]

    async def done(self, delivery_id: str) -> None:
        """Delete the delivery."""
        async with self._pool.connection() as conn:
            await conn.execute("DELETE FROM webhook_deliveries WHERE delivery_id = %s",
                               (delivery_id,))

    async def retry_at(self, delivery_id: str, when: datetime) -> None:
        """Due again at ``when``."""
        async with self._pool.connection() as conn:
            await conn.execute("UPDATE webhook_deliveries SET next_attempt_at = %s "
                               "WHERE delivery_id = %s", (stored(when), delivery_id))


_TABLE = """
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    delivery_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries(next_attempt_at);
"""
WEBHOOK_SCHEMA_SQLITE = _TABLE
"""The outbox table, appended to the SQLite store's schema."""
WEBHOOK_MIGRATION = _TABLE.replace("TEXT PRIMARY KEY", 'text COLLATE "C" PRIMARY KEY').replace(
    "next_attempt_at TEXT", 'next_attempt_at text COLLATE "C"')
"""PostgreSQL migration 5: the outbox table (new table only)."""
