"""What both cron stores share: the WHERE of the indexed filters, and metadata filtering,
sorting and paging in Python (crons are few)."""

from __future__ import annotations

from typing import Any

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
