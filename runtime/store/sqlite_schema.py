"""The run store's SQLite schema and the mapping between its rows and runtime records.

Tables: ``threads`` (one row per thread; ``status`` is ``busy`` while a run is pending or
running, else ``rest_status``), ``runs`` (``seq`` gives admission order), and ``thread_meta``
(one row per top-level scalar metadata key of a thread, kept by triggers, so
``POST /threads/search`` by metadata is an index lookup, not a scan of every thread).

Invariants:
1. ``runs_one_running``: at most one ``running`` run per thread, in the store (design.md 4.1).
2. ``thread_meta`` always mirrors ``threads.metadata``: triggers on insert, update and delete.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from runtime.store import rows
from runtime.types import Run, Thread

SCHEMA = """
CREATE TABLE IF NOT EXISTS threads (
    thread_id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    state_updated_at TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'idle',
    rest_status TEXT NOT NULL DEFAULT 'idle',
    config TEXT NOT NULL DEFAULT '{}',
    "values" TEXT,
    interrupts TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS threads_created ON threads(created_at);
CREATE INDEX IF NOT EXISTS threads_updated ON threads(updated_at);
CREATE INDEX IF NOT EXISTS threads_status ON threads(status, created_at);
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL UNIQUE,
    thread_id TEXT NOT NULL,
    assistant_id TEXT NOT NULL,
    graph_id TEXT NOT NULL,
    status TEXT NOT NULL,
    metadata TEXT NOT NULL,
    kwargs TEXT NOT NULL,
    multitask_strategy TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    cancel_action TEXT,
    on_completion TEXT NOT NULL DEFAULT 'keep',
    not_before TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS runs_one_running ON runs(thread_id) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS runs_thread ON runs(thread_id, seq);
CREATE INDEX IF NOT EXISTS runs_active ON runs(status, seq) WHERE status IN ('pending', 'running');
-- a thread's active runs without walking its finished ones (admission and finalization)
CREATE INDEX IF NOT EXISTS runs_thread_active ON runs(thread_id, seq)
    WHERE status IN ('pending', 'running');
CREATE TABLE IF NOT EXISTS thread_meta (
    thread_id TEXT NOT NULL,
    key TEXT NOT NULL,
    type TEXT NOT NULL,
    value
);
CREATE INDEX IF NOT EXISTS thread_meta_kv ON thread_meta(key, value);
CREATE INDEX IF NOT EXISTS thread_meta_thread ON thread_meta(thread_id);
CREATE TRIGGER IF NOT EXISTS threads_meta_insert AFTER INSERT ON threads BEGIN
    INSERT INTO thread_meta (thread_id, key, type, value)
    SELECT NEW.thread_id, j.key, j.type, j.atom FROM json_each(NEW.metadata) AS j
    WHERE j.type NOT IN ('object', 'array');
END;
CREATE TRIGGER IF NOT EXISTS threads_meta_update AFTER UPDATE OF metadata ON threads
WHEN NEW.metadata IS NOT OLD.metadata BEGIN
    DELETE FROM thread_meta WHERE thread_id = OLD.thread_id;
    INSERT INTO thread_meta (thread_id, key, type, value)
    SELECT NEW.thread_id, j.key, j.type, j.atom FROM json_each(NEW.metadata) AS j
    WHERE j.type NOT IN ('object', 'array');
END;
CREATE TRIGGER IF NOT EXISTS threads_meta_delete AFTER DELETE ON threads BEGIN
    DELETE FROM thread_meta WHERE thread_id = OLD.thread_id;
END;
-- databases written before thread_meta existed (user_version 0): index their metadata once
INSERT INTO thread_meta (thread_id, key, type, value)
SELECT t.thread_id, j.key, j.type, j.atom FROM threads AS t, json_each(t.metadata) AS j
WHERE j.type NOT IN ('object', 'array') AND (SELECT user_version FROM pragma_user_version) = 0;
PRAGMA user_version = 1;
"""

RUN_COLS = (
    "run_id, thread_id, assistant_id, graph_id, status, metadata, kwargs, multitask_strategy, "
    "created_at, updated_at, attempt, cancel_action, on_completion, not_before"
)
THREAD_COLS = (
    'thread_id, created_at, updated_at, state_updated_at, metadata, status, config, "values", '
    "interrupts, error"
)
ACTIVE = "('pending', 'running')"


def to_json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def from_json(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def run_from_row(row: Sequence[Any]) -> Run:
    """The ``Run`` of a ``runs`` row of this engine (runtime/store/rows.py)."""
    return rows.run_from_row(row, from_json)


def thread_from_row(row: Sequence[Any]) -> Thread:
    """The ``Thread`` of a ``threads`` row of this engine (runtime/store/rows.py)."""
    return rows.thread_from_row(row, from_json)
