"""StreamBridge: per-run event logs fanned out to any number of subscribers (in memory).

Invariants (design.md 4.4, 4.5):
1. A run's log is opened at admission, before the run starts, so nothing is published before
   a subscriber can attach.
2. Every event gets an id ``"<ms>-<seq>"``: ``seq`` is the event's 1-based position in its run
   (a per-run counter) and ``ms`` never goes backwards, so ids are unique and strictly
   increasing within a run; order compares ``(ms, seq)`` as integers, and the position of a
   ``Last-Event-ID`` is found in O(1) from its ``seq``.
3. ``publish`` is synchronous and never waits on a consumer: it appends and wakes readers.
   Each subscriber is only a cursor into the log; a slow one falls behind, and when its
   cursor falls out of the bounded log (``max_events_per_run``, ``max_bytes_per_run``) it
   gets a ``StreamGap``.
4. A closed log ends every subscription once it is drained; the log is kept
   ``retention_s`` after close for late joiners and ``Last-Event-ID`` resumes, then dropped.
5. Where a subscription starts, and whether it sees the terminal ``error`` event
   (design.md 4.4), by what the client has already seen:

   ==================  ===================  ==========================================
   cursor              starts at            terminal ``error``
   ==================  ===================  ==========================================
   ``FROM_START``      the first event      yes (the creating stream; a join with no
                                            ``Last-Event-ID``: that client has seen
                                            nothing, the Python SDK's ``join_stream``)
   ``(ms, seq)``       after that id        yes (a client cut mid-stream never saw it:
                                            the SDKs' automatic reconnect)
   ``REPLAY`` (``-1``) the first event      only if it is published after the
                                            subscription; an ``error`` already in the
                                            log is withheld and the stream closes
                                            cleanly, as the reference does (useStream
                                            re-joins a failed run with ``-1`` right
                                            after the failure and on every mount, as
                                            only success clears its stored run id: the
                                            page has shown that error, and reads it
                                            from the thread state)
   ``LIVE``            the next event       yes
   ==================  ===================  ==========================================

Deliberate differences from the reference:
1. Every run is logged (not only ``stream_resumable`` ones) and every event has an id.
2. ``Last-Event-ID`` older than the retained log yields an explicit gap, never a silent
   partial replay (protocol.md section 10.2).
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import AsyncIterator

from runtime.bridge.protocol import (
    FROM_START,
    LIVE,
    REPLAY,
    BridgeLimits,
    Cursor,
    StreamAborted,
)
from runtime.types import StreamEvent, StreamGap


class _RunLog:
    """One run's bounded event log. ``base`` is the absolute index of ``events[0]``."""

    __slots__ = ("events", "base", "closed", "aborted", "wake", "max_events", "max_bytes",
                 "nbytes", "thread_id", "subscribers", "created_ms")

    def __init__(self, max_events: int, max_bytes: int,
                 thread_id: str | None = None) -> None:
        self.events: list[StreamEvent] = []
        self.base = 0
        self.max_bytes = max_bytes
        self.nbytes = 0  # payload bytes of ``events``
        self.closed = False
        self.aborted = False  # closed without an end: readers get StreamAborted
        self.created_ms = time.time_ns() // 1_000_000
        self.wake = asyncio.Event()
        self.max_events = max_events
        self.thread_id = thread_id  # run logs: the run's thread (feeds the thread log)
        self.subscribers = 0  # thread logs: open thread streams

    def notify(self) -> None:
        self.wake.set()
        self.wake = asyncio.Event()

    @property
    def end(self) -> int:
        """Absolute index one past the newest event (= number of events ever published)."""
        return self.base + len(self.events)

    def append(self, event: StreamEvent) -> None:
        self.events.append(event)
        self.nbytes += len(event.data)
        drop = max(0, len(self.events) - self.max_events)
        excess = self.nbytes - self.max_bytes
        while excess > 0 and drop < len(self.events) - 1:  # the newest event always stays
            excess -= len(self.events[drop].data)
            drop += 1
        if drop:
            self.nbytes -= sum(len(e.data) for e in self.events[:drop])
            del self.events[:drop]
            self.base += drop
        self.notify()

    def position_after(self, cursor: Cursor) -> int:
        """Absolute index of the first event after ``cursor`` (may be < ``base``: a gap)."""
        if cursor == FROM_START or cursor == REPLAY:
            return 0
        if cursor == LIVE:
            return self.end
        ms, seq = cursor
        if ms < self.created_ms:  # an id of an earlier log (before a restart): replay all
            return 0
        if seq >= 0:  # our own id: seq is the 1-based absolute position
            return min(seq, self.end)
        i = bisect.bisect_left(self.events, ms, key=lambda e: e.ms)  # "<ms>": all of that ms
        return self.base + i if i or not self.base else 0


