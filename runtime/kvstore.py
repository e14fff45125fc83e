"""The Store: long-term memory that graphs and clients share (``/store`` endpoints of the
Platform API; auth-store-assistants.md section 2).

It is langgraph's own store, not ours: ``AsyncSqliteStore`` on ``data_dir/store.sqlite``,
``AsyncPostgresStore`` on ``database_url``, ``InMemoryStore`` with ``data_dir: memory``. The
SAME object is handed to every graph (``GraphRegistry``), so a node's ``runtime.store`` /
``get_store()`` reads what a client put over HTTP, and the reverse.

``ItemStore`` is the HTTP edge's view of it, and adds what the reference's clients expect:
- timestamps as ISO-8601 with ``+00:00`` (the SQLite store returns naive second-precision
  ones);
- ``created_at`` kept when an item is overwritten (the SQLite store's INSERT OR REPLACE resets
  it; the PostgreSQL store keeps it);
- ``ttl`` (minutes) honoured: a TTL sweeper deletes expired items every 6 seconds;
  ``refresh_ttl`` on reads restarts an item's TTL (the stores' ``TTLConfig``).

Deliberate differences from the reference (``langgraph dev``'s in-memory store): a namespace
whose last item is deleted is gone from ``list_namespaces`` (no phantom namespaces); ``ttl`` is
honoured (the reference accepts and ignores it); a search without ``namespace_prefix`` searches
everything (the reference answers 500).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import psycopg
from langgraph.store.base import BaseStore, Item, SearchItem
from langgraph.store.memory import InMemoryStore
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from runtime.auth_filter import AuthFilter
from runtime.errors import BadRequest
from runtime.pg_session import configure_session

logger = logging.getLogger(__name__)

TTL = {"refresh_on_read": True, "sweep_interval_minutes": 0.1}  # expired items go within 6 s
_SETUP_LOCK = 0x6777_7374_6F72_6500  # pg_try_advisory_lock key of the store's setup()


@asynccontextmanager
async def open_item_store(data_dir: Path | None, database_url: str | None,
                          ) -> AsyncIterator[BaseStore]:
    """The store for ``database_url``, else ``data_dir/store.sqlite``, else memory; its schema
    set up (once, under an advisory lock, on PostgreSQL) and its TTL sweeper running."""
    async with AsyncExitStack() as stack:
        store: BaseStore
        if database_url:
            from langgraph.store.postgres.aio import AsyncPostgresStore

            kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": 0,
                                      "row_factory": dict_row}
            pool = await stack.enter_async_context(AsyncConnectionPool(
                database_url, min_size=1, max_size=10, kwargs=kwargs,
                configure=configure_session, open=False, name="gateway-items"))
            await pool.open(wait=True)
            pg = AsyncPostgresStore(pool, ttl=TTL)  # type: ignore[arg-type]
            await _setup_locked(pg, database_url)
            store = pg
        elif data_dir is not None:
            from langgraph.store.sqlite.aio import AsyncSqliteStore

            lite = await stack.enter_async_context(AsyncSqliteStore.from_conn_string(
                str(data_dir / "store.sqlite"), ttl=TTL))  # type: ignore[arg-type]
            await lite.setup()
            store = lite
        else:
            store = InMemoryStore()
        sweeper = getattr(store, "start_ttl_sweeper", None)
        if sweeper is not None and getattr(store, "ttl_config", None):
            await sweeper()
            stop = getattr(store, "stop_ttl_sweeper")  # noqa: B009 - not on every store

            async def stop_sweeper() -> None:
                with anyio.move_on_after(5, shield=True):
                    await stop()

            stack.push_async_callback(stop_sweeper)
        yield store


async def _setup_locked(store: Any, url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as lock:
        while True:  # polled, as the checkpointer's setup (runtime/checkpointer.py)
            cur = await lock.execute("SELECT pg_try_advisory_lock(%s)", (_SETUP_LOCK,))
            if ((await cur.fetchone()) or (False,))[0]:
                break
            await anyio.sleep(0.05)
        try:
            await store.setup()
        finally:
            await lock.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK,))


def _iso(when: datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat()


def item_to_api(item: Item) -> dict[str, Any]:
    """The Item object: ``namespace`` (list), ``key``, ``value``, ``created_at``,
    ``updated_at``; a SearchItem adds ``score``."""
    out: dict[str, Any] = {"namespace": list(item.namespace), "key": item.key,
                           "value": item.value, "created_at": _iso(item.created_at),
                           "updated_at": _iso(item.updated_at)}
    if isinstance(item, SearchItem):
        out["score"] = item.score
    return out


class ItemStore:
    """The ``/store`` endpoints over a langgraph ``BaseStore`` (module docstring)."""

    def __init__(self, store: BaseStore) -> None:
        self.store = store

    async def put(self, namespace: tuple[str, ...], key: str, value: dict[str, Any],
                  index: Any = None, ttl: float | None = None) -> None:
        """Insert or replace an item, keeping its ``created_at``. ``ttl`` in minutes."""
        before = await self.store.aget(namespace, key)
        await self.store.aput(namespace, key, value, index=index, ttl=ttl)
        if before is not None and type(self.store).__name__ == "AsyncSqliteStore":
            # its INSERT OR REPLACE reset created_at: write the first one back, in the
            # store's own format (CURRENT_TIMESTAMP text), under the store's lock
            store: Any = self.store
            created = before.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") \
                if before.created_at.tzinfo else before.created_at.strftime("%Y-%m-%d %H:%M:%S")
            async with store.lock:
                await store.conn.execute(
                    "UPDATE store SET created_at = ? WHERE prefix = ? AND key = ?",
                    (created, ".".join(namespace), key))
                await store.conn.commit()

    async def get(self, namespace: tuple[str, ...], key: str,
                  refresh_ttl: bool | None = None) -> dict[str, Any] | None:
        """The item, or None."""
        item = await self.store.aget(namespace, key, refresh_ttl=refresh_ttl)
        return None if item is None else item_to_api(item)

    async def delete(self, namespace: tuple[str, ...], key: str) -> None:
        """Delete the item (nothing if absent)."""
        await self.store.adelete(namespace, key)

    async def search(self, prefix: tuple[str, ...], *, filter: dict[str, Any] | None,
                     limit: int, offset: int, query: str | None,
                     refresh_ttl: bool | None,
                     auth: AuthFilter | None = None) -> list[dict[str, Any]]:
        """Items under ``prefix`` matching ``filter`` (``$eq $ne $gt $gte $lt $lte``) and,
        when given, an authorization handler's filter on the item's value (``auth``: the
        store's results are scanned in order, at most ``MAX_AUTH_SCAN`` items).

        Raises:
            BadRequest: an operator the store does not support.
        """
        for value in (filter or {}).values():
            if isinstance(value, dict):
                for op in value:
                    if op not in ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte"):
                        raise BadRequest(f"Unsupported operator: {op}")
        if auth is not None:
            matched = [i async for i in self._scan(prefix, filter, query, auth)]
            return [item_to_api(i) for i in matched[offset:offset + limit]]
        items = await self.store.asearch(prefix, filter=filter, limit=limit, offset=offset,
                                         query=query, refresh_ttl=refresh_ttl)
        return [item_to_api(i) for i in items]

    async def _scan(self, prefix: tuple[str, ...], filter: dict[str, Any] | None,
                    query: str | None, auth: AuthFilter) -> AsyncIterator[Item]:
        """Items under ``prefix`` whose value passes ``auth``, in the store's order."""
        seen = 0
        while seen < MAX_AUTH_SCAN:
            batch = await self.store.asearch(prefix, filter=filter, query=query,
                                             limit=SCAN_BATCH, offset=seen)
            for item in batch:
                if auth.matches(item.value):
                    yield item
            seen += len(batch)
            if len(batch) < SCAN_BATCH:
                return

    async def namespaces(self, *, prefix: tuple[str, ...] | None,
                         suffix: tuple[str, ...] | None, max_depth: int | None, limit: int,
                         offset: int, auth: AuthFilter | None = None) -> list[list[str]]:
        """The namespaces matching ``prefix``/``suffix`` (``*`` matches one label), sorted;
        with ``auth``, only namespaces holding an item whose value passes it."""
        if auth is not None:
            names = sorted({_cut(i.namespace, max_depth) async for i in
                            self._scan(prefix or (), None, None, auth)
                            if _ends_with(i.namespace, suffix)})
            return [list(ns) for ns in names[offset:offset + limit]]
        found = await self.store.alist_namespaces(prefix=prefix, suffix=suffix,
                                                  max_depth=max_depth, limit=limit,
                                                  offset=offset)
        return [list(ns) for ns in found]


MAX_AUTH_SCAN = 50_000
"""Most items a search or namespace listing under an authorization filter looks at."""
SCAN_BATCH = 500


def _ends_with(namespace: tuple[str, ...], suffix: tuple[str, ...] | None) -> bool:
    if not suffix:
        return True
    if len(suffix) > len(namespace):
        return False
    tail = namespace[len(namespace) - len(suffix):]
    return all(want in ("*", got) for want, got in zip(suffix, tail, strict=True))


def _cut(namespace: tuple[str, ...], max_depth: int | None) -> tuple[str, ...]:
    return namespace if max_depth is None else namespace[:max_depth]
