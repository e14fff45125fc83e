"""SQL fragments for the thread search filters: JSON containment and sort order.

A scalar ``metadata`` filter is an index lookup in ``thread_meta`` (store_schema.py), so search
cost does not grow with the number of stored threads; nested metadata filters and ``values``
filters are evaluated per row. ``metadata``/``values`` filters of ``POST /threads/search``
match when every given key is present with an equal value; a nested object or list matches
by containment (as Postgres ``@>``, the reference's store), through the SQL function
``gw_json_contains`` the store registers. Scalars compare by JSON type too (``1`` never
matches ``true``). Values are bound parameters; keys are quoted JSON paths, so no caller text
reaches the SQL unescaped.

Bounds (``check_filter``, 422 naming the field): at most ``MAX_FILTER_KEYS`` keys per filter
(each key is one SQL condition; thousands overflowed SQLite's expression depth of 1000, a
500), and integers bound as parameters must fit SQLite's signed 64 bits (orjson parses up to
2**64 - 1; binding 2**63 raised OverflowError, a 500). Floats need no check: orjson refuses
NaN and infinities, and every finite double binds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from runtime.errors import InvalidRequest

if TYPE_CHECKING:
    from runtime.auth_filter import AuthFilter

MAX_FILTER_KEYS = 100
"""Most keys in one ``metadata``/``values`` filter."""

SQL_INT_MIN, SQL_INT_MAX = -(2**63), 2**63 - 1

_SORT_COLUMNS = {
    "thread_id": "thread_id",
    "status": "status",
    "created_at": "created_at",
    "updated_at": "updated_at",
    "state_updated_at": "state_updated_at",
}


def _path(key: str) -> str:
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check_filter(name: str, filters: dict[str, Any] | None) -> None:
    """Check a ``metadata``/``values`` filter against the bounds of the module docstring.

    Raises:
        InvalidRequest: more than ``MAX_FILTER_KEYS`` keys, or a top-level integer outside
            the signed 64-bit range (nested values are compared as JSON text, not bound).
    """
    if not filters:
        return
    if len(filters) > MAX_FILTER_KEYS:
        raise InvalidRequest(f"{name}: at most {MAX_FILTER_KEYS} keys, got {len(filters)}")
    for key, value in filters.items():
        if (isinstance(value, int) and not isinstance(value, bool)
                and not SQL_INT_MIN <= value <= SQL_INT_MAX):
            raise InvalidRequest(f"{name}.{key}: integer out of range (at most 64-bit signed)")


def thread_filters(
    ids: list[str] | None, metadata: dict[str, Any] | None, values: dict[str, Any] | None,
    status: str | None, auth: AuthFilter | None = None,
) -> tuple[str, list[Any]]:
    """``(" WHERE ...", args)`` for the filters of ``POST /threads/search`` and ``/count``;
    ``auth`` (an authorization handler's filter) is ANDed in: ``(alt1) OR (alt2) ...`` over
    ``metadata``, each alternative a containment as the ``metadata`` filter.

    Raises:
        InvalidRequest: a filter out of bounds (``check_filter``).
    """
    check_filter("metadata", metadata)
    check_filter("values", values)
    clauses: list[str] = []
    args: list[Any] = []
    if auth is not None:
        clauses.append(auth_clause(auth, args))
    if ids:
        clauses.append(f"thread_id IN ({', '.join('?' * len(ids))})")
        args.extend(ids)
    if status:
        clauses.append("status = ?")
        args.append(status)
    nested: dict[str, Any] = {}
    for key, value in (metadata or {}).items():
        if isinstance(value, dict | list):
            nested[key] = value
            continue
        clauses.append("thread_id IN (SELECT thread_id FROM thread_meta WHERE key = ? AND "
                       f"{_typed_atom(value)})")
        args.append(key)
        if isinstance(value, str) or (isinstance(value, int | float)
                                      and not isinstance(value, bool)):
            args.append(value)
    for column, filters in (("metadata", nested), ('"values"', values)):
        sql, more = json_filters(column, filters or {})
        clauses.extend(sql)
        args.extend(more)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def auth_clause(auth: AuthFilter, args: list[Any], column: str = "metadata") -> str:
    """The SQL condition (SQLite) for an authorization filter on the JSON ``column``; its
    parameters are appended to ``args``. No alternatives: ``0`` (nothing is visible)."""
    if not auth.alternatives:
        return "0"
    parts = []
    for alternative in auth.alternatives:
        if not alternative:
            return "1"
        sql, more = json_filters(column, alternative)
        parts.append("(" + " AND ".join(sql) + ")")
        args.extend(more)
    return "(" + " OR ".join(parts) + ")"


def _typed_atom(value: Any) -> str:
    """The ``thread_meta`` condition for one scalar (JSON types kept apart: 1 is not true)."""
    if value is None:
        return "type = 'null'"
    if isinstance(value, bool):
        return "type = 'true'" if value else "type = 'false'"
    if isinstance(value, str):
        return "value = ? AND type = 'text'"
    return "value = ? AND type IN ('integer', 'real')"


def json_filters(column: str, filters: dict[str, Any]) -> tuple[list[str], list[Any]]:
    """``(clauses, args)`` requiring ``column`` (a JSON object) to contain ``filters``."""
    clauses: list[str] = []
    args: list[Any] = []
    for key, value in filters.items():
        path = _path(key)
        if isinstance(value, (dict, list)):
            clauses.append(f"gw_json_contains({column}, ?, ?)")
            args.extend([path, orjson.dumps(value).decode()])
        elif value is None:
            clauses.append(f"json_type({column}, ?) = 'null'")
            args.append(path)
        elif isinstance(value, bool):
            clauses.append(f"json_type({column}, ?) = ?")
            args.extend([path, "true" if value else "false"])
        elif isinstance(value, str):
            clauses.append(f"json_type({column}, ?) = 'text' AND json_extract({column}, ?) = ?")
            args.extend([path, path, value])
        else:
            clauses.append(f"json_type({column}, ?) IN ('integer', 'real') "
                           f"AND json_extract({column}, ?) = ?")
            args.extend([path, path, value])
    return clauses, args


def contains(doc: Any, wanted: Any) -> bool:
    """JSON containment: every key/element of ``wanted`` is in ``doc`` (Postgres ``@>``)."""
    if isinstance(wanted, dict):
        return isinstance(doc, dict) and all(
            k in doc and contains(doc[k], v) for k, v in wanted.items()
        )
    if isinstance(wanted, list):
        return isinstance(doc, list) and all(any(contains(d, w) for d in doc) for w in wanted)
    if isinstance(wanted, bool) or isinstance(doc, bool):
        return type(doc) is type(wanted) and doc == wanted
    return bool(doc == wanted)


def json_contains_sql(document: str | None, path: str, wanted: str) -> int:
    """SQLite function ``gw_json_contains(column, '$."key"', json)`` -> 0/1."""
    if document is None:
        return 0
    key = orjson.loads(path[2:]) if path.startswith('$."') else path[2:]
    doc = orjson.loads(document)
    if not isinstance(doc, dict) or key not in doc:
        return 0
    return int(contains(doc[key], orjson.loads(wanted)))


def thread_order(sort_by: str | None, sort_order: str | None) -> str:
    """ORDER BY text; unknown columns fall back to ``created_at`` (validated at the edge)."""
    column = _SORT_COLUMNS.get(sort_by or "created_at", "created_at")
    direction = "ASC" if (sort_order or "desc").lower() == "asc" else "DESC"
    return f"{column} {direction}, rowid {direction}"
