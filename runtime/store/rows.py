"""Store rows -> runtime records, for every store engine.

A ``runs`` row is ``RUN_COLS`` in order (run_id, thread_id, assistant_id, graph_id, status,
metadata, kwargs, multitask_strategy, created_at, updated_at, attempt, cancel_action,
on_completion, not_before); a ``threads`` row is ``THREAD_COLS`` (thread_id, created_at,
updated_at, state_updated_at, metadata, status, config, values, interrupts, error). ``decode``
turns a JSON column into its value: SQLite hands over text, PostgreSQL's driver already
decoded ``jsonb``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from runtime.types import CancelAction, MultitaskStrategy, Run, RunStatus, Thread, ThreadStatus

Decode = Callable[[Any], Any]


def _as_is(value: Any) -> Any:
    return value


def run_from_row(row: Sequence[Any], decode: Decode = _as_is) -> Run:
    """The ``Run`` of a ``runs`` row."""
    return Run(
        run_id=row[0],
        thread_id=row[1],
        assistant_id=row[2],
        graph_id=row[3],
        status=RunStatus(row[4]),
        metadata=decode(row[5]),
        kwargs=decode(row[6]),
        multitask_strategy=MultitaskStrategy(row[7]),
        created_at=row[8],
        updated_at=row[9],
        attempt=row[10],
        cancel_action=CancelAction(row[11]) if row[11] else None,
        on_completion=row[12],
        not_before=row[13],
    )


def thread_from_row(row: Sequence[Any], decode: Decode = _as_is) -> Thread:
    """The ``Thread`` of a ``threads`` row."""
    return Thread(
        thread_id=row[0],
        created_at=row[1],
        updated_at=row[2],
        state_updated_at=row[3],
        metadata=decode(row[4]),
        status=ThreadStatus(row[5]),
        config=decode(row[6]),
        values=decode(row[7]),
        interrupts=decode(row[8]),
        error=decode(row[9]),
    )
