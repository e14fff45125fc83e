"""SqliteAssistantStore: the AssistantStore on the SQLite store's database (``gateway.sqlite``),
so an assistant, its versions and its crons change in one transaction. Its tables are part of
the store's schema (``ASSISTANT_SCHEMA``, appended by runtime/store/sqlite.py). Every method is
one transaction on the store's single writer lane, which is what makes version numbers unique
(protocol.py invariant 1): one process per data dir.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from runtime.assistants.sql import (
    ASSISTANT_COLS,
    SQLITE,
    VERSION_COLS,
    record_from_row,
    search_sql,
    where_sql,
)
from runtime.assistants.types import AssistantRecord, AssistantVersion, name_key
from runtime.auth_filter import AuthFilter
from runtime.errors import AssistantExists, AssistantNotFound, AssistantVersionNotFound
from runtime.ids import now_iso
from runtime.sqlite_db import SqliteDb
from runtime.store.filters import check_filter, json_filters

Db = sqlite3.Connection

ASSISTANT_SCHEMA = """
CREATE TABLE IF NOT EXISTS assistants (
    assistant_id TEXT PRIMARY KEY,
    graph_id TEXT NOT NULL,
    config TEXT NOT NULL,
    context TEXT NOT NULL,
    metadata TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    name_key TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS assistants_created ON assistants(created_at);
CREATE INDEX IF NOT EXISTS assistants_graph ON assistants(graph_id);
CREATE TABLE IF NOT EXISTS assistant_versions (
    assistant_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    graph_id TEXT NOT NULL,
    config TEXT NOT NULL,
    context TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    PRIMARY KEY (assistant_id, version)
);
"""
"""The assistant tables, appended to the store's schema (idempotent statements)."""

_UPSERT_CURRENT = (
    "UPDATE assistants SET graph_id = ?, config = ?, context = ?, metadata = ?, name = ?, "
    "description = ?, version = ?, updated_at = ?, name_key = ? WHERE assistant_id = ?")


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _record(row: Sequence[Any]) -> AssistantRecord:
    return record_from_row(row, loads=orjson.loads)


def _version(row: Sequence[Any]) -> AssistantVersion:
    return AssistantVersion(row[0], int(row[1]), row[2], orjson.loads(row[3]),
                            orjson.loads(row[4]), orjson.loads(row[5]), row[6], row[7], row[8])


def _insert_version(db: Db, v: AssistantVersion) -> None:
    db.execute(f"INSERT INTO assistant_versions ({VERSION_COLS}) VALUES "
               "(?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (v.assistant_id, v.version, v.graph_id, _dumps(v.config), _dumps(v.context),
                _dumps(v.metadata), v.created_at, v.name, v.description))


def _set_current(db: Db, a: AssistantRecord) -> None:
    db.execute(_UPSERT_CURRENT, (a.graph_id, _dumps(a.config), _dumps(a.context),
                                 _dumps(a.metadata), a.name, a.description, a.version,
                                 a.updated_at, name_key(a.name), a.assistant_id))


def _current(db: Db, assistant_id: str) -> AssistantRecord | None:
    row = db.execute(f"SELECT {ASSISTANT_COLS} FROM assistants WHERE assistant_id = ?",
                     (assistant_id,)).fetchone()
    return _record(row) if row else None


