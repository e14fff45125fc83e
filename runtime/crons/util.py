"""What both cron stores share: the WHERE of the indexed filters, and metadata filtering,
sorting and paging in Python (crons are few)."""

from __future__ import annotations

from typing import Any

from runtime.auth_filter import AuthFilter
from runtime.crons.types import CRON_SORT_COLUMNS, Cron
from runtime.store.filters import contains


def select_where(assistant_id: str | None, thread_id: str | None, enabled: bool | None,
                 mark: str) -> tuple[str, list[Any]]:
    """``(" WHERE ...", args)`` for the indexed filters; ``mark`` is the engine's parameter
    marker (``?`` or ``%s``)."""
    clauses: list[str] = []
    args: list[Any] = []
    for column, value in (("assistant_id", assistant_id), ("thread_id", thread_id)):
        if value is not None:
            clauses.append(f"{column} = {mark}")
            args.append(value)
    if enabled is not None:
        clauses.append(f"enabled = {mark}")
        args.append(enabled if mark == "%s" else int(enabled))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def page(crons: list[Cron], metadata: dict[str, Any] | None, limit: int | None, offset: int,
         sort_by: str, sort_order: str) -> tuple[list[Cron], bool]:
    """Filter by ``metadata`` (containment), sort (``None`` values last when ascending, as
    PostgreSQL sorts), then ``offset``/``limit``; returns the page and whether more follow."""
    if metadata:
        crons = [c for c in crons if contains(c.metadata, metadata)]
    key = sort_by if sort_by in CRON_SORT_COLUMNS else "created_at"
    present = [c for c in crons if getattr(c, key) is not None]
    missing = [c for c in crons if getattr(c, key) is None]
    present.sort(key=lambda c: (getattr(c, key), c.cron_id), reverse=sort_order == "desc")
    ordered = present + missing if sort_order != "desc" else missing + present
    if limit is None:
        return ordered[offset:], False
    return ordered[offset:offset + limit], len(ordered) > offset + limit


def thread_detail(thread_id: str) -> str:
    """The reference's 404 detail for a cron on a missing thread."""
    return (f"Thread with ID '{thread_id}' not found. Please verify the ID is correct and the "
            "thread hasn't been deleted or expired.")


class CronQueries:
    """``search_crons`` and ``count_crons`` of both stores, over the engine's ``_select``
    (the indexed filters in SQL; metadata, sort and paging in Python)."""

    async def _select(self, assistant_id: str | None, thread_id: str | None,
                      enabled: bool | None) -> list[Cron]:
        raise NotImplementedError

    async def search_crons(
        self, *, assistant_id: str | None = None, thread_id: str | None = None,
        enabled: bool | None = None, metadata: dict[str, Any] | None = None,
        limit: int = 10, offset: int = 0, sort_by: str = "created_at",
        sort_order: str = "desc", auth: AuthFilter | None = None,
    ) -> tuple[list[Cron], bool]:
        """Matching crons, sorted and paged; whether more follow. ``auth``: an authorization
        handler's filter on the cron's metadata."""
        crons = await self._select(assistant_id, thread_id, enabled)
        if auth is not None:
            crons = [c for c in crons if auth.matches(c.metadata)]
        return page(crons, metadata, limit, offset, sort_by, sort_order)

    async def count_crons(
        self, *, assistant_id: str | None = None, thread_id: str | None = None,
        metadata: dict[str, Any] | None = None, auth: AuthFilter | None = None,
    ) -> int:
        """How many crons match (``auth`` as ``search_crons``)."""
        crons = await self._select(assistant_id, thread_id, None)
        if auth is not None:
            crons = [c for c in crons if auth.matches(c.metadata)]
        return len(page(crons, metadata, None, 0, "created_at", "asc")[0])
