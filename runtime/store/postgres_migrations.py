"""The run store's PostgreSQL schema and its migration at start-up: the tables, the list of
migration steps (``MIGRATIONS``, one per schema version) and the runner (``migrate``).

Tables: ``threads`` (one row per thread; ``status`` is ``busy`` while a run is pending or
running, else ``rest_status``), ``runs`` (``seq``, a bigserial, gives admission order) and
``store_schema`` (one row: the schema version this database is at). The PL/pgSQL functions the
steps create (admission, finalization, claims, leases, the sweep) are in
runtime/store/postgres_functions.py.

Invariants:
1. ``runs_one_running``: at most one ``running`` run per thread, in the store (design.md 4.1).
2. ``migrate`` runs every step above the stored version in one transaction that holds a
   transaction-level advisory lock (``SCHEMA_LOCK``): N processes starting at once on one
   database apply each step exactly once, and each sees either no schema or all of it.
3. A database at a version newer than ``SCHEMA_VERSION`` is refused, not downgraded.

Deliberate differences from the SQLite schema (runtime/store/sqlite_schema.py):
1. JSON columns are ``jsonb``: metadata and values filters are ``@>`` containment (as the
   reference's store), served for metadata by a GIN index (``jsonb_path_ops``) instead of the
   trigger-kept ``thread_meta`` table. jsonb keeps neither object key order (keys come back
   sorted by length, then bytes, as from the reference) nor the spelling of numbers
   (``1e+20`` comes back ``100000000000000000000``, read back as the same float; ``-0.0`` as
   ``0.0``), and it cannot hold U+0000: ``to_jsonb`` refuses such a value with
   ``InvalidRequest`` before it reaches the database, or (``replace_nul``, for the store's
   copy of a thread's state) writes it as U+FFFD.
2. ``thread_id``/``status`` compare with ``COLLATE "C"`` (bytes, as SQLite) so sorting by
   them does not depend on the database's locale.
3. Timestamps stay the ISO-8601 text the runtime writes (``runtime.ids.now_iso``), so both
   stores return identical strings; the lease columns (``lease_expires_at``,
   ``cancel_requested_at``) are ``timestamptz`` set from the database clock (design.md 9).
4. ``threads.seq`` breaks ties in sort orders (SQLite's ``rowid``).
5. ``runs.thread_id`` references ``threads`` ``ON DELETE CASCADE``.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from runtime.assistants.postgres import ASSISTANT_MIGRATION
from runtime.crons.postgres import CRON_MIGRATION
from runtime.store.postgres_functions import FUNCTIONS_V1, MIGRATION_V2, MIGRATION_V3
from runtime.webhooks.outbox import WEBHOOK_MIGRATION

SCHEMA_LOCK = 0x6777_7374_6F72_6501
"""``pg_advisory_xact_lock`` key held while the schema is created or migrated."""

MIGRATIONS: tuple[str, ...] = (
    # 1: threads and runs; owner/lease/cancel_requested_at are for the claims to come (unused)
    """
    CREATE TABLE IF NOT EXISTS threads (
        seq bigserial NOT NULL UNIQUE,
        thread_id text COLLATE "C" PRIMARY KEY,
        created_at text NOT NULL,
        updated_at text NOT NULL,
        state_updated_at text NOT NULL,
        metadata jsonb NOT NULL DEFAULT '{}',
        status text COLLATE "C" NOT NULL DEFAULT 'idle',
        rest_status text NOT NULL DEFAULT 'idle',
        config jsonb NOT NULL DEFAULT '{}',
        "values" jsonb,
        interrupts jsonb,
        error jsonb
    );
    CREATE INDEX IF NOT EXISTS threads_created ON threads(created_at, seq);
    CREATE INDEX IF NOT EXISTS threads_updated ON threads(updated_at, seq);
    CREATE INDEX IF NOT EXISTS threads_status ON threads(status, created_at);
    CREATE INDEX IF NOT EXISTS threads_metadata ON threads USING gin (metadata jsonb_path_ops);
    CREATE TABLE IF NOT EXISTS runs (
        seq bigserial PRIMARY KEY,
        run_id text COLLATE "C" NOT NULL UNIQUE,
        thread_id text COLLATE "C" NOT NULL
            REFERENCES threads(thread_id) ON DELETE CASCADE,
        assistant_id text NOT NULL,
        graph_id text NOT NULL,
        status text NOT NULL,
        metadata jsonb NOT NULL,
        kwargs jsonb NOT NULL,
        multitask_strategy text NOT NULL,
        created_at text NOT NULL,
        updated_at text NOT NULL,
        attempt integer NOT NULL DEFAULT 1,
        cancel_action text,
        on_completion text NOT NULL DEFAULT 'keep',
        not_before text,
        owner text,
        lease_token uuid,
        lease_expires_at timestamptz,
        cancel_requested_at timestamptz
    );
    CREATE UNIQUE INDEX IF NOT EXISTS runs_one_running ON runs(thread_id)
        WHERE status = 'running';
    CREATE INDEX IF NOT EXISTS runs_thread ON runs(thread_id, seq);
    CREATE INDEX IF NOT EXISTS runs_active ON runs(status, seq)
        WHERE status IN ('pending', 'running');
    -- a thread's active runs without walking its finished ones (admission and finalization)
    CREATE INDEX IF NOT EXISTS runs_thread_active ON runs(thread_id, seq)
        WHERE status IN ('pending', 'running');
    """ + FUNCTIONS_V1,
    # 2: claims and leases (postgres_claims.py): the DB-clock admission time, the claim, sweep
    # and fencing functions, their indexes
    MIGRATION_V2,
    # 3: admission with a lease (the cluster's fast path)
    MIGRATION_V3,
    # 4: crons and their fires (new tables only: safe for a rolling deploy)
    CRON_MIGRATION,
    # 5: the webhook outbox (a new table only)
    WEBHOOK_MIGRATION,
    # 6: stored assistants and their versions (new tables only; runtime/assistants/)
    ASSISTANT_MIGRATION,
)
SCHEMA_VERSION = len(MIGRATIONS)

VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS store_schema (
    id integer PRIMARY KEY CHECK (id = 1),
    version integer NOT NULL
)
"""

async def migrate(conn: AsyncConnection[Any]) -> int:
    """Create or migrate the schema to ``SCHEMA_VERSION`` in one transaction under the
    advisory lock (invariants 2 and 3); the version found before.

    Raises:
        RuntimeError: the database is at a newer version than this gateway knows.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        await conn.execute(VERSION_TABLE)
        cur = await conn.execute("SELECT version FROM store_schema WHERE id = 1")
        row = await cur.fetchone()
        found = int(row[0]) if row else 0
        if found > SCHEMA_VERSION:
            raise RuntimeError(
                f"the run store's schema is at version {found}, newer than this gateway's "
                f"{SCHEMA_VERSION}: upgrade the gateway")
        for step in MIGRATIONS[found:]:
            await conn.execute(step.encode())  # several statements: no parameters
        await conn.execute(
            "INSERT INTO store_schema (id, version) VALUES (1, %s) "
            "ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version", (SCHEMA_VERSION,))
    return found