class MemoryStreamBridge:
    """In-memory StreamBridge. Must be used from the event loop thread only."""

    def __init__(self, limits: BridgeLimits | None = None) -> None:
        self.limits = limits or BridgeLimits()
        self._logs: dict[str, _RunLog] = {}
        self._thread_logs: dict[str, _RunLog] = {}
        self._last_ms = 0

    def open(self, run_id: str, thread_id: str | None = None) -> None:
        """Open the log of ``run_id`` (idempotent: an open log is kept as is).

        With ``thread_id``, the run's events are also appended to that thread's log while
        somebody watches the thread (``subscribe_thread``).
        """
        if run_id not in self._logs:
            self._logs[run_id] = _RunLog(self.limits.max_events_per_run,
                                         self.limits.max_bytes_per_run, thread_id)

    def has(self, run_id: str) -> bool:
        """True while the run's log is retained."""
        return run_id in self._logs

    def is_closed(self, run_id: str) -> bool:
        """True if the log exists and is closed."""
        log = self._logs.get(run_id)
        return log is not None and log.closed

    def publish(self, run_id: str, event: str, data: bytes) -> StreamEvent | None:
        """Append one event; returns it, or None if the log is closed or gone.

        Never blocks and never waits on a subscriber.
        """
        log = self._logs.get(run_id)
        if log is None or log.closed:
            return None
        ms = self._now_ms()
        item = StreamEvent(ms, log.end + 1, event, data)
        log.append(item)
        if log.thread_id is not None:
            thread_log = self._thread_logs.get(log.thread_id)
            if thread_log is not None:
                thread_log.append(StreamEvent(ms, thread_log.end + 1, event, data))
        return item

    def _now_ms(self) -> int:
        ms = time.time_ns() // 1_000_000
        if ms < self._last_ms:
            ms = self._last_ms
        self._last_ms = ms
        return ms

    def publish_thread(self, thread_id: str, event: str, data: bytes) -> None:
        """Append an event to the thread's log only (``state_update``), if it is watched."""
        thread_log = self._thread_logs.get(thread_id)
        if thread_log is not None:
            thread_log.append(StreamEvent(self._now_ms(), thread_log.end + 1, event, data))

    def _run_done(self, run_id: str, log: _RunLog) -> None:
        if log.thread_id is not None:
            payload = b'{"status":"run_done","run_id":"' + run_id.encode() + b'"}'
            self.publish_thread(log.thread_id, "metadata", payload)

    def subscribe_thread(
        self, thread_id: str, cursor: Cursor = LIVE
    ) -> AsyncIterator[StreamEvent | StreamGap]:
        """Endless stream of every event of every run of the thread, while subscribed.

        After each run: ``metadata`` ``{"status": "run_done", "run_id"}``. The thread log
        exists while the thread has subscribers and ``retention_s`` after the last one left,
        so a reconnect with ``Last-Event-ID`` resumes without loss (protocol.md section 5.4);
        a reconnect from an id older than the log starts with a ``StreamGap`` whose
        ``dropped`` is None (unknown).
        """
        log = self._thread_logs.get(thread_id)
        if log is None:
            log = self._thread_logs[thread_id] = _RunLog(self.limits.max_events_per_run,
                                                         self.limits.max_bytes_per_run)
        log.subscribers += 1
        requested = "-1" if isinstance(cursor, str) else f"{cursor[0]}-{cursor[1]}"
        # An id older than the thread log: the log was dropped (nobody watched the thread for
        # retention_s) or the process restarted since, and what happened in between was never
        # logged here. Say so (a gap of unknown size) rather than resume silently.
        stale = not isinstance(cursor, str) and cursor[0] < log.created_ms
        return self._watch_thread(thread_id, log, log.position_after(cursor), requested, stale)

    async def _watch_thread(
        self, thread_id: str, log: _RunLog, pos: int, requested: str, stale: bool
    ) -> AsyncIterator[StreamEvent | StreamGap]:
        try:
            if stale:
                yield StreamGap(requested, log.events[0].id if log.events else None, None)
            async for item in _read(log, pos, requested):
                yield item
        finally:
            log.subscribers -= 1
            if log.subscribers == 0:
                asyncio.get_running_loop().call_later(
                    self.limits.retention_s, self._drop_thread, thread_id, log
                )

    def _drop_thread(self, thread_id: str, log: _RunLog) -> None:
        if log.subscribers == 0 and self._thread_logs.get(thread_id) is log:
            del self._thread_logs[thread_id]

    def close(self, run_id: str) -> None:
        """Mark the end of the run's stream; subscribers finish after draining.

        The log is dropped ``retention_s`` later.
        """
        log = self._logs.get(run_id)
        if log is None or log.closed:
            return
        log.closed = True
        log.notify()
        self._run_done(run_id, log)
        asyncio.get_running_loop().call_later(self.limits.retention_s, self._drop, run_id, log)

    def _drop(self, run_id: str, log: _RunLog) -> None:
        if self._logs.get(run_id) is log:
            del self._logs[run_id]

    def abort(self, run_id: str) -> None:
        """End the log without an end: readers raise StreamAborted after draining, so their
        clients see a broken stream and reconnect instead of taking it as finished (shutdown
        of a run that will resume after the restart)."""
        log = self._logs.pop(run_id, None)
        if log is not None and not log.closed:
            log.closed = log.aborted = True
            log.notify()

    def discard(self, run_id: str) -> None:
        """Close and drop the log at once (a deleted or rolled-back run)."""
        log = self._logs.pop(run_id, None)
        if log is not None and not log.closed:
            log.closed = True
            log.notify()
            self._run_done(run_id, log)

    def __len__(self) -> int:
        return len(self._logs)

    def subscribe(
        self, run_id: str, cursor: Cursor = FROM_START
    ) -> AsyncIterator[StreamEvent | StreamGap]:
        """Events of ``run_id`` after ``cursor``, then live ones, until the log is closed.

        The start position is fixed when this is called (not at the first iteration), so a
        ``LIVE`` subscription misses nothing published after the call.

        Yields:
            ``StreamEvent`` in id order; a ``StreamGap`` first whenever events after the
            reader's position were already dropped. Yields nothing for an unknown run. With
            ``REPLAY``, an ``error`` event already logged when this is called is skipped
            (invariant 5).

        Cancellation: safe at any await; the subscription holds no resources but a cursor.
        """
        log = self._logs.get(run_id)
        if log is None:
            return _nothing()
        requested = "-1" if isinstance(cursor, str) else f"{cursor[0]}-{cursor[1]}"
        withhold = log.end if cursor == REPLAY else 0
        return _read(log, log.position_after(cursor), requested, withhold)


async def _nothing() -> AsyncIterator[StreamEvent | StreamGap]:
    return
    yield  # pragma: no cover - makes this an async generator


async def _read(
    log: _RunLog, pos: int, last_id: str, withhold_error_before: int = 0
) -> AsyncIterator[StreamEvent | StreamGap]:
    """Read ``log`` from absolute position ``pos``; an ``error`` event at a position below
    ``withhold_error_before`` is skipped (a ``REPLAY`` of a run that had already failed)."""
    while True:
        if pos < log.base:
            first = log.events[0].id if log.events else None
            yield StreamGap(last_id, first, log.base - pos)
            pos = log.base
        if pos < log.end:
            start, batch = pos, log.events[pos - log.base:]
            pos = log.end
            for i, item in enumerate(batch, start):
                last_id = item.id
                if i < withhold_error_before and item.event == "error":
                    continue
                yield item
            continue
        if log.closed:
            if log.aborted:
                raise StreamAborted("the run's stream was cut by a shutdown")
            return
        await log.wake.wait()
