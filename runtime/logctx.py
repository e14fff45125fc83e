"""Log lines that carry ``run_id``, ``thread_id`` and ``cron_id``.

``bind(run_id=..., thread_id=...)`` sets them for the current task and every task it starts
(a ``contextvars`` variable: LangGraph's node tasks inherit it, so a graph's own log lines carry
the ids too). ``ContextFilter`` (installed on the log handlers by ``gateway serve``) puts them in
``record.ids`` as `` run_id=<id> thread_id=<id>`` (empty outside a run), for a format that ends
with ``%(ids)s``.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

_IDS: ContextVar[str] = ContextVar("gateway_log_ids", default="")


def bind(**ids: str | None) -> None:
    """Add ``ids`` (``run_id``, ``thread_id``, ``cron_id``) to this task's log lines; a None
    value is left out. Tasks started afterwards inherit them."""
    text = "".join(f" {key}={value}" for key, value in ids.items() if value)
    _IDS.set(_IDS.get() + text)


class ContextFilter(logging.Filter):
    """Sets ``record.ids`` (never filters a record out)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.ids = _IDS.get()
        return True