class SqliteAssistantStore:
    """AssistantStore over a ``SqliteDb`` that holds the store's schema (protocol.py documents
    each method)."""

    def __init__(self, db: SqliteDb) -> None:
        self._db = db

    async def create_assistant(self, assistant: AssistantRecord) -> AssistantRecord:
        """Insert the assistant and its version 1. Raises AssistantExists."""
        a = assistant

        def op(db: Db) -> None:
            db.execute(f"INSERT INTO assistants ({ASSISTANT_COLS}) VALUES "
                       "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (a.assistant_id, a.graph_id, _dumps(a.config), _dumps(a.context),
                        _dumps(a.metadata), a.name, a.description, a.version, a.created_at,
                        a.updated_at, name_key(a.name)))
            _insert_version(db, a.as_version())

        try:
            await self._db.write(op)
        except sqlite3.IntegrityError:
            raise AssistantExists(a.assistant_id) from None
        return a

    async def get_assistant(self, assistant_id: str) -> AssistantRecord:
        """The assistant. Raises AssistantNotFound."""
        found = await self._db.read(lambda db: _current(db, assistant_id))
        if found is None:
            raise AssistantNotFound(assistant_id)
        return found

    async def update_assistant(
        self, assistant_id: str, apply: Callable[[AssistantRecord], AssistantRecord]
    ) -> AssistantRecord:
        """A new version ``max + 1`` from ``apply(current)``. Raises AssistantNotFound."""
        def op(db: Db) -> AssistantRecord | None:
            current = _current(db, assistant_id)
            if current is None:
                return None
            top = db.execute("SELECT max(version) FROM assistant_versions WHERE "
                             "assistant_id = ?", (assistant_id,)).fetchone()[0]
            new = apply(current).replace(version=int(top or 0) + 1)
            _insert_version(db, new.as_version())
            _set_current(db, new)
            return new

        new = await self._db.write(op)
        if new is None:
            raise AssistantNotFound(assistant_id)
        return new

    async def set_version(
        self, assistant_id: str, version: int,
        check: Callable[[AssistantRecord], None] | None = None,
    ) -> AssistantRecord:
        """Make ``version`` current again (every field). Raises AssistantNotFound,
        AssistantVersionNotFound."""
        now = now_iso()

        def op(db: Db) -> AssistantRecord:
            current = _current(db, assistant_id)
            if current is None:
                raise AssistantNotFound(assistant_id)
            if check is not None:
                check(current)
            row = db.execute(f"SELECT {VERSION_COLS} FROM assistant_versions WHERE "
                             "assistant_id = ? AND version = ?",
                             (assistant_id, version)).fetchone()
            if row is None:
                raise AssistantVersionNotFound(assistant_id, version)
            v = _version(row)
            new = current.replace(graph_id=v.graph_id, config=v.config, context=v.context,
                                  metadata=v.metadata, name=v.name,
                                  description=v.description, version=v.version,
                                  updated_at=now)
            _set_current(db, new)
            return new

        return await self._db.write(op)

    async def delete_assistant(self, assistant_id: str) -> bool:
        """Delete the assistant, its versions, its crons and their fires."""
        def op(db: Db) -> bool:
            db.execute("DELETE FROM cron_fires WHERE cron_id IN (SELECT cron_id FROM crons "
                       "WHERE assistant_id = ?)", (assistant_id,))
            db.execute("DELETE FROM crons WHERE assistant_id = ?", (assistant_id,))
            db.execute("DELETE FROM assistant_versions WHERE assistant_id = ?",
                       (assistant_id,))
            return db.execute("DELETE FROM assistants WHERE assistant_id = ?",
                              (assistant_id,)).rowcount > 0

        return await self._db.write(op)

    async def list_versions(
        self, assistant_id: str, *, metadata: dict[str, Any] | None = None,
        limit: int = 10, offset: int = 0,
    ) -> list[AssistantVersion]:
        """Versions, newest first. Raises AssistantNotFound, InvalidRequest (filter)."""
        check_filter("metadata", metadata)
        clauses, args = json_filters("metadata", metadata or {})
        where = "".join(f" AND {c}" for c in clauses)

        def op(db: Db) -> list[Any] | None:
            if db.execute("SELECT 1 FROM assistants WHERE assistant_id = ?",
                          (assistant_id,)).fetchone() is None:
                return None
            return db.execute(
                f"SELECT {VERSION_COLS} FROM assistant_versions WHERE assistant_id = ?{where} "
                "ORDER BY version DESC LIMIT ? OFFSET ?",
                (assistant_id, *args, limit, offset)).fetchall()

        rows = await self._db.read(op)
        if rows is None:
            raise AssistantNotFound(assistant_id)
        return [_version(r) for r in rows]

    async def search_assistants(
        self, *, graph_id: str | None = None, name: str | None = None,
        metadata: dict[str, Any] | None = None, auth: AuthFilter | None = None,
        limit: int = 10, offset: int = 0, sort_by: str = "created_at",
        sort_order: str = "desc", extra: Sequence[AssistantRecord] = (),
    ) -> list[AssistantRecord]:
        """One page of stored + ``extra`` assistants (protocol.py)."""
        where, args = where_sql(SQLITE, graph_id, name, metadata, auth)
        sql, all_args = search_sql(SQLITE, where, args, extra, sort_by, sort_order, limit,
                                   offset)
        system_ids = frozenset(a.assistant_id for a in extra if a.system)
        rows = await self._db.read(lambda db: db.execute(sql, all_args).fetchall())
        return [record_from_row(r, system_ids, orjson.loads) for r in rows]

    async def count_assistants(
        self, *, graph_id: str | None = None, name: str | None = None,
        metadata: dict[str, Any] | None = None, auth: AuthFilter | None = None,
    ) -> int:
        """How many stored assistants match."""
        where, args = where_sql(SQLITE, graph_id, name, metadata, auth)
        row = await self._db.read(lambda db: db.execute(
            f"SELECT count(*) FROM assistants{where}", args).fetchone())
        return int(row[0])
