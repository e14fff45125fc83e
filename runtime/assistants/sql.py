"""The SQL both assistant stores share: columns, and the search query written once over a
small ``Dialect`` (parameter marker, JSON containment, substring, collation).

The search is one statement: the stored assistants matching the filters, ``UNION ALL`` the
in-memory rows the caller passes (system assistants, already filtered), ordered and paged by
the database (protocol.py invariant 3), so a page never skips or repeats a row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from runtime.assistants.types import SORT_COLUMNS, AssistantRecord, name_key
from runtime.auth_filter import AuthFilter
from runtime.store.filters import auth_clause as sqlite_auth_clause
from runtime.store.filters import check_filter, json_filters
from runtime.store.postgres_schema import auth_clause as pg_auth_clause

ASSISTANT_COLS = ("assistant_id, graph_id, config, context, metadata, name, description, "
                  "version, created_at, updated_at, name_key")
"""Columns of ``assistants`` in the order ``record_from_row`` reads them."""

VERSION_COLS = ("assistant_id, version, graph_id, config, context, metadata, created_at, name, "
                "description")
"""Columns of ``assistant_versions`` in AssistantVersion order."""


@dataclass(frozen=True)
class Dialect:
    """What differs between the engines in the search query.

    Attributes:
        mark: the parameter marker (``?`` or ``%s``).
        json_param: a JSON-text parameter as a JSON value (``?`` / ``%s::jsonb``).
        text_param: a text parameter that may be NULL (``?`` / ``%s::text``).
        collate: appended to text sort keys (``""`` / ``' COLLATE "C"'``).
        contains: ``(column, filter) -> (sql, args)``: ``column`` contains the JSON object.
        substring: ``(column) -> sql`` true when the next parameter is a substring of it.
        false: the SQL literal for "matches nothing".
        true: the SQL literal for "matches everything".
        auth: ``(filter, args, column) -> sql``: the engine's authorization-filter clause
            (runtime/store/filters.py, runtime/store/postgres_schema.py ``auth_clause``).
    """

    mark: str
    json_param: str
    text_param: str
    collate: str
    contains: Callable[[str, dict[str, Any]], tuple[str, list[Any]]]
    substring: Callable[[str], str]
    false: str
    true: str
    auth: Callable[[AuthFilter, list[Any], str], str]


def _sqlite_contains(column: str, wanted: dict[str, Any]) -> tuple[str, list[Any]]:
    clauses, args = json_filters(column, wanted)
    return ("(" + " AND ".join(clauses) + ")" if clauses else "1"), args


def _pg_contains(column: str, wanted: dict[str, Any]) -> tuple[str, list[Any]]:
    return f"{column} @> %s::jsonb", [orjson.dumps(wanted).decode()]


SQLITE = Dialect("?", "?", "?", "", _sqlite_contains,
                 lambda column: f"instr({column}, ?) > 0", "0", "1", sqlite_auth_clause)
POSTGRES = Dialect("%s", "%s::jsonb", "%s::text", ' COLLATE "C"', _pg_contains,
                   lambda column: f"strpos({column}, %s) > 0", "false", "true", pg_auth_clause)


def auth_sql(dialect: Dialect, auth: AuthFilter) -> tuple[str, list[Any]]:
    """An authorization filter over ``metadata``: its alternatives ORed (none: false), as
    the thread search applies it (the engine's ``auth_clause``)."""
    args: list[Any] = []
    return dialect.auth(auth, args, "metadata"), args


def where_sql(
    dialect: Dialect, graph_id: str | None, name: str | None,
    metadata: dict[str, Any] | None, auth: AuthFilter | None,
) -> tuple[str, list[Any]]:
    """``(" WHERE ...", args)`` of the stored assistants matching every filter.

    Raises:
        InvalidRequest: ``metadata`` out of bounds (``check_filter``).
    """
    check_filter("metadata", metadata)
    clauses: list[str] = []
    args: list[Any] = []
    if graph_id is not None:
        clauses.append(f"graph_id = {dialect.mark}")
        args.append(graph_id)
    if name:
        clauses.append(dialect.substring("name_key"))
        args.append(name_key(name))
    if metadata:
        sql, more = dialect.contains("metadata", metadata)
        clauses.append(sql)
        args.extend(more)
    if auth is not None:
        sql, more = auth_sql(dialect, auth)
        clauses.append(sql)
        args.extend(more)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def search_sql(
    dialect: Dialect, where: str, where_args: list[Any], extra: Sequence[AssistantRecord],
    sort_by: str, sort_order: str, limit: int, offset: int,
) -> tuple[str, list[Any]]:
    """The page query: stored rows matching ``where``, ``UNION ALL`` the ``extra`` rows,
    ordered by ``sort_by`` (``name``: ``name_key``) then ``assistant_id``."""
    sql = f"SELECT {ASSISTANT_COLS} FROM assistants{where}"
    args = list(where_args)
    if extra:
        j, t, m = dialect.json_param, dialect.text_param, dialect.mark
        row = f"({m}, {m}, {j}, {j}, {j}, {m}, {t}, {m}, {m}, {m}, {m})"
        sql += " UNION ALL VALUES " + ", ".join([row] * len(extra))
        for a in extra:
            args.extend([a.assistant_id, a.graph_id, _json(a.config), _json(a.context),
                         _json(a.metadata), a.name, a.description, a.version, a.created_at,
                         a.updated_at, name_key(a.name)])
    column = sort_by if sort_by in SORT_COLUMNS else "created_at"
    if column == "name":
        column = "name_key"
    direction = "ASC" if sort_order.lower() == "asc" else "DESC"
    # a subquery: PostgreSQL orders a UNION only by bare column names (no COLLATE)
    sql = (f"SELECT {ASSISTANT_COLS} FROM ({sql}) AS found "
           f"ORDER BY {column}{dialect.collate} {direction}, "
           f"assistant_id{dialect.collate} {direction} LIMIT {dialect.mark} OFFSET {dialect.mark}")
    return sql, [*args, limit, offset]


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def record_from_row(row: Sequence[Any], system_ids: frozenset[str] = frozenset(),
                    loads: Callable[[Any], Any] = lambda v: v) -> AssistantRecord:
    """The record of an ``ASSISTANT_COLS`` row; ``loads`` decodes JSON columns (SQLite: text;
    PostgreSQL: already decoded); an id in ``system_ids`` is a system assistant's."""
    return AssistantRecord(row[0], row[1], loads(row[2]), loads(row[3]), loads(row[4]),
                           row[5], row[6], int(row[7]), row[8], row[9],
                           system=row[0] in system_ids)
