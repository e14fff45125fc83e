"""SqliteStreamBridge: the in-memory bridge plus a durable copy of every event in SQLite.

Publishing stays synchronous and never waits (design.md 4.5): events are appended to the
in-memory log as before and queued for a flusher task that writes them in batches
(``executemany``, one commit per batch) every ``flush_interval_s`` or ``batch_max`` events.
A subscription to a run whose log is not in memory (a finished run after a restart, or after
retention) is served from SQLite, so ``Last-Event-ID`` resume and full replay work across
restarts.

Invariants:
1. Rows are ``(run_id, seq)``; a run opened again (re-executed after a crash) first deletes its
   old rows, so the stored log is always the latest attempt's.
2. A run's rows are flushed before its stream is served from SQLite (``flush`` runs first).
3. The stored log is bounded as the in-memory one (``max_events_per_run``,
   ``max_bytes_per_run``): rows the memory log has dropped are deleted at the next flush, and
   a replay from before the first stored row starts with a ``StreamGap``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import anyio

from runtime.bridge.memory import MemoryStreamBridge
from runtime.bridge.protocol import FROM_START, LIVE, REPLAY, BridgeLimits, Cursor
from runtime.types import StreamEvent, StreamGap

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS stream_events (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ms INTEGER NOT NULL,
    event TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
"""


class SqliteStreamBridge(MemoryStreamBridge):
    """Durable StreamBridge (``bridge: sqlite``). Run ``run_flusher`` in a task group."""

    def __init__(
        self, conn: aiosqlite.Connection, limits: BridgeLimits | None = None,
        flush_interval_s: float = 0.05, batch_max: int = 2000,
    ) -> None:
        super().__init__(limits)
        self._conn = conn
        self._pending: list[tuple[str, int, int, str, bytes]] = []
        self._reset: list[str] = []
        self._wake = anyio.Event()
        self._lock = anyio.Lock()
        self.flush_interval_s = flush_interval_s
        self.batch_max = batch_max

    @classmethod
    async def connect(cls, path: Path, limits: BridgeLimits | None = None) -> SqliteStreamBridge:
        """Open the event table in the SQLite file at ``path``."""
        conn = await aiosqlite.connect(str(path))
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute("PRAGMA busy_timeout=5000")
        await conn.executescript(_SCHEMA)
        return cls(conn, limits)

    async def aclose(self) -> None:
        """Flush what is pending and close the connection."""
        await self.flush()
        await self._conn.close()

    def open(self, run_id: str, thread_id: str | None = None) -> None:
        """Open the run's log; a run opened again drops its stored rows (invariant 1)."""
        if not self.has(run_id):
            self._reset.append(run_id)
        super().open(run_id, thread_id)

    def publish(self, run_id: str, event: str, data: bytes) -> StreamEvent | None:
        """Publish in memory and queue the event for the next batch (never waits)."""
        item = super().publish(run_id, event, data)
        if item is not None:
            self._pending.append((run_id, item.seq, item.ms, item.event, item.data))
            if len(self._pending) >= self.batch_max:
                self._wake.set()
        return item

    def discard(self, run_id: str) -> None:
        """Close and drop the log at once (a deleted or rolled-back run), its stored rows too:
        a discarded run is never replayed from SQLite."""
        super().discard(run_id)
        self._pending = [row for row in self._pending if row[0] != run_id]
        self._reset.append(run_id)
        self._wake.set()

    def close(self, run_id: str) -> None:
        """End the run's stream and flush its tail soon."""
        super().close(run_id)
        self._wake.set()

    async def run_flusher(self) -> None:
        """Write queued events every ``flush_interval_s`` (or at once when a batch is full)."""
        while True:
            with anyio.move_on_after(self.flush_interval_s):
                await self._wake.wait()
            self._wake = anyio.Event()
            try:
                await self.flush()
            except Exception:  # a failed batch must not stop the runs; it is retried
                logger.exception("writing stream events to SQLite failed")

    async def flush(self) -> None:
        """Write every queued event now (one transaction)."""
        async with self._lock:
            rows, self._pending = self._pending, []
            resets, self._reset = self._reset, []
            if not rows and not resets:
                return
            # invariant 3: what the in-memory log dropped is dropped here too
            trims = {run_id: log.base for run_id in {row[0] for row in rows}
                     if (log := self._logs.get(run_id)) is not None and log.base}
            kept = [row for row in rows if row[1] > trims.get(row[0], 0)]
            try:
                await self._conn.executemany(
                    "DELETE FROM stream_events WHERE run_id = ?", [(r,) for r in resets]
                )
                await self._conn.executemany(
                    "INSERT OR REPLACE INTO stream_events (run_id, seq, ms, event, data) "
                    "VALUES (?, ?, ?, ?, ?)", kept,
                )
                await self._conn.executemany(
                    "DELETE FROM stream_events WHERE run_id = ? AND seq <= ?", trims.items()
                )
                await self._conn.commit()
            except BaseException:
                self._pending[:0] = rows
                self._reset[:0] = resets
                raise

    def subscribe(
        self, run_id: str, cursor: Cursor = FROM_START
    ) -> AsyncIterator[StreamEvent | StreamGap]:
        """As ``MemoryStreamBridge.subscribe``; a run not in memory is replayed from SQLite
        (it has ended, so with ``REPLAY`` its ``error`` event is skipped)."""
        if self.has(run_id):
            return super().subscribe(run_id, cursor)
        return self._replay(run_id, cursor)

    async def _replay(self, run_id: str, cursor: Cursor) -> AsyncIterator[StreamEvent | StreamGap]:
        if cursor == LIVE:
            return
        await self.flush()
        ms, seq = (0, 0) if isinstance(cursor, str) else cursor
        requested = "-1" if isinstance(cursor, str) else f"{ms}-{seq}"
        first = True
        async with self._conn.execute(
            "SELECT ms, seq, event, data FROM stream_events WHERE run_id = ? "
            "AND (ms > ? OR (ms = ? AND seq > ?)) ORDER BY seq",
            (run_id, ms, ms, seq),
        ) as cur:
            async for row in cur:
                event = StreamEvent(row[0], row[1], row[2], bytes(row[3]))
                if first and seq >= 0 and event.seq > seq + 1:  # rows were trimmed
                    yield StreamGap(requested, event.id, event.seq - seq - 1)
                first = False
                if cursor == REPLAY and event.event == "error":
                    continue
                yield event
