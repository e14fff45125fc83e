"""PostgresAssistantStore: the AssistantStore on the PostgreSQL store's pool. Its tables are
the store schema's migration 6 (``ASSISTANT_MIGRATION``: new tables only, safe for a rolling
deploy); versions reference their assistant ``ON DELETE CASCADE``.

Version numbers are assigned under the assistant's row lock (``SELECT ... FOR UPDATE``) in the
transaction that writes the version and the new current state, so concurrent PATCHes from any
number of processes serialize and get distinct numbers (protocol.py invariant 1); the primary
key ``(assistant_id, version)`` backs it.

Deliberate difference from SQLite (as the run store's, runtime/store/postgres.py): text and
JSON holding U+0000 are refused with ``InvalidRequest`` (jsonb and text cannot hold it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson
import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from runtime.assistants.sql import (
    ASSISTANT_COLS,
    POSTGRES,
    VERSION_COLS,
    record_from_row,
    search_sql,
    where_sql,
)
from runtime.assistants.types import AssistantRecord, AssistantVersion, name_key
from runtime.auth_filter import AuthFilter
from runtime.errors import (
    AssistantExists,
    AssistantNotFound,
    AssistantVersionNotFound,
    InvalidRequest,
)
from runtime.ids import now_iso
from runtime.store.filters import check_filter
from runtime.store.postgres_schema import to_jsonb

Conn = AsyncConnection[tuple[Any, ...]]

ASSISTANT_MIGRATION = """
CREATE TABLE IF NOT EXISTS assistants (
    assistant_id text COLLATE "C" PRIMARY KEY,
    graph_id text COLLATE "C" NOT NULL,
    config jsonb NOT NULL,
    context jsonb NOT NULL,
    metadata jsonb NOT NULL,
    name text NOT NULL,
    description text,
    version integer NOT NULL,
    created_at text COLLATE "C" NOT NULL,
    updated_at text COLLATE "C" NOT NULL,
    name_key text COLLATE "C" NOT NULL
);
CREATE INDEX IF NOT EXISTS assistants_created ON assistants(created_at);
CREATE INDEX IF NOT EXISTS assistants_graph ON assistants(graph_id);
CREATE INDEX IF NOT EXISTS assistants_metadata ON assistants USING gin (metadata jsonb_path_ops);
CREATE TABLE IF NOT EXISTS assistant_versions (
    assistant_id text COLLATE "C" NOT NULL
        REFERENCES assistants(assistant_id) ON DELETE CASCADE,
    version integer NOT NULL,
    graph_id text NOT NULL,
    config jsonb NOT NULL,
    context jsonb NOT NULL,
    metadata jsonb NOT NULL,
    created_at text NOT NULL,
    name text NOT NULL,
    description text,
    PRIMARY KEY (assistant_id, version)
);
"""
"""Migration 6: the assistant tables (timestamps as ISO text, as the run store's)."""

_SET_CURRENT = (
    "UPDATE assistants SET graph_id = %s, config = %s::jsonb, context = %s::jsonb, "
    "metadata = %s::jsonb, name = %s, description = %s, version = %s, updated_at = %s, "
    "name_key = %s WHERE assistant_id = %s")


def _text(value: str | None, field: str) -> str | None:
    if value is not None and "\x00" in value:
        raise InvalidRequest(f"{field}: PostgreSQL cannot store the character U+0000")
    return value


def _state_args(a: AssistantRecord) -> tuple[Any, ...]:
    """``graph_id, config, context, metadata, name, description`` as parameters."""
    return (_text(a.graph_id, "graph_id"), to_jsonb(a.config, "config"),
            to_jsonb(a.context, "context"), to_jsonb(a.metadata, "metadata"),
            _text(a.name, "name"), _text(a.description, "description"))


def _version(row: Sequence[Any]) -> AssistantVersion:
    return AssistantVersion(row[0], int(row[1]), row[2], row[3], row[4], row[5], row[6],
                            row[7], row[8])


async def _insert_version(conn: Conn, a: AssistantRecord) -> None:
    g, config, context, metadata, name, description = _state_args(a)
    await conn.execute(
        f"INSERT INTO assistant_versions ({VERSION_COLS}) VALUES "
        "(%s, %s, %s, %s::jsonb, %s::jsonb, %s::jsonb, %s, %s, %s)",
        (a.assistant_id, a.version, g, config, context, metadata, a.updated_at, name,
         description))


async def _locked(conn: Conn, assistant_id: str) -> AssistantRecord | None:
    cur = await conn.execute(
        f"SELECT {ASSISTANT_COLS} FROM assistants WHERE assistant_id = %s FOR UPDATE",
        (assistant_id,))
    row = await cur.fetchone()
    return record_from_row(row) if row else None


class PostgresAssistantStore:
    """AssistantStore over the PostgreSQL store's pool (protocol.py documents each method)."""

    def __init__(self, pool: AsyncConnectionPool[Conn]) -> None:
        self._pool = pool

    async def create_assistant(self, assistant: AssistantRecord) -> AssistantRecord:
        """Insert the assistant and its version 1. Raises AssistantExists, InvalidRequest."""
        a = assistant
        state = _state_args(a)
        try:
            async with self._pool.connection() as conn, conn.transaction():
                await conn.execute(
                    f"INSERT INTO assistants ({ASSISTANT_COLS}) VALUES (%s, %s, %s::jsonb, "
                    "%s::jsonb, %s::jsonb, %s, %s, %s, %s, %s, %s)",
                    (a.assistant_id, *state, a.version, a.created_at, a.updated_at,
                     name_key(a.name)))
                await _insert_version(conn, a)
        except psycopg.errors.UniqueViolation:
            raise AssistantExists(a.assistant_id) from None
        return a

    async def get_assistant(self, assistant_id: str) -> AssistantRecord:
        """The assistant. Raises AssistantNotFound."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {ASSISTANT_COLS} FROM assistants WHERE assistant_id = %s",
                (assistant_id,))
            row = await cur.fetchone()
        if row is None:
            raise AssistantNotFound(assistant_id)
        return record_from_row(row)

    async def _write_current(self, conn: Conn, a: AssistantRecord) -> None:
        await conn.execute(_SET_CURRENT, (*_state_args(a), a.version, a.updated_at,
                                          name_key(a.name), a.assistant_id))

    async def update_assistant(
        self, assistant_id: str, apply: Callable[[AssistantRecord], AssistantRecord]
    ) -> AssistantRecord:
        """A new version ``max + 1`` under the row lock. Raises AssistantNotFound."""
        async with self._pool.connection() as conn, conn.transaction():
            current = await _locked(conn, assistant_id)
            if current is None:
                raise AssistantNotFound(assistant_id)
            cur = await conn.execute(
                "SELECT max(version) FROM assistant_versions WHERE assistant_id = %s",
                (assistant_id,))
            row = await cur.fetchone()
            new = apply(current).replace(version=int((row and row[0]) or 0) + 1)
            await _insert_version(conn, new)
            await self._write_current(conn, new)
        return new

    async def set_version(
        self, assistant_id: str, version: int,
        check: Callable[[AssistantRecord], None] | None = None,
    ) -> AssistantRecord:
        """Make ``version`` current again (every field). Raises AssistantNotFound,
        AssistantVersionNotFound."""
        async with self._pool.connection() as conn, conn.transaction():
            current = await _locked(conn, assistant_id)
            if current is None:
                raise AssistantNotFound(assistant_id)
            if check is not None:
                check(current)
            cur = await conn.execute(
                f"SELECT {VERSION_COLS} FROM assistant_versions WHERE assistant_id = %s "
                "AND version = %s", (assistant_id, version))
            row = await cur.fetchone()
            if row is None:
                raise AssistantVersionNotFound(assistant_id, version)
            v = _version(row)
            new = current.replace(graph_id=v.graph_id, config=v.config, context=v.context,
                                  metadata=v.metadata, name=v.name,
                                  description=v.description, version=v.version,
                                  updated_at=now_iso())
            await self._write_current(conn, new)
        return new

    async def delete_assistant(self, assistant_id: str) -> bool:
        """Delete the assistant (versions cascade) and its crons (fires cascade)."""
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("DELETE FROM crons WHERE assistant_id = %s", (assistant_id,))
            cur = await conn.execute("DELETE FROM assistants WHERE assistant_id = %s",
                                     (assistant_id,))
            return cur.rowcount > 0

    async def list_versions(
        self, assistant_id: str, *, metadata: dict[str, Any] | None = None,
        limit: int = 10, offset: int = 0,
    ) -> list[AssistantVersion]:
        """Versions, newest first. Raises AssistantNotFound, InvalidRequest (filter)."""
        check_filter("metadata", metadata)
        where, args = "", []
        if metadata:
            where, args = " AND metadata @> %s::jsonb", [to_jsonb(metadata, "metadata")]
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT 1 FROM assistants WHERE assistant_id = %s",
                                     (assistant_id,))
            if await cur.fetchone() is None:
                raise AssistantNotFound(assistant_id)
            cur = await conn.execute(
                f"SELECT {VERSION_COLS} FROM assistant_versions WHERE assistant_id = %s"
                f"{where} ORDER BY version DESC LIMIT %s OFFSET %s",
                (assistant_id, *args, limit, offset))
            return [_version(r) for r in await cur.fetchall()]

    async def search_assistants(
        self, *, graph_id: str | None = None, name: str | None = None,
        metadata: dict[str, Any] | None = None, auth: AuthFilter | None = None,
        limit: int = 10, offset: int = 0, sort_by: str = "created_at",
        sort_order: str = "desc", extra: Sequence[AssistantRecord] = (),
    ) -> list[AssistantRecord]:
        """One page of stored + ``extra`` assistants (protocol.py)."""
        where, args = _where(graph_id, name, metadata, auth)
        sql, all_args = search_sql(POSTGRES, where, args, extra, sort_by, sort_order, limit,
                                   offset)
        system_ids = frozenset(a.assistant_id for a in extra if a.system)
        async with self._pool.connection() as conn:
            cur = await conn.execute(sql, all_args)
            return [record_from_row(r, system_ids) for r in await cur.fetchall()]

    async def count_assistants(
        self, *, graph_id: str | None = None, name: str | None = None,
        metadata: dict[str, Any] | None = None, auth: AuthFilter | None = None,
    ) -> int:
        """How many stored assistants match."""
        where, args = _where(graph_id, name, metadata, auth)
        async with self._pool.connection() as conn:
            cur = await conn.execute(f"SELECT count(*) FROM assistants{where}", args)
            row = await cur.fetchone()
        return int(row[0]) if row else 0


def _where(graph_id: str | None, name: str | None, metadata: dict[str, Any] | None,
           auth: AuthFilter | None) -> tuple[str, list[Any]]:
    """``where_sql`` with U+0000 refused first (neither text nor jsonb holds it)."""
    _text(graph_id, "graph_id")
    _text(name, "name")
    to_jsonb(metadata, "metadata")
    if auth is not None:
        live = tuple(a for a in auth.alternatives if b"\\u0000" not in orjson.dumps(a))
        auth = AuthFilter(live)  # an alternative holding U+0000 matches nothing
    return where_sql(POSTGRES, graph_id, name, metadata, auth)
