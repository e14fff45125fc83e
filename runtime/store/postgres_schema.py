"""The PostgreSQL run store's row mapping: column lists, JSON (jsonb) encoding, filters and
the parameters and errors of its functions.

The schema itself (tables, invariants, deliberate differences from SQLite) and its migration
are in runtime/store/postgres_migrations.py.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
import psycopg
from psycopg_pool import AsyncConnectionPool

if TYPE_CHECKING:
    from runtime.auth_filter import AuthFilter

from runtime.errors import BadRequest, InvalidRequest, ThreadBusy, ThreadNotFound
from runtime.store import rows
from runtime.store.filters import check_filter
from runtime.types import (
    Run,
    Thread,
    ThreadOutcome,
)

RUNS_CHANNEL = "gw_runs"
"""``LISTEN``/``NOTIFY`` channel that announces runs which may have become claimable (empty
payload; NOTIFY fires at COMMIT, so it never advertises an uncommitted run)."""

RUN_COLS = (
    "run_id, thread_id, assistant_id, graph_id, status, metadata, kwargs, multitask_strategy, "
    "created_at, updated_at, attempt, cancel_action, on_completion, not_before"
)
THREAD_COLS = (
    'thread_id, created_at, updated_at, state_updated_at, metadata, status, config, "values", '
    "interrupts, error"
)
ACTIVE = "('pending', 'running')"


# ``\u0000`` as an escape (an odd number of backslashes), not a literal backslash + "u0000"
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def to_jsonb(value: Any, field: str, *, replace_nul: bool = False) -> str | None:
    """``value`` as JSON text for a ``%s::jsonb`` parameter (None stays SQL NULL).

    Args:
        replace_nul: write U+0000 as U+FFFD instead of refusing it: for the copies of a
            thread's state the store keeps (``values``, ``interrupts``, ``error``), whose
            truth is in the checkpointer, which keeps U+0000; refusing them would leave the
            thread unable to finish any run.

    Raises:
        InvalidRequest: the value holds U+0000 (in a string or a key), which jsonb cannot
            store (SQLite can: deliberate difference 1 of postgres_migrations.py).
    """
    if value is None:
        return None
    return jsonb_text(orjson.dumps(value), field, replace_nul=replace_nul)


def jsonb_text(text: bytes, field: str, *, replace_nul: bool = False) -> str:
    """JSON bytes as text for a ``%s::jsonb`` parameter, U+0000 handled as ``to_jsonb``.

    Raises:
        InvalidRequest: the JSON holds U+0000 and not ``replace_nul``.
    """
    if b"\\u0000" in text and _NUL_ESCAPE.search(text):
        if not replace_nul:
            raise InvalidRequest(
                f"{field}: PostgreSQL cannot store the character U+0000 (\\u0000)")
        text = _NUL_ESCAPE.sub(lambda m: m.group(0)[:-6] + b"\\ufffd", text)
    return text.decode()


def loads_json(data: bytes | bytearray | memoryview | str) -> Any:
    """The connection's JSON loader (orjson: an integer past 64 bits, as jsonb prints a float
    like ``1e+20``, parses as the float it was)."""
    return orjson.loads(bytes(data) if isinstance(data, memoryview) else data)


def run_from_row(row: Sequence[Any]) -> Run:
    """The ``Run`` of a ``runs`` row of this engine (runtime/store/rows.py)."""
    return rows.run_from_row(row)


def thread_from_row(row: Sequence[Any]) -> Thread:
    """The ``Thread`` of a ``threads`` row of this engine (runtime/store/rows.py)."""
    return rows.thread_from_row(row)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch, as SQLite's ``json_patch``: null removes a key, objects
    merge recursively, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def thread_filters(
    ids: list[str] | None, metadata: dict[str, Any] | None, values: dict[str, Any] | None,
    status: str | None, auth: AuthFilter | None = None,
) -> tuple[str, list[Any]]:
    """``(" WHERE ...", args)`` for ``POST /threads/search`` and ``/count``: jsonb ``@>``;
    ``auth`` (an authorization handler's filter) is ANDed in (``auth_clause``).

    An empty filter matches every thread (also those without ``values``), as in SQLite. A
    filter holding U+0000 matches nothing: jsonb cannot hold that character.

    Raises:
        InvalidRequest: a filter out of bounds (``runtime.store.filters.check_filter``).
    """
    check_filter("metadata", metadata)
    check_filter("values", values)
    clauses: list[str] = []
    args: list[Any] = []
    if auth is not None:
        clauses.append(auth_clause(auth, args))
    if ids:
        clauses.append("thread_id = ANY(%s::text[])")
        args.append(list(ids))
    if status:
        clauses.append("status = %s")
        args.append(status)
    for column, wanted in (("metadata", metadata), ('"values"', values)):
        if not wanted:
            continue
        text = orjson.dumps(wanted)
        if b"\\u0000" in text:
            clauses.append("false")
            continue
        clauses.append(f"{column} @> %s::jsonb")
        args.append(text.decode())
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def auth_clause(auth: AuthFilter, args: list[Any], column: str = "metadata") -> str:
    """The SQL condition (PostgreSQL) for an authorization filter on the jsonb ``column``:
    ``(column @> alt1 OR column @> alt2 ...)``; parameters appended to ``args``. No
    alternatives: ``false``."""
    parts = []
    for alternative in auth.alternatives:
        text = orjson.dumps(alternative)
        if b"\\u0000" in text:
            continue  # jsonb holds no U+0000: this alternative matches nothing
        parts.append(f"{column} @> %s::jsonb")
        args.append(text.decode())
    return "(" + " OR ".join(parts) + ")" if parts else "false"


async def admit_checked(
    pool: AsyncConnectionPool[Any], thread_id: str, visible: AuthFilter | None, sql: str,
    args: tuple[Any, ...],
) -> list[Any]:
    """Run an admission statement; with ``visible`` (an authorization filter), in a
    transaction that then reads the thread's metadata and rolls everything back unless it
    passes: a thread another user created since the caller looked is refused as a missing one
    (the admission's ``ON CONFLICT`` waited for that creator's commit, so the read sees it).

    Raises:
        ThreadNotFound: ``Thread or assistant not found.``, the filter hides the thread.
        psycopg.Error: as the statement.
    """
    async with pool.connection() as conn:
        rows: list[Any]
        if visible is None:
            rows = await (await conn.execute(sql, args)).fetchall()
            return rows
        async with conn.transaction():
            rows = await (await conn.execute(sql, args)).fetchall()
            cur = await conn.execute("SELECT metadata FROM threads WHERE thread_id = %s",
                                     (thread_id,))
            found = await cur.fetchone()
            if found is None or not visible.matches(found[0]):
                raise ThreadNotFound(thread_id, "Thread or assistant not found.")
            return rows


def admission_error(exc: psycopg.Error, thread_id: str) -> Exception:
    """The runtime error of a failed admission (``gw_admit_run_v1``'s SQLSTATEs), or ``exc``
    itself when it is not one of them."""
    if exc.sqlstate == "GW404":
        return ThreadNotFound(thread_id, "Thread or assistant not found.")
    if exc.sqlstate == "GW409":
        return ThreadBusy(thread_id)
    if exc.sqlstate == "GW400":
        return BadRequest(
            f"Cannot resume thread {thread_id}: it is not interrupted "
            f"(status {exc.diag.message_primary}); there is nothing to resume.")
    return exc


def outcome_args(outcome: ThreadOutcome | None) -> tuple[Any, ...]:
    """``(set, values, interrupts, error, rest, metadata patch)`` of ``gw_thread_after_run_v1``:
    encoded before the call, so a value jsonb refuses raises before anything is written."""
    if outcome is None:
        return (False, None, None, None, None, None)
    patch = {k: v for k, v in (("graph_id", outcome.graph_id),
                               ("assistant_id", outcome.assistant_id)) if v}
    values = (jsonb_text(outcome.values_json, "values", replace_nul=True)
              if outcome.values_json is not None
              else to_jsonb(outcome.values, "values", replace_nul=True))
    return (True, values,
            to_jsonb(outcome.interrupts, "interrupts", replace_nul=True),
            to_jsonb(outcome.error, "error", replace_nul=True), outcome.status,
            to_jsonb(patch, "metadata"))
